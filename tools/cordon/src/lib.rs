//! Cordon's runner as a library: it builds the boot image for a run (kernel + boot
//! package in the ramdisk), finds or installs QEMU, boots it and turns QEMU's exit status
//! and console into a verdict. The `cordon-runner` binary and the in-QEMU tests use it; the
//! `cordon` front end (`tools/cli`) runs the file commands itself and hands the rest to
//! `cordon-runner`.
#![deny(unsafe_code)]

pub mod bench;
pub mod compile;
pub mod image;
pub mod linux;
pub mod program;
pub mod qemu;
pub mod sips;
pub mod system;
pub mod webfiles;
pub mod wiring;

pub use cordon_cli::scaffold;

pub use bootpkg::{Isolation, LogLevel};
pub use image::{Firmware, build_image};
pub use qemu::{Accel, BootOptions, ConsoleInput, Outcome, SHELL_PROMPT, Verdict, boot};

/// The kernel ELF this runner was built with (symbols and debug information included:
/// for GDB and addr2line).
pub fn kernel_elf() -> &'static std::path::Path {
    std::path::Path::new(env!("CORDON_KERNEL_ELF"))
}

/// The same kernel without symbols or debug information: what boot images carry (the
/// BIOS loader reads every byte of it through the emulated disk).
pub fn kernel_boot_elf() -> &'static std::path::Path {
    std::path::Path::new(env!("CORDON_KERNEL_BOOT_ELF"))
}
