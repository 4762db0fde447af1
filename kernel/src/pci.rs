//! The PCI devices of the machine, found once at boot by walking configuration space (bus 0
//! and the buses behind bridges). Drivers are SIPs: the kernel only needs to know which
//! devices exist, so that it can name them and, for a driver SIP, grant exactly the
//! registers and interrupt of the device its manifest declares.
#![deny(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use crate::arch::pci::read_u32;

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
            write!(f, ", I/O {io:#x}")?;
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
    if header == 0 {
        for (i, bar) in bars.iter_mut().enumerate() {
            *bar = read_u32(bus, device, function, 0x10 + 4 * i as u8);
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

/// Every PCI function, in bus order.
pub fn scan() -> Vec<Device> {
    let mut found = Vec::new();
    scan_bus(0, &mut found, 0);
    found
}
