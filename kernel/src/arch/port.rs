//! Device I/O ports on behalf of driver SIPs.
//!
//! The only callers are the kernel's devices module, which checks every access against the I/O range
//! of a PCI device granted to the calling SIP before it gets here; these functions carry
//! that check's guarantee into the `in`/`out` instructions.

use x86_64::instructions::port::Port;

/// Reads `width` (1, 2 or 4) bytes from `port`; other widths read nothing and return 0.
pub fn read(port: u16, width: u32) -> u32 {
    // SAFETY: `port` lies in a device's I/O BAR granted to the calling driver SIP (checked
    // by `crate::devices`); reading a device register cannot affect memory safety of the
    // kernel, only that device's state, which its driver owns.
    unsafe {
        match width {
            1 => u32::from(Port::<u8>::new(port).read()),
            2 => u32::from(Port::<u16>::new(port).read()),
            4 => Port::<u32>::new(port).read(),
            _ => 0,
        }
    }
}

/// Writes the low `width` (1, 2 or 4) bytes of `value` to `port`.
pub fn write(port: u16, width: u32, value: u32) {
    // SAFETY: as for `read`: the port belongs to a device granted to the calling driver.
    // (Without an IOMMU a device the driver programs can still DMA anywhere: see
    // `crate::devices`.)
    unsafe {
        match width {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            4 => Port::<u32>::new(port).write(value),
            _ => {}
        }
    }
}
