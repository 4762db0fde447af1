//! SIP `gift`: fills a 4 KiB exchange-heap block with a pattern, sends it to its `server`
//! in a PingBuf and exits at once, without waiting for the PongBuf. The block is then in
//! transit, charged to a SIP that has ended, until the server receives it: the kernel keeps
//! the gift's account (and its process slot) until then.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::Buffer;
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

/// Bytes of the block, and the pattern byte at `i`: `i * 7`.
pub const SIZE: usize = 4096;

fn main() -> i32 {
    let Ok(server) = echo::Imp::initial("server") else {
        println!("no `server` endpoint");
        return 1;
    };
    let Ok(mut block) = Buffer::new(SIZE) else {
        println!("no exchange heap");
        return 1;
    };
    let mut pattern = [0u8; SIZE];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    if block.write(0, &pattern).is_err() {
        println!("block write failed");
        return 1;
    }
    match server.send_ping_buf(echo::PingBuf { seq: 7, block }) {
        Ok(_waiting_for_pong) => {
            println!("sent a {SIZE}-byte block; exiting without waiting for the reply");
            0
        }
        Err(_) => {
            println!("send failed");
            1
        }
    }
}
