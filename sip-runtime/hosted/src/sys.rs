//! The machine interface of a hosted runtime: entry, heap, system calls, panics.
//!
//! The kernel enters [`_start`] (defined by the [`entry!`] macro in each executable) with
//! a pointer to the `HostedArgs` words in `rdi`, a 16-byte aligned stack and interrupts
//! on. System calls use the `syscall` instruction, or, when the kernel runs the runtime in
//! ring 0 and hands it a gate, a plain call to that gate with the same registers.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

use cordon_abi::hosted::{ExitReport, HostedArgs, exit_kind};
use talc::TalcLock;
use talc::source::Manual;

/// The kernel's call gate (ring-0 configurations), or 0 to use `syscall`.
static GATE: AtomicU64 = AtomicU64::new(0);

struct Heap {
    talc: TalcLock<spin::Mutex<()>, Manual>,
}

#[global_allocator]
static HEAP: Heap = Heap {
    talc: TalcLock::new(Manual),
};

// SAFETY: forwards to talc, which upholds GlobalAlloc's contract; the runtime has one
// thread, and the lock makes even re-entry safe.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { self.talc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { self.talc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { self.talc.realloc(ptr, layout, new_size) }
    }
}

/// Reads the kernel's arguments and sets up the heap and the gate. Called once, first.
pub fn init(args: *const u64) -> HostedArgs {
    // SAFETY: the kernel maps `HostedArgs::WORDS` words at `args` (read-only) before
    // entering the runtime, and never unmaps them while it runs.
    let words = unsafe { &*args.cast::<[u64; HostedArgs::WORDS]>() };
    let args = HostedArgs::from_words(words);
    GATE.store(args.gate, Ordering::Relaxed);
    if args.heap_len > 0 {
        // SAFETY: the kernel reserves [heap, heap + heap_len) for this runtime alone
        // (demand-zero pages), for as long as it runs.
        unsafe {
            HEAP.talc
                .lock()
                .claim(args.heap as *mut u8, args.heap_len as usize);
        }
    }
    args
}

/// The module bytes the kernel mapped.
pub fn module(args: &HostedArgs) -> &'static [u8] {
    // SAFETY: the kernel maps the verified module read-only at `module` for `module_len`
    // bytes and never changes it while the runtime runs.
    unsafe { core::slice::from_raw_parts(args.module as *const u8, args.module_len as usize) }
}

/// The compiled artifact the kernel mapped (read-only, its text read+execute), if the SIP
/// runs compiled.
pub fn artifact(args: &HostedArgs) -> Option<MappedArtifact> {
    (args.artifact_len > 0).then_some(MappedArtifact {
        start: args.artifact,
        len: args.artifact_len,
    })
}

/// A compiled artifact mapped into the runtime's window by the kernel before it started.
pub struct MappedArtifact {
    start: u64,
    len: u64,
}

// SAFETY: the kernel maps the artifact at [start, start + len) before entering the runtime
// and never changes or unmaps it while the runtime runs; the runtime cannot write it (its
// pages are read-only, the text read+execute) and never asks to.
unsafe impl sip_runtime::compiled::CodeImage for MappedArtifact {
    fn bytes(&self) -> &[u8] {
        // SAFETY: as above: mapped, readable and unchanging for the runtime's whole life.
        unsafe { core::slice::from_raw_parts(self.start as *const u8, self.len as usize) }
    }
}

/// The kernel's gate for ring-0 runtimes: `op` first, then the six arguments.
type Gate = extern "sysv64" fn(u64, u64, u64, u64, u64, u64, u64) -> Pair;

/// Two result registers (rax, rdx).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub first: u64,
    pub second: u64,
}

/// One system call: ABI operation `op` with up to six arguments.
#[inline]
pub fn call(op: u32, a: [u64; 6]) -> Pair {
    let gate = GATE.load(Ordering::Relaxed);
    if gate != 0 {
        // SAFETY: the kernel handed this address as its gate, a function with exactly
        // this signature that is mapped (and callable: ring 0) while the runtime runs.
        let gate: Gate = unsafe { core::mem::transmute::<u64, Gate>(gate) };
        return gate(u64::from(op), a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    let (first, second);
    // SAFETY: `syscall` enters the kernel, which reads only the registers given here
    // (pointers in them are validated there) and returns with rax/rdx set; rcx and r11
    // are overwritten by the instruction, the other argument registers by the kernel.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") u64::from(op) => first,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => second,
            inlateout("r10") a[3] => _,
            inlateout("r8") a[4] => _,
            inlateout("r9") a[5] => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    Pair { first, second }
}

/// The time-stamp counter, read in user mode (CR4.TSD is clear).
pub fn cycles() -> u64 {
    // SAFETY: lfence and rdtsc only order and read the counter; both exist on every
    // x86_64 processor.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// Probe support: reads the word at `addr` (the kernel should kill the caller if it may
/// not).
pub fn probe_read(addr: u64) -> u64 {
    // SAFETY: deliberately unsound in general: used only by the syscall probe to check
    // that the hardware and kernel stop a ring-3 read of kernel memory.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Probe support: writes `value` at `addr`.
pub fn probe_write(addr: u64, value: u64) {
    // SAFETY: as for `probe_read`: a deliberate violation the kernel must stop.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

/// Probe support: executes the privileged `hlt`.
pub fn probe_halt() {
    // SAFETY: in ring 3 `hlt` raises #GP, which is what the probe tests.
    unsafe { core::arch::asm!("hlt") }
}

/// Probe support: puts `seed + i` in the low half of `xmm{i}`, for i in 0..16. The
/// runtime is built soft-float and never uses these registers itself.
pub fn vector_fill(seed: u64) {
    macro_rules! fill {
        ($($n:literal)*) => {
            // SAFETY: writes only xmm0-xmm15, which no compiled code here uses (soft-float
            // target) and which the kernel saves across switches; `s` is a scratch copy.
            unsafe {
                core::arch::asm!(
                    $(concat!("movq xmm", $n, ", {s}"), "add {s}, 1",)*
                    s = inout(reg) seed => _,
                    options(nomem, nostack),
                )
            }
        };
    }
    fill!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

/// Probe support: how many of xmm0..xmm15 no longer hold what [`vector_fill`] put there.
pub fn vector_mismatches(seed: u64) -> u64 {
    let mut bad: u64 = 0;
    macro_rules! check {
        ($($n:literal)*) => {
            // SAFETY: only reads xmm0-xmm15 and uses two scratch registers.
            unsafe {
                core::arch::asm!(
                    $(
                        concat!("movq {v}, xmm", $n),
                        "cmp {v}, {s}",
                        "setne {b:l}",
                        "movzx {b}, {b:l}",
                        "add {bad}, {b}",
                        "add {s}, 1",
                    )*
                    s = inout(reg) seed => _,
                    v = out(reg) _,
                    b = out(reg) _,
                    bad = inout(reg) bad,
                    options(nomem, nostack),
                )
            }
        };
    }
    check!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    bad
}

/// Ends the runtime with `report`; `message` is kept alive by the caller's frame.
pub fn exit(report: &ExitReport) -> ! {
    let words = report.to_words();
    call(
        cordon_abi::EXIT.number,
        [words.as_ptr() as u64, 0, 0, 0, 0, 0],
    );
    // The kernel never returns from exit; if it did, stop here rather than run on.
    loop {
        core::hint::spin_loop();
    }
}

/// A panic of the runtime itself (never of the SIP, whose faults are wasm traps): report
/// it as the SIP's fault so the kernel records and cleans up as for any other.
pub fn panicked(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut text = Text::default();
    let _ = write!(text, "the SIP runtime panicked: {}", info.message());
    let exit = sip_runtime::Exit::Fault(sip_runtime::Fault::Other(alloc::string::String::new()));
    let (value, detail, _) = exit.to_report();
    exit_with_text(exit_kind::RAN, value, detail, text.as_str())
}

fn exit_with_text(kind: u64, value: u64, detail: u64, text: &str) -> ! {
    exit(&ExitReport {
        kind,
        value,
        detail,
        message: text.as_ptr() as u64,
        message_len: text.len() as u64,
        ..ExitReport::default()
    })
}

/// A fixed buffer for panic text (the heap may be what failed).
struct Text {
    bytes: [u8; 256],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl Text {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("(panic message not UTF-8)")
    }
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut take = s.len().min(self.bytes.len() - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Defines `_start` (calling `$main` with the kernel's arguments) and the panic handler.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn _start(args: *const u64) -> ! {
            let args = $crate::sys::init(args);
            $main(args)
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::sys::panicked(info)
        }
    };
}

/// wasmtime's thread-local pointer (its `no_std` platform hook) for compiled SIPs; the
/// runtime has one thread, so one word holds it.
static WASM_TLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: the symbols wasmtime's `no_std` runtime declares (`capi.rs`), defined once here
// with its C signatures; only slot 0 is used without the component model.
#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    match slot {
        0 => WASM_TLS.load(Ordering::Relaxed) as *mut u8,
        _ => core::ptr::null_mut(),
    }
}

// SAFETY: as for `wasmtime_tls_get`.
#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if slot == 0 {
        WASM_TLS.store(ptr as u64, Ordering::Relaxed);
    }
}
