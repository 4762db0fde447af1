//! SIP `hello`: Prints a greeting (to whoever its arguments name) and exits 0.
#![no_std]
#![deny(unsafe_code)]

cordon_sip::sip_main!(main);

fn main() -> i32 {
    cordon_sip::println!(
        "Hello from a SIP: ABI v{}, tick {}",
        cordon_sip::abi_version(),
        cordon_sip::ticks()
    );
    let args = cordon_sip::args();
    if !args.is_empty() {
        cordon_sip::println!("Hello, {}! ({} arguments)", args.join(" "), args.len());
    }
    0
}
