//! The compiled engine's one thread-local pointer (wasmtime's `no_std` platform hooks).
//!
//! Wasmtime keeps a pointer to the innermost activation of compiled code per thread and
//! asks the embedder for it through `wasmtime_tls_get`/`wasmtime_tls_set`. Cordon keeps
//! the running thread's value here and each other thread's in its context slot: the
//! context switch saves and restores it ([`save`], [`restore`]) like the vector registers,
//! so a SIP thread preempted inside compiled code finds its own value when it resumes.

use core::sync::atomic::{AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// The running thread's value, for its context slot (at a switch away from it).
pub fn save() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Installs the next thread's value (at a switch to it).
pub fn restore(value: usize) {
    CURRENT.store(value, Ordering::Relaxed);
}

/// wasmtime's platform hook: the running thread's pointer in `slot` (only slot 0, the
/// runtime's, is used without the component model).
// SAFETY: the symbol wasmtime's `no_std` runtime links against (its `capi.rs`), defined
// once in the kernel, with the C ABI and signature it declares.
#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    match slot {
        0 => CURRENT.load(Ordering::Relaxed) as *mut u8,
        _ => core::ptr::null_mut(),
    }
}

/// wasmtime's platform hook: sets the running thread's pointer in `slot` (0 only).
// SAFETY: as for `wasmtime_tls_get`.
#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if slot == 0 {
        CURRENT.store(ptr as usize, Ordering::Relaxed);
    }
}
