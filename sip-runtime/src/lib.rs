//! The SIP runtime: runs one software-isolated process.
//!
//! It embeds `wasmi`: one engine and store per SIP (so dropping a [`Sip`] frees
//! everything it had), the kernel ABI (`cordon_abi::OPS`) as host functions, the
//! manifest's limits enforced by the store (memory, tables, one instance, call depth), and
//! execution in fuel slices so the kernel can stop a SIP that never calls it (kill, fuel
//! budget). Every way a SIP can go wrong ends in an [`Exit`] for that SIP; nothing here
//! panics on anything a module does.
//!
//! The runtime reaches the kernel only through the [`Kernel`] trait: in soft isolation
//! the kernel implements it with direct calls; under hard isolation a ring-3 build of this
//! same crate implements it with system calls.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::fmt;

use cordon_abi::{Limits, OPS, Op};
use wasmi::{
    Caller, Config, Engine, Error, Linker, Module, Store, StoreLimits, StoreLimitsBuilder,
    TrapCode, TypedFunc, TypedResumableCall,
};

/// Fuel per slice: how much a SIP runs between the runtime's checks for kill requests
/// and budget (fuel is roughly one unit per wasm instruction).
pub const FUEL_SLICE: u64 = 1_000_000;

/// What the runtime needs from the kernel.
pub trait Kernel {
    /// Called on entry to every kernel call, before the operation itself (accounting,
    /// tracing). The default does nothing.
    fn on_kernel_call(&mut self, _op: &'static Op) {}
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
    fn chan_initial(&mut self, name: &str, contract: &str, importer: bool) -> Result<i32, String>;
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
    /// Starts a SIP from boot-package module `module` (the `start` power).
    fn sip_start(&mut self, module: &str) -> Result<i32, String>;
    /// Ends SIP `pid` (the `kill` power).
    fn sip_kill(&mut self, pid: u32) -> Result<i32, String>;
    /// Writes SIP `pid`'s `SipInfo` into `out` (the `inspect` power).
    fn sip_info(&mut self, pid: u32, out: &mut [u8]) -> Result<i32, String>;
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
                    Fault::Other(why) => (11, 0, Some(why.as_str())),
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
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Killed => f.write_str("killed"),
            Stop::BadCall(why) => f.write_str(why),
        }
    }
}

impl core::error::Error for Stop {}
impl wasmi::errors::HostError for Stop {}

struct State<K> {
    kernel: K,
    limits: StoreLimits,
    abi_calls: u64,
    /// Reused copy of an outgoing message for `chan_call` (whose message and reply buffer
    /// both live in linear memory), so calls do not allocate once warm.
    scratch: alloc::vec::Vec<u8>,
    /// The SIP's exported linear memory, looked up once at instantiation rather than by
    /// name in every kernel call that touches memory.
    memory: Option<wasmi::Memory>,
}

/// Counters for one SIP run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub abi_calls: u64,
    pub fuel_used: u64,
}

/// One instantiated SIP.
pub struct Sip<K: Kernel> {
    store: Store<State<K>>,
    main: TypedFunc<(), ()>,
    budget: Option<u64>,
    fuel_used: u64,
    metering: Metering,
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

/// The engine configuration: the same proposals the verifier admits, fuel metering, and
/// the manifest's call depth.
fn engine_config(limits: &Limits, metering: Metering) -> Config {
    let mut config = Config::default();
    config
        // Translate every function at load, not on first call: lazy translation charges
        // fuel, and running dry mid-translation is not resumable. Load time is also where
        // Cordon already pays for verification.
        .compilation_mode(wasmi::CompilationMode::Eager)
        .consume_fuel(metering == Metering::Fuel)
        .set_max_recursion_depth(limits.max_call_depth as usize)
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false);
    config
}

/// Entry of every kernel call: count it, tell the kernel, honour a pending kill.
fn enter<K: Kernel>(caller: &mut Caller<'_, State<K>>, op: &'static Op) -> Result<(), Error> {
    let state = caller.data_mut();
    state.abi_calls += 1;
    state.kernel.on_kernel_call(op);
    if state.kernel.kill_requested() {
        return Err(Error::host(Stop::Killed));
    }
    Ok(())
}

fn bad_call(why: String) -> Error {
    Error::host(Stop::BadCall(why))
}

/// The SIP's linear memory and the store state, for a host function.
fn memory<'a, K: Kernel>(
    caller: &'a mut Caller<'_, State<K>>,
) -> Result<(&'a mut [u8], &'a mut State<K>), Error> {
    let Some(memory) = caller.data().memory else {
        return Err(bad_call("the SIP has no memory".into()));
    };
    Ok(memory.data_and_store_mut(caller))
}

/// `[ptr, ptr + len)` of linear memory, or a fault naming the call.
fn range(
    data_len: usize,
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<core::ops::Range<usize>, Error> {
    let (start, count) = (ptr as u32 as usize, len as u32 as usize);
    match start.checked_add(count) {
        Some(end) if end <= data_len => Ok(start..end),
        _ => Err(bad_call(format!(
            "{what}: [{ptr:#x}, +{count}) reaches outside linear memory ({data_len} bytes)"
        ))),
    }
}

fn text(data: &[u8], range: core::ops::Range<usize>, what: &str) -> Result<String, Error> {
    core::str::from_utf8(&data[range])
        .map(String::from)
        .map_err(|_| bad_call(format!("{what}: name is not UTF-8")))
}

fn timeout(ticks: i64) -> Option<u64> {
    (ticks >= 0).then_some(ticks as u64)
}

/// Turns a kernel answer into the ABI result or a SIP fault.
fn answer(result: Result<i32, String>) -> Result<i32, Error> {
    result.map_err(bad_call)
}

/// The answer of an operation that may block: a kill that ended the wait ends the SIP now,
/// not at its next kernel call.
fn after_wait<K: Kernel>(kernel: &mut K, result: Result<i32, String>) -> Result<i32, Error> {
    if kernel.kill_requested() {
        return Err(Error::host(Stop::Killed));
    }
    answer(result)
}

/// Registers the host functions of the channel and exchange-heap operations.
fn register_channels<K: Kernel + 'static>(
    linker: &mut Linker<State<K>>,
    op: &Op,
) -> Result<bool, Error> {
    use cordon_abi as abi;
    let module = abi::MODULE;
    match op.number {
        n if n == abi::CHAN_CREATE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 name: i32,
                 len: i32,
                 out: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CREATE)?;
                    let (data, state) = memory(&mut caller)?;
                    let name = text(
                        data,
                        range(data.len(), name, len, "chan_create")?,
                        "chan_create",
                    )?;
                    let out = range(data.len(), out, 8, "chan_create")?;
                    match state.kernel.chan_create(&name).map_err(bad_call)? {
                        Ok((exp, imp)) => {
                            data[out.start..out.start + 4].copy_from_slice(&exp.to_le_bytes());
                            data[out.start + 4..out.end].copy_from_slice(&imp.to_le_bytes());
                            Ok(abi::status::OK)
                        }
                        Err(status) => Ok(status),
                    }
                },
            )?;
        }
        n if n == abi::CHAN_SEND.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_SEND)?;
                    let (data, state) = memory(&mut caller)?;
                    let msg = range(data.len(), ptr, len, "chan_send")?;
                    answer(state.kernel.chan_send(ep as u32, &data[msg]))
                },
            )?;
        }
        n if n == abi::CHAN_RECV.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 ptr: i32,
                 cap: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_RECV)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "chan_recv")?;
                    let result = state
                        .kernel
                        .chan_recv(ep as u32, &mut data[out], timeout(ticks));
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_CALL.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 ptr: i32,
                 len: i32,
                 buf: i32,
                 cap: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CALL)?;
                    let (data, state) = memory(&mut caller)?;
                    let msg = range(data.len(), ptr, len, "chan_call")?;
                    let out = range(data.len(), buf, cap, "chan_call")?;
                    state.scratch.clear();
                    state.scratch.extend_from_slice(&data[msg]);
                    let result = state.kernel.chan_call(
                        ep as u32,
                        &state.scratch,
                        &mut data[out],
                        timeout(ticks),
                    );
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_SELECT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ptr: i32,
                 count: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_SELECT)?;
                    let (data, state) = memory(&mut caller)?;
                    if !(0..=abi::MAX_SELECT as i32).contains(&count) {
                        return Err(bad_call(format!(
                            "chan_select over {count} endpoints (1 to {})",
                            abi::MAX_SELECT
                        )));
                    }
                    let list = range(data.len(), ptr, count.saturating_mul(4), "chan_select")?;
                    let mut eps = [0u32; abi::MAX_SELECT];
                    for (i, chunk) in data[list].as_chunks::<4>().0.iter().enumerate() {
                        eps[i] = u32::from_le_bytes(*chunk);
                    }
                    let result = state
                        .kernel
                        .chan_select(&eps[..count as usize], timeout(ticks));
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_CLOSE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ep: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CLOSE)?;
                    answer(caller.data_mut().kernel.chan_close(ep as u32))
                },
            )?;
        }
        n if n == abi::CHAN_INITIAL.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 name: i32,
                 name_len: i32,
                 contract: i32,
                 contract_len: i32,
                 role: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_INITIAL)?;
                    let (data, state) = memory(&mut caller)?;
                    let name = text(
                        data,
                        range(data.len(), name, name_len, "chan_initial")?,
                        "chan_initial",
                    )?;
                    let contract = text(
                        data,
                        range(data.len(), contract, contract_len, "chan_initial")?,
                        "chan_initial",
                    )?;
                    answer(state.kernel.chan_initial(&name, &contract, role != 0))
                },
            )?;
        }
        n if n == abi::CHAN_CHECK.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 contract: i32,
                 len: i32,
                 role: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CHECK)?;
                    let (data, state) = memory(&mut caller)?;
                    let contract = text(
                        data,
                        range(data.len(), contract, len, "chan_check")?,
                        "chan_check",
                    )?;
                    answer(state.kernel.chan_check(ep as u32, &contract, role != 0))
                },
            )?;
        }
        n if n == abi::BUF_ALLOC.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, size: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_ALLOC)?;
                    if size < 0 {
                        return Err(bad_call(format!("buf_alloc({size})")));
                    }
                    answer(caller.data_mut().kernel.buf_alloc(size as u32))
                },
            )?;
        }
        n if n == abi::BUF_WRITE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 h: i32,
                 offset: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_WRITE)?;
                    let (data, state) = memory(&mut caller)?;
                    let from = range(data.len(), ptr, len, "buf_write")?;
                    answer(state.kernel.buf_write(h as u32, offset as u32, &data[from]))
                },
            )?;
        }
        n if n == abi::BUF_READ.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 h: i32,
                 offset: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_READ)?;
                    let (data, state) = memory(&mut caller)?;
                    let to = range(data.len(), ptr, len, "buf_read")?;
                    answer(
                        state
                            .kernel
                            .buf_read(h as u32, offset as u32, &mut data[to]),
                    )
                },
            )?;
        }
        n if n == abi::BUF_FREE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, h: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_FREE)?;
                    answer(caller.data_mut().kernel.buf_free(h as u32))
                },
            )?;
        }
        n if n == abi::BUF_SIZE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, h: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_SIZE)?;
                    answer(caller.data_mut().kernel.buf_size(h as u32))
                },
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The driver operations: scalar arguments only, so no linear-memory checks.
fn register_devices<K: Kernel + 'static>(
    linker: &mut Linker<State<K>>,
    op: &Op,
) -> Result<bool, Error> {
    use cordon_abi as abi;
    let module = abi::MODULE;
    match op.number {
        n if n == abi::DEV_READ.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 res: i32,
                 offset: i32,
                 width: i32|
                 -> Result<i64, Error> {
                    enter(&mut caller, &abi::DEV_READ)?;
                    caller
                        .data_mut()
                        .kernel
                        .dev_read(res as u32, offset as u32, width as u32)
                        .map_err(bad_call)
                },
            )?;
        }
        n if n == abi::DEV_WRITE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 res: i32,
                 offset: i32,
                 width: i32,
                 value: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::DEV_WRITE)?;
                    answer(caller.data_mut().kernel.dev_write(
                        res as u32,
                        offset as u32,
                        width as u32,
                        value as u32,
                    ))
                },
            )?;
        }
        n if n == abi::DEV_WAIT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, res: i32, ticks: i64| -> Result<i32, Error> {
                    enter(&mut caller, &abi::DEV_WAIT)?;
                    let kernel = &mut caller.data_mut().kernel;
                    let result = kernel.dev_wait(res as u32, timeout(ticks));
                    after_wait(kernel, result)
                },
            )?;
        }
        n if n == abi::BUF_DMA.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, h: i32| -> Result<i64, Error> {
                    enter(&mut caller, &abi::BUF_DMA)?;
                    caller.data_mut().kernel.buf_dma(h as u32).map_err(bad_call)
                },
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Registers the host functions of the operations that control other SIPs.
fn register_control<K: Kernel + 'static>(
    linker: &mut Linker<State<K>>,
    op: &Op,
) -> Result<bool, Error> {
    use cordon_abi as abi;
    let module = abi::MODULE;
    match op.number {
        n if n == abi::SIP_START.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ptr: i32, len: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::SIP_START)?;
                    let (data, state) = memory(&mut caller)?;
                    let name = text(data, range(data.len(), ptr, len, "sip_start")?, "sip_start")?;
                    answer(state.kernel.sip_start(&name))
                },
            )?;
        }
        n if n == abi::SIP_KILL.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, pid: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::SIP_KILL)?;
                    answer(caller.data_mut().kernel.sip_kill(pid as u32))
                },
            )?;
        }
        n if n == abi::SIP_INFO.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 pid: i32,
                 ptr: i32,
                 cap: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::SIP_INFO)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "sip_info")?;
                    answer(state.kernel.sip_info(pid as u32, &mut data[out]))
                },
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Registers the host function for `op`. Every operation of the ABI has exactly one arm;
/// an operation without one is a runtime bug caught by the tests.
fn register<K: Kernel + 'static>(linker: &mut Linker<State<K>>, op: &Op) -> Result<(), Error> {
    let module = cordon_abi::MODULE;
    match op.number {
        n if n == cordon_abi::EXIT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, status: i32| -> Result<(), Error> {
                    enter(&mut caller, &cordon_abi::EXIT)?;
                    Err(Error::i32_exit(status))
                },
            )?;
        }
        n if n == cordon_abi::CONSOLE_WRITE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ptr: i32, len: i32| -> Result<i32, Error> {
                    enter(&mut caller, &cordon_abi::CONSOLE_WRITE)?;
                    let (start, count) = (ptr as u32 as usize, len as u32 as usize);
                    let (data, state) = memory(&mut caller)?;
                    let Some(bytes) = start.checked_add(count).and_then(|end| data.get(start..end)) else {
                        return Err(bad_call(format!(
                            "console_write({ptr:#x}, {count}) reaches outside linear memory ({} bytes)",
                            data.len()
                        )));
                    };
                    state.kernel.console_write(bytes);
                    Ok(len)
                },
            )?;
        }
        n if n == cordon_abi::YIELD.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<(), Error> {
                    enter(&mut caller, &cordon_abi::YIELD)?;
                    caller.data_mut().kernel.yield_now();
                    Ok(())
                },
            )?;
        }
        n if n == cordon_abi::TICKS.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<i64, Error> {
                    enter(&mut caller, &cordon_abi::TICKS)?;
                    Ok(caller.data_mut().kernel.ticks() as i64)
                },
            )?;
        }
        n if n == cordon_abi::CYCLES.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<i64, Error> {
                    enter(&mut caller, &cordon_abi::CYCLES)?;
                    Ok(caller.data_mut().kernel.cycles() as i64)
                },
            )?;
        }
        n if n == cordon_abi::ABI_VERSION.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<i32, Error> {
                    enter(&mut caller, &cordon_abi::ABI_VERSION)?;
                    Ok(caller.data_mut().kernel.abi_version())
                },
            )?;
        }
        _ => {
            if !register_channels(linker, op)?
                && !register_devices(linker, op)?
                && !register_control(linker, op)?
            {
                unreachable!("ABI operation `{}` has no host function", op.name)
            }
        }
    }
    Ok(())
}

fn classify(error: &Error, budget: Option<u64>) -> Exit {
    if let Some(status) = error.i32_exit_status() {
        return Exit::Status(status);
    }
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return match stop {
            Stop::Killed => Exit::Killed,
            Stop::BadCall(why) => Exit::Fault(Fault::BadAbiCall(why.clone())),
        };
    }
    let fault = match error.as_trap_code() {
        Some(TrapCode::MemoryOutOfBounds) => Fault::OutOfBoundsMemory,
        Some(TrapCode::TableOutOfBounds) => Fault::OutOfBoundsTable,
        Some(TrapCode::UnreachableCodeReached) => Fault::Unreachable,
        Some(TrapCode::StackOverflow) => Fault::StackOverflow,
        Some(TrapCode::IntegerDivisionByZero) => Fault::DivisionByZero,
        Some(TrapCode::IntegerOverflow) => Fault::IntegerOverflow,
        Some(TrapCode::BadConversionToInteger) => Fault::BadConversion,
        Some(TrapCode::IndirectCallToNull | TrapCode::BadSignature) => Fault::IndirectCallMismatch,
        Some(TrapCode::OutOfFuel) => Fault::FuelExhausted {
            budget: budget.unwrap_or(0),
        },
        Some(TrapCode::GrowthOperationLimited) => Fault::LimitExceeded,
        _ => Fault::Other(format!("{error}")),
    };
    Exit::Fault(fault)
}

impl<K: Kernel + 'static> Sip<K> {
    /// Instantiates `module` (already accepted by the verifier) under `limits`.
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
        if metering == Metering::Off && limits.fuel.is_some() {
            return Err(LoadError(
                "the manifest sets a fuel budget, which needs fuel metering".into(),
            ));
        }
        let load = |what: &str, err: Error| LoadError(format!("{what}: {err}"));
        let engine = Engine::new(&engine_config(limits, metering));
        let module = Module::new(&engine, module).map_err(|e| load("compiling", e))?;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_pages as usize * 65_536)
            .table_elements(limits.max_table_elements as usize)
            .instances(1)
            .memories(1)
            .tables(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &engine,
            State {
                kernel,
                limits: store_limits,
                abi_calls: 0,
                scratch: alloc::vec::Vec::new(),
                memory: None,
            },
        );
        store.limiter(|state| &mut state.limits);
        let mut linker = Linker::new(&engine);
        for op in OPS {
            register(&mut linker, op).map_err(|e| load("registering the kernel ABI", e))?;
        }
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| load("instantiating", e))?;
        store.data_mut().memory = instance.get_memory(&store, cordon_abi::MEMORY);
        let main = instance
            .get_typed_func::<(), ()>(&store, cordon_abi::ENTRY)
            .map_err(|e| load("finding the entry point", e))?;
        Ok(Sip {
            store,
            main,
            budget: limits.fuel,
            fuel_used: 0,
            metering,
        })
    }

    fn next_slice(&self) -> Option<u64> {
        match self.budget {
            None => Some(FUEL_SLICE),
            Some(budget) => {
                let left = budget.saturating_sub(self.fuel_used);
                (left > 0).then(|| left.min(FUEL_SLICE))
            }
        }
    }

    /// Runs the SIP from its entry point until it exits, faults or is killed.
    pub fn run(&mut self) -> Exit {
        if self.metering == Metering::Off {
            return match self.main.call(&mut self.store, ()) {
                Ok(()) => Exit::Status(0),
                Err(err) => classify(&err, None),
            };
        }
        let Some(slice) = self.next_slice() else {
            return Exit::Fault(Fault::FuelExhausted { budget: 0 });
        };
        let mut given = slice;
        if let Err(err) = self.store.set_fuel(slice) {
            return Exit::Fault(Fault::Other(format!("{err}")));
        }
        let mut call = self.main.call_resumable(&mut self.store, ());
        loop {
            match call {
                Ok(TypedResumableCall::Finished(())) => {
                    self.account(given);
                    return Exit::Status(0);
                }
                Ok(TypedResumableCall::HostTrap(trap)) => {
                    self.account(given);
                    return classify(trap.host_error(), self.budget);
                }
                Ok(TypedResumableCall::OutOfFuel(resume)) => {
                    self.fuel_used += given;
                    if self.store.data_mut().kernel.kill_requested() {
                        return Exit::Killed;
                    }
                    let Some(slice) = self.next_slice() else {
                        return Exit::Fault(Fault::FuelExhausted {
                            budget: self.budget.unwrap_or(0),
                        });
                    };
                    given = slice;
                    if let Err(err) = self.store.set_fuel(slice) {
                        return Exit::Fault(Fault::Other(format!("{err}")));
                    }
                    call = resume.resume(&mut self.store);
                }
                Err(err) => {
                    self.account(given);
                    return classify(&err, self.budget);
                }
            }
        }
    }

    fn account(&mut self, given: u64) {
        if self.metering == Metering::Off {
            return;
        }
        let left = self.store.get_fuel().unwrap_or(0);
        self.fuel_used += given.saturating_sub(left);
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            abi_calls: self.store.data().abi_calls,
            fuel_used: self.fuel_used,
        }
    }

    /// The kernel-side state handed to [`Sip::new`].
    pub fn kernel(&self) -> &K {
        &self.store.data().kernel
    }
}
