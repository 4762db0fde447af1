//! The compiled engine: `wasmtime`'s `no_std` runtime running code that the runner compiled
//! ahead of time with Cranelift (install-time compilation, as Singularity's Bartok).
//!
//! Trust model: the verifier and the compiler are trusted, the SIP is not. The runner
//! verifies a module, compiles it with [`load::precompile`] and binds the artifact to the
//! module by a hash; the kernel verifies the module again, checks the binding, and only then
//! hands the artifact to [`CompiledSip::load`]. The settings that shape generated code live
//! in one function ([`load`]'s `shared_config`) used on both sides, and wasmtime refuses an
//! artifact built with any other.
//!
//! Generated code checks every linear-memory access explicitly (no guard regions, no
//! signal-based traps) and counts fuel. A kill reaches a SIP that never calls the kernel
//! through epoch interruption: the kernel advances the SIP's [`Epoch`] on timer ticks and
//! the deadline callback asks the kernel whether the SIP is to stop. The manifest's call
//! depth becomes a limit on native stack bytes ([`wasm_stack_bytes`]), checked by the code
//! itself, so deep recursion ends "call stack exhausted" as in the interpreter.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use cordon_abi::{Limits, OPS, Op};
use wasmtime::{
    Caller, Engine, Error, Linker, Module, ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline,
};

use crate::{Exit, Fault, Kernel, LoadError, Metering, Stats, Stop};

#[allow(unsafe_code)]
mod load;

pub use load::{CodeImage, Host, ISA_FLAGS, TARGET, set_lock_wait};
// The kernel implements `wasmtime::CustomCodeMemory` for its code windows.
#[cfg(feature = "compile")]
pub use load::precompile;
pub use wasmtime;

/// Native stack a compiled SIP may use per unit of the manifest's call depth. Cranelift's
/// frames for typical Rust SIP functions measure 32–200 bytes; 64 gives the default depth
/// (1,024) 64 KiB.
pub const STACK_BYTES_PER_CALL: usize = 64;
/// Least native stack a compiled SIP gets, whatever its call depth.
pub const MIN_WASM_STACK: usize = 16 << 10;
/// Most native stack a compiled SIP may use: the kernel runs SIPs on 256 KiB stacks and
/// keeps the other half for the runtime's and the kernel's own frames and interrupts.
pub const MAX_WASM_STACK: usize = 128 << 10;

/// The native stack bytes a compiled SIP under `limits` may use.
pub fn wasm_stack_bytes(limits: &Limits) -> usize {
    (limits.max_call_depth as usize)
        .saturating_mul(STACK_BYTES_PER_CALL)
        .clamp(MIN_WASM_STACK, MAX_WASM_STACK)
}

/// Whether the processor has the instruction-set feature Rust calls `name` (`"sse4.1"`),
/// from CPUID; `None` for a name this does not know. Wasmtime asks before it loads code
/// that uses one: Cordon's artifacts use SSE up to 4.2 and POPCNT ([`ISA_FLAGS`]), whose
/// registers are the 512-byte FXSAVE state the kernel saves on every switch, in every
/// ring. Features needing XSAVE state (AVX and later) answer `false` whatever the
/// processor has, since their registers would not be saved.
pub fn cpu_feature(name: &str) -> Option<bool> {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let bit = |reg: u32, n: u32| Some(reg & (1 << n) != 0);
    match name {
        "sse3" => bit(leaf1.ecx, 0),
        "ssse3" => bit(leaf1.ecx, 9),
        "sse4.1" => bit(leaf1.ecx, 19),
        "sse4.2" => bit(leaf1.ecx, 20),
        "popcnt" => bit(leaf1.ecx, 23),
        "avx" | "avx2" | "fma" | "f16c" | "avx512f" | "avx512vl" | "avx512dq" | "avx512bitalg"
        | "avx512vbmi" | "avx512bw" => Some(false),
        _ => None,
    }
}

/// Page size the text of an artifact is aligned to, and that [`text_range`] checks.
pub const CODE_PAGE: usize = 4096;

/// Where the executable text of `artifact` (an ELF image from [`precompile`]) lies: the
/// byte range of its `.text` section, page-aligned at both ends. In every configuration but
/// `soft` the kernel maps exactly these pages read+execute (and the rest of the image
/// read-only) before the SIP starts, since the hosted runtime cannot change its own
/// mappings and the ABI has no operation that makes memory executable.
pub fn text_range(artifact: &[u8]) -> Result<core::ops::Range<usize>, LoadError> {
    use object::read::elf::{FileHeader, SectionHeader};
    let bad = |what: &str| LoadError(format!("the compiled artifact is malformed: {what}"));
    let header = object::elf::FileHeader64::<object::Endianness>::parse(artifact)
        .map_err(|_| bad("no ELF header"))?;
    let endian = header.endian().map_err(|_| bad("unknown byte order"))?;
    let sections = header
        .sections(endian, artifact)
        .map_err(|_| bad("no section table"))?;
    let (_, text) = sections
        .section_by_name(endian, b".text")
        .ok_or_else(|| bad("no .text section"))?;
    let (offset, size) = text
        .file_range(endian)
        .ok_or_else(|| bad(".text has no bytes in the file"))?;
    let start = usize::try_from(offset).map_err(|_| bad(".text lies past the image"))?;
    let end = usize::try_from(size)
        .ok()
        .and_then(|size| start.checked_add(size))
        .filter(|&end| end <= artifact.len())
        .ok_or_else(|| bad(".text lies past the image"))?;
    if start % CODE_PAGE != 0 || end % CODE_PAGE != 0 {
        return Err(bad(&format!(
            ".text at {start:#x}..{end:#x} is not aligned to {CODE_PAGE}-byte pages"
        )));
    }
    Ok(start..end)
}

fn host_error(stop: Stop) -> Error {
    Error::new(stop)
}

fn exit_error(status: i32) -> Error {
    Error::new(Stop::Exit(status))
}

/// The manifest's memory and table limits; growing past them ends the SIP
/// ([`Fault::LimitExceeded`]), as in the interpreter.
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(Error::new(Stop::Limit));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(Error::new(Stop::Limit));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

struct State<K> {
    kernel: K,
    limits: Limiter,
    abi_calls: u64,
    /// Reused copy of an outgoing message for `chan_call`.
    scratch: alloc::vec::Vec<u8>,
    /// The SIP's exported linear memory, looked up once at instantiation.
    memory: Option<wasmtime::Memory>,
}

include!("../host.rs");

/// Advances one compiled SIP's epoch: the kernel calls [`Epoch::tick`] on timer ticks (it
/// is one atomic add, safe in an interrupt handler), and the SIP's code, at its next loop
/// back-edge or function entry, asks the kernel whether to stop.
#[derive(Clone)]
pub struct Epoch(Engine);

impl Epoch {
    pub fn tick(&self) {
        self.0.increment_epoch();
    }
}

/// One SIP running compiled code.
pub struct CompiledSip<K: Kernel + 'static> {
    // Dropped in this order: the store (its instance), the module (which makes its code
    // non-executable again), then the memory holding the code.
    store: Store<State<K>>,
    main: TypedFunc<(), ()>,
    /// Held only so that it drops before `image` (the store holds it too).
    _module: Module,
    budget: Option<u64>,
    given: u64,
    _image: Option<Box<dyn CodeImage>>,
}

fn classify(error: &Error, budget: Option<u64>) -> Exit {
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return stop.exit();
    }
    let fault = match error.downcast_ref::<Trap>() {
        Some(Trap::MemoryOutOfBounds | Trap::HeapMisaligned) => Fault::OutOfBoundsMemory,
        Some(Trap::TableOutOfBounds) => Fault::OutOfBoundsTable,
        Some(Trap::UnreachableCodeReached) => Fault::Unreachable,
        Some(Trap::StackOverflow) => Fault::StackOverflow,
        Some(Trap::IntegerDivisionByZero) => Fault::DivisionByZero,
        Some(Trap::IntegerOverflow) => Fault::IntegerOverflow,
        Some(Trap::BadConversionToInteger) => Fault::BadConversion,
        Some(Trap::IndirectCallToNull | Trap::BadSignature) => Fault::IndirectCallMismatch,
        Some(Trap::OutOfFuel) => Fault::FuelExhausted {
            budget: budget.unwrap_or(0),
        },
        _ => Fault::Other(format!("{error}")),
    };
    Exit::Fault(fault)
}

impl<K: Kernel + 'static> CompiledSip<K> {
    /// Instantiates the compiled module in `image` (an artifact of [`precompile`], bound by
    /// the caller to a module the verifier accepted) under `limits`.
    pub fn load(
        image: Box<dyn CodeImage>,
        limits: &Limits,
        kernel: K,
        metering: Metering,
        host: &Host,
    ) -> Result<Self, LoadError> {
        refuse_unmetered(metering)?;
        let engine = load::kernel_engine(limits, host)?;
        let module = load::deserialize(&engine, image.as_ref())?;
        Self::instantiate(engine, module, limits, kernel, Some(image))
    }

    /// Compiles `wasm` for the host this runs on, with the settings the kernel's artifacts
    /// use, and instantiates it: the runtime's host tests run the compiled engine this way.
    #[cfg(feature = "compile")]
    pub fn compile_on_host(
        wasm: &[u8],
        limits: &Limits,
        kernel: K,
        metering: Metering,
    ) -> Result<Self, LoadError> {
        refuse_unmetered(metering)?;
        let (engine, module) = load::compile_on_host(wasm, limits)?;
        Self::instantiate(engine, module, limits, kernel, None)
    }

    fn instantiate(
        engine: Engine,
        module: Module,
        limits: &Limits,
        kernel: K,
        image: Option<Box<dyn CodeImage>>,
    ) -> Result<Self, LoadError> {
        let fail = |what: &str, err: Error| LoadError(format!("{what}: {err}"));
        let mut store = Store::new(
            &engine,
            State {
                kernel,
                limits: Limiter {
                    memory_bytes: limits.max_memory_pages as usize * 65_536,
                    table_elements: limits.max_table_elements as usize,
                },
                abi_calls: 0,
                scratch: alloc::vec::Vec::new(),
                memory: None,
            },
        );
        store.limiter(|state| &mut state.limits);
        let given = limits.fuel.unwrap_or(u64::MAX >> 2);
        store
            .set_fuel(given)
            .map_err(|e| fail("setting the fuel", e))?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| {
            if context.data_mut().kernel.kill_requested() {
                return Err(Error::new(Stop::Killed));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let mut linker = Linker::new(&engine);
        for op in OPS {
            register(&mut linker, op).map_err(|e| fail("registering the kernel ABI", e))?;
        }
        let instance = linker
            .instantiate(&mut store, &module)
            .map_err(|e| fail("instantiating", e))?;
        store.data_mut().memory = instance.get_memory(&mut store, cordon_abi::MEMORY);
        let main = instance
            .get_typed_func::<(), ()>(&mut store, cordon_abi::ENTRY)
            .map_err(|e| fail("finding the entry point", e))?;
        Ok(CompiledSip {
            store,
            main,
            _module: module,
            budget: limits.fuel,
            given,
            _image: image,
        })
    }

    /// The handle the kernel advances on timer ticks so a kill reaches running code.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.store.engine().clone())
    }

    /// Runs the SIP from its entry point until it exits, faults or is killed.
    pub fn run(&mut self) -> Exit {
        match self.main.call(&mut self.store, ()) {
            Ok(()) => Exit::Status(0),
            Err(err) => classify(&err, self.budget),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            abi_calls: self.store.data().abi_calls,
            fuel_used: self.given - self.store.get_fuel().unwrap_or(0),
        }
    }

    /// The kernel-side state handed to the constructor.
    pub fn kernel(&self) -> &K {
        &self.store.data().kernel
    }
}

fn refuse_unmetered(metering: Metering) -> Result<(), LoadError> {
    if metering == Metering::Off {
        return Err(LoadError(
            "compiled SIPs are compiled with fuel metering; unmetered runs are interpreter-only"
                .into(),
        ));
    }
    Ok(())
}
