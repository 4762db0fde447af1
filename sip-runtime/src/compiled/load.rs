//! Handing compiled code to wasmtime: the one place in the runtime with `unsafe`.
//!
//! Safety argument. Running native code is sound only if the code is what the trusted
//! compiler produced for a module the verifier accepted, and nothing can change it after.
//! - Wasmtime's settings that shape code (`shared_config`) are one function used by the
//!   runner to compile and by the kernel to load; wasmtime itself checks that an artifact's
//!   recorded settings, features and target match the loading engine's, and refuses it
//!   otherwise.
//! - The kernel binds each artifact to its module by SHA-256 of the module's bytes and
//!   verifies the module before calling [`deserialize`]: an artifact that does not belong
//!   to a verified module never gets here.
//! - The memory holding the artifact is a [`CodeImage`], whose implementer promises it stays
//!   put and unwritten for as long as the image lives; [`super::CompiledSip`] drops the
//!   image only after the module that runs from it.
//! - Floats: the kernel is built soft-float (`x86_64-unknown-none`), Cranelift's code is
//!   hard-float. Compiled code exchanges floats with host code only through float libcalls,
//!   and [`ISA_FLAGS`] enables enough SSE that Cranelift emits none (wasmtime's
//!   `x86_float_abi_ok` contract, issue #11506); the ABI's host functions take and return
//!   integers only. Wasmtime checks at load that the processor has every flag (through
//!   [`super::cpu_feature`]), and the kernel saves each thread's vector registers on switches.
//! - Locks: wasmtime's `no_std` runtime takes its few global locks (the code registry, type
//!   registries) through `wasmtime_sync_*` hooks, defined here over the lock word wasmtime
//!   hands in. A thread that finds one held calls the embedder's wait function
//!   ([`set_lock_wait`]: the kernel yields the processor, since the holder is a preempted
//!   SIP thread), so contention never spins a whole time slice or panics.

use alloc::format;
#[cfg(feature = "compile")]
use alloc::string::String;
use alloc::sync::Arc;
use core::ptr::NonNull;

use cordon_abi::Limits;
use wasmtime::{Config, CustomCodeMemory, Engine, Module};

use crate::LoadError;

/// The triple the kernel runs compiled SIPs on.
pub const TARGET: &str = "x86_64-unknown-none";
/// Cranelift ISA flags for Cordon's artifacts: SSE up to 4.2 (no float libcalls; see the
/// module comment) and POPCNT. No AVX: the kernel keeps XSAVE state off.
pub const ISA_FLAGS: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
];

/// Memory holding one compiled artifact, aligned to the kernel's page size, which the
/// embedder's [`CustomCodeMemory`] makes (or, for the hosted runtime, the kernel has
/// already made) read+execute.
///
/// # Safety
/// [`CodeImage::bytes`] returns the same memory on every call, and nothing writes it while
/// the image lives except through the [`CustomCodeMemory`] of the engine it was loaded
/// into (which only changes its permissions).
pub unsafe trait CodeImage: Send + Sync + 'static {
    fn bytes(&self) -> &[u8];
}

/// What the embedder provides to load compiled code.
pub struct Host {
    /// Makes an artifact's text read+execute when wasmtime publishes it (W^X): the kernel
    /// flips the pages of a code window; the hosted runtime (every configuration but
    /// `soft`) checks that the kernel already mapped exactly that text executable.
    pub code_memory: Arc<dyn CustomCodeMemory>,
}

/// The settings that shape generated code, identical when compiling and when loading.
fn shared_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config
        .signals_based_traps(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .memory_init_cow(false)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(super::wasm_stack_bytes(limits))
        // The proposals the verifier admits, as in the interpreter.
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .wasm_simd(false)
        .wasm_relaxed_simd(false);
    // SAFETY: see the module comment (floats): no float crosses between compiled code and
    // the soft-float host, given `ISA_FLAGS`.
    unsafe { config.x86_float_abi_ok(true) };
    config
}

/// The loading engine for one SIP: [`shared_config`] plus the kernel's code memory and
/// feature detection.
pub(super) fn kernel_engine(limits: &Limits, host: &Host) -> Result<Engine, LoadError> {
    let mut config = shared_config(limits);
    config.with_custom_code_memory(Some(host.code_memory.clone()));
    // SAFETY: `cpu_feature` answers from CPUID, and only yes for state the kernel saves.
    unsafe { config.detect_host_feature(super::cpu_feature) };
    Engine::new(&config).map_err(|e| LoadError(format!("configuring the compiled engine: {e}")))
}

/// Deserialises the artifact in `image` in place (no copy: the image is the code memory).
pub(super) fn deserialize(engine: &Engine, image: &dyn CodeImage) -> Result<Module, LoadError> {
    let bytes = image.bytes();
    // SAFETY: the artifact comes from the trusted compiler for a verified module (the
    // caller checked the binding, see the module comment), wasmtime checks its settings;
    // `image` outlives the module (field order of `CompiledSip`) and is never written
    // (`CodeImage`'s contract).
    unsafe { Module::deserialize_raw(engine, NonNull::from(bytes)) }
        .map_err(|e| LoadError(format!("loading the compiled artifact: {e:#}")))
}

#[cfg(feature = "compile")]
fn compiler_config(limits: &Limits, target: Option<&str>) -> Result<Config, String> {
    let mut config = shared_config(limits);
    if let Some(target) = target {
        config
            .target(target)
            .map_err(|e| format!("target {target}: {e}"))?;
    }
    for flag in ISA_FLAGS {
        // SAFETY: the loading side checks that the processor has each flag (wasmtime's
        // `check_compatible_with_native_host` through `cpu_feature`) before running code.
        unsafe { config.cranelift_flag_enable(flag) };
    }
    Ok(config)
}

/// Compiles a verified module to an artifact the kernel can load (install-time compilation).
/// The stack limit is a load-time setting, so one artifact serves any manifest limits.
#[cfg(feature = "compile")]
pub fn precompile(wasm: &[u8]) -> Result<alloc::vec::Vec<u8>, String> {
    let config = compiler_config(&Limits::default(), Some(TARGET))?;
    let engine = Engine::new(&config).map_err(|e| format!("configuring Cranelift: {e}"))?;
    engine
        .precompile_module(wasm)
        .map_err(|e| format!("compiling: {e:#}"))
}

#[cfg(feature = "compile")]
pub(super) fn compile_on_host(wasm: &[u8], limits: &Limits) -> Result<(Engine, Module), LoadError> {
    let config = compiler_config(limits, None).map_err(LoadError)?;
    let engine =
        Engine::new(&config).map_err(|e| LoadError(format!("configuring Cranelift: {e}")))?;
    let module = Module::new(&engine, wasm).map_err(|e| LoadError(format!("compiling: {e:#}")))?;
    Ok((engine, module))
}

/// What a thread does while a wasmtime lock it wants is held: 0 = spin, else a `fn()`.
static LOCK_WAIT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Sets what a thread does while a wasmtime lock it wants is held (the kernel: yield).
pub fn set_lock_wait(wait: fn()) {
    LOCK_WAIT.store(wait as usize, core::sync::atomic::Ordering::Release);
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn lock_wait() {
    match LOCK_WAIT.load(core::sync::atomic::Ordering::Acquire) {
        0 => core::hint::spin_loop(),
        f => {
            // SAFETY: the only non-zero value ever stored is a `fn()` (`set_lock_wait`).
            let wait = unsafe { core::mem::transmute::<usize, fn()>(f) };
            wait();
        }
    }
}

/// The platform's lock hooks for wasmtime's `no_std` runtime (`custom-sync-primitives`).
/// Each lock is the `usize` wasmtime hands in, zero when free; a read-write lock holds its
/// reader count, or `WRITER`.
#[cfg(target_os = "none")]
mod sync_hooks {
    use core::sync::atomic::{AtomicUsize, Ordering};

    const WRITER: usize = usize::MAX;

    /// The lock word behind `lock`.
    fn word<'a>(lock: *mut usize) -> &'a AtomicUsize {
        // SAFETY: wasmtime passes a pointer to a live, aligned `usize` it owns for as long
        // as the lock exists and touches it only through these hooks, all of which use it
        // atomically.
        unsafe { AtomicUsize::from_ptr(lock) }
    }

    // SAFETY (every hook): the symbols wasmtime's `no_std` runtime declares (`capi.rs`),
    // defined once, with its C signatures.
    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_lock_acquire(lock: *mut usize) {
        while word(lock)
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            super::lock_wait();
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_lock_release(lock: *mut usize) {
        word(lock).store(0, Ordering::Release);
    }

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_lock_free(_lock: *mut usize) {}

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_rwlock_read(lock: *mut usize) {
        loop {
            let readers = word(lock).load(Ordering::Relaxed);
            if readers != WRITER
                && word(lock)
                    .compare_exchange_weak(
                        readers,
                        readers + 1,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return;
            }
            super::lock_wait();
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_rwlock_read_release(lock: *mut usize) {
        word(lock).fetch_sub(1, Ordering::Release);
    }

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_rwlock_write(lock: *mut usize) {
        while word(lock)
            .compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            super::lock_wait();
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_rwlock_write_release(lock: *mut usize) {
        word(lock).store(0, Ordering::Release);
    }

    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_sync_rwlock_free(_lock: *mut usize) {}
}
