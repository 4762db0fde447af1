//! The interpreter engine: `wasmi`, one engine and store per SIP, run in fuel slices.
//!
//! Fuel is charged per instruction; every [`FUEL_SLICE`] the runtime checks for a kill and
//! the manifest's budget, then resumes, so a SIP that never calls the kernel is still
//! stopped. Functions are translated eagerly at load.

use alloc::format;
use alloc::string::String;

use cordon_abi::{Limits, OPS, Op};
use wasmi::{
    Caller, Config, Engine, Error, Linker, Module, Store, StoreLimits, StoreLimitsBuilder,
    TrapCode, TypedFunc, TypedResumableCall,
};

use crate::{Exit, FUEL_SLICE, Fault, Kernel, LoadError, Metering, Stats, Stop};

impl wasmi::errors::HostError for Stop {}

fn host_error(stop: Stop) -> Error {
    Error::host(stop)
}

fn exit_error(status: i32) -> Error {
    Error::i32_exit(status)
}

include!("host.rs");

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

/// One SIP in the interpreter.
pub struct InterpSip<K: Kernel> {
    store: Store<State<K>>,
    main: TypedFunc<(), ()>,
    budget: Option<u64>,
    fuel_used: u64,
    metering: Metering,
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

fn classify(error: &Error, budget: Option<u64>) -> Exit {
    if let Some(status) = error.i32_exit_status() {
        return Exit::Status(status);
    }
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return stop.exit();
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

impl<K: Kernel + 'static> InterpSip<K> {
    /// Instantiates `module` (already accepted by the verifier) under `limits`.
    pub fn new(
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
        Ok(InterpSip {
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
