//! The hosted SIP runtime: instantiates the module the kernel mapped, runs it with the
//! same `sip-runtime` code as soft mode, and reports how it ended through `exit`.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use cordon_abi::Limits;
use cordon_abi::hosted::{ExitReport, HostedArgs, exit_kind};
use sip_hosted::kernel::SyscallKernel;
use sip_hosted::sys;
use sip_runtime::{Metering, Sip};

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
    let mut sip = match Sip::with_metering(sys::module(&args), &limits, SyscallKernel, metering) {
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
