//! SIP `secret`: Isolation probe: keeps a secret in its memory and exits 0.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

extern crate alloc;

/// The pattern `snoop` searches for in its own memory.
const SECRET: &[u8] = b"cordon-secret-7f3a9c";

fn main() -> i32 {
    let copy = alloc::vec::Vec::from(SECRET);
    core::hint::black_box(&copy);
    cordon_sip::println!("holding a secret at {:p}", copy.as_ptr());
    for _ in 0..20 {
        cordon_sip::yield_now();
    }
    0
}
