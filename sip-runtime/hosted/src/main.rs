//! The hosted SIP runtime: instantiates the module the kernel mapped (interpreted, or from
//! the compiled artifact the kernel mapped beside it), runs it with the same `sip-runtime`
//! code as soft mode, and reports how it ended through `exit`.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use cordon_abi::Limits;
use cordon_abi::hosted::{ExitReport, HostedArgs, exit_kind};
use sip_hosted::code::MappedCode;
use sip_hosted::kernel::SyscallKernel;
use sip_hosted::sys::{self, MappedArtifact};
use sip_runtime::compiled::{self, CodeImage, CompiledSip};
use sip_runtime::{LoadError, Metering, Sip};

sip_hosted::entry!(main);

fn main(args: HostedArgs) -> ! {
    let limits = Limits {
        max_memory_pages: args.max_memory_pages as u32,
        max_table_elements: args.max_table_elements as u32,
        max_call_depth: args.max_call_depth as u32,
        fuel: (args.fuel != u64::MAX).then_some(args.fuel),
        // Kernel objects are counted and limited by the kernel, not by this runtime.
        ..Limits::default()
    };
    let metering = if args.metering == 1 {
        Metering::Fuel
    } else {
        Metering::Off
    };
    let sip = match sys::artifact(&args) {
        None => Sip::with_metering(sys::module(&args), &limits, SyscallKernel, metering),
        Some(artifact) => load_compiled(artifact, &limits, metering),
    };
    let mut sip = match sip {
        Ok(sip) => sip,
        Err(err) => {
            let text = alloc::format!("{err}");
            sys::exit(&ExitReport {
                kind: exit_kind::LOAD_FAILED,
                message: text.as_ptr() as u64,
                message_len: text.len() as u64,
                ..ExitReport::default()
            })
        }
    };
    let instantiated_at = sys::cycles();
    let exit = sip.run();
    let stats = sip.stats();
    let (value, detail, text) = exit.to_report();
    let text = text.unwrap_or("");
    sys::exit(&ExitReport {
        kind: exit_kind::RAN,
        value,
        detail,
        message: text.as_ptr() as u64,
        message_len: text.len() as u64,
        abi_calls: stats.abi_calls,
        fuel_used: stats.fuel_used,
        instantiated_at,
    })
}

/// Loads the compiled artifact the kernel mapped (it checked the artifact belongs to the
/// verified module, and mapped its text executable).
fn load_compiled(
    artifact: MappedArtifact,
    limits: &Limits,
    metering: Metering,
) -> Result<Sip<SyscallKernel>, LoadError> {
    let bytes = artifact.bytes();
    let code = MappedCode::new(bytes.as_ptr() as usize, compiled::text_range(bytes)?);
    let host = compiled::Host {
        code_memory: Arc::new(code),
    };
    CompiledSip::load(Box::new(artifact), limits, SyscallKernel, metering, &host).map(Sip::Compiled)
}
