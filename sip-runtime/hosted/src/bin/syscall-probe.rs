//! A test program, not a SIP runtime: the kernel's in-QEMU tests run it in ring 3 to
//! check that the system-call boundary holds. `HostedArgs::probe` picks the probe:
//!
//! 1. bad pointers and lengths: each call must fail with `BAD_ADDRESS` and change nothing;
//!    exits 0 if all did, else the number of the first case that did not.
//! 2. read the kernel word at `HostedArgs::module`; 3. write it; 4. execute `hlt`.
//!    Each must kill the probe (a decoded fault report) and nothing else.
//! 5. system call 999, which does not exist: the kernel must end the probe.
//! 6. vector registers: fills xmm0-15 from the seed in `HostedArgs::module`, yields, and
//!    checks they still hold it, [`VECTOR_ROUNDS`] times; two such probes run side by
//!    side. Exits 0 if every check held, else the round that found another's values.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use cordon_abi::hosted::{ExitReport, HostedArgs, exit_kind};
use cordon_abi::{self as abi, status};
use sip_hosted::sys;

sip_hosted::entry!(main);

static GREETING: &[u8] = b"syscall probe: bad pointers are refused\n";

fn exit(status: i32) -> ! {
    let (value, detail, _) = sip_runtime::Exit::Status(status).to_report();
    sys::exit(&ExitReport {
        kind: exit_kind::RAN,
        value,
        detail,
        ..ExitReport::default()
    })
}

fn main(args: HostedArgs) -> ! {
    match args.probe {
        1 => bad_pointers(&args),
        2 => exit(sys::probe_read(args.module) as i32),
        3 => {
            sys::probe_write(args.module, 0);
            exit(0)
        }
        4 => {
            sys::probe_halt();
            exit(0)
        }
        5 => {
            sys::call(999, [0; 6]);
            exit(0)
        }
        6 => vectors(args.module),
        other => exit(1000 + other as i32),
    }
}

/// Rounds of fill, yield, check.
const VECTOR_ROUNDS: i32 = 200;

fn vectors(seed: u64) -> ! {
    for round in 1..=VECTOR_ROUNDS {
        sys::vector_fill(seed);
        sys::call(abi::YIELD.number, [0; 6]);
        if sys::vector_mismatches(seed) != 0 {
            exit(round);
        }
    }
    exit(0)
}

fn bad_pointers(args: &HostedArgs) -> ! {
    let kernel = args.module; // a kernel address the test passes in
    let good = GREETING.as_ptr() as u64;
    let text = GREETING.as_ptr() as u64; // read-only (in the program's text)
    let cases: [(&abi::Op, [u64; 6]); 8] = [
        // Kernel memory as the source of a write.
        (&abi::CONSOLE_WRITE, [kernel, 16, 0, 0, 0, 0]),
        // An unmapped page of the user region (below the program).
        (&abi::CONSOLE_WRITE, [args.heap - 4096 * 16, 8, 0, 0, 0, 0]),
        // A length that wraps the address space.
        (&abi::CONSOLE_WRITE, [good, u64::MAX - 8, 0, 0, 0, 0]),
        // A range that starts well and runs off the end of the user region.
        (&abi::CONSOLE_WRITE, [good, 1 << 40, 0, 0, 0, 0]),
        // A non-canonical address.
        (&abi::CHAN_CREATE, [0x8000_0000_0000_0000, 4, 0, 0, 0, 0]),
        // Receiving into read-only memory (the program's own text).
        (&abi::CHAN_RECV, [1, text, 64, 0, 0, 0]),
        // Reading an exchange-heap block into kernel memory.
        (&abi::BUF_READ, [1, 0, kernel, 8, 0, 0]),
        // Selecting on endpoints listed in kernel memory.
        (&abi::CHAN_SELECT, [kernel, 4, 0, 0, 0, 0]),
    ];
    for (i, (op, args)) in cases.iter().enumerate() {
        let result = sys::call(op.number, *args).first as i32;
        if result != status::BAD_ADDRESS {
            exit(i as i32 + 1);
        }
    }
    // A good call still works afterwards.
    let written = sys::call(
        abi::CONSOLE_WRITE.number,
        [good, GREETING.len() as u64, 0, 0, 0, 0],
    )
    .first;
    if written != GREETING.len() as u64 {
        exit(100);
    }
    exit(0)
}
