//! SIP `yield`: the kernel's micro suite starts two of it at once, so each `yield_now`
//! hands the processor to the other SIP: the cost of a SIP-to-SIP yield (one kernel call
//! and one switch), the counterpart of Linux's `sched_yield` ping-pong between two
//! processes. Prints the median over several trials in cycles per yield.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

const YIELDS: u64 = 1_000;
const TRIALS: usize = 7;
/// Yields before measuring, so that the other instance is running its loop too (its
/// creation overlaps these).
const WARM_UP: u64 = 200;

fn main() -> i32 {
    for _ in 0..WARM_UP {
        cordon_sip::yield_now();
    }
    let mut per_yield = [0u64; TRIALS];
    for trial in per_yield.iter_mut() {
        let start = cordon_sip::cycles();
        for _ in 0..YIELDS {
            cordon_sip::yield_now();
        }
        *trial = (cordon_sip::cycles() - start) / YIELDS;
    }
    per_yield.sort_unstable();
    cordon_sip::println!(
        "yield ping-pong (two SIPs): median {} cycles/yield, min {}, max {} ({TRIALS} trials x {YIELDS} yields)",
        per_yield[TRIALS / 2],
        per_yield[0],
        per_yield[TRIALS - 1]
    );
    0
}
