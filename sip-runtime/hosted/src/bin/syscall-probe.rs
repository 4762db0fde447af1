//! A test program, not a SIP runtime: the kernel's in-QEMU tests run it in ring 3 to
//! check that the system-call boundary holds. `HostedArgs::probe` picks the probe:
//!
//! 1. bad pointers and lengths: each call must fail with `BAD_ADDRESS` and change nothing;
//!    exits 0 if all did, else the number of the first case that did not.
//! 2. read the kernel word at `HostedArgs::module`; 3. write it; 4. execute `hlt`.
//!    Each must kill the probe (a decoded fault report) and nothing else.
//! 5. system call 999, which does not exist: the kernel must end the probe.
//! 7. random system calls: [`RANDOM_CALLS`] calls with operation numbers and arguments
//!    drawn from a generator seeded by `HostedArgs::module` (pointers into its own memory,
//!    into the kernel, unmapped, wrapping; small, huge and forged handles; timeouts kept
//!    short so nothing blocks for good). The kernel must answer each or end the probe for
//!    misuse, and never fail itself. Exits 0 if every call was answered.
//! 8. `chan_select` over a million endpoints (the list in the probe's own memory), which
//!    its runtime would have refused: the kernel must bound it itself and end the probe.
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
        7 => random_calls(&args),
        8 => {
            // A million "handles" from the program's text: the kernel must refuse the
            // count before it looks at (or copies) any of them.
            let count = 1u64 << 20;
            sys::call(
                abi::CHAN_SELECT.number,
                [GREETING.as_ptr() as u64, count, 0, 0, 0, 0],
            );
            exit(0)
        }
        other => exit(1000 + other as i32),
    }
}

/// System calls the random probe makes.
const RANDOM_CALLS: u32 = 2000;

/// xorshift64*: a small deterministic generator, and the handles the probe really holds.
struct Rng(u64, [u64; 6]);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// An argument that is often almost right: the kind of value a confused or hostile
    /// runtime passes.
    fn argument(&mut self, args: &HostedArgs) -> u64 {
        let small = self.next() % 64;
        match self.next() % 14 {
            10..=13 => self.1[(small % 6) as usize],
            0 => small,
            1 => u64::MAX - small,
            2 => GREETING.as_ptr() as u64 + small,
            3 => args.heap + small * 64,
            4 => args.heap - 4096 * (small + 1),
            5 => 0xffff_8000_0000_0000 + small * 4096,
            6 => 0x8000_0000_0000_0000 | small,
            7 => 1 << (small % 63),
            8 => small << 20 | 1,
            _ => self.next(),
        }
    }
}

fn random_calls(args: &HostedArgs) -> ! {
    // Real handles first, so that many random calls name something that exists: two
    // channels and two exchange-heap blocks.
    let mut held = [0u64; 6];
    for pair in held[..4].chunks_mut(2) {
        let contract = b"Echo";
        let made = sys::call(
            abi::CHAN_CREATE.number,
            [contract.as_ptr() as u64, contract.len() as u64, 0, 0, 0, 0],
        );
        pair[0] = made.second & 0xffff_ffff;
        pair[1] = made.second >> 32;
    }
    for block in &mut held[4..] {
        *block = sys::call(abi::BUF_ALLOC.number, [64, 0, 0, 0, 0, 0]).first;
    }
    let mut rng = Rng(args.module | 1, held);
    let ops = abi::OPS.len() as u64;
    for _ in 0..RANDOM_CALLS {
        // Now and then a number past the table.
        let number = rng.next() % (ops + 1);
        if number == abi::EXIT.number.into() {
            continue;
        }
        let mut a = [0u64; 6];
        for word in &mut a {
            *word = rng.argument(args);
        }
        // Waits get timeouts of a few ticks at most, so the probe always finishes.
        let short = rng.next() % 3;
        if number == abi::CHAN_RECV.number.into() {
            a[3] = short;
        } else if number == abi::CHAN_CALL.number.into() {
            a[5] = short;
        } else if number == abi::CHAN_SELECT.number.into() {
            a[2] = short;
        } else if number == abi::DEV_WAIT.number.into() {
            a[1] = short;
        } else if number == abi::CONSOLE_WRITE.number.into() {
            a[1] %= 8;
        }
        sys::call(number as u32, a);
    }
    exit(0)
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
