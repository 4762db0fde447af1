//! Kernel benchmarks: measured in the booted kernel, printed as numbers (never asserted).
//!
//! Suite `micro`, in whichever isolation configuration the kernel booted:
//! - SIP create + start: from the kernel beginning to create a SIP (verify, compile,
//!   instantiate, thread) to the SIP's first kernel call, each SIP alone on the processor;
//!   and its whole life: created, run to its exit, reclaimed and its thread joined;
//! - the minimum kernel call from a SIP (printed by the `abi-bench` SIP itself);
//! - the cost of fuel metering: the same CPU-bound SIP run with and without it;
//! - a thread switch (semaphore round trip between two kernel threads, halved);
//! - a SIP-to-SIP yield (two `yield` SIPs yielding to each other, printed by each);
//! - channel round trips between two SIPs over the Echo contract (printed by the
//!   `echo-client` SIP): a small message, 16 KiB copied, 16 KiB exchange-heap buffer;
//! - with `--smp 2` or more: a cross-processor call's round trip, and a one-page TLB
//!   shootdown against a local `invlpg`;
//! - forking the prepared runtime image (how SIPs with a space of their own are made) and
//!   the cost of one copy-on-write fault;
//! - counters that explain the differences between configurations: system calls, CR3
//!   loads, context switches, demand-zero and copy-on-write faults.
//!
//! Suite `smp`: the cross-processor rows alone (a quick boot for tests).
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
use crate::counters::Counters;
use crate::mm::vm;
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
    let run: fn() -> Result<(), String> = match suite {
        "micro" => micro,
        "smp" => smp,
        _ => {
            return Err(format!(
                "unknown benchmark suite '{suite}'; known: micro, smp"
            ));
        }
    };
    sched::spawn_on("bench", 0, move || {
        if let Err(why) = run() {
            FAILED.store(true, Ordering::Relaxed);
            println!("bench: FAILED: {why}");
        }
    })
    .map(|_| ())
    .map_err(|err| format!("cannot start the benchmark: {err:?}"))
}

/// Whether a suite runs now (started by a SIP with the `bench` power).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The `bench` operation for SIP `pid`: runs `suite` on a kernel thread of its own and
/// waits for it (a kill of `pid` ends the wait; the suite then finishes on its own). The
/// ABI status: `OK`, `NOT_FOUND` (unknown suite, or modules missing), `BUSY`, `TIMEOUT`
/// (it failed), `OUT_OF_MEMORY` (no thread).
pub fn run_for(pid: process::Pid, suite: &str) -> i32 {
    use cordon_abi::status;
    if suite != "micro" {
        println!("bench: no suite `{suite}` (suites: micro)");
        return status::NOT_FOUND;
    }
    let package = crate::boot_package();
    let missing: Vec<&str> = bootpkg::MICRO_SIPS
        .into_iter()
        .filter(|m| package.file(m).is_none())
        .collect();
    if !missing.is_empty() {
        println!(
            "bench: the micro suite needs modules the boot package lacks: {} (add them to the system manifest's `modules`)",
            missing.join(", ")
        );
        return status::NOT_FOUND;
    }
    if RUNNING.swap(true, Ordering::AcqRel) {
        return status::BUSY;
    }
    let failed = Arc::new(AtomicBool::new(false));
    let thread = {
        let failed = failed.clone();
        sched::spawn_on("bench", 0, move || {
            if let Err(why) = micro() {
                failed.store(true, Ordering::Relaxed);
                println!("bench: FAILED: {why}");
            }
            RUNNING.store(false, Ordering::Release);
        })
    };
    let Ok(thread) = thread else {
        RUNNING.store(false, Ordering::Release);
        return status::OUT_OF_MEMORY;
    };
    while !thread.is_finished() {
        if process::kill_requested(pid) {
            return status::TIMEOUT;
        }
        sched::sleep_ticks(1);
    }
    if failed.load(Ordering::Relaxed) {
        status::TIMEOUT
    } else {
        status::OK
    }
}

/// Runs SIP `name` alone to its end and returns its record.
fn run_alone(name: &str, metering: Metering) -> Result<Record, String> {
    let options = process::StartOptions {
        metering,
        client: true,
        ..Default::default()
    };
    let (pid, thread) = process::start_with(name, crate::boot_module(name)?, options)
        .map_err(|e| format!("{e:?}"))?;
    thread.join();
    ended_cleanly(pid)
}

/// The record of finished SIP `pid`, if it exited with status 0.
fn ended_cleanly(pid: process::Pid) -> Result<Record, String> {
    let record = process::record(pid).ok_or("record vanished")?;
    match &record.ending {
        Some(Ending::Ran(Exit::Status(0))) => Ok(record),
        other => Err(format!(
            "SIP {} (pid {pid}) ended {other:?}",
            record.name.as_str()
        )),
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
    let mut whole = Vec::new();
    let mut verify = Vec::new();
    let mut instantiate = Vec::new();
    for _ in 0..runs {
        let start = cycles::start();
        let record = run_alone(name, Metering::Fuel)?;
        whole.push(cycles::stop() - start);
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
    // The whole life, like Linux's fork+exec+exit+wait: created, run to its end, its
    // memory, space and kernel objects reclaimed, its thread joined.
    let (w, wmin, wmax) = median(whole);
    println!(
        "  SIP create+start+exit+reap ({name}, {runs} runs): median {w} cycles (min {wmin}, max {wmax})"
    );
    Ok(())
}

fn thread_switch() -> Result<(), String> {
    const ROUNDS: usize = 2_000;
    let ping = Arc::new(Semaphore::new(0));
    let pong = Arc::new(Semaphore::new(0));
    let partner = {
        let (ping, pong) = (ping.clone(), pong.clone());
        sched::spawn_on("pong", 0, move || {
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

/// The compute mix natively (the kernel's own build of the same code) and as the `compute`
/// SIP in this boot's engine: what the engine costs over native code. Both must give the
/// workload's checksum.
fn compute() -> Result<(), String> {
    const ITERATIONS: u32 = 200;
    let mut native = Vec::new();
    for _ in 0..3 {
        let start = cycles::start();
        let checksum = compute_mix::run(core::hint::black_box(ITERATIONS));
        native.push(cycles::stop() - start);
        if checksum != compute_mix::EXPECTED_200 {
            return Err(format!("compute mix natively: checksum {checksum:#010x}"));
        }
    }
    let (median_native, low, high) = median(native);
    println!(
        "  compute mix natively in the kernel ({ITERATIONS} iterations, 3 runs): median {median_native} cycles (min {low}, max {high})"
    );
    // The SIP prints its own figure (`[compute] compute mix: … cycles`).
    run_alone("compute", Metering::Fuel)?;
    Ok(())
}

fn metering_cost() -> Result<(), String> {
    if crate::boot_package().config.engine == bootpkg::Engine::Compiled {
        println!(
            "  fuel metering: not measured for the compiled engine (its artifacts are compiled with fuel metering; no unmetered build is made)"
        );
        return Ok(());
    }
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
    // Both on CPU 0: what a round trip costs on one processor, however many there are.
    echo_pair(0, 0, None)
}

/// The echo pair with the server on processor `server_cpu` and the client on
/// `client_cpu`; `label` (if any) is the client's argument, which prefixes its figures.
fn echo_pair(server_cpu: usize, client_cpu: usize, label: Option<&str>) -> Result<(), String> {
    let pair = process::start_pair(
        "Echo",
        process::PairSide {
            name: "echo-server",
            module: crate::boot_module("echo-server")?,
            args: None,
            options: process::StartOptions {
                cpu: Some(server_cpu),
                ..Default::default()
            },
            endpoint: "clients",
        },
        process::PairSide {
            name: "echo-client",
            module: crate::boot_module("echo-client")?,
            args: label.map(|l| format!("{l}\0").into_bytes()),
            options: process::StartOptions {
                client: true,
                cpu: Some(client_cpu),
                ..Default::default()
            },
            endpoint: "server",
        },
    )?;
    pair.release();
    pair.join();
    let (server, client) = (pair.server.0, pair.client.0);
    for pid in [server, client] {
        ended_cleanly(pid)?;
    }
    Ok(())
}

/// Two instances of the `yield` SIP at once: each `yield_now` switches to the other (each
/// prints its own figure). The first is the configuration's client, like the echo pair's,
/// so that in the intermediate configurations the switch crosses address spaces.
fn yield_pair() -> Result<(), String> {
    let module = crate::boot_module("yield")?;
    // Both exist before either runs, so neither measures yields with nothing to switch to;
    // both on CPU 0, so that on several processors each still yields to the other.
    let options = process::StartOptions {
        client: true,
        held: true,
        cpu: Some(0),
        ..Default::default()
    };
    let first =
        process::start_with("yield", module.clone(), options).map_err(|e| format!("{e:?}"))?;
    let second = process::start_with(
        "yield",
        module,
        process::StartOptions {
            client: false,
            ..options
        },
    );
    first.1.release();
    let second = second.map_err(|e| format!("{e:?}"))?;
    second.1.release();
    first.1.join();
    second.1.join();
    ended_cleanly(first.0)?;
    ended_cleanly(second.0).map(|_| ())
}

fn micro() -> Result<(), String> {
    let isolation = crate::boot_package().config.isolation;
    println!(
        "bench micro: isolation={isolation} ({}); engine={}; PCID {}; TSC cycles (emulated cost under TCG)",
        isolation.description(),
        crate::boot_package().config.engine.name(),
        if crate::arch::has_pcid() {
            "available, not used"
        } else {
            "not available"
        }
    );
    create_start("startup", 9)?;
    create_start("hello", 9)?;
    let counters = Counters::now();
    run_alone("abi-bench", Metering::Fuel)?;
    counters.print_since("abi-bench");
    compute()?;
    metering_cost()?;
    thread_switch()?;
    yield_pair()?;
    let counters = Counters::now();
    channel_round_trip()?;
    counters.print_since("echo pair");
    parallel_pairs()?;
    cross_processor()?;
    fork_image()?;
    cow_fault()?;
    demand_zero_fault()?;
    println!("bench micro: done");
    Ok(())
}

/// Four Echo pairs at once (the stress test's client, every payload checked), placed and
/// moved by the scheduler: the throughput of independent message traffic, in cycles of
/// elapsed time per round trip. On one processor the pairs take turns; on more they can
/// run side by side, so booting with `--smp 1` and `--smp 2` gives the scaling.
fn parallel_pairs() -> Result<(), String> {
    // A warm-up (first spaces, tables and heap reach their working size), then each way
    // twice, alternating; the faster of each pair is reported.
    pairs_at_once(true)?;
    let mut shared = u64::MAX;
    let mut alone = u64::MAX;
    for _ in 0..2 {
        alone = alone.min(pairs_at_once(false)?);
        shared = shared.min(pairs_at_once(true)?);
    }
    println!(
        "  {PAIRS} echo pairs at once ({} CPUs, {PAIR_ROUNDS} checked round trips each): {shared} cycles per round trip (the faster of two runs after a warm-up)",
        crate::arch::smp::online(),
    );
    println!(
        "  {PAIRS} echo pairs, one channel lock for all ({} CPUs: every channel operation with the manager alone, as before per-endpoint locks): {alone} cycles per round trip ({:.2}x the shared path's)",
        crate::arch::smp::online(),
        alone as f64 / shared.max(1) as f64
    );
    Ok(())
}

/// Four echo pairs at once, the message path taking the channel manager shared or
/// (`shared` false) alone; returns the elapsed cycles per round trip.
fn pairs_at_once(shared: bool) -> Result<u64, String> {
    crate::ipc::set_shared(shared);
    let pairs = (1..=PAIRS)
        .map(|seed| stress_pair(seed, PAIR_ROUNDS, false))
        .collect::<Vec<_>>();
    // All start together: the time is from the first release to the last exit (a pair
    // that failed to start was released already).
    let start = cycles::start();
    for pair in pairs.iter().flatten() {
        pair.release();
    }
    for pair in pairs.iter().flatten() {
        pair.join();
    }
    let elapsed = cycles::stop() - start;
    crate::ipc::set_shared(true);
    for pair in pairs {
        let pair = pair?;
        ended_cleanly(pair.server.0)?;
        ended_cleanly(pair.client.0)?;
    }
    Ok(elapsed / u64::from(PAIRS * PAIR_ROUNDS))
}

/// The echo pairs of [`parallel_pairs`], and their checked round trips each.
const PAIRS: u32 = 4;
const PAIR_ROUNDS: u32 = 200;

/// An `echo-server` and an `echo-stress` client (`seed`, `rounds` checked round trips)
/// connected and held; `split`: the server on CPU 1 and the client on CPU 0.
pub(crate) fn stress_pair(
    seed: u32,
    rounds: u32,
    split: bool,
) -> Result<process::HeldPair, String> {
    let pin = |cpu| process::StartOptions {
        cpu: split.then_some(cpu),
        ..Default::default()
    };
    process::start_pair(
        "Echo",
        process::PairSide {
            name: "echo-server",
            module: crate::boot_module("echo-server")?,
            args: None,
            options: pin(1),
            endpoint: "clients",
        },
        process::PairSide {
            name: "echo-stress",
            module: crate::boot_module("echo-stress")?,
            args: Some(format!("{seed}\0{rounds}\0").into_bytes()),
            options: pin(0),
            endpoint: "server",
        },
    )
}

/// Suite `smp`: the micro suite's cross-processor rows alone.
fn smp() -> Result<(), String> {
    println!(
        "bench smp: {} processors; TSC cycles (emulated cost under TCG)",
        crate::arch::smp::online()
    );
    cross_processor()?;
    println!("bench smp: done");
    Ok(())
}

fn nothing(_: u64) -> u64 {
    0
}

/// With two processors or more: a cross-processor call's round trip (IPI, the call run on
/// CPU 1, its reply), and dropping one kernel page's translation on this processor alone
/// (`invlpg`) against a shootdown on every processor (what unmapping a kernel page costs
/// once another processor may have cached it).
fn cross_processor() -> Result<(), String> {
    use crate::arch::smp;
    const RUNS: usize = 1_000;
    if smp::online() < 2 {
        println!(
            "  cross-processor call, TLB shootdown and channel round trip across processors: not measured, one processor (boot with --smp 2)"
        );
        return Ok(());
    }
    // Like with like: the echo pair pinned to one processor, then split over two (every
    // message then wakes the other processor with an IPI).
    echo_pair(0, 0, Some("one CPU"))?;
    echo_pair(1, 0, Some("across two CPUs"))?;
    let time = |f: &dyn Fn()| {
        f();
        let samples: Vec<u64> = (0..RUNS)
            .map(|_| {
                let start = cycles::start();
                f();
                cycles::stop() - start
            })
            .collect();
        median(samples)
    };
    let (m, min, max) = time(&|| {
        smp::call_on(1, nothing, 0);
    });
    println!(
        "  cross-processor call (CPU 0 -> CPU 1: IPI, an empty function, reply; {RUNS} runs): median {m} cycles (min {min}, max {max})"
    );
    // A page of a live kernel stack: dropping its translation only costs a refill.
    let stack = crate::mm::frames::FrameBlock::alloc(0)
        .and_then(crate::mm::stacks::GuardedStack::new)
        .ok_or("no memory for a kernel page")?;
    let page = x86_64::VirtAddr::new(stack.bottom_address());
    let (m, min, max) = time(&|| smp::invalidate_local(page));
    println!(
        "  invlpg of one kernel page (this CPU only, {RUNS} runs): median {m} cycles (min {min}, max {max})"
    );
    let (m, min, max) = time(&|| smp::shootdown(page));
    println!(
        "  TLB shootdown of one kernel page ({} CPUs: invlpg here, an IPI and invlpg on each other, replies; {RUNS} runs): median {m} cycles (min {min}, max {max})",
        smp::online()
    );
    Ok(())
}

/// Forks the prepared runtime image, as creating a SIP with a space of its own does.
fn fork_image() -> Result<(), String> {
    const RUNS: usize = 9;
    for ring3 in [true, false] {
        let mut samples = Vec::new();
        let mut pages = 0;
        for _ in 0..RUNS {
            let start = cycles::start();
            let Some(mut child) = crate::hosted::fork_image(ring3) else {
                break;
            };
            samples.push(cycles::stop() - start);
            pages = child.user_pages();
        }
        if samples.is_empty() {
            continue;
        }
        let (m, min, max) = median(samples);
        println!(
            "  SIP fork (ring-{} runtime image, {pages} pages shared copy-on-write, {RUNS} runs): median {m} cycles (min {min}, max {max}), {} per page",
            if ring3 { 3 } else { 0 },
            m / pages.max(1) as u64
        );
    }
    Ok(())
}

/// Pages each fault figure touches in one timed pass: enough that the per-page cost is an
/// average over a loop, not one timed access (Linux's figure is taken the same way).
const FAULT_PAGES: u64 = 4096;
/// Timed passes (each on a fresh space) of which the median is reported.
const FAULT_TRIALS: usize = 3;

/// Cycles per page of one pass writing every page of `region` in `space`, minus a second
/// pass over the same pages once they are mapped and private.
fn faulting_pass(space: &mut vm::AddressSpace, region: x86_64::VirtAddr) -> Result<u64, String> {
    let err = |e: vm::MapError| format!("{e:?}");
    let start = cycles::start();
    space.touch_pages(region, FAULT_PAGES, 1).map_err(err)?;
    let faulting = cycles::stop() - start;
    let start = cycles::start();
    space.touch_pages(region, FAULT_PAGES, 2).map_err(err)?;
    let plain = cycles::stop() - start;
    Ok(faulting.saturating_sub(plain) / FAULT_PAGES)
}

/// Copy-on-write faults: writes to pages shared with a fork, trapped and resolved (copy
/// 4 KiB, invlpg), averaged over one pass of [`FAULT_PAGES`] pages.
fn cow_fault() -> Result<(), String> {
    let err = |e: vm::MapError| format!("{e:?}");
    let region = vm::user_base() + 0x4000_0000u64;
    let mut samples = Vec::new();
    for _ in 0..FAULT_TRIALS {
        let mut parent = vm::AddressSpace::new().ok_or("no memory")?;
        parent
            .map_zeroed(region, FAULT_PAGES as usize)
            .map_err(err)?;
        let mut child = parent.fork().ok_or("fork: no memory")?;
        samples.push(faulting_pass(&mut child, region)?);
    }
    let (m, min, max) = median(samples);
    println!(
        "  copy-on-write fault (trapped; copy 4 KiB, invlpg; {FAULT_PAGES} pages per pass, {FAULT_TRIALS} passes): median {m} cycles per page (min {min}, max {max})"
    );
    Ok(())
}

/// Demand-zero faults: first writes to reserved pages, trapped and resolved (a zeroed
/// frame mapped), averaged over one pass of [`FAULT_PAGES`] pages.
fn demand_zero_fault() -> Result<(), String> {
    let err = |e: vm::MapError| format!("{e:?}");
    let region = vm::user_base() + 0x4000_0000u64;
    let access = vm::Access {
        writable: true,
        executable: false,
        user: true,
    };
    let mut samples = Vec::new();
    for _ in 0..FAULT_TRIALS {
        let mut space = vm::AddressSpace::new().ok_or("no memory")?;
        space
            .reserve_lazy(region, FAULT_PAGES * 4096, access)
            .map_err(err)?;
        samples.push(faulting_pass(&mut space, region)?);
    }
    let (m, min, max) = median(samples);
    println!(
        "  demand-zero fault (trapped; zeroed frame mapped; {FAULT_PAGES} pages per pass, {FAULT_TRIALS} passes): median {m} cycles per page (min {min}, max {max})"
    );
    Ok(())
}
