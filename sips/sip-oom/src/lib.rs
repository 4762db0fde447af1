//! SIP `oom`: Misbehaves: allocates until it hits its manifest's memory limit.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

extern crate alloc;

fn main() -> i32 {
    cordon_sip::println!("allocating without bound (limit: 8 pages)");
    let mut hoard: alloc::vec::Vec<alloc::vec::Vec<u8>> = alloc::vec::Vec::new();
    loop {
        hoard.push(alloc::vec![1u8; 16 * 1024]);
        core::hint::black_box(&hoard);
    }
}
