//! A legacy virtio-blk device (virtio 0.9.5 PCI I/O interface, which QEMU's transitional
//! `virtio-blk-pci` offers): reset and feature negotiation, one split virtqueue in a DMA
//! buffer, and three-descriptor requests (header, data, status).

use alloc::format;
use alloc::string::String;

use cordon_sip::channel::Buffer;
use cordon_sip::device::{self, Device, Wait};

/// Bytes per sector: the unit of `BlockDevice` blocks.
pub const SECTOR: u64 = 512;

// Legacy virtio PCI registers (offsets into the I/O BAR).
const DEVICE_FEATURES: u32 = 0x00;
const GUEST_FEATURES: u32 = 0x04;
const QUEUE_PFN: u32 = 0x08;
const QUEUE_SIZE: u32 = 0x0c;
const QUEUE_SELECT: u32 = 0x0e;
const QUEUE_NOTIFY: u32 = 0x10;
const STATUS: u32 = 0x12;
const ISR: u32 = 0x13;
/// Device configuration without MSI-X: capacity in sectors, 64 bits.
const CAPACITY: u32 = 0x14;

// Device status bits.
const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FAILED: u8 = 128;

/// Feature: the device is read-only.
const F_RO: u32 = 1 << 5;

// Descriptor flags.
const NEXT: u16 = 1;
const WRITE: u16 = 2;

// Request types.
const IN: u32 = 0;
const OUT: u32 = 1;

const PAGE: u64 = 4096;

/// Results a `ReadDone`/`WriteDone` carries (`BlockDevice` contract).
pub mod status {
    pub const OK: i32 = 0;
    /// The request names sectors past the end, or a buffer too small for `count` sectors.
    pub const BAD_REQUEST: i32 = -1;
    /// The device reported an I/O error (e.g. a write to a read-only disk).
    pub const IO_ERROR: i32 = -2;
    /// The device does not support the request.
    pub const UNSUPPORTED: i32 = -3;
    /// The device did not complete the request in time.
    pub const TIMEOUT: i32 = -4;
}

/// Ticks to wait for one interrupt before looking at the used ring anyway.
const WAIT_TICKS: u64 = 10;
/// Ticks after which a request counts as lost.
const GIVE_UP_TICKS: u64 = 500;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

pub struct Disk {
    dev: Device,
    sectors: u64,
    read_only: bool,
    queue: u16,
    /// The virtqueue (descriptors, available ring, used ring), page-aligned at `ring_at`.
    ring: Buffer,
    ring_at: usize,
    used_at: usize,
    /// Request header (16 bytes) and status byte (at 16), device-visible.
    scratch: Buffer,
    scratch_dma: u64,
    avail_idx: u16,
    used_idx: u16,
    requests: u64,
    bytes: u64,
    interrupts: u64,
    polls: u64,
}

fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

impl Disk {
    /// Resets the device and sets up queue 0.
    pub fn start(dev: Device) -> Result<Disk, String> {
        dev.write8(STATUS, 0);
        dev.write8(STATUS, ACKNOWLEDGE);
        dev.write8(STATUS, ACKNOWLEDGE | DRIVER);
        let features = dev.read32(DEVICE_FEATURES);
        dev.write32(GUEST_FEATURES, features & F_RO);
        dev.write16(QUEUE_SELECT, 0);
        let queue = dev.read16(QUEUE_SIZE);
        if queue == 0 || !queue.is_power_of_two() {
            dev.write8(STATUS, FAILED);
            return Err(format!("queue 0 has size {queue}: not a usable virtqueue"));
        }
        let n = u64::from(queue);
        let used_at = align_up(16 * n + 6 + 2 * n, PAGE);
        let bytes = used_at + align_up(6 + 8 * n, PAGE);
        let ring = Buffer::new((bytes + PAGE) as usize)
            .map_err(|e| format!("no exchange heap for the virtqueue: {e:?}"))?;
        let dma = device::dma_address(&ring);
        let aligned = align_up(dma, PAGE);
        dev.write32(QUEUE_PFN, (aligned / PAGE) as u32);
        let scratch =
            Buffer::new(64).map_err(|e| format!("no exchange heap for requests: {e:?}"))?;
        let scratch_dma = device::dma_address(&scratch);
        dev.write8(STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK);
        let sectors = u64::from(dev.read32(CAPACITY)) | u64::from(dev.read32(CAPACITY + 4)) << 32;
        Ok(Disk {
            dev,
            sectors,
            read_only: features & F_RO != 0,
            queue,
            ring,
            ring_at: (aligned - dma) as usize,
            used_at: (aligned - dma + used_at) as usize,
            scratch,
            scratch_dma,
            avail_idx: 0,
            used_idx: 0,
            requests: 0,
            bytes: 0,
            interrupts: 0,
            polls: 0,
        })
    }

    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn queue_size(&self) -> u16 {
        self.queue
    }

    pub fn stats(&self) -> String {
        format!(
            "served {} requests, {} bytes by DMA, {} interrupts, {} used-ring polls",
            self.requests, self.bytes, self.interrupts, self.polls
        )
    }

    /// Moves `count` sectors from `sector` on between the disk and `data` by DMA.
    pub fn transfer(
        &mut self,
        direction: Direction,
        sector: u64,
        count: u32,
        data: &Buffer,
    ) -> i32 {
        let len = u64::from(count) * SECTOR;
        let fits = sector
            .checked_add(u64::from(count))
            .is_some_and(|end| end <= self.sectors);
        if count == 0 || !fits || (data.len() as u64) < len || len > u64::from(u32::MAX) {
            return status::BAD_REQUEST;
        }
        let kind = if direction == Direction::Read {
            IN
        } else {
            OUT
        };
        let mut header = [0u8; 17];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        header[16] = 0xff; // status, overwritten by the device
        if self.scratch.write(0, &header).is_err() {
            return status::BAD_REQUEST;
        }
        let data_flags = if direction == Direction::Read {
            NEXT | WRITE
        } else {
            NEXT
        };
        let mut descriptors = [0u8; 48];
        let chain = [
            (self.scratch_dma, 16u32, NEXT, 1u16),
            (device::dma_address(data), len as u32, data_flags, 2),
            (self.scratch_dma + 16, 1, WRITE, 0),
        ];
        for (i, (addr, len, flags, next)) in chain.into_iter().enumerate() {
            let d = &mut descriptors[16 * i..16 * (i + 1)];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
        }
        let n = usize::from(self.queue);
        let avail = self.ring_at + 16 * n;
        let slot = avail + 4 + 2 * usize::from(self.avail_idx % self.queue);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let written = self
            .ring
            .write(self.ring_at, &descriptors)
            .and_then(|()| self.ring.write(slot, &0u16.to_le_bytes()))
            .and_then(|()| self.ring.write(avail + 2, &self.avail_idx.to_le_bytes()));
        if written.is_err() {
            return status::BAD_REQUEST;
        }
        self.dev.write16(QUEUE_NOTIFY, 0);
        if !self.complete() {
            return status::TIMEOUT;
        }
        self.requests += 1;
        self.bytes += len;
        let mut result = [0u8; 1];
        if self.scratch.read(16, &mut result).is_err() {
            return status::IO_ERROR;
        }
        match result[0] {
            0 => status::OK,
            2 => status::UNSUPPORTED,
            _ => status::IO_ERROR,
        }
    }

    /// Waits until the device has used the request just made available.
    fn complete(&mut self) -> bool {
        let want = self.used_idx.wrapping_add(1);
        let mut waited = 0;
        loop {
            let mut idx = [0u8; 2];
            if self.ring.read(self.used_at + 2, &mut idx).is_err() {
                return false;
            }
            self.polls += 1;
            if u16::from_le_bytes(idx) == want {
                self.used_idx = want;
                return true;
            }
            if waited >= GIVE_UP_TICKS {
                return false;
            }
            if self.dev.wait(Some(WAIT_TICKS)) == Wait::Interrupt {
                self.interrupts += 1;
            } else {
                waited += WAIT_TICKS;
            }
            // Reading the ISR acknowledges the interrupt (the line drops).
            self.dev.read8(ISR);
        }
    }
}
