//! Processor state beyond the integer registers: control registers set explicitly, and
//! each thread's x87/SSE state saved and restored on every context switch.
//!
//! The firmware leaves CR0/CR4 in different states (UEFI enables SSE, SeaBIOS does not),
//! so [`init`] sets the bits Cordon relies on itself: the FPU present and native error
//! reporting (CR0.MP, CR0.NE; EM and TS clear), SSE with FXSAVE and SIMD exceptions
//! (CR4.OSFXSR, CR4.OSXMMEXCPT), UMIP where the processor has it (ring 3 cannot read the
//! descriptor-table registers) and SMEP where it has it (ring 0 never executes a page ring
//! 3 may use: a SIP's code or data cannot be run with kernel privilege). AVX stays off (CR4.OSXSAVE clear), so the only vector
//! state a thread has is the 512-byte FXSAVE image, and [`switch`] saves and restores it:
//! no thread, and so no SIP, ever sees another's vector registers. The kernel itself is
//! built soft-float and never touches them, so saving at the context switch is enough —
//! an interrupt handler cannot disturb them.
//!
//! SMAP is turned on where the processor has it; [`super::smap`] says how the kernel opens
//! and closes its windows onto user memory.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

/// One thread's x87/SSE registers as FXSAVE writes them.
#[derive(Clone)]
#[repr(C, align(16))]
pub struct VectorState([u8; 512]);

/// Saving on switches, on unless the self-test turns it off to show what it prevents.
static SAVING: AtomicBool = AtomicBool::new(true);

/// The state of a thread that has not run yet: default control words, registers zero.
static INITIAL: spin::Once<VectorState> = spin::Once::new();

/// What [`init`] found and turned on, for the banner.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    pub umip: bool,
    pub smep_available: bool,
    pub smap_available: bool,
}

static FEATURES: spin::Once<Features> = spin::Once::new();

/// Sets CR0/CR4 as the module comment says and records the initial vector state. Runs
/// once at boot, before any thread exists.
pub fn init() {
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    let features = Features {
        umip: leaf7.ecx & (1 << 2) != 0,
        smep_available: leaf7.ebx & (1 << 7) != 0,
        smap_available: leaf7.ebx & (1 << 20) != 0,
    };
    // SAFETY: these bits only enable the FPU and SSE for use with FXSAVE, and UMIP (which
    // restricts ring 3); nothing relies on the previous values. Run once at boot with
    // interrupts masked, before any thread could have vector state.
    unsafe {
        Cr0::update(|cr0| {
            cr0.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
            cr0.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
        });
        Cr4::update(|cr4| {
            cr4.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            cr4.remove(Cr4Flags::OSXSAVE);
            if features.umip {
                cr4.insert(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION);
            }
            if features.smep_available {
                cr4.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if features.smap_available {
                cr4.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
        asm!("fninit", options(nomem, nostack));
        // MXCSR default: all SIMD exceptions masked, round to nearest.
        let mxcsr: u32 = 0x1f80;
        asm!("ldmxcsr [{}]", in(reg) &mxcsr, options(nostack, readonly));
    }
    let mut clean = VectorState([0; 512]);
    // SAFETY: `clean` is 512 bytes, 16-byte aligned (its type's alignment) and exclusively
    // borrowed; FXSAVE is enabled just above (CR4.OSFXSR).
    unsafe { asm!("fxsave64 [{}]", in(reg) &mut clean as *mut VectorState, options(nostack)) };
    INITIAL.call_once(|| clean);
    if features.smap_available {
        super::smap::mark_enabled();
    }
    FEATURES.call_once(|| features);
}

/// What [`init`] found.
pub fn features() -> Features {
    FEATURES.get().copied().unwrap_or_default()
}

/// The state a new thread starts with.
pub fn initial() -> VectorState {
    INITIAL
        .get()
        .cloned()
        .expect("fpu::init runs at boot, before any thread exists")
}

/// Turns saving on switches on or off (the `fpu` self-test shows what it prevents).
pub fn set_saving(on: bool) {
    SAVING.store(on, Ordering::Relaxed);
}

/// Saves the running thread's vector registers into `from` and loads `to`'s.
pub fn switch(from: &mut VectorState, to: &VectorState) {
    if !SAVING.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: both areas are 512 bytes, 16-byte aligned (the type's alignment), and
    // borrowed for the duration; FXSAVE/FXRSTOR are enabled by `init` (CR4.OSFXSR). `to`
    // holds an image FXSAVE wrote (or the initial one), so FXRSTOR cannot fault on it.
    unsafe {
        asm!("fxsave64 [{}]", in(reg) from as *mut VectorState, options(nostack));
        asm!("fxrstor64 [{}]", in(reg) to as *const VectorState, options(nostack, readonly));
    }
}
