//! The SIP runtime: runs one software-isolated process.
//!
//! Two engines run the same verified modules under the same ABI and limits:
//! - [`interp`] embeds `wasmi`, an interpreter: execution in fuel slices so the kernel can
//!   stop a SIP that never calls it (kill, fuel budget);
//! - [`compiled`] (feature `compiled`) embeds `wasmtime`'s `no_std` runtime and runs code
//!   the runner compiled ahead of time with Cranelift (feature `compile`): explicit bounds
//!   checks, fuel metering, and epoch interruption for kills.
//!
//! Each has one engine and store per SIP (so dropping a [`Sip`] frees everything it had),
//! the kernel ABI (`cordon_abi::OPS`) as host functions written once (`host.rs`), and the
//! manifest's limits enforced by the store (memory, tables, one instance, call depth).
//! Every way a SIP can go wrong ends in an [`Exit`] for that SIP; nothing here panics on
//! anything a module does.
//!
//! The runtime reaches the kernel only through the [`Kernel`] trait: in soft isolation
//! the kernel implements it with direct calls; under hard isolation a ring-3 build of this
//! same crate implements it with system calls.
#![cfg_attr(not(test), no_std)]
// The one exception is `compiled::load`, which hands compiled code to wasmtime.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use core::fmt;

use cordon_abi::{Limits, Op};

#[cfg(feature = "compiled")]
pub mod compiled;
pub mod interp;

/// Fuel per slice: how much a SIP runs between the runtime's checks for kill requests
/// and budget (fuel is roughly one unit per wasm instruction).
pub const FUEL_SLICE: u64 = 1_000_000;

/// What the runtime needs from the kernel.
pub trait Kernel {
    /// Called on entry to every kernel call, before the operation itself (accounting,
    /// tracing, fault injection). `Err(why)` ends the SIP with [`Fault::Injected`] instead
    /// of making the call. The default does nothing.
    fn on_kernel_call(&mut self, _op: &'static Op) -> Result<(), String> {
        Ok(())
    }
    /// Console output from the SIP.
    fn console_write(&mut self, bytes: &[u8]);
    /// Give the processor away.
    fn yield_now(&mut self);
    /// Timer ticks since boot.
    fn ticks(&mut self) -> u64;
    /// The cycle counter.
    fn cycles(&mut self) -> u64;
    /// The ABI revision (`cordon_abi::VERSION`). Does nothing else: it measures the
    /// minimum cost of reaching the kernel (a call in soft mode, a system call in ring 3).
    fn abi_version(&mut self) -> i32;
    /// Whether the kernel wants this SIP stopped; asked at every ABI call and fuel slice.
    fn kill_requested(&mut self) -> bool;

    // Channels and the exchange heap. Each returns the ABI result (a handle, a length, or
    // a negative `cordon_abi::status`), or `Err` with a report when the SIP misused the
    // call (a handle it does not hold, a message its contract forbids): the runtime then
    // terminates the SIP with that report.

    /// A new channel of `contract`: (exporter, importer) handles, or a status.
    fn chan_create(&mut self, contract: &str) -> Result<Result<(u32, u32), i32>, String>;
    fn chan_send(&mut self, ep: u32, message: &[u8]) -> Result<i32, String>;
    /// Receives into `out`; `timeout` in ticks, `None` = forever. Blocks the SIP's thread.
    fn chan_recv(&mut self, ep: u32, out: &mut [u8], timeout: Option<u64>) -> Result<i32, String>;
    /// Send then receive, in one kernel entry.
    fn chan_call(
        &mut self,
        ep: u32,
        message: &[u8],
        out: &mut [u8],
        timeout: Option<u64>,
    ) -> Result<i32, String>;
    fn chan_select(&mut self, eps: &[u32], timeout: Option<u64>) -> Result<i32, String>;
    fn chan_close(&mut self, ep: u32) -> Result<i32, String>;
    /// Takes initial endpoint `name`; with `wait`, waits until the kernel hands it over.
    fn chan_initial(
        &mut self,
        name: &str,
        contract: &str,
        importer: bool,
        wait: bool,
    ) -> Result<i32, String>;
    fn chan_check(&mut self, ep: u32, contract: &str, importer: bool) -> Result<i32, String>;
    fn buf_alloc(&mut self, size: u32) -> Result<i32, String>;
    fn buf_write(&mut self, buf: u32, offset: u32, data: &[u8]) -> Result<i32, String>;
    fn buf_read(&mut self, buf: u32, offset: u32, out: &mut [u8]) -> Result<i32, String>;
    fn buf_free(&mut self, buf: u32) -> Result<i32, String>;
    fn buf_size(&mut self, buf: u32) -> Result<i32, String>;
    /// Device access for driver SIPs (`Err` = misuse: ungranted resource, bad register).
    fn dev_read(&mut self, resource: u32, offset: u32, width: u32) -> Result<i64, String>;
    fn dev_write(
        &mut self,
        resource: u32,
        offset: u32,
        width: u32,
        value: u32,
    ) -> Result<i32, String>;
    fn dev_wait(&mut self, resource: u32, timeout: Option<u64>) -> Result<i32, String>;
    fn buf_dma(&mut self, buf: u32) -> Result<i64, String>;
    /// Starts a SIP from boot-package module `module` with arguments `args` (each followed
    /// by a NUL byte; empty: its system-manifest entry's) (the `start` power).
    fn sip_start(&mut self, module: &str, args: &[u8]) -> Result<i32, String>;
    /// Ends SIP `pid` (the `kill` power).
    fn sip_kill(&mut self, pid: u32) -> Result<i32, String>;
    /// Writes SIP `pid`'s `SipInfo` into `out` (the `inspect` power).
    fn sip_info(&mut self, pid: u32, out: &mut [u8]) -> Result<i32, String>;
    /// Writes the SIP's arguments into `out` if they fit; their encoded length.
    fn args(&mut self, out: &mut [u8]) -> Result<i32, String>;
    /// Moves console input into `out` (the `console` power); blocks like `chan_recv`.
    fn console_read(&mut self, out: &mut [u8], timeout: Option<u64>) -> Result<i32, String>;
    /// Writes the start of kernel table `table` (`cordon_abi::report`) as text into `out`;
    /// its whole length (the `inspect` power).
    fn report(&mut self, table: u32, out: &mut [u8]) -> Result<i32, String>;
    /// Ends every SIP and powers off once they are gone (the `shutdown` power); the caller
    /// is among the SIPs ended, so the runtime stops it when this returns.
    fn shutdown(&mut self, status: i32) -> Result<(), String>;
    /// Runs the kernel's benchmark suite `suite` now and waits for it (the `bench` power).
    fn bench(&mut self, suite: &str) -> Result<i32, String>;
}

/// Why a SIP's execution stopped for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The SIP called `exit(status)` (or returned from its entry point: status 0).
    Status(i32),
    /// The kernel asked for it to stop.
    Killed,
    /// The SIP faulted.
    Fault(Fault),
}

/// A SIP fault: what the SIP did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    OutOfBoundsMemory,
    OutOfBoundsTable,
    Unreachable,
    StackOverflow,
    DivisionByZero,
    IntegerOverflow,
    BadConversion,
    IndirectCallMismatch,
    /// The manifest's fuel budget is spent.
    FuelExhausted {
        budget: u64,
    },
    /// Memory or a table tried to grow past the manifest's limits.
    LimitExceeded,
    /// An ABI call with bad arguments (e.g. a buffer outside linear memory).
    BadAbiCall(String),
    /// The kernel ended it as a fault on purpose (`--inject crash:SIP:N`, for testing
    /// recovery).
    Injected(String),
    /// Anything else the engine reported.
    Other(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::OutOfBoundsMemory => f.write_str("out-of-bounds memory access"),
            Fault::OutOfBoundsTable => f.write_str("out-of-bounds table access"),
            Fault::Unreachable => {
                f.write_str("unreachable executed (a Rust SIP panicked or aborted)")
            }
            Fault::StackOverflow => f.write_str("call stack exhausted (manifest call-depth limit)"),
            Fault::DivisionByZero => f.write_str("integer division by zero"),
            Fault::IntegerOverflow => f.write_str("integer overflow"),
            Fault::BadConversion => f.write_str("invalid conversion to integer"),
            Fault::IndirectCallMismatch => {
                f.write_str("indirect call to a null entry or with the wrong type")
            }
            Fault::FuelExhausted { budget } => write!(f, "fuel budget of {budget} exhausted"),
            Fault::LimitExceeded => f.write_str("memory or table limit of the manifest exceeded"),
            Fault::BadAbiCall(why) => write!(f, "bad kernel call: {why}"),
            Fault::Injected(why) => write!(f, "injected fault: {why}"),
            Fault::Other(why) => write!(f, "{why}"),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Status(status) => write!(f, "exited with status {status}"),
            Exit::Killed => f.write_str("killed by the kernel"),
            Exit::Fault(fault) => write!(f, "terminated: {fault}"),
        }
    }
}

impl Exit {
    /// The words of an [`cordon_abi::hosted::ExitReport`] for this exit: (value, detail,
    /// message). The hosted runtime reports its SIP's end this way.
    pub fn to_report(&self) -> (u64, u64, Option<&str>) {
        match self {
            Exit::Status(status) => (0, *status as u32 as u64, None),
            Exit::Killed => (1, 0, None),
            Exit::Fault(fault) => {
                let (code, detail, text) = match fault {
                    Fault::OutOfBoundsMemory => (0, 0, None),
                    Fault::OutOfBoundsTable => (1, 0, None),
                    Fault::Unreachable => (2, 0, None),
                    Fault::StackOverflow => (3, 0, None),
                    Fault::DivisionByZero => (4, 0, None),
                    Fault::IntegerOverflow => (5, 0, None),
                    Fault::BadConversion => (6, 0, None),
                    Fault::IndirectCallMismatch => (7, 0, None),
                    Fault::FuelExhausted { budget } => (8, *budget, None),
                    Fault::LimitExceeded => (9, 0, None),
                    Fault::BadAbiCall(why) => (10, 0, Some(why.as_str())),
                    // Only the kernel injects faults: a runtime never reports one as
                    // such (its report would be another fault).
                    Fault::Other(why) | Fault::Injected(why) => (11, 0, Some(why.as_str())),
                };
                (2 + code, detail, text)
            }
        }
    }

    /// The inverse of [`Exit::to_report`]; `None` for words no runtime would write.
    pub fn from_report(value: u64, detail: u64, message: &str) -> Option<Exit> {
        let text = || String::from(message);
        Some(match value {
            0 => Exit::Status(u32::try_from(detail).ok()? as i32),
            1 => Exit::Killed,
            2 => Exit::Fault(Fault::OutOfBoundsMemory),
            3 => Exit::Fault(Fault::OutOfBoundsTable),
            4 => Exit::Fault(Fault::Unreachable),
            5 => Exit::Fault(Fault::StackOverflow),
            6 => Exit::Fault(Fault::DivisionByZero),
            7 => Exit::Fault(Fault::IntegerOverflow),
            8 => Exit::Fault(Fault::BadConversion),
            9 => Exit::Fault(Fault::IndirectCallMismatch),
            10 => Exit::Fault(Fault::FuelExhausted { budget: detail }),
            11 => Exit::Fault(Fault::LimitExceeded),
            12 => Exit::Fault(Fault::BadAbiCall(text())),
            13 => Exit::Fault(Fault::Other(text())),
            _ => return None,
        })
    }
}

/// Why a module could not be instantiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Host-error payloads that end a SIP from inside an ABI call.
#[derive(Debug)]
enum Stop {
    Killed,
    BadCall(String),
    /// The kernel injected a fault at a kernel call.
    Injected(String),
    /// `exit(status)` (the compiled engine; wasmi has its own exit error).
    #[cfg_attr(not(feature = "compiled"), allow(dead_code))]
    Exit(i32),
    /// Memory or a table grew past the manifest's limits (the compiled engine's limiter).
    #[cfg_attr(not(feature = "compiled"), allow(dead_code))]
    Limit,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Killed => f.write_str("killed"),
            Stop::BadCall(why) | Stop::Injected(why) => f.write_str(why),
            Stop::Exit(status) => write!(f, "exit({status})"),
            Stop::Limit => f.write_str("limit exceeded"),
        }
    }
}

impl core::error::Error for Stop {}

impl Stop {
    /// How a SIP stopped by this payload ended.
    fn exit(&self) -> Exit {
        match self {
            Stop::Killed => Exit::Killed,
            Stop::BadCall(why) => Exit::Fault(Fault::BadAbiCall(why.clone())),
            Stop::Injected(why) => Exit::Fault(Fault::Injected(why.clone())),
            Stop::Exit(status) => Exit::Status(*status),
            Stop::Limit => Exit::Fault(Fault::LimitExceeded),
        }
    }
}

/// Counters for one SIP run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub abi_calls: u64,
    pub fuel_used: u64,
}

/// How the runtime executes a SIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metering {
    /// Fuel metering on (the default): fuel budgets hold and a kill stops even a SIP that
    /// never calls the kernel, within one fuel slice.
    Fuel,
    /// No metering, for measuring what metering costs. A SIP with a fuel budget is refused;
    /// a kill is seen only at the SIP's next kernel call.
    Off,
}

/// Which engine runs a SIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// `wasmi`, interpreting the module.
    Interp,
    /// `wasmtime`, running code compiled ahead of time by the runner.
    Compiled,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Interp => "interp",
            EngineKind::Compiled => "compiled",
        }
    }
}

/// One instantiated SIP, in whichever engine runs it.
pub enum Sip<K: Kernel + 'static> {
    Interp(alloc::boxed::Box<interp::InterpSip<K>>),
    #[cfg(feature = "compiled")]
    Compiled(compiled::CompiledSip<K>),
}

impl<K: Kernel + 'static> Sip<K> {
    /// Instantiates `module` (already accepted by the verifier) under `limits`, interpreted.
    pub fn new(module: &[u8], limits: &Limits, kernel: K) -> Result<Self, LoadError> {
        Self::with_metering(module, limits, kernel, Metering::Fuel)
    }

    /// Like [`Sip::new`], choosing the metering.
    pub fn with_metering(
        module: &[u8],
        limits: &Limits,
        kernel: K,
        metering: Metering,
    ) -> Result<Self, LoadError> {
        interp::InterpSip::new(module, limits, kernel, metering)
            .map(|sip| Sip::Interp(alloc::boxed::Box::new(sip)))
    }

    /// Runs the SIP from its entry point until it exits, faults or is killed.
    pub fn run(&mut self) -> Exit {
        match self {
            Sip::Interp(sip) => sip.run(),
            #[cfg(feature = "compiled")]
            Sip::Compiled(sip) => sip.run(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        match self {
            Sip::Interp(sip) => sip.stats(),
            #[cfg(feature = "compiled")]
            Sip::Compiled(sip) => sip.stats(),
        }
    }

    /// The kernel-side state handed to the constructor.
    pub fn kernel(&self) -> &K {
        match self {
            Sip::Interp(sip) => sip.kernel(),
            #[cfg(feature = "compiled")]
            Sip::Compiled(sip) => sip.kernel(),
        }
    }

    /// The engine running this SIP.
    pub fn engine(&self) -> EngineKind {
        match self {
            Sip::Interp(_) => EngineKind::Interp,
            #[cfg(feature = "compiled")]
            Sip::Compiled(_) => EngineKind::Compiled,
        }
    }
}
