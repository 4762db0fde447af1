//! SIP `compute`: the compute-mix workload (the same code the kernel runs natively in the
//! micro suite), timed with the cycle counter.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

/// Iterations per run: the kernel's native run uses the same count.
const ITERATIONS: u32 = 200;

fn main() -> i32 {
    let start = cordon_sip::cycles();
    let checksum = compute_mix::run(ITERATIONS);
    let spent = cordon_sip::cycles() - start;
    cordon_sip::println!(
        "compute mix: {ITERATIONS} iterations, checksum {checksum:#010x}, {spent} cycles"
    );
    if checksum == compute_mix::EXPECTED_200 {
        0
    } else {
        1
    }
}
