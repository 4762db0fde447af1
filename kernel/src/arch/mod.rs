//! x86_64 hardware: the only place (with `mm`) where Cordon uses `unsafe`.
//!
//! Every `unsafe` block here carries a `// SAFETY:` comment. Code outside `arch` and `mm`
//! reaches the hardware only through the safe functions these modules export.

/// Pushes the callee-saved registers (System V) in the order `pop_callee_saved!` undoes:
/// the saved kernel context of a context switch and of a program's entry.
macro_rules! push_callee_saved {
    () => {
        "push rbp\npush rbx\npush r12\npush r13\npush r14\npush r15"
    };
}

/// Pops what `push_callee_saved!` pushed.
macro_rules! pop_callee_saved {
    () => {
        "pop r15\npop r14\npop r13\npop r12\npop rbx\npop rbp"
    };
}

pub mod acpi;
pub mod apic;
pub mod context;
pub mod cycles;
pub mod fpu;
pub mod gdt;
pub mod ioapic;
pub mod irq;
pub mod lines;
pub mod pci;
pub mod pic;
pub mod port;
pub mod qemu;
pub mod selftest;
pub mod serial;
pub mod smap;
pub mod smp;
pub mod trap;
pub mod user;
pub mod wasm_tls;

/// Brings up the processor tables and interrupt controllers, interrupts still masked.
pub fn init() {
    // Supervisor writes honour read-only pages (needed for protection and copy-on-write).
    // SAFETY: setting WP only makes the processor stricter; the kernel never writes to
    // its read-only mappings.
    unsafe {
        x86_64::registers::control::Cr0::update(|cr0| {
            cr0.insert(x86_64::registers::control::Cr0Flags::WRITE_PROTECT)
        });
    }
    smp::init_boot_processor();
    fpu::init();
    gdt::init();
    trap::init();
    user::init();
    pic::init();
}

/// Whether the processor supports process-context identifiers (CPUID.1:ECX bit 17).
pub fn has_pcid() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 17) != 0
}
