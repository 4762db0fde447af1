//! PCI configuration space through the legacy I/O ports (0xCF8 address, 0xCFC data).

use x86_64::instructions::port::Port;

use super::irq::IrqMutex;

/// The two ports are one device: an address write and the data access must not be split.
static PORTS: IrqMutex<()> = IrqMutex::new(());

/// The configuration address of a register (enable bit, bus, device, function, offset).
fn address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    0x8000_0000u32
        | u32::from(bus) << 16
        | u32::from(device & 0x1f) << 11
        | u32::from(function & 0x7) << 8
        | u32::from(offset & 0xfc)
}

/// Reads the 32-bit register at `offset` (4-byte aligned) of function `bus:device.function`.
pub fn read_u32(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    let address = address(bus, device, function, offset);
    let _guard = PORTS.lock();
    // SAFETY: 0xCF8/0xCFC are the PC's PCI configuration mechanism #1; reading a register
    // has no side effects on the devices Cordon's machines have, and the lock keeps the
    // address/data pair together.
    unsafe {
        Port::<u32>::new(0xcf8).write(address);
        Port::<u32>::new(0xcfc).read()
    }
}

/// Writes the 32-bit register at `offset` of function `bus:device.function`. Used only on
/// registers whose meaning Cordon knows: sizing a base address register (restored at
/// once) and the command register of a device granted to a driver.
pub fn write_u32(bus: u8, device: u8, function: u8, offset: u8, value: u32) {
    let address = address(bus, device, function, offset);
    let _guard = PORTS.lock();
    // SAFETY: configuration mechanism #1 as in `read_u32`; callers write only a BAR (and
    // put its value back before anything uses the device) or a granted device's command
    // register.
    unsafe {
        Port::<u32>::new(0xcf8).write(address);
        Port::<u32>::new(0xcfc).write(value);
    }
}
