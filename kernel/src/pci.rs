//! The PCI devices of the machine, found once at boot by walking configuration space (bus 0
//! and the buses behind bridges). Drivers are SIPs: the kernel only needs to know which
//! devices exist, so that it can name them and, for a driver SIP, grant exactly the
//! registers and interrupt of the device its manifest declares.
#![deny(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use spin::Once;

use crate::arch::pci::{read_u32, write_u32};

/// One PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    pub vendor: u16,
    pub id: u16,
    pub class: u8,
    pub subclass: u8,
    /// Raw base address registers (bit 0 set: an I/O-port BAR).
    pub bars: [u32; 6],
    /// Bytes decoded by the first I/O-port BAR (0 if none).
    pub io_size: u16,
    pub irq_line: u8,
}

impl Device {
    /// A short name for devices Cordon knows about.
    pub fn name(&self) -> &'static str {
        match (self.vendor, self.id, self.class, self.subclass) {
            (0x1af4, 0x1001 | 0x1042, _, _) => "virtio-blk",
            (0x1af4, 0x1000 | 0x1041, _, _) => "virtio-net",
            (_, _, 0x06, 0x00) => "host bridge",
            (_, _, 0x06, 0x01) => "ISA bridge",
            (_, _, 0x06, 0x04) => "PCI bridge",
            (_, _, 0x03, _) => "display",
            (_, _, 0x01, 0x01) => "IDE controller",
            (_, _, 0x01, 0x06) => "SATA controller",
            (_, _, 0x02, _) => "network",
            (_, _, 0x0c, 0x05) => "SMBus",
            _ => "device",
        }
    }

    /// The first I/O-port BAR's base, if any (legacy virtio devices use one).
    pub fn io_base(&self) -> Option<u16> {
        self.bars
            .iter()
            .find(|bar| **bar & 1 == 1 && **bar & !3 != 0)
            .map(|bar| (bar & 0xfffc) as u16)
    }
}

impl Device {
    /// Turns on the device's I/O-space decoding and bus mastering (DMA), for its driver.
    pub fn enable(&self) {
        let command = read_u32(self.bus, self.device, self.function, 4) & 0xffff;
        // The status half (upper 16 bits) is write-one-to-clear: write zeros there.
        write_u32(self.bus, self.device, self.function, 4, command | 0b101);
    }

    /// Stops the device: bus mastering off (it can no longer DMA), and for devices whose
    /// reset Cordon knows, a reset (legacy virtio: device status 0, which also forgets the
    /// queues' physical addresses). Its I/O decoding stays on for the next driver. Returns
    /// whether the device was reset.
    pub fn quiesce(&self) -> bool {
        let command = read_u32(self.bus, self.device, self.function, 4) & 0xffff;
        write_u32(self.bus, self.device, self.function, 4, command & !0b100);
        if let (0x1af4, 0x1000..=0x103f, Some(base)) = (self.vendor, self.id, self.io_base()) {
            // Legacy virtio header: the device status byte at offset 0x12.
            crate::arch::port::write(base + 0x12, 1, 0);
            return true;
        }
        false
    }

    /// The interrupt line, if the firmware routed one a driver may use (COM1's is the
    /// kernel's console: a device sharing it gets no interrupt line).
    pub fn irq(&self) -> Option<u8> {
        (self.irq_line != 0 && self.irq_line < 16 && self.irq_line != crate::arch::serial::IRQ)
            .then_some(self.irq_line)
    }
}

/// Bytes an I/O BAR decodes: write all ones, read back the size mask, restore.
fn io_bar_size(bus: u8, device: u8, function: u8, index: usize, bar: u32) -> u16 {
    let offset = 0x10 + 4 * index as u8;
    write_u32(bus, device, function, offset, 0xffff_ffff);
    let mask = read_u32(bus, device, function, offset);
    write_u32(bus, device, function, offset, bar);
    let size = (!(mask & 0xffff_fffc)).wrapping_add(1) & 0xffff;
    size as u16
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{} {} ({:04x}:{:04x}, class {:02x}.{:02x}",
            self.bus,
            self.device,
            self.function,
            self.name(),
            self.vendor,
            self.id,
            self.class,
            self.subclass
        )?;
        if let Some(io) = self.io_base() {
            write!(f, ", I/O {io:#x}+{:#x}", self.io_size)?;
        }
        if self.irq_line != 0 && self.irq_line != 0xff {
            write!(f, ", IRQ {}", self.irq_line)?;
        }
        write!(f, ")")
    }
}

fn probe(bus: u8, device: u8, function: u8) -> Option<Device> {
    let id = read_u32(bus, device, function, 0);
    if id & 0xffff == 0xffff {
        return None;
    }
    let class = read_u32(bus, device, function, 8);
    let header = (read_u32(bus, device, function, 0x0c) >> 16) as u8 & 0x7f;
    let mut bars = [0; 6];
    let mut io_size = 0;
    if header == 0 {
        for (i, bar) in bars.iter_mut().enumerate() {
            *bar = read_u32(bus, device, function, 0x10 + 4 * i as u8);
        }
        if let Some(i) = bars.iter().position(|bar| bar & 1 == 1 && bar & !3 != 0) {
            io_size = io_bar_size(bus, device, function, i, bars[i]);
        }
    }
    Some(Device {
        bus,
        device,
        function,
        vendor: id as u16,
        id: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        bars,
        io_size,
        irq_line: read_u32(bus, device, function, 0x3c) as u8,
    })
}

fn scan_bus(bus: u8, found: &mut Vec<Device>, depth: u32) {
    for device in 0..32 {
        let Some(first) = probe(bus, device, 0) else {
            continue;
        };
        let multi = (read_u32(bus, device, 0, 0x0c) >> 16) & 0x80 != 0;
        let functions = if multi { 8 } else { 1 };
        for function in 0..functions {
            let Some(dev) = (if function == 0 {
                Some(first)
            } else {
                probe(bus, device, function)
            }) else {
                continue;
            };
            found.push(dev);
            // A PCI-to-PCI bridge: its secondary bus number is byte 1 of register 0x18.
            if dev.class == 0x06 && dev.subclass == 0x04 && depth < 8 {
                let secondary = (read_u32(bus, device, function, 0x18) >> 8) as u8;
                if secondary > bus {
                    scan_bus(secondary, found, depth + 1);
                }
            }
        }
    }
}

static DEVICES: Once<Vec<Device>> = Once::new();

/// Every PCI function, in bus order (scanned on first use, at boot).
pub fn devices() -> &'static [Device] {
    DEVICES.call_once(|| {
        let mut found = Vec::new();
        scan_bus(0, &mut found, 0);
        found
    })
}
