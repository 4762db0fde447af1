//! SIP `trap`: Misbehaves: executes `unreachable`.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

fn main() -> i32 {
    cordon_sip::println!("executing unreachable");
    core::arch::wasm32::unreachable()
}
