//! The system the kernel runs when the boot package names no self-test and holds no SIPs:
//! kernel threads that show the scheduler at work (preemptive workers, sleepers, a
//! semaphore hand-off, the tick counter). Replaced by the SIPs of the system manifest once
//! SIPs exist.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use crate::println;
use crate::sched::{self, SpawnError, sync::Semaphore};
use crate::time;

const WORKERS: u64 = 2;
const PRIMES_PER_WORKER: u64 = 150_000;

/// Starts the demonstration threads.
pub fn start() -> Result<(), String> {
    spawn_all().map_err(|err| format!("cannot start the demo threads: {err:?}"))
}

fn spawn_all() -> Result<(), SpawnError> {
    sched::spawn("ticker", || {
        for _ in 0..3 {
            sched::sleep_ticks(time::TICK_HZ / 2);
            println!(
                "[ticker] tick {} ({} context switches so far)",
                time::ticks(),
                sched::context_switches()
            );
        }
    })?;

    let handoff = Arc::new(Semaphore::new(0));
    for worker in 0..WORKERS {
        let handoff = handoff.clone();
        sched::spawn(format!("worker-{worker}"), move || {
            let (start, switches) = (time::ticks(), sched::context_switches());
            let found = count_primes(PRIMES_PER_WORKER * (worker + 1));
            println!(
                "[worker-{worker}] {found} primes below {} in {} ticks ({} context switches meanwhile)",
                PRIMES_PER_WORKER * (worker + 1),
                time::ticks() - start,
                sched::context_switches() - switches
            );
            handoff.up();
        })?;
    }
    sched::spawn("collector", move || {
        for _ in 0..WORKERS {
            handoff.down();
        }
        println!("[collector] all {WORKERS} workers reported through the semaphore");
    })?;
    Ok(())
}

/// Deliberately plain trial division: CPU work long enough to be preempted.
fn count_primes(below: u64) -> u64 {
    (2..below)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}
