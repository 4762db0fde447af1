//! SIP `abi-bench`: measures the minimum cost of a kernel call from a SIP (`abi_version`,
//! which does nothing in the kernel) against the same loop without the call, and prints
//! the median of several trials in cycles.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

const CALLS: u64 = 20_000;
const TRIALS: usize = 7;

fn main() -> i32 {
    let mut per_call = [0u64; TRIALS];
    let mut overhead = [0u64; TRIALS];
    for trial in 0..TRIALS {
        let start = cordon_sip::cycles();
        for _ in 0..CALLS {
            core::hint::black_box(cordon_sip::abi_version());
        }
        let with_call = cordon_sip::cycles() - start;
        let start = cordon_sip::cycles();
        for i in 0..CALLS {
            core::hint::black_box(i);
        }
        let without = cordon_sip::cycles() - start;
        per_call[trial] = with_call.saturating_sub(without) / CALLS;
        overhead[trial] = without / CALLS;
    }
    per_call.sort_unstable();
    overhead.sort_unstable();
    cordon_sip::println!(
        "minimum kernel call (abi_version): median {} cycles/call, min {}, max {} ({TRIALS} trials x {CALLS} calls; empty loop {} cycles/iteration subtracted)",
        per_call[TRIALS / 2],
        per_call[0],
        per_call[TRIALS - 1],
        overhead[TRIALS / 2]
    );
    0
}
