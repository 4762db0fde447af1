//! Cordon's SIP verifier: decides whether a WebAssembly module may run as a
//! software-isolated process, and says exactly why not.
//!
//! A module is accepted only if all of these hold ([`Rule`] names each one):
//! 1. it validates under an explicit list of WebAssembly proposals ([`FEATURES`]): no
//!    threads/shared memory, SIMD, multi-memory, memory64, exceptions, GC or tail calls;
//! 2. every import is a function of the closed kernel ABI (`cordon_abi::OPS`), from the
//!    one module `cordon`, with exactly the ABI's signature; no imported memory, table,
//!    global or tag;
//! 3. it exports exactly `memory` (its one linear memory) and `cordon_main: () -> ()`, and
//!    has no start function, so nothing runs before the kernel starts the SIP;
//! 4. it carries exactly one `cordon.manifest` custom section that decodes, was built
//!    against this kernel's ABI revision (`cordon_abi::VERSION`, recorded by `sip-build`;
//!    a mismatch is refused with both revisions named), names the SIP and stays within
//!    the kernel's [`Policy`];
//! 5. its declared memory and tables fit the manifest's limits.
//!
//! Together with the runtime (no ABI call adds code; tables and memory are the SIP's own)
//! this gives Singularity's sealed-process invariants. `no_std` + `alloc`: the kernel runs
//! it at load time; `tools/cordon verify` wraps it on the host.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use cordon_abi::{Manifest, ValType};
use wasmparser::{
    CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType as WasmType,
    Validator, WasmFeatures,
};

/// The WebAssembly proposals a SIP may use (what Rust's wasm32 target emits by default).
pub const FEATURES: WasmFeatures = WasmFeatures::MUTABLE_GLOBAL
    .union(WasmFeatures::SATURATING_FLOAT_TO_INT)
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::REFERENCE_TYPES)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::BULK_MEMORY)
    .union(WasmFeatures::FLOATS)
    .union(WasmFeatures::GC_TYPES);

/// What the execution engine translates, checked per function so that a module the
/// verifier accepts always loads. Set below wasmi 2.0's own limits (30,000 locals a
/// function, 1,000 parameters or results a type, 65,535 register slots a frame shared by
/// locals, operand-stack temporaries and constants), with room to spare for the slots the
/// engine adds itself.
pub mod engine {
    /// Locals of one function, parameters included.
    pub const MAX_LOCALS: u32 = 16_000;
    /// Operand-stack height within one function.
    pub const MAX_OPERAND_STACK: u32 = 16_000;
    /// Nested blocks, loops and ifs within one function.
    pub const MAX_NESTING: u32 = 1_000;
    /// Parameters, and results, of one function type.
    pub const MAX_PARAMS: usize = 256;
    /// Bytes of one function's body.
    pub const MAX_BODY_BYTES: usize = 1 << 20;
}

/// What the kernel allows any SIP at most, whatever its manifest asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub max_memory_pages: u32,
    pub max_table_elements: u32,
    pub max_call_depth: u32,
    pub max_module_bytes: usize,
    /// Most channel endpoints and exchange-heap blocks one SIP may hold at once.
    pub max_kernel_objects: u32,
    /// Most kernel memory those may take.
    pub max_kernel_bytes: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_memory_pages: 4096, // 256 MiB
            max_table_elements: 65_536,
            max_call_depth: 16_384,
            max_module_bytes: 16 << 20,
            max_kernel_objects: 4096,
            max_kernel_bytes: 64 << 20,
        }
    }
}

/// The rule a module broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Not valid WebAssembly under [`FEATURES`].
    Validation,
    /// An import outside the closed kernel ABI, or with the wrong signature or kind.
    ClosedAbi,
    /// Exports other than `memory` and `cordon_main`, or either missing or ill-typed.
    Exports,
    /// A start function (code that would run before the SIP is started).
    StartFunction,
    /// The manifest is missing, duplicated, undecodable or over the policy.
    Manifest,
    /// Memory or tables beyond the manifest's limits.
    Limits,
    /// Beyond what the kernel's execution engine translates (locals, operand stack,
    /// nesting, parameters and results): refused here rather than at load.
    Engine,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Validation => "validation",
            Rule::ClosedAbi => "closed-abi",
            Rule::Exports => "exports",
            Rule::StartFunction => "no-start-function",
            Rule::Manifest => "manifest",
            Rule::Limits => "limits",
            Rule::Engine => "engine-limits",
        }
    }
}

/// Why a module was rejected: the rule, where (byte offset in the module), and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub rule: Rule,
    pub offset: Option<usize>,
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule `{}`", self.rule.name())?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset:#x}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn reject<T>(rule: Rule, offset: Option<usize>, message: String) -> Result<T, Rejection> {
    Err(Rejection {
        rule,
        offset,
        message,
    })
}

/// What verification established about an accepted module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    /// ABI operation numbers the module imports.
    pub imports: Vec<u32>,
    /// Initial linear-memory size in pages.
    pub initial_memory_pages: u64,
}

fn wasm_type_name(ty: &WasmType) -> String {
    match ty {
        WasmType::I32 => "i32".into(),
        WasmType::I64 => "i64".into(),
        WasmType::F32 => "f32".into(),
        WasmType::F64 => "f64".into(),
        WasmType::V128 => "v128".into(),
        WasmType::Ref(_) => "ref".into(),
    }
}

fn signature(params: &[WasmType], results: &[WasmType]) -> String {
    let list = |types: &[WasmType]| {
        types
            .iter()
            .map(wasm_type_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

fn abi_types(types: &[ValType]) -> Vec<WasmType> {
    types
        .iter()
        .map(|t| match t {
            ValType::I32 => WasmType::I32,
            ValType::I64 => WasmType::I64,
        })
        .collect()
}

fn bad_wasm(err: wasmparser::BinaryReaderError) -> Rejection {
    Rejection {
        rule: Rule::Validation,
        offset: Some(err.offset()),
        message: String::from(err.message()),
    }
}

/// Verifies `module` under `policy`.
/// Validates one function body, operator by operator, within [`engine`]'s limits.
fn check_function(
    func: &mut wasmparser::FuncValidator<wasmparser::ValidatorResources>,
    body: &wasmparser::FunctionBody<'_>,
) -> Result<(), Rejection> {
    let start = body.range().start;
    let index = func.index();
    let over = |offset: usize, what: String| {
        reject::<()>(
            Rule::Engine,
            Some(offset),
            format!("function {index}: {what}"),
        )
    };
    if body.range().len() > engine::MAX_BODY_BYTES {
        over(
            start,
            format!(
                "its body is {} bytes, the engine takes at most {}",
                body.range().len(),
                engine::MAX_BODY_BYTES
            ),
        )?;
    }
    let mut reader = body.get_binary_reader();
    func.read_locals(&mut reader).map_err(bad_wasm)?;
    if func.len_locals() > engine::MAX_LOCALS {
        over(
            start,
            format!(
                "{} locals (parameters included), the engine takes at most {}",
                func.len_locals(),
                engine::MAX_LOCALS
            ),
        )?;
    }
    reader.set_features(FEATURES);
    while !reader.eof() {
        let offset = reader.original_position();
        reader
            .visit_operator(&mut func.visitor(offset))
            .map_err(bad_wasm)?
            .map_err(bad_wasm)?;
        if func.operand_stack_height() > engine::MAX_OPERAND_STACK {
            over(
                offset,
                format!(
                    "operand stack deeper than {} values",
                    engine::MAX_OPERAND_STACK
                ),
            )?;
        }
        if func.control_stack_height() > engine::MAX_NESTING {
            over(
                offset,
                format!("blocks nested deeper than {}", engine::MAX_NESTING),
            )?;
        }
    }
    func.finish(reader.original_position()).map_err(bad_wasm)
}

pub fn verify(module: &[u8], policy: &Policy) -> Result<Verified, Rejection> {
    if module.len() > policy.max_module_bytes {
        return reject(
            Rule::Limits,
            None,
            format!(
                "module is {} bytes, the kernel accepts at most {}",
                module.len(),
                policy.max_module_bytes
            ),
        );
    }
    let mut validator = Validator::new_with_features(FEATURES);
    // Function types by type index (None for non-function types).
    let mut types: Vec<Option<FuncType>> = Vec::new();
    // Type index of every function, imported ones first.
    let mut func_types: Vec<u32> = Vec::new();
    let mut imports = Vec::new();
    let mut memories = Vec::new();
    let mut tables = Vec::new();
    let mut manifests: Vec<(usize, &[u8])> = Vec::new();
    let mut exports: Vec<(usize, String, ExternalKind, u32)> = Vec::new();

    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(bad_wasm)?;
        if let wasmparser::ValidPayload::Func(func, body) =
            validator.payload(&payload).map_err(bad_wasm)?
        {
            let mut func = func.into_validator(Default::default());
            check_function(&mut func, &body)?;
        }
        match payload {
            Payload::TypeSection(reader) => {
                let offset = reader.range().start;
                for group in reader {
                    for sub in group.map_err(bad_wasm)?.into_types() {
                        if let CompositeInnerType::Func(f) = &sub.composite_type.inner
                            && (f.params().len() > engine::MAX_PARAMS
                                || f.results().len() > engine::MAX_PARAMS)
                        {
                            return reject(
                                Rule::Engine,
                                Some(offset),
                                format!(
                                    "type {}: {} parameters and {} results, the engine takes at most {} of each",
                                    types.len(),
                                    f.params().len(),
                                    f.results().len(),
                                    engine::MAX_PARAMS
                                ),
                            );
                        }
                        types.push(match sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for item in reader.into_iter_with_offsets() {
                    let (offset, import) = item.map_err(bad_wasm)?;
                    let what = format!("import `{}.{}`", import.module, import.name);
                    let TypeRef::Func(type_index) = import.ty else {
                        return reject(
                            Rule::ClosedAbi,
                            Some(offset),
                            format!(
                                "{what} is not a function: SIPs import only kernel ABI functions, never memories, tables, globals or tags"
                            ),
                        );
                    };
                    if import.module != cordon_abi::MODULE {
                        return reject(
                            Rule::ClosedAbi,
                            Some(offset),
                            format!(
                                "{what}: SIPs import only from module `{}`",
                                cordon_abi::MODULE
                            ),
                        );
                    }
                    let Some(op) = cordon_abi::op_by_name(import.name) else {
                        return reject(
                            Rule::ClosedAbi,
                            Some(offset),
                            format!("{what} is not part of the kernel ABI"),
                        );
                    };
                    let ty = types.get(type_index as usize).cloned().flatten();
                    let (want_params, want_results) = (abi_types(op.params), abi_types(op.results));
                    match ty {
                        Some(ty)
                            if ty.params() == want_params.as_slice()
                                && ty.results() == want_results.as_slice() => {}
                        other => {
                            let found = other.map_or_else(
                                || "not a function type".into(),
                                |t| signature(t.params(), t.results()),
                            );
                            return reject(
                                Rule::ClosedAbi,
                                Some(offset),
                                format!(
                                    "{what} has type {found}, the ABI defines {}",
                                    signature(&want_params, &want_results)
                                ),
                            );
                        }
                    }
                    func_types.push(type_index);
                    imports.push(op.number);
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty.map_err(bad_wasm)?);
                }
            }
            Payload::MemorySection(reader) => {
                for item in reader.into_iter_with_offsets() {
                    memories.push(item.map_err(bad_wasm)?);
                }
            }
            Payload::TableSection(reader) => {
                for item in reader.into_iter_with_offsets() {
                    let (offset, table) = item.map_err(bad_wasm)?;
                    tables.push((offset, table.ty));
                }
            }
            Payload::ExportSection(reader) => {
                for item in reader.into_iter_with_offsets() {
                    let (offset, export) = item.map_err(bad_wasm)?;
                    exports.push((offset, export.name.into(), export.kind, export.index));
                }
            }
            Payload::StartSection { func, range } => {
                return reject(
                    Rule::StartFunction,
                    Some(range.start),
                    format!(
                        "start function {func}: code would run at instantiation, before the kernel starts the SIP"
                    ),
                );
            }
            Payload::CustomSection(reader) if reader.name() == cordon_abi::MANIFEST_SECTION => {
                manifests.push((reader.data_offset(), reader.data()));
            }
            _ => {}
        }
    }

    // Exports: exactly `memory` and `cordon_main: () -> ()`.
    let mut saw_memory = false;
    let mut saw_entry = false;
    for (offset, name, kind, index) in &exports {
        match (name.as_str(), kind) {
            (cordon_abi::MEMORY, ExternalKind::Memory) => saw_memory = true,
            (cordon_abi::ENTRY, ExternalKind::Func) => {
                let ty = func_types
                    .get(*index as usize)
                    .and_then(|t| types.get(*t as usize).cloned().flatten());
                match ty {
                    Some(ty) if ty.params().is_empty() && ty.results().is_empty() => {
                        saw_entry = true
                    }
                    other => {
                        let found = other.map_or_else(
                            || "unknown".into(),
                            |t| signature(t.params(), t.results()),
                        );
                        return reject(
                            Rule::Exports,
                            Some(*offset),
                            format!(
                                "export `{}` has type {found}, it must be () -> ()",
                                cordon_abi::ENTRY
                            ),
                        );
                    }
                }
            }
            _ => {
                return reject(
                    Rule::Exports,
                    Some(*offset),
                    format!(
                        "export `{name}` ({kind:?}): a SIP exports only `{}` and `{}`",
                        cordon_abi::MEMORY,
                        cordon_abi::ENTRY
                    ),
                );
            }
        }
    }
    if !saw_entry {
        return reject(
            Rule::Exports,
            None,
            format!(
                "no `{}` function export: the kernel has nothing to start",
                cordon_abi::ENTRY
            ),
        );
    }
    if !saw_memory {
        return reject(
            Rule::Exports,
            None,
            format!("no `{}` export", cordon_abi::MEMORY),
        );
    }

    // Manifest.
    let (offset, data) = match manifests.as_slice() {
        [one] => *one,
        [] => {
            return reject(
                Rule::Manifest,
                None,
                format!(
                    "no `{}` custom section: build the SIP with Cordon's SIP build, which generates it",
                    cordon_abi::MANIFEST_SECTION
                ),
            );
        }
        [_, second, ..] => {
            return reject(
                Rule::Manifest,
                Some(second.0),
                format!("more than one `{}` section", cordon_abi::MANIFEST_SECTION),
            );
        }
    };
    let (abi, manifest) = Manifest::decode(data).map_err(|err| Rejection {
        rule: Rule::Manifest,
        offset: Some(offset),
        message: match err {
            cordon_abi::ManifestError::Decode(_) => format!("manifest does not decode: {err}"),
            cordon_abi::ManifestError::NoRevision => format!("manifest: {err}"),
        },
    })?;
    if abi != cordon_abi::VERSION as u32 {
        return reject(
            Rule::Manifest,
            Some(offset),
            format!(
                "built against Cordon ABI v{abi}, and this kernel speaks ABI v{}: rebuild the SIP with the cordon-sip and sip-build of this checkout",
                cordon_abi::VERSION
            ),
        );
    }
    let limits = manifest.limits;
    if manifest.name.is_empty() {
        return reject(Rule::Manifest, Some(offset), "manifest names no SIP".into());
    }
    let over = |what: &str, asked: u64, max: u64| {
        reject::<()>(
            Rule::Manifest,
            Some(offset),
            format!("manifest asks for {asked} {what}, the kernel allows at most {max}"),
        )
    };
    if limits.max_memory_pages > policy.max_memory_pages {
        over(
            "memory pages",
            limits.max_memory_pages.into(),
            policy.max_memory_pages.into(),
        )?;
    }
    if limits.max_table_elements > policy.max_table_elements {
        over(
            "table elements",
            limits.max_table_elements.into(),
            policy.max_table_elements.into(),
        )?;
    }
    if limits.max_call_depth > policy.max_call_depth || limits.max_call_depth == 0 {
        over(
            "call depth",
            limits.max_call_depth.into(),
            policy.max_call_depth.into(),
        )?;
    }
    if limits.max_kernel_objects > policy.max_kernel_objects {
        over(
            "kernel objects",
            limits.max_kernel_objects.into(),
            policy.max_kernel_objects.into(),
        )?;
    }
    if limits.max_kernel_bytes > policy.max_kernel_bytes {
        over(
            "bytes of kernel objects",
            limits.max_kernel_bytes,
            policy.max_kernel_bytes,
        )?;
    }

    // Declared sizes within the manifest's limits.
    let [(mem_offset, memory)] = memories.as_slice() else {
        return reject(
            Rule::Limits,
            None,
            format!("{} linear memories; a SIP has exactly one", memories.len()),
        );
    };
    if memory.initial > u64::from(limits.max_memory_pages) {
        return reject(
            Rule::Limits,
            Some(*mem_offset),
            format!(
                "memory starts at {} pages, the manifest allows {}",
                memory.initial, limits.max_memory_pages
            ),
        );
    }
    if let Some(max) = memory.maximum
        && max > u64::from(limits.max_memory_pages)
    {
        return reject(
            Rule::Limits,
            Some(*mem_offset),
            format!(
                "memory may grow to {max} pages, the manifest allows {}",
                limits.max_memory_pages
            ),
        );
    }
    for (offset, table) in &tables {
        let size = table.maximum.unwrap_or(table.initial);
        if table.initial > u64::from(limits.max_table_elements)
            || size > u64::from(limits.max_table_elements)
        {
            return reject(
                Rule::Limits,
                Some(*offset),
                format!(
                    "table of {} (max {:?}) elements, the manifest allows {}",
                    table.initial, table.maximum, limits.max_table_elements
                ),
            );
        }
    }

    Ok(Verified {
        manifest,
        imports,
        initial_memory_pages: memory.initial,
    })
}
