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
        pub fn chan_create(name: *const u8, len: usize, out: *mut u32) -> i32;
        pub fn chan_send(ep: u32, ptr: *const u8, len: usize) -> i32;
        pub fn chan_recv(ep: u32, buf: *mut u8, cap: usize, timeout: i64) -> i32;
        pub fn chan_call(
            ep: u32,
            ptr: *const u8,
            len: usize,
            buf: *mut u8,
            cap: usize,
            timeout: i64,
        ) -> i32;
        pub fn chan_select(eps: *const u32, count: usize, timeout: i64) -> i32;
        pub fn chan_close(ep: u32) -> i32;
        pub fn chan_initial(
            name: *const u8,
            name_len: usize,
            contract: *const u8,
            contract_len: usize,
            role: i32,
        ) -> i32;
        pub fn chan_check(ep: u32, contract: *const u8, len: usize, role: i32) -> i32;
        pub fn buf_alloc(size: usize) -> i32;
        pub fn buf_write(buf: u32, offset: usize, ptr: *const u8, len: usize) -> i32;
        pub fn buf_read(buf: u32, offset: usize, ptr: *mut u8, len: usize) -> i32;
        pub fn buf_free(buf: u32) -> i32;
        pub fn buf_size(buf: u32) -> i32;
        pub fn dev_read(resource: u32, offset: u32, width: u32) -> i64;
        pub fn dev_write(resource: u32, offset: u32, width: u32, value: u32) -> i32;
        pub fn dev_wait(resource: u32, timeout: i64) -> i32;
        pub fn buf_dma(buf: u32) -> i64;
        pub fn sip_start(name: *const u8, len: usize, args: *const u8, args_len: usize) -> i32;
        pub fn sip_kill(pid: u32) -> i32;
        pub fn sip_info(pid: u32, out: *mut u8, cap: usize) -> i32;
        pub fn args(out: *mut u8, cap: usize) -> i32;
        pub fn console_read(out: *mut u8, cap: usize, timeout: i64) -> i32;
        pub fn report(table: u32, out: *mut u8, cap: usize) -> i32;
        pub fn shutdown(status: i32) -> !;
        pub fn bench(suite: *const u8, len: usize) -> i32;
    }
}

/// Timeout argument: ticks, or -1 for none.
#[cfg(target_family = "wasm")]
fn timeout_arg(timeout: Option<u64>) -> i64 {
    timeout.map_or(-1, |t| t.min(i64::MAX as u64) as i64)
}

// SAFETY (every wrapper below): pointers and lengths come from live slices of this SIP's
// memory; the kernel reads or writes only inside them (and faults this SIP otherwise).

#[cfg(target_family = "wasm")]
pub fn chan_create(contract: &str, out: &mut [u32; 2]) -> i32 {
    unsafe { imports::chan_create(contract.as_ptr(), contract.len(), out.as_mut_ptr()) }
}

#[cfg(target_family = "wasm")]
pub fn chan_send(ep: u32, msg: &[u8]) -> i32 {
    unsafe { imports::chan_send(ep, msg.as_ptr(), msg.len()) }
}

#[cfg(target_family = "wasm")]
pub fn chan_recv(ep: u32, buf: &mut [u8], timeout: Option<u64>) -> i32 {
    unsafe { imports::chan_recv(ep, buf.as_mut_ptr(), buf.len(), timeout_arg(timeout)) }
}

#[cfg(target_family = "wasm")]
pub fn chan_call(ep: u32, msg: &[u8], buf: &mut [u8], timeout: Option<u64>) -> i32 {
    unsafe {
        imports::chan_call(
            ep,
            msg.as_ptr(),
            msg.len(),
            buf.as_mut_ptr(),
            buf.len(),
            timeout_arg(timeout),
        )
    }
}

#[cfg(target_family = "wasm")]
pub fn chan_select(eps: &[u32], timeout: Option<u64>) -> i32 {
    unsafe { imports::chan_select(eps.as_ptr(), eps.len(), timeout_arg(timeout)) }
}

#[cfg(target_family = "wasm")]
pub fn chan_close(ep: u32) -> i32 {
    unsafe { imports::chan_close(ep) }
}

#[cfg(target_family = "wasm")]
pub fn chan_initial(name: &str, contract: &str, role: i32) -> i32 {
    unsafe {
        imports::chan_initial(
            name.as_ptr(),
            name.len(),
            contract.as_ptr(),
            contract.len(),
            role,
        )
    }
}

#[cfg(target_family = "wasm")]
pub fn chan_check(ep: u32, contract: &str, importer: bool) -> i32 {
    unsafe { imports::chan_check(ep, contract.as_ptr(), contract.len(), importer as i32) }
}

#[cfg(target_family = "wasm")]
pub fn buf_alloc(size: usize) -> i32 {
    unsafe { imports::buf_alloc(size) }
}

#[cfg(target_family = "wasm")]
pub fn buf_write(buf: u32, offset: usize, data: &[u8]) -> i32 {
    unsafe { imports::buf_write(buf, offset, data.as_ptr(), data.len()) }
}

#[cfg(target_family = "wasm")]
pub fn buf_read(buf: u32, offset: usize, out: &mut [u8]) -> i32 {
    unsafe { imports::buf_read(buf, offset, out.as_mut_ptr(), out.len()) }
}

#[cfg(target_family = "wasm")]
pub fn buf_free(buf: u32) -> i32 {
    unsafe { imports::buf_free(buf) }
}

#[cfg(target_family = "wasm")]
pub fn buf_size(buf: u32) -> i32 {
    unsafe { imports::buf_size(buf) }
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

#[cfg(target_family = "wasm")]
pub fn dev_read(resource: u32, offset: u32, width: u32) -> u32 {
    // SAFETY: scalar arguments only; the kernel checks the grant and the register range.
    unsafe { imports::dev_read(resource, offset, width) as u32 }
}

#[cfg(target_family = "wasm")]
pub fn dev_write(resource: u32, offset: u32, width: u32, value: u32) {
    // SAFETY: scalar arguments only; the kernel checks the grant and the register range.
    unsafe {
        imports::dev_write(resource, offset, width, value);
    }
}

#[cfg(target_family = "wasm")]
pub fn dev_wait(resource: u32, timeout: Option<u64>) -> i32 {
    // SAFETY: scalar arguments only.
    unsafe { imports::dev_wait(resource, timeout_arg(timeout)) }
}

#[cfg(target_family = "wasm")]
pub fn buf_dma(buf: u32) -> u64 {
    // SAFETY: scalar argument only; the kernel checks the SIP holds the block.
    unsafe { imports::buf_dma(buf) as u64 }
}

#[cfg(target_family = "wasm")]
pub fn sip_start(name: &str, args: &[u8]) -> i32 {
    // SAFETY: the kernel reads the two ranges, within this SIP's memory.
    unsafe { imports::sip_start(name.as_ptr(), name.len(), args.as_ptr(), args.len()) }
}

#[cfg(target_family = "wasm")]
pub fn console_read(out: &mut [u8], timeout: Option<u64>) -> i32 {
    // SAFETY: the kernel writes at most `out.len()` bytes at `out`, within this SIP's memory.
    unsafe { imports::console_read(out.as_mut_ptr(), out.len(), timeout_arg(timeout)) }
}

#[cfg(target_family = "wasm")]
pub fn report(table: u32, out: &mut [u8]) -> i32 {
    // SAFETY: the kernel writes at most `out.len()` bytes at `out`, within this SIP's memory.
    unsafe { imports::report(table, out.as_mut_ptr(), out.len()) }
}

#[cfg(target_family = "wasm")]
pub fn bench(suite: &str) -> i32 {
    // SAFETY: the kernel reads `len` bytes at `ptr`, within this SIP's memory.
    unsafe { imports::bench(suite.as_ptr(), suite.len()) }
}

#[cfg(target_family = "wasm")]
pub fn shutdown(status: i32) -> ! {
    // SAFETY: the kernel takes any status; it ends this SIP with every other.
    unsafe { imports::shutdown(status) }
}

#[cfg(target_family = "wasm")]
pub fn sip_kill(pid: u32) -> i32 {
    // SAFETY: scalar argument only.
    unsafe { imports::sip_kill(pid) }
}

#[cfg(target_family = "wasm")]
pub fn sip_info(pid: u32, out: &mut [u8]) -> i32 {
    // SAFETY: the kernel writes at most `out.len()` bytes at `out`, within this SIP's memory.
    unsafe { imports::sip_info(pid, out.as_mut_ptr(), out.len()) }
}

#[cfg(target_family = "wasm")]
pub fn args(out: &mut [u8]) -> i32 {
    // SAFETY: the kernel writes at most `out.len()` bytes at `out`, within this SIP's memory.
    unsafe { imports::args(out.as_mut_ptr(), out.len()) }
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
    pub fn chan_create(_: &str, _: &mut [u32; 2]) -> i32 {
        no_kernel()
    }
    pub fn chan_send(_: u32, _: &[u8]) -> i32 {
        no_kernel()
    }
    pub fn chan_recv(_: u32, _: &mut [u8], _: Option<u64>) -> i32 {
        no_kernel()
    }
    pub fn chan_call(_: u32, _: &[u8], _: &mut [u8], _: Option<u64>) -> i32 {
        no_kernel()
    }
    pub fn chan_select(_: &[u32], _: Option<u64>) -> i32 {
        no_kernel()
    }
    pub fn chan_close(_: u32) -> i32 {
        no_kernel()
    }
    pub fn chan_initial(_: &str, _: &str, _: i32) -> i32 {
        no_kernel()
    }
    pub fn chan_check(_: u32, _: &str, _: bool) -> i32 {
        no_kernel()
    }
    pub fn buf_alloc(_: usize) -> i32 {
        no_kernel()
    }
    pub fn buf_write(_: u32, _: usize, _: &[u8]) -> i32 {
        no_kernel()
    }
    pub fn buf_read(_: u32, _: usize, _: &mut [u8]) -> i32 {
        no_kernel()
    }
    pub fn buf_free(_: u32) -> i32 {
        no_kernel()
    }
    pub fn buf_size(_: u32) -> i32 {
        no_kernel()
    }
    pub fn dev_read(_: u32, _: u32, _: u32) -> u32 {
        no_kernel()
    }
    pub fn dev_write(_: u32, _: u32, _: u32, _: u32) {
        no_kernel()
    }
    pub fn dev_wait(_: u32, _: Option<u64>) -> i32 {
        no_kernel()
    }
    pub fn buf_dma(_: u32) -> u64 {
        no_kernel()
    }
    pub fn sip_start(_: &str, _: &[u8]) -> i32 {
        no_kernel()
    }
    pub fn console_read(_: &mut [u8], _: Option<u64>) -> i32 {
        no_kernel()
    }
    pub fn report(_: u32, _: &mut [u8]) -> i32 {
        no_kernel()
    }
    pub fn shutdown(_: i32) -> ! {
        no_kernel()
    }
    pub fn bench(_: &str) -> i32 {
        no_kernel()
    }
    pub fn sip_kill(_: u32) -> i32 {
        no_kernel()
    }
    pub fn sip_info(_: u32, _: &mut [u8]) -> i32 {
        no_kernel()
    }
    pub fn args(_: &mut [u8]) -> i32 {
        no_kernel()
    }
}

#[cfg(not(target_family = "wasm"))]
pub use host::*;
