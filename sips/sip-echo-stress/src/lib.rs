//! SIP `echo-stress`: the client of the multiprocessor stress test (kernel self-test
//! group `stress`). Arguments: a seed and a count of round trips. Each round trip sends a
//! `Ping` whose length and bytes are derived from the seed and the sequence number (so a
//! reply meant for another pair, or corrupted on the way, cannot pass), and every 16th
//! moves an exchange-heap buffer filled the same way with `PingBuf`; every reply is
//! checked byte for byte. Says `Bye` and exits 0 when all are answered; exits 3 if the
//! server went away first (a stress run kills some servers), 1 on a wrong reply.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::{Buffer, Error, RecvError};
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use echo::{ImpReady1In, ImpReady2In, Ping, PingBuf};

/// Bytes in each moved buffer.
const BLOCK: usize = 256;

/// Byte `i` of round trip `seq`'s payload for `seed`.
fn pattern(seed: u32, seq: u32, i: usize) -> u8 {
    (seed.wrapping_mul(7) ^ seq.wrapping_mul(13)).wrapping_add(i as u32) as u8
}

enum Failure {
    /// The server's end closed (it was killed or ended).
    ServerGone,
    Wrong(&'static str),
}

fn failed<E>(err: RecvError<E>) -> Failure {
    match err {
        RecvError::Failed(Error::PeerClosed) => Failure::ServerGone,
        _ => Failure::Wrong("call failed"),
    }
}

fn run(seed: u32, rounds: u32, done: &mut u32) -> Result<(), Failure> {
    let mut ep = echo::Imp::initial("server").map_err(|_| Failure::Wrong("no `server` end"))?;
    let mut payload = [0u8; 64];
    let mut sent = [0u8; BLOCK];
    let mut back = [0u8; BLOCK];
    for seq in 0..rounds {
        if seq % 16 == 15 {
            for (i, b) in sent.iter_mut().enumerate() {
                *b = pattern(seed, seq, i);
            }
            let mut block = Buffer::new(BLOCK).map_err(|_| Failure::Wrong("no exchange heap"))?;
            block
                .write(0, &sent)
                .map_err(|_| Failure::Wrong("buffer write"))?;
            ep = match ep.call_ping_buf(PingBuf { seq, block }, None) {
                Ok(ImpReady2In::PongBuf(ep, pong)) if pong.seq == seq => {
                    pong.block
                        .read(0, &mut back)
                        .map_err(|_| Failure::Wrong("buffer unreadable"))?;
                    if back != sent {
                        return Err(Failure::Wrong("a buffer changed in transit"));
                    }
                    ep
                }
                Ok(_) => return Err(Failure::Wrong("a wrong PongBuf")),
                Err(err) => return Err(failed(err)),
            };
        } else {
            let len = 1 + (seed.wrapping_mul(31).wrapping_add(seq) % 64) as usize;
            for (i, b) in payload[..len].iter_mut().enumerate() {
                *b = pattern(seed, seq, i);
            }
            let data = &payload[..len];
            let ping = Ping {
                seq,
                data: data
                    .try_into()
                    .map_err(|_| Failure::Wrong("payload fits"))?,
            };
            ep = match ep.call_ping(ping, None) {
                Ok(ImpReady1In::Pong(ep, pong)) if pong.seq == seq && pong.data == data => ep,
                Ok(_) => return Err(Failure::Wrong("a wrong Pong")),
                Err(err) => return Err(failed(err)),
            };
        }
        *done += 1;
    }
    ep.send_bye(echo::Bye {})
        .map_err(|_| Failure::Wrong("Bye"))?;
    Ok(())
}

fn main() -> i32 {
    let args = cordon_sip::args();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u32>().ok());
    let (Some(seed), Some(rounds)) = (number(0), number(1)) else {
        println!("usage: echo-stress SEED ROUNDS");
        return 2;
    };
    let mut done = 0;
    match run(seed, rounds, &mut done) {
        Ok(()) => {
            println!("seed {seed}: {done} round trips, every payload checked");
            0
        }
        Err(Failure::ServerGone) => {
            println!("seed {seed}: the server went away after {done} checked round trips");
            3
        }
        Err(Failure::Wrong(why)) => {
            println!("seed {seed}: {why} after {done} round trips");
            1
        }
    }
}
