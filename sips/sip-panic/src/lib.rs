//! SIP `panic`: Misbehaves: panics; the guest library prints the message and exits 101.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

fn main() -> i32 {
    let items: [u32; 3] = [1, 2, 3];
    let index = core::hint::black_box(7);
    cordon_sip::println!("indexing past the end");
    items[index] as i32
}
