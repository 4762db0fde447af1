//! The raw kernel imports (module `cordon`), one per operation of `cordon_abi::OPS`, and
//! their safe wrappers. The verifier checks every import name and signature against the
//! ABI, so a mismatch here makes every SIP fail verification.
#![allow(unsafe_code)]

#[cfg(target_family = "wasm")]
mod imports {
    #[link(wasm_import_module = "cordon")]
    unsafe extern "C" {
        pub fn exit(status: i32) -> !;
        pub fn console_write(ptr: *const u8, len: usize) -> i32;
        pub fn yield_now();
        pub fn ticks() -> i64;
        pub fn cycles() -> i64;
        pub fn abi_version() -> i32;
    }
}

#[cfg(target_family = "wasm")]
pub fn exit(status: i32) -> ! {
    // SAFETY: the kernel's `exit` takes any status and never returns.
    unsafe { imports::exit(status) }
}

#[cfg(target_family = "wasm")]
pub fn console_write(bytes: &[u8]) {
    // SAFETY: the pointer and length describe a live slice of this SIP's memory; the
    // kernel only reads it (and faults the SIP, not us, if it were out of bounds).
    unsafe {
        imports::console_write(bytes.as_ptr(), bytes.len());
    }
}

#[cfg(target_family = "wasm")]
pub fn yield_now() {
    // SAFETY: no arguments, no memory access.
    unsafe { imports::yield_now() }
}

#[cfg(target_family = "wasm")]
pub fn ticks() -> u64 {
    // SAFETY: no arguments, no memory access.
    unsafe { imports::ticks() as u64 }
}

#[cfg(target_family = "wasm")]
pub fn cycles() -> u64 {
    // SAFETY: no arguments, no memory access.
    unsafe { imports::cycles() as u64 }
}

#[cfg(target_family = "wasm")]
pub fn abi_version() -> i32 {
    // SAFETY: no arguments, no memory access.
    unsafe { imports::abi_version() }
}

// Off WebAssembly (e.g. `cargo check` on the host) there is no kernel to call.
#[cfg(not(target_family = "wasm"))]
mod host {
    fn no_kernel() -> ! {
        panic!("Cordon kernel calls exist only inside a SIP (wasm32-unknown-unknown)")
    }
    pub fn exit(_: i32) -> ! {
        no_kernel()
    }
    pub fn console_write(_: &[u8]) {
        no_kernel()
    }
    pub fn yield_now() {
        no_kernel()
    }
    pub fn ticks() -> u64 {
        no_kernel()
    }
    pub fn cycles() -> u64 {
        no_kernel()
    }
    pub fn abi_version() -> i32 {
        no_kernel()
    }
}

#[cfg(not(target_family = "wasm"))]
pub use host::*;
