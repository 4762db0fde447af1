//! SIP `primes`: CPU-bound work (prime counting) that only preemption interleaves with others.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

const LIMIT: u32 = 200_000;

fn main() -> i32 {
    let start = cordon_sip::cycles();
    let count = (2..LIMIT).filter(|&n| is_prime(n)).count();
    let spent = cordon_sip::cycles() - start;
    cordon_sip::println!("{count} primes below {LIMIT} ({spent} cycles)");
    if count == 17_984 { 0 } else { 1 }
}

fn is_prime(n: u32) -> bool {
    (2..)
        .take_while(|d| d * d <= n)
        .all(|d| !n.is_multiple_of(d))
}
