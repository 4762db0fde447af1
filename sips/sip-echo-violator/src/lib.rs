//! SIP `echo-violator`: holds the client end of an Echo channel and, bypassing the typed
//! bindings (with which this would not compile), sends a Pong, which only the server may
//! send and only after a Ping. The kernel must terminate this SIP, naming contract, state
//! and message, and the server must see the channel closed and carry on.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::{Encoder, RawEndpoint, Role};
use cordon_sip::println;

cordon_sip::sip_main!(main);

fn main() -> i32 {
    let Ok(server) = RawEndpoint::initial("server", "Echo", Role::Importer) else {
        println!("no `server` endpoint");
        return 1;
    };
    // Message 1 of the Echo contract is Pong(seq: u32, data: bytes[16384]).
    let mut pong = Encoder::new();
    pong.u16(1);
    pong.u32(0);
    pong.bytes(b"not yours to send");
    println!("sending Pong as the client");
    let result = server.send(pong.as_bytes());
    println!("the kernel let the violation through: {result:?}");
    0
}
