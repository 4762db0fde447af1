//! SIP `echo-retry`: an Echo client that rides out restarts of its server (the
//! `echo-recovery` test system, where the kernel's supervisor restarts `echo-server` and
//! `--inject` crashes it before it answers).
//!
//! 1. `Ping` is `idempotent` in the Echo contract: when the server is restarted before it
//!    answers, the generated bindings send it again to the new incarnation by themselves,
//!    and the call simply returns the `Pong`.
//! 2. `PingBuf` is not (it moves a buffer): the same restart gives the caller the typed
//!    error `PeerRestarted`, and the request is not sent again.
//! 3. The client then does what the error asks: takes the new incarnation's endpoint,
//!    sends `PingBuf` again with a fresh buffer, and says `Bye`.
//!
//! Exits 0 only if each step behaved so.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::{self, Buffer, Error, RecvError};
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use echo::{ImpReady1In, ImpReady2In, Ping, PingBuf};

fn run() -> Result<(), &'static str> {
    let ep = echo::Imp::initial("server").map_err(|_| "no `server` endpoint")?;
    let data = [7u8; 16];
    let ping = Ping {
        seq: 1,
        data: data.as_slice().try_into().map_err(|_| "16 bytes fit")?,
    };
    let ep = match ep.call_ping(ping, None) {
        Ok(ImpReady1In::Pong(ep, pong)) if pong.seq == 1 && pong.data == data => ep,
        Ok(_) => return Err("a wrong Pong"),
        Err(_) => return Err("Ping failed although it is idempotent"),
    };
    println!(
        "Ping 1 answered; the bindings sent it again {} time(s) to a restarted server",
        channel::retried()
    );
    let block = Buffer::new(64).map_err(|_| "no exchange heap")?;
    match ep.call_ping_buf(PingBuf { seq: 2, block }, None) {
        Err(RecvError::Failed(Error::PeerRestarted)) => println!(
            "PingBuf 2: the server was restarted before answering: PeerRestarted (not idempotent: not sent again)"
        ),
        Ok(_) => return Err("PingBuf 2 was answered: the server was not restarted"),
        Err(_) => return Err("PingBuf 2 failed with another error"),
    }
    // Replay: the new incarnation's channel, a fresh buffer.
    let ep = echo::Imp::initial("server").map_err(|_| "the restarted server's endpoint")?;
    let mut block = Buffer::new(64).map_err(|_| "no exchange heap")?;
    block.write(0, &[3]).map_err(|_| "buffer write")?;
    let ep = match ep.call_ping_buf(PingBuf { seq: 3, block }, None) {
        Ok(ImpReady2In::PongBuf(ep, pong)) if pong.seq == 3 => ep,
        _ => return Err("PingBuf 3 on the new incarnation failed"),
    };
    println!("PingBuf 3 answered by the new incarnation");
    ep.send_bye(echo::Bye {}).map_err(|_| "Bye")?;
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(why) => {
            println!("echo-retry failed: {why}");
            1
        }
    }
}
