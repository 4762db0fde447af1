//! SIP `snoop`: Isolation probe: searches its whole linear memory for another SIP's secret.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

extern crate alloc;

fn main() -> i32 {
    // Kept XOR-encoded and decoded with a key the compiler cannot see, so the plaintext
    // exists in this SIP only in the one heap buffer skipped below.
    const ENCODED: [u8; 20] = encode(*b"cordon-secret-7f3a9c");
    let key = core::hint::black_box(KEY);
    let pattern: alloc::vec::Vec<u8> = ENCODED.iter().map(|b| b ^ key).collect();
    let pages = core::arch::wasm32::memory_size(0);
    let bytes = pages * 65_536;
    let mut found = 0;
    let mut addr = 0usize;
    while addr + pattern.len() <= bytes {
        if addr != pattern.as_ptr() as usize && matches(addr, &pattern) {
            found += 1;
        }
        addr += 1;
    }
    cordon_sip::println!(
        "searched all {bytes} bytes of my memory: {found} copies of the other SIP's secret"
    );
    if found == 0 { 0 } else { 1 }
}

const KEY: u8 = 0x5a;

const fn encode(mut bytes: [u8; 20]) -> [u8; 20] {
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] ^= KEY;
        i += 1;
    }
    bytes
}

#[allow(unsafe_code)]
fn matches(addr: usize, pattern: &[u8]) -> bool {
    // SAFETY: addr + len is within this SIP's linear memory (checked by the caller), and
    // reading any byte of it is defined in WebAssembly.
    pattern
        .iter()
        .enumerate()
        .all(|(i, &b)| unsafe { core::ptr::read_volatile((addr + i) as *const u8) } == b)
}
