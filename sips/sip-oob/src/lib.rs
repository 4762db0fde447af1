//! SIP `oob`: Misbehaves: reads far outside its linear memory.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

#[allow(unsafe_code)]
fn main() -> i32 {
    cordon_sip::println!("reading address 0xfffffff0");
    // SAFETY: none -- this SIP exists to make an out-of-bounds access; the sandbox must
    // turn it into a trap that ends this SIP alone.
    let value = unsafe { core::ptr::read_volatile(0xffff_fff0usize as *const u32) };
    cordon_sip::println!("read {value}: the sandbox failed");
    0
}
