//! Driver SIPs' view of a device the kernel granted them (manifest `resources`): its I/O
//! registers, its interrupt, and the physical address of exchange-heap buffers for DMA.

use crate::channel::Buffer;
use crate::sys;

/// The device granted as resource `index` of this SIP's manifest. Every access is checked
/// by the kernel: a register outside the device, or a resource not granted, ends the SIP.
#[derive(Clone, Copy, Debug)]
pub struct Device(u32);

/// Whether [`Device::wait`] saw the interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Interrupt,
    Timeout,
}

impl Device {
    /// Resource `index` of the manifest.
    pub const fn resource(index: u32) -> Device {
        Device(index)
    }

    pub fn read8(&self, offset: u32) -> u8 {
        sys::dev_read(self.0, offset, 1) as u8
    }

    pub fn read16(&self, offset: u32) -> u16 {
        sys::dev_read(self.0, offset, 2) as u16
    }

    pub fn read32(&self, offset: u32) -> u32 {
        sys::dev_read(self.0, offset, 4)
    }

    pub fn write8(&self, offset: u32, value: u8) {
        sys::dev_write(self.0, offset, 1, value.into())
    }

    pub fn write16(&self, offset: u32, value: u16) {
        sys::dev_write(self.0, offset, 2, value.into())
    }

    pub fn write32(&self, offset: u32, value: u32) {
        sys::dev_write(self.0, offset, 4, value)
    }

    /// Re-enables the device's interrupt and waits for it (`None` = no timeout, in ticks).
    pub fn wait(&self, timeout: Option<u64>) -> Wait {
        if sys::dev_wait(self.0, timeout) == 0 {
            Wait::Interrupt
        } else {
            Wait::Timeout
        }
    }
}

/// The physical address of `buffer`, for a device to read or write it by DMA. The buffer
/// must stay alive (held by this SIP) until the device is done with it.
pub fn dma_address(buffer: &Buffer) -> u64 {
    sys::buf_dma(buffer.handle())
}
