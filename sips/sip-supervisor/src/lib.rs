//! SIP `supervisor`: exercises the powers over other SIPs that the system manifest gives
//! it (`[[powers]] may = ["start", "kill", "inspect"]`). Starts `hello` 1,000 times, one
//! after another, and waits for each through the kernel's accounting (the kernel has 256
//! process slots, so they are reused); starts `forever` (which never calls the
//! kernel), sees it running and kills it; checks that unknown modules and pids are
//! reported, not faulted. Then starts `echo-server`, an `on-request` entry of the system
//! manifest, and talks to it over the Echo channel that entry names (the supervisor takes
//! its end by name once the server has started); a second start while it runs is `Busy`;
//! kills it, sees its old end closed, starts it again and talks to the new incarnation
//! over a fresh channel. Last it starts `gift`, which sends it a block and exits before
//! the block is received: the block stays in transit, charged to the ended SIP, and
//! arrives intact. Exits 0 only if everything behaved.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use cordon_sip::channel::{Error, RecvError};
use cordon_sip::println;
use cordon_sip::process::{self, Pid, sip_state};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

/// Starts on-request entry `echo-server`, takes the end of its Echo channel the system
/// manifest gives this SIP, and checks one Ping/Pong round trip over it.
fn start_echo_server(seq: u32) -> Result<(Pid, echo::Imp<echo::state::Ready>), &'static str> {
    let pid = process::start("echo-server").map_err(|_| "could not start echo-server")?;
    let ep = echo::Imp::initial("echo").map_err(|_| "no `echo` end after starting echo-server")?;
    let data = alloc::vec![seq as u8; 16];
    match ep.call_ping(
        echo::Ping {
            seq,
            data: echo::Bytes::new(data.clone()).map_err(|_| "16 bytes fit")?,
        },
        None,
    ) {
        Ok(echo::ImpReady1In::Pong(ep, pong)) if pong.seq == seq && pong.data == data => {
            Ok((pid, ep))
        }
        _ => Err("no Pong from echo-server"),
    }
}

/// An `on-request` entry gets exactly its system-manifest channels, one incarnation at a
/// time, and fresh ones when started again.
fn on_request() -> Result<(), &'static str> {
    let (first, old_end) = start_echo_server(1)?;
    if process::start("echo-server") != Err(Error::Busy) {
        return Err("a second echo-server started while the first ran");
    }
    process::kill(first).map_err(|_| "kill refused")?;
    if process::wait(first).map_err(|_| "lost echo-server")?.ending != sip_state::KILLED {
        return Err("echo-server was not killed");
    }
    let ping = echo::Ping {
        seq: 9,
        data: echo::Bytes::default(),
    };
    if !matches!(
        old_end.call_ping(ping, Some(0)),
        Err(RecvError::Failed(Error::PeerClosed))
    ) {
        return Err("the killed incarnation's channel is still open");
    }
    println!(
        "started on-request echo-server as pid {first}: one round trip over its Echo channel; a second start while it ran was refused as busy; killed it, its channel closed"
    );
    let (second, ep) = start_echo_server(2)?;
    ep.send_bye(echo::Bye {}).map_err(|_| "bye")?;
    let ended = process::wait(second).map_err(|_| "lost echo-server")?;
    if ended.ending != 0 || ended.generation == 0 {
        return Err("the second echo-server did not exit cleanly");
    }
    println!(
        "started echo-server again as pid {second}: one round trip over a fresh channel, then Bye; it exited 0"
    );
    Ok(())
}

/// How many times `hello` is started, one after another: four times the kernel's process
/// slots, so slots are reused with new generations.
const HELLOS: u32 = 1000;

fn run() -> Result<(), &'static str> {
    let mut generation = 1;
    for round in 1..=HELLOS {
        let pid = process::start("hello").map_err(|_| "could not start hello")?;
        let info = process::wait(pid).map_err(|_| "lost hello")?;
        if info.ending != 0 || info.kernel_calls == 0 {
            println!("hello ended {info:?}");
            return Err("hello did not exit cleanly");
        }
        generation = generation.max(info.generation);
        if round <= 3 || round % 250 == 0 {
            println!(
                "started hello as pid {pid} ({round} of {HELLOS}, slot generation {}): exited 0 after {} kernel calls",
                info.generation, info.kernel_calls
            );
        }
    }
    println!(
        "{HELLOS} starts of hello, every one exited 0; process slots reached generation {generation}"
    );
    let spinner = process::start("forever").map_err(|_| "could not start forever")?;
    for _ in 0..50 {
        cordon_sip::yield_now();
    }
    let running = process::info(spinner).map_err(|_| "lost forever")?;
    if running.state != sip_state::RUNNING {
        return Err("forever was not running");
    }
    process::kill(spinner).map_err(|_| "kill refused")?;
    let ended = process::wait(spinner).map_err(|_| "lost forever")?;
    if ended.ending != sip_state::KILLED {
        return Err("forever was not killed");
    }
    println!(
        "started forever as pid {spinner}, saw it running ({} ticks so far), killed it",
        running.ticks
    );
    if process::start("no-such-module") != Err(Error::NotFound)
        || process::info(9999).err() != Some(Error::NotFound)
        || process::kill(9999) != Err(Error::NotFound)
    {
        return Err("an unknown module or pid was not reported as not found");
    }
    println!("unknown modules and pids are reported as not found");
    on_request()?;
    gift_in_transit()
}

/// Bytes `gift` sends, and its pattern: byte `i` is `i * 7`.
const GIFT: usize = 4096;

/// A SIP that ends with a block in transit to this one: the block waits in the queue
/// (the kernel keeps it charged to the ended sender) and is received intact afterwards.
fn gift_in_transit() -> Result<(), &'static str> {
    let pid = process::start("gift").map_err(|_| "could not start gift")?;
    let gifts = echo::Exp::initial("gifts").map_err(|_| "no `gifts` end")?;
    if process::wait(pid).map_err(|_| "lost gift")?.ending != 0 {
        return Err("gift did not exit cleanly");
    }
    let Ok(echo::ExpReadyIn::PingBuf(_, ping)) = gifts.recv(None) else {
        return Err("no PingBuf from the ended gift");
    };
    let mut data = [0u8; GIFT];
    ping.block
        .read(0, &mut data)
        .map_err(|_| "the gift's block is unreadable")?;
    if ping.block.len() != GIFT || data.iter().enumerate().any(|(i, &b)| b != (i * 7) as u8) {
        return Err("the gift's block changed in transit");
    }
    println!(
        "gift (pid {pid}) ended with a {GIFT}-byte block in transit to this SIP; received it afterwards, intact"
    );
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(why) => {
            println!("FAILED: {why}");
            1
        }
    }
}
