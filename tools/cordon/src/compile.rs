//! Install-time compilation for the compiled engine, as Singularity's Bartok compiled
//! verified MSIL when a program was installed.
//!
//! Every SIP module that goes into a boot package is verified with the kernel's verifier,
//! then compiled by Cranelift through wasmtime's ahead-of-time API
//! (`sip_runtime::compiled::precompile`, the settings the kernel loads with) for
//! `x86_64-unknown-none`. The artifact travels beside its module, bound to it by the
//! SHA-256 of the module's bytes; the kernel verifies the module again and refuses an
//! artifact that does not belong to it. Artifacts are kept in memory by module hash, so
//! the boots of one test or benchmark run compile each module once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One compilation: the artifact and what it cost.
#[derive(Clone)]
pub struct Compiled {
    pub code: Arc<Vec<u8>>,
    pub time: Duration,
}

static CACHE: Mutex<Option<HashMap<[u8; 32], Compiled>>> = Mutex::new(None);

/// Whether `bytes` is a WebAssembly module (the other files are contract sources).
fn is_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm")
}

/// Compiles one module the verifier accepted (or finds it compiled already in this process).
fn compile(name: &str, wasm: &[u8]) -> anyhow::Result<Compiled> {
    let hash = bootpkg::module_sha256(wasm);
    if let Some(done) = CACHE
        .lock()
        .expect("compile cache")
        .get_or_insert_with(HashMap::new)
        .get(&hash)
    {
        return Ok(done.clone());
    }
    let started = Instant::now();
    let code = sip_runtime::compiled::precompile(wasm)
        .map_err(|why| anyhow::anyhow!("`{name}`: {why}"))?;
    let done = Compiled {
        code: Arc::new(code),
        time: started.elapsed(),
    };
    CACHE
        .lock()
        .expect("compile cache")
        .get_or_insert_with(HashMap::new)
        .insert(hash, done.clone());
    Ok(done)
}

/// Artifacts for every module among `files` that the verifier accepts. A module it
/// refuses gets none: the kernel refuses it at start with the verifier's report (the
/// attack tests rely on that report). Says on stderr what compiling cost (the image-build,
/// "install", cost of the compiled engine).
pub fn artifacts(files: &[bootpkg::File]) -> anyhow::Result<Vec<bootpkg::Artifact>> {
    let mut artifacts = Vec::new();
    let (mut wasm, mut native, mut time) = (0, 0, Duration::ZERO);
    for file in files.iter().filter(|f| is_module(&f.data)) {
        if verifier::verify(&file.data, &verifier::Policy::default()).is_err() {
            continue;
        }
        let compiled = compile(&file.name, &file.data)?;
        wasm += file.data.len();
        native += compiled.code.len();
        time += compiled.time;
        artifacts.push(bootpkg::Artifact::new(
            &file.name,
            &file.data,
            compiled.code.as_ref().clone(),
        ));
    }
    eprintln!(
        "[cordon] compiled {} modules ahead of time: {} KiB of WebAssembly to {} KiB of artifacts in {} ms of Cranelift (first compilation of each in this process)",
        artifacts.len(),
        wasm.div_ceil(1024),
        native.div_ceil(1024),
        time.as_millis()
    );
    Ok(artifacts)
}
