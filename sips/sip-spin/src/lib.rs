//! SIP `spin`: Misbehaves: loops forever without calling the kernel; its fuel budget ends it.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

fn main() -> i32 {
    cordon_sip::println!("spinning forever");
    let mut n: u64 = 0;
    loop {
        n = core::hint::black_box(n.wrapping_add(1));
    }
}
