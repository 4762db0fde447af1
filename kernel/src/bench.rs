//! Kernel benchmarks: measured in the booted kernel, printed as numbers (never asserted).
//!
//! Suite `micro` (soft isolation):
//! - SIP create + start: from the kernel beginning to create a SIP (verify, compile,
//!   instantiate, thread) to the SIP's first kernel call, each SIP alone on the processor;
//! - the minimum kernel call from a SIP (printed by the `abi-bench` SIP itself);
//! - the cost of fuel metering: the same CPU-bound SIP run with and without it;
//! - a thread switch (semaphore round trip between two kernel threads, halved);
//! - channel round trips between two SIPs over the Echo contract (printed by the
//!   `echo-client` SIP): a small message, 16 KiB copied, 16 KiB exchange-heap buffer.
//!
//! Figures are TSC cycles: under QEMU's TCG they are emulated cost, good for ratios
//! measured in one run, not for comparison with hardware.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use sip_runtime::{Exit, Metering};

use crate::arch::cycles;
use crate::println;
use crate::process::{self, Ending, Record};
use crate::sched::{self, sync::Semaphore};

static FAILED: AtomicBool = AtomicBool::new(false);

/// True if a benchmark could not run to completion.
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// Starts benchmark suite `suite` on a kernel thread.
pub fn start(suite: &str) -> Result<(), String> {
    if suite != "micro" {
        return Err(format!("unknown benchmark suite '{suite}'; known: micro"));
    }
    sched::spawn("bench", || {
        if let Err(why) = micro() {
            FAILED.store(true, Ordering::Relaxed);
            println!("bench: FAILED: {why}");
        }
    })
    .map(|_| ())
    .map_err(|err| format!("cannot start the benchmark: {err:?}"))
}

/// Runs SIP `name` alone to its end and returns its record.
fn run_alone(name: &str, metering: Metering) -> Result<Record, String> {
    let options = process::StartOptions {
        metering,
        client: true,
    };
    let (pid, thread) = process::start_with(name, crate::boot_module(name)?, options)
        .map_err(|e| format!("{e:?}"))?;
    thread.join();
    let record = process::record(pid).ok_or("record vanished")?;
    match &record.ending {
        Some(Ending::Ran(Exit::Status(0))) => Ok(record),
        other => Err(format!("SIP {name} ended {other:?}")),
    }
}

fn median(mut samples: Vec<u64>) -> (u64, u64, u64) {
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn create_start(name: &str, runs: usize) -> Result<(), String> {
    let module_bytes = crate::boot_package()
        .file(name)
        .map(<[u8]>::len)
        .ok_or_else(|| format!("the boot package has no `{name}` module"))?;
    // One warm-up run so kernel tables have their working size.
    run_alone(name, Metering::Fuel)?;
    let mut total = Vec::new();
    let mut verify = Vec::new();
    let mut instantiate = Vec::new();
    for _ in 0..runs {
        let record = run_alone(name, Metering::Fuel)?;
        total.push(record.timings.first_call.ok_or("SIP made no kernel call")?);
        verify.push(record.timings.verify);
        instantiate.push(record.timings.instantiate - record.timings.verify);
    }
    let (t, tmin, tmax) = median(total);
    println!(
        "  SIP create+start ({name}, {module_bytes} bytes, {runs} runs): median {t} cycles (min {tmin}, max {tmax}); verify {}, compile+instantiate {}",
        median(verify).0,
        median(instantiate).0
    );
    Ok(())
}

fn thread_switch() -> Result<(), String> {
    const ROUNDS: usize = 2_000;
    let ping = Arc::new(Semaphore::new(0));
    let pong = Arc::new(Semaphore::new(0));
    let partner = {
        let (ping, pong) = (ping.clone(), pong.clone());
        sched::spawn("pong", move || {
            for _ in 0..ROUNDS {
                ping.down();
                pong.up();
            }
        })
        .map_err(|e| format!("{e:?}"))?
    };
    let start = cycles::start();
    for _ in 0..ROUNDS {
        ping.up();
        pong.down();
    }
    let spent = cycles::stop() - start;
    partner.join();
    println!(
        "  kernel thread switch (semaphore ping-pong, {ROUNDS} round trips): {} cycles per switch",
        spent / (2 * ROUNDS as u64)
    );
    Ok(())
}

fn metering_cost() -> Result<(), String> {
    let mut metered = Vec::new();
    let mut unmetered = Vec::new();
    // Interleaved, so host noise under emulation hits both alike.
    for _ in 0..3 {
        metered.push(run_alone("primes", Metering::Fuel)?.timings.run);
        unmetered.push(run_alone("primes", Metering::Off)?.timings.run);
    }
    let (m, u) = (median(metered).0, median(unmetered).0);
    println!(
        "  fuel metering (primes SIP, median of 3 interleaved runs): {m} cycles metered, {u} unmetered: {:+.1}%",
        (m as f64 / u as f64 - 1.0) * 100.0
    );
    Ok(())
}

fn channel_round_trip() -> Result<(), String> {
    let (server, server_thread) = process::start("echo-server", crate::boot_module("echo-server")?)
        .map_err(|e| format!("{e:?}"))?;
    let client_options = process::StartOptions {
        client: true,
        ..Default::default()
    };
    let (client, client_thread) = process::start_with(
        "echo-client",
        crate::boot_module("echo-client")?,
        client_options,
    )
    .map_err(|e| format!("{e:?}"))?;
    crate::ipc::connect("Echo", (server, "clients"), (client, "server"))?;
    client_thread.join();
    server_thread.join();
    for pid in [server, client] {
        let record = process::record(pid).ok_or("record vanished")?;
        if record.ending != Some(Ending::Ran(Exit::Status(0))) {
            return Err(format!(
                "{} ended {:?}",
                record.name.as_str(),
                record.ending
            ));
        }
    }
    Ok(())
}

fn micro() -> Result<(), String> {
    println!("bench micro: soft isolation; TSC cycles (emulated cost under TCG)");
    create_start("startup", 9)?;
    create_start("hello", 9)?;
    run_alone("abi-bench", Metering::Fuel)?;
    metering_cost()?;
    thread_switch()?;
    channel_round_trip()?;
    println!("bench micro: done");
    Ok(())
}
