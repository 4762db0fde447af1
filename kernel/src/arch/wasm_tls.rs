//! The compiled engine's one thread-local pointer (wasmtime's `no_std` platform hooks).
//!
//! Wasmtime keeps a pointer to the innermost activation of compiled code per thread and
//! asks the embedder for it through `wasmtime_tls_get`/`wasmtime_tls_set`. Cordon keeps
//! the value of the thread running on each processor here and each other thread's in its
//! context slot: the context switch saves and restores it ([`save`], [`restore`]) like
//! the vector registers, so a SIP thread preempted inside compiled code finds its own
//! value when it resumes, on whichever processor.

use core::sync::atomic::{AtomicUsize, Ordering};
use x86_64::instructions::interrupts;

use super::smp::{MAX_CPUS, current_cpu};

static CURRENT: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// The value of the thread running on `cpu`, for its context slot (at a switch away).
pub fn save(cpu: usize) -> usize {
    CURRENT[cpu].load(Ordering::Relaxed)
}

/// Installs the next thread's value on `cpu` (at a switch to it).
pub fn restore(cpu: usize, value: usize) {
    CURRENT[cpu].store(value, Ordering::Relaxed);
}

/// This processor's entry; interrupts masked so the thread cannot move between reading
/// the CPU number and using its entry.
fn with_current<R>(f: impl FnOnce(&AtomicUsize) -> R) -> R {
    interrupts::without_interrupts(|| f(&CURRENT[current_cpu()]))
}

/// wasmtime's platform hook: the running thread's pointer in `slot` (only slot 0, the
/// runtime's, is used without the component model).
// SAFETY: the symbol wasmtime's `no_std` runtime links against (its `capi.rs`), defined
// once in the kernel, with the C ABI and signature it declares.
#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    match slot {
        0 => with_current(|current| current.load(Ordering::Relaxed)) as *mut u8,
        _ => core::ptr::null_mut(),
    }
}

/// wasmtime's platform hook: sets the running thread's pointer in `slot` (0 only).
// SAFETY: as for `wasmtime_tls_get`.
#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if slot == 0 {
        with_current(|current| current.store(ptr as usize, Ordering::Relaxed));
    }
}
