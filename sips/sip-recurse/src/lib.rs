//! SIP `recurse`: Misbehaves: recurses without bound until the call-depth limit.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

fn main() -> i32 {
    cordon_sip::println!("recursing without bound (call-depth 256)");
    depth(0) as i32
}

#[allow(unconditional_recursion)]
fn depth(n: u64) -> u64 {
    depth(core::hint::black_box(n + 1)) + 1
}
