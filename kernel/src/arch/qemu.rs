//! Powering QEMU off with a verdict through the `isa-debug-exit` device.
//!
//! The runner starts QEMU with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`. Writing
//! `v` to port 0xf4 makes QEMU exit with status `(v << 1) | 1`: 0x10 gives 33 (success),
//! 0x11 gives 35 (failure). Neither collides with QEMU's own statuses (0, 1), and a triple
//! fault (status 0 under `-no-reboot`) can never pass for success.

use x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How the kernel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    Success = 0x10,
    Failure = 0x11,
}

/// Powers QEMU off with `code`. On a machine without the exit device, halts forever.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device the runner configures; on a machine
    // without it the write is ignored and we halt below.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
