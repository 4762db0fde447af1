//! SIP `echo-client`: measures request/reply round trips to `echo-server` over the Echo
//! contract (each `call` is one kernel entry), for a 1-byte and a 16-byte message, a 16 KiB message
//! copied as `bytes`, and a 16 KiB exchange-heap buffer that moves without copying. Checks
//! every reply, prints the medians in cycles, says Bye and exits 0.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use cordon_sip::channel::Buffer;
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use echo::{ImpReady1In, ImpReady2In, Ping, PingBuf, state};

const ROUNDS: usize = 201;
const BIG: usize = 16 * 1024;

type Ready = echo::Imp<state::Ready>;

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// One Ping/Pong round trip with `data`; checks the echo.
fn ping(ep: Ready, seq: u32, data: &[u8]) -> Result<(Ready, u64), &'static str> {
    let start = cordon_sip::cycles();
    let reply = ep.call_ping(
        Ping {
            seq,
            data: data
                .try_into()
                .map_err(|_| "payload longer than Ping's bytes[16384]")?,
        },
        None,
    );
    let spent = cordon_sip::cycles() - start;
    match reply {
        Ok(ImpReady1In::Pong(ep, pong)) if pong.seq == seq && pong.data == data => Ok((ep, spent)),
        Ok(_) => Err("wrong Pong"),
        Err(_) => Err("call failed"),
    }
}

/// One PingBuf/PongBuf round trip moving `block`; checks it came back intact.
fn ping_buf(
    ep: Ready,
    seq: u32,
    block: Buffer,
    mark: u8,
) -> Result<(Ready, Buffer, u64), &'static str> {
    let start = cordon_sip::cycles();
    let reply = ep.call_ping_buf(PingBuf { seq, block }, None);
    let spent = cordon_sip::cycles() - start;
    match reply {
        Ok(ImpReady2In::PongBuf(ep, pong)) if pong.seq == seq => {
            let mut probe = [0u8; 1];
            pong.block
                .read(BIG - 1, &mut probe)
                .map_err(|_| "buffer unreadable")?;
            if probe[0] != mark {
                return Err("buffer changed in transit");
            }
            Ok((ep, pong.block, spent))
        }
        Ok(_) => Err("wrong PongBuf"),
        Err(_) => Err("call failed"),
    }
}

fn run() -> Result<(), &'static str> {
    let mut ep = echo::Imp::initial("server").map_err(|_| "no `server` endpoint")?;
    let tiny = [7u8; 1];
    let small = [7u8; 16];
    let big: Vec<u8> = (0..BIG).map(|i| i as u8).collect();
    let (mut t_tiny, mut t_small, mut t_big, mut t_buf) = (vec![], vec![], vec![], vec![]);
    let mut block = Buffer::new(BIG).map_err(|_| "no exchange heap")?;
    block.write(0, &big).map_err(|_| "buffer write")?;
    let mark = big[BIG - 1];
    for seq in 0..ROUNDS as u32 {
        let (e, t) = ping(ep, seq, &tiny)?;
        t_tiny.push(t);
        let (e, t) = ping(e, seq, &small)?;
        t_small.push(t);
        let (e, t) = ping(e, seq, &big)?;
        t_big.push(t);
        let (e, b, t) = ping_buf(e, seq, block, mark)?;
        t_buf.push(t);
        ep = e;
        block = b;
    }
    let (tiny, small, big, buf) = (
        median(t_tiny),
        median(t_small),
        median(t_big),
        median(t_buf),
    );
    // A placement given as the argument (the kernel's multiprocessor benchmark) names
    // where the pair ran: "one CPU: round trip, ...".
    let at = match cordon_sip::args().first() {
        Some(placement) => alloc::format!("{placement}: "),
        None => alloc::string::String::new(),
    };
    println!("{at}round trip, 1-byte message: median {tiny} cycles ({ROUNDS} calls)");
    println!("{at}round trip, 16-byte message: median {small} cycles ({ROUNDS} calls)");
    println!("{at}round trip, 16 KiB copied as bytes: median {big} cycles");
    println!("{at}round trip, 16 KiB exchange-heap buffer moved: median {buf} cycles");
    println!(
        "moving the 16 KiB buffer instead of copying it saves {} cycles per round trip ({:.1}x)",
        big.saturating_sub(buf),
        big as f64 / buf.max(1) as f64
    );
    ep.send_bye(echo::Bye {}).map_err(|_| "bye")?;
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(why) => {
            println!("echo client failed: {why}");
            1
        }
    }
}
