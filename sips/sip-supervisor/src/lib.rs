//! SIP `supervisor`: exercises the powers over other SIPs that the system manifest gives
//! it (`[[powers]] may = ["start", "kill", "inspect"]`). Starts `hello` 1,000 times, one
//! after another, and waits for each through the kernel's accounting (the kernel has 256
//! process slots, so they are reused); starts `forever` (which never calls the
//! kernel), sees it running and kills it; checks that unknown modules and pids are
//! reported, not faulted. Exits 0 only if everything behaved.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::Error;
use cordon_sip::println;
use cordon_sip::process::{self, sip_state};

cordon_sip::sip_main!(main);

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
