//! Supervisor-mode access prevention (SMAP): with CR4.SMAP on, ring 0 faults on any data
//! access to a page ring 3 may use unless RFLAGS.AC is set.
//!
//! The kernel sets AC only while a system call holds a window onto its caller's memory
//! ([`crate::mm::vm::UserAccess`] opens it at the first checked access and closes it when
//! the call ends), clears it on every entry from an interrupt or exception (the trap path)
//! and from `syscall` (SFMASK), and keeps it per thread across switches (the context
//! switch saves RFLAGS). So a kernel bug that follows a user pointer anywhere else faults
//! and is reported, instead of reading or writing what a SIP put there. Everything else
//! the kernel does to SIP memory (loading, copy-on-write, delivering a message into a
//! blocked receiver) goes through the physical-memory map, never through user pages.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Whether CR4.SMAP is on (read by the trap entry path, which clears AC only if so:
/// `clac` is undefined on processors without SMAP).
#[unsafe(no_mangle)]
pub static CORDON_SMAP_ON: AtomicBool = AtomicBool::new(false);

/// Records that CR4.SMAP was turned on (by `fpu::init`, at boot).
pub(super) fn mark_enabled() {
    CORDON_SMAP_ON.store(true, Ordering::Relaxed);
}

/// Whether SMAP is on.
pub fn enabled() -> bool {
    CORDON_SMAP_ON.load(Ordering::Relaxed)
}

/// Lets ring 0 touch user pages (sets RFLAGS.AC) until [`forbid_user_access`].
pub fn allow_user_access() {
    if enabled() {
        // SAFETY: `stac` only sets RFLAGS.AC; the processor has SMAP (checked at boot).
        unsafe { asm!("stac", options(nomem, nostack)) };
    }
}

/// Ends a window [`allow_user_access`] opened (clears RFLAGS.AC).
pub fn forbid_user_access() {
    if enabled() {
        // SAFETY: `clac` only clears RFLAGS.AC; the processor has SMAP (checked at boot).
        unsafe { asm!("clac", options(nomem, nostack)) };
    }
}
