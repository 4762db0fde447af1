//! Kernel self-tests, run in QEMU when the boot package names one.
//!
//! The host's `cargo test` boots the kernel once per group (see `tools/cordon/tests`) and
//! reads the verdict from QEMU's exit status and the console. Groups:
//!
//! | name | what it checks | expected end |
//! |---|---|---|
//! | `threads` | switching, preemption, sleep, wait-queue timeouts, reaping | success |
//! | `memory` | buddy frames, heap, exhaustion, accounting back to baseline | success |
//! | `sips` | SIP kill, preemption of a looping SIP, exact reclaim of heap and frames | success |
//! | `ring3` | the system-call boundary: bad pointers refused, ring-3 faults kill only the program | success |
//! | `channels` | destroying a chain of 10,000 endpoints in transit masks interrupts no longer than a chain of 100 | success |
//! | `cow` | copy-on-write fork: isolation, last-holder writes, copies only written pages, reclaim | success |
//! | `smp` | (boot with `--smp 2`) every processor answers a call; calls both ways cannot deadlock; a stale translation is seen on CPU 1 with shootdowns off and never with them on | success |
//! | `page-fault` | write to an unmapped page is decoded (P=0, W/R=1, U/S=0) | panic |
//! | `page-fault-protection` | write to a read-only page is decoded (P=1, W/R=1) | panic |
//! | `panic` | a kernel panic prints its location and message | panic |
//! | `double-fault` | a kernel stack overflow lands on the double-fault IST stack | panic |
//! | `smap` | ring 0 reading a page ring 3 may use, outside a system call, faults (SMAP on) | panic |
//! | `smep` | ring 0 executing a page ring 3 may use faults (SMEP on) | panic |
//! | `thread-stack-overflow` | a kernel thread overflowing its stack hits its guard page, reported | panic |
#![deny(unsafe_code)]

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::{cycles, selftest};
use crate::mm::{self, frames::FrameBlock, vm};
use crate::sched::{self, sync::Semaphore, sync::WaitQueue};
use crate::{println, process, time};
use sip_runtime::Exit;

type TestResult = Result<(), String>;

struct Test {
    name: &'static str,
    run: fn() -> TestResult,
}

const THREADS: &[Test] = &[
    Test {
        name: "semaphore_ping_pong_switches_threads",
        run: ping_pong,
    },
    Test {
        name: "spinning_threads_are_preempted",
        run: preemption,
    },
    Test {
        name: "sleep_wakes_after_deadline",
        run: sleep,
    },
    Test {
        name: "wait_queue_timeout_and_notify",
        run: wait_timeout,
    },
    Test {
        name: "exited_threads_return_their_stacks",
        run: reaping,
    },
];

const SIPS: &[Test] = &[
    Test {
        name: "looping_sip_does_not_stop_others_and_is_killed",
        run: kill_looping_sip,
    },
    Test {
        name: "sip_memory_and_stack_are_reclaimed_exactly",
        run: sip_reclaim,
    },
    Test {
        name: "a_sip_blocked_in_the_kernel_is_killed",
        run: kill_blocked_sip,
    },
];

const COW: &[Test] = &[
    Test {
        name: "fork_parent_and_child_see_their_own_writes_stack_included",
        run: fork_isolates,
    },
    Test {
        name: "fork_of_a_large_space_copies_only_written_pages",
        run: fork_copies_only_written,
    },
];

const RING3: &[Test] = &[
    Test {
        name: "syscalls_with_bad_pointers_or_lengths_fail_cleanly",
        run: bad_pointer_syscalls,
    },
    Test {
        name: "vector_registers_never_cross_between_threads",
        run: vector_registers,
    },
    Test {
        name: "random_system_calls_end_only_the_caller",
        run: random_system_calls,
    },
    Test {
        name: "ring3_read_of_kernel_memory_kills_only_that_program",
        run: ring3_kernel_read,
    },
    Test {
        name: "ring3_write_of_kernel_memory_kills_only_that_program",
        run: ring3_kernel_write,
    },
    Test {
        name: "privileged_instruction_in_ring3_kills_the_program",
        run: ring3_privileged,
    },
    Test {
        name: "unknown_system_call_ends_the_caller",
        run: unknown_syscall,
    },
    Test {
        name: "oversized_select_list_is_bounded_by_the_kernel",
        run: oversized_select,
    },
    Test {
        name: "probe_address_spaces_are_reclaimed_exactly",
        run: probe_reclaim,
    },
];

const MEMORY: &[Test] = &[
    Test {
        name: "frame_blocks_are_zeroed_disjoint_and_returned",
        run: frames,
    },
    Test {
        name: "heap_allocates_and_frees",
        run: heap,
    },
    Test {
        name: "frame_exhaustion_is_reported_not_fatal",
        run: exhaustion,
    },
];

const SMP: &[Test] = &[
    Test {
        name: "every_processor_answers_a_call",
        run: every_processor_answers,
    },
    Test {
        name: "a_call_may_call_back_without_deadlock",
        run: call_back,
    },
    Test {
        name: "a_stale_translation_is_seen_without_shootdowns_and_never_with_them",
        run: shootdown_prevents_stale_reads,
    },
    Test {
        name: "a_stale_user_translation_writes_into_a_forked_space_without_shootdowns",
        run: user_shootdown_keeps_forks_apart,
    },
    Test {
        name: "a_stack_in_its_shootdown_is_not_yet_reaped",
        run: stack_in_flight_is_not_reaped,
    },
];

const STRESS: &[Test] = &[Test {
    name: "sip_pairs_on_every_processor_with_kills_racing_sends",
    run: stress_pairs,
}];

const CHANNELS: &[Test] = &[Test {
    name: "destroying_a_chain_masks_interrupts_as_briefly_at_10000_as_at_100",
    run: chain_destruction,
}];

/// Owner of the `channels` group's endpoints: no SIP runs in a self-test boot, so the
/// account of the first process slot is free for it.
const CHAIN_OWNER: process::Pid = 1;

/// Builds chains of 100 and of 10,000 Directory exporters, each sent (in a `Bind`) into
/// the next one's queue, closes the outermost end and measures the longest
/// interrupts-masked section while the kernel destroys the chain. Destruction runs in
/// fixed steps, so the longest section must not grow with the chain (run under `-icount`
/// for instruction-exact cycles).
fn chain_destruction() -> TestResult {
    crate::ipc::open_account(CHAIN_OWNER).map_err(|()| String::from("no account"))?;
    let unlimited = cordon_abi::Limits {
        max_kernel_objects: u32::MAX,
        max_kernel_bytes: u64::MAX,
        ..cordon_abi::Limits::default()
    };
    crate::ipc::set_quota(CHAIN_OWNER, &unlimited);
    let short = destroy_chain(100)?;
    let long = destroy_chain(10_000)?;
    println!(
        "ktest channels: longest interrupts-masked section while destroying a chain of endpoints in transit: {short} cycles for 100, {long} cycles for 10,000 ({:.2}x)",
        long as f64 / short.max(1) as f64
    );
    check(long <= short.saturating_mul(3) / 2, || {
        format!("destroying 10,000 masked interrupts for {long} cycles, 100 for {short}")
    })
}

/// Builds a chain `depth` endpoints deep, destroys it from the top, frees the rest, and
/// returns the longest interrupts-masked section of the destruction (in cycles).
fn destroy_chain(depth: usize) -> Result<u64, String> {
    use crate::ipc;
    let create = || {
        ipc::create(CHAIN_OWNER, "Directory")
            .map_err(|status| format!("chan_create: status {status}"))
    };
    let (mut outer, bottom) = create()?;
    let mut senders = Vec::new();
    senders
        .try_reserve_exact(depth)
        .map_err(|_| String::from("no heap for the test"))?;
    for _ in 0..depth {
        let (exporter, importer) = create()?;
        // Directory's `Bind(name: bytes[64], server_end: endpoint)` (message 3), carrying
        // the chain so far as its endpoint.
        let mut bind = alloc::vec![3, 0, 1, 0, 0, 0, b'x'];
        bind.extend_from_slice(&outer.to_le_bytes());
        if ipc::send(CHAIN_OWNER, importer, &bind)? != cordon_abi::status::OK {
            return Err("Bind not sent".into());
        }
        senders.push(importer);
        outer = exporter;
    }
    let built = ipc::counts();
    if built.endpoints != 2 * (depth + 1) {
        return Err(format!(
            "{} endpoints for a chain of {depth}",
            built.endpoints
        ));
    }
    let _ = crate::arch::irq::take_longest_masked();
    ipc::close(CHAIN_OWNER, outer)?;
    let longest = crate::arch::irq::take_longest_masked().longest;
    let left = ipc::counts().endpoints;
    if left != depth + 1 {
        return Err(format!(
            "closing the top of a chain of {depth} left {left} endpoints, not its {} senders and bottom",
            depth + 1
        ));
    }
    for sender in senders {
        ipc::close(CHAIN_OWNER, sender)?;
    }
    ipc::close(CHAIN_OWNER, bottom)?;
    check(ipc::counts().endpoints == 0, || {
        String::from("endpoints left after the chain")
    })?;
    Ok(longest)
}

/// Names accepted by [`start`] and [`run_early`].
pub const GROUPS: &[&str] = &[
    "threads",
    "memory",
    "sips",
    "cow",
    "ring3",
    "page-fault",
    "page-fault-protection",
    "panic",
    "double-fault",
    "thread-stack-overflow",
    "smep",
    "smap",
    "channels",
    "smp",
    "stress",
];

static FAILURES: AtomicUsize = AtomicUsize::new(0);

/// Self-tests that failed so far.
pub fn failures() -> usize {
    FAILURES.load(Ordering::Relaxed)
}

/// Runs self-tests that must happen before memory and threads are set up. Returns for
/// every other name.
pub fn run_early(name: &str) {
    if name == "double-fault" {
        println!("ktest double-fault: overflowing the boot stack");
        let depth = overflow_stack(0);
        panic!("stack overflow did not fault (depth {depth})");
    }
}

#[allow(unconditional_recursion)]
fn overflow_stack(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    overflow_stack(depth + 1) + frame[7]
}

/// Spawns the thread that runs self-test group `name`.
pub fn start(name: &str) -> Result<(), String> {
    let tests: &'static [Test] = match name {
        "threads" => THREADS,
        "channels" => CHANNELS,
        "memory" => MEMORY,
        "sips" => SIPS,
        "cow" => COW,
        "smp" => SMP,
        "stress" => STRESS,
        "ring3" => RING3,
        "page-fault" => {
            spawn("ktest-page-fault", || {
                println!(
                    "ktest page-fault: writing to {:#x}",
                    selftest::UNMAPPED_ADDRESS
                );
                selftest::write_unmapped()
            })?;
            return Ok(());
        }
        "smep" => {
            spawn("ktest-smep", || {
                println!("ktest smep: ring 0 calling into a user page");
                selftest::execute_user_page()
            })?;
            return Ok(());
        }
        "smap" => {
            spawn("ktest-smap", || {
                println!("ktest smap: ring 0 reading a user page outside a system call");
                selftest::read_user_page()
            })?;
            return Ok(());
        }
        "page-fault-protection" => {
            spawn("ktest-page-fault-protection", || {
                println!("ktest page-fault-protection: writing to read-only kernel data");
                selftest::write_read_only()
            })?;
            return Ok(());
        }
        "panic" => {
            spawn("ktest-panic", || {
                panic!("deliberate panic requested by self-test")
            })?;
            return Ok(());
        }
        "thread-stack-overflow" => {
            spawn("ktest-thread-stack-overflow", || {
                println!("ktest thread-stack-overflow: recursing on a 64 KiB thread stack");
                let depth = overflow_stack(0);
                panic!("stack overflow did not fault (depth {depth})");
            })?;
            return Ok(());
        }
        other => {
            return Err(format!(
                "unknown self-test '{other}'; known: {}",
                GROUPS.join(", ")
            ));
        }
    };
    let name = String::from(name);
    spawn("ktest", move || {
        println!("ktest {name}: running {} tests", tests.len());
        for test in tests {
            match (test.run)() {
                Ok(()) => println!("ktest {name}::{} ... ok", test.name),
                Err(why) => {
                    FAILURES.fetch_add(1, Ordering::Relaxed);
                    println!("ktest {name}::{} ... FAILED: {why}", test.name);
                }
            }
        }
        let failed = failures();
        println!(
            "ktest {name}: {} passed, {failed} failed",
            tests.len() - failed
        );
    })
}

/// Starts a self-test thread on CPU 0 (checks name processors relative to it).
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    sched::spawn_on(name, 0, f)
        .map(|_| ())
        .map_err(|err| format!("cannot spawn {name}: {err:?}"))
}

fn check(condition: bool, what: impl FnOnce() -> String) -> TestResult {
    if condition { Ok(()) } else { Err(what()) }
}

fn spawn_test_thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<sched::JoinHandle, String> {
    sched::spawn(name, f).map_err(|err| format!("spawn {name}: {err:?}"))
}

// --- threads ---------------------------------------------------------------------------

fn ping_pong() -> TestResult {
    const ROUNDS: usize = 200;
    let ping = Arc::new(Semaphore::new(0));
    let pong = Arc::new(Semaphore::new(0));
    let switches_before = sched::context_switches();
    let partner = {
        let (ping, pong) = (ping.clone(), pong.clone());
        spawn_test_thread("pong", move || {
            for _ in 0..ROUNDS {
                ping.down();
                pong.up();
            }
        })?
    };
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = cycles::start();
        ping.up();
        pong.down();
        samples.push(cycles::stop() - start);
    }
    partner.join();
    let switches = sched::context_switches() - switches_before;
    samples.sort_unstable();
    println!(
        "  semaphore round trip between two kernel threads: median {} cycles, min {} (TSC; emulated cost under TCG)",
        samples[ROUNDS / 2],
        samples[0]
    );
    check(switches >= 2 * ROUNDS as u64, || {
        format!("{ROUNDS} round trips took only {switches} context switches")
    })
}

fn preemption() -> TestResult {
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut handles = Vec::new();
    for (i, counter) in counters.iter().enumerate() {
        let (stop, counter) = (stop.clone(), counter.clone());
        // Never yields, never blocks: only the timer can take the processor away.
        handles.push(spawn_test_thread(&format!("spinner-{i}"), move || {
            while !stop.load(Ordering::Relaxed) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    let start_tick = time::ticks();
    sched::sleep_ticks(20);
    let seen: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    for handle in &handles {
        handle.join();
    }
    check(seen.iter().all(|&count| count > 0), || {
        format!("a spinning thread never ran: counters {seen:?}")
    })?;
    check(time::ticks() >= start_tick + 20, || {
        "sleeping thread woke early while others spun".into()
    })
}

fn sleep() -> TestResult {
    let before = time::ticks();
    sched::sleep_ticks(10);
    let slept = time::ticks() - before;
    check(slept >= 10, || {
        format!("sleep(10) returned after {slept} ticks")
    })?;
    check(sched::pending_timers() == 0, || {
        format!("{} timers left pending", sched::pending_timers())
    })
}

fn wait_timeout() -> TestResult {
    static QUEUE: WaitQueue = WaitQueue::new();
    static FLAG: AtomicBool = AtomicBool::new(false);

    let before = time::ticks();
    let met = QUEUE.wait_until_timeout(|| FLAG.load(Ordering::Acquire), 5);
    let waited = time::ticks() - before;
    check(!met, || {
        "condition reported true without notification".into()
    })?;
    check(waited >= 5, || {
        format!("timed out after {waited} ticks, not 5")
    })?;
    check(QUEUE.is_empty(), || {
        "timed-out waiter left on the queue".into()
    })?;

    let notifier = spawn_test_thread("notifier", || {
        sched::sleep_ticks(2);
        FLAG.store(true, Ordering::Release);
        QUEUE.notify_one();
    })?;
    let met = QUEUE.wait_until_timeout(|| FLAG.load(Ordering::Acquire), 10_000);
    notifier.join();
    check(met, || "notification before the timeout was missed".into())?;
    check(sched::pending_timers() == 0, || {
        "cancelled timeout still pending on the wheel".into()
    })
}

fn reaping() -> TestResult {
    // Let earlier tests' threads be reaped first.
    sched::yield_now();
    let baseline = mm::frames::free_frames();
    let handles: Vec<_> = (0..8)
        .map(|i| spawn_test_thread(&format!("short-{i}"), move || sched::sleep_ticks(i % 3)))
        .collect::<Result<_, _>>()?;
    let during = mm::frames::free_frames();
    for handle in &handles {
        handle.join();
    }
    sched::yield_now();
    let after = mm::frames::free_frames();
    check(during < baseline, || "threads took no stack frames".into())?;
    check(after == baseline, || {
        format!("free frames {after} after all threads exited, baseline {baseline}")
    })
}

// --- sips --------------------------------------------------------------------------

fn ending(pid: process::Pid) -> Option<process::Ending> {
    process::record(pid)?.ending
}

fn kill_looping_sip() -> TestResult {
    let (forever, forever_thread) =
        process::start("forever", crate::boot_module("forever")?).map_err(|e| format!("{e:?}"))?;
    let (hello, hello_thread) =
        process::start("hello", crate::boot_module("hello")?).map_err(|e| format!("{e:?}"))?;
    // `forever` never calls the kernel; `hello` must still run to completion.
    hello_thread.join();
    check(
        ending(hello) == Some(process::Ending::Ran(Exit::Status(0))),
        || format!("hello ended {:?} while a SIP spun", ending(hello)),
    )?;
    check(!forever_thread.is_finished(), || {
        "forever ended on its own".into()
    })?;
    check(process::kill(forever), || "kill refused a live pid".into())?;
    forever_thread.join();
    check(
        ending(forever) == Some(process::Ending::Ran(Exit::Killed)),
        || format!("forever ended {:?}", ending(forever)),
    )?;
    check(!process::kill(9999), || {
        "kill accepted an unknown pid".into()
    })
}

fn kill_blocked_sip() -> TestResult {
    let (blocked, thread) =
        process::start("blocked", crate::boot_module("blocked")?).map_err(|e| format!("{e:?}"))?;
    // Long enough to create its channel and block in `chan_recv` with no timeout.
    sched::sleep_ticks(30);
    check(!thread.is_finished(), || {
        format!("blocked ended on its own: {:?}", ending(blocked))
    })?;
    check(process::kill(blocked), || "kill refused a live pid".into())?;
    thread.join();
    check(
        ending(blocked) == Some(process::Ending::Ran(Exit::Killed)),
        || format!("blocked ended {:?}", ending(blocked)),
    )
}

fn sip_reclaim() -> TestResult {
    let run_all = |names: &[&str]| -> Result<(), String> {
        for name in names {
            let (_, thread) =
                process::start(name, crate::boot_module(name)?).map_err(|e| format!("{e:?}"))?;
            thread.join();
        }
        sched::settle();
        Ok(())
    };
    // Warm-up: kernel tables reach their working size.
    run_all(&["hello"])?;
    let before = mm::Usage::now();
    run_all(&["hello", "oob", "trap", "oom"])?;
    let after = mm::Usage::now();
    println!("  {}", before.compare(&after));
    check(after == before, || {
        format!("not reclaimed: {}", before.compare(&after))
    })
}

// --- ring 3 and system calls -----------------------------------------------------------

/// A kernel address for the probes to touch: one of this module's statics.
fn kernel_target() -> u64 {
    (&raw const FAILURES) as u64
}

/// Runs probe `n` and returns how it ended.
fn probe(n: u64) -> Result<process::Ending, String> {
    let (pid, thread) = process::start_probe(n, kernel_target()).map_err(|e| format!("{e:?}"))?;
    thread.join();
    ending(pid).ok_or_else(|| format!("probe {n} left no ending"))
}

/// Checks that probe `n` is killed with a fault report containing every needle, while a
/// SIP running beside it is unaffected.
fn probe_is_killed(n: u64, needles: &[&str]) -> TestResult {
    let (hello, hello_thread) =
        process::start("hello", crate::boot_module("hello")?).map_err(|e| format!("{e:?}"))?;
    let ended = probe(n)?;
    hello_thread.join();
    let text = format!("{ended}");
    println!("  probe {n}: {text}");
    check(
        matches!(ended, process::Ending::Ran(Exit::Fault(_))),
        || format!("probe {n} was not killed: {ended:?}"),
    )?;
    if let Some(missing) = needles.iter().find(|n| !text.contains(**n)) {
        return Err(format!("report lacks `{missing}`: {text}"));
    }
    check(
        ending(hello) == Some(process::Ending::Ran(Exit::Status(0))),
        || format!("hello beside the probe ended {:?}", ending(hello)),
    )
}

/// Two ring-3 probes fill the vector registers with their own values, yield to each other
/// and check them, 200 times. With saving on switches turned off they must see each
/// other's values (so this test can fail); with it on, never.
fn vector_registers() -> TestResult {
    let pair = || -> Result<[process::Ending; 2], String> {
        let seeds = [0x1111_0000_0000_0000u64, 0x2222_0000_0000_0000];
        let started = seeds.map(|seed| process::start_probe(6, seed));
        let mut endings = Vec::new();
        for s in started {
            let (pid, thread) = s.map_err(|e| format!("{e:?}"))?;
            thread.join();
            endings.push(ending(pid).ok_or("probe left no ending")?);
        }
        Ok([endings[0].clone(), endings[1].clone()])
    };
    let clean = process::Ending::Ran(Exit::Status(0));
    crate::arch::fpu::set_saving(false);
    let unsaved = pair();
    crate::arch::fpu::set_saving(true);
    let unsaved = unsaved?;
    println!("  saving off: {} / {}", unsaved[0], unsaved[1]);
    check(unsaved.iter().any(|e| *e != clean), || {
        "with saving off the probes never saw each other's registers: the test cannot tell".into()
    })?;
    let saved = pair()?;
    println!("  saving on: {} / {}", saved[0], saved[1]);
    check(saved.iter().all(|e| *e == clean), || {
        format!("a probe saw another thread's vector registers: {saved:?}")
    })
}

/// Ring-3 probes each make up to 2,000 system calls with random numbers and arguments
/// (seeds differ): every probe ends, by finishing or by being ended for misuse; the kernel
/// keeps running, counts every call, and gets back every frame, endpoint and block.
fn random_system_calls() -> TestResult {
    const SEEDS: u64 = 128;
    probe(1)?; // warm-up: kernel tables reach their working size
    sched::yield_now();
    let before = mm::frames::free_frames();
    let mut calls = 0;
    let mut finished = 0;
    for seed in 1..=SEEDS {
        let (pid, thread) = process::start_probe(7, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .map_err(|e| format!("{e:?}"))?;
        thread.join();
        let record = process::record(pid).ok_or("probe left no record")?;
        let ended = record.ending.ok_or("probe left no ending")?;
        calls += record.abi_calls;
        if ended == process::Ending::Ran(Exit::Status(0)) {
            finished += 1;
        }
        check(
            matches!(
                ended,
                process::Ending::Ran(Exit::Status(0)) | process::Ending::Ran(Exit::Fault(_))
            ),
            || format!("seed {seed}: ended {ended:?}"),
        )?;
    }
    sched::yield_now();
    let after = mm::frames::free_frames();
    let left = crate::ipc::counts();
    println!(
        "  {SEEDS} probes made {calls} random system calls; {finished} answered all 2000, the others were ended for misuse; free frames {before} -> {after}"
    );
    check(after == before && left.endpoints + left.blocks == 0, || {
        format!("not reclaimed: frames {before} -> {after}, {left:?} left")
    })
}

fn bad_pointer_syscalls() -> TestResult {
    let ended = probe(1)?;
    check(ended == process::Ending::Ran(Exit::Status(0)), || {
        format!("case {ended} of the bad-pointer probe was not refused with BAD_ADDRESS")
    })
}

fn ring3_kernel_read() -> TestResult {
    let target = format!("CR2={:#x}", kernel_target());
    probe_is_killed(
        2,
        &[
            "page fault (#PF) in ring 3",
            &target,
            "P=1 (protection violation) W/R=0 (read) U/S=1 (user)",
        ],
    )
}

fn ring3_kernel_write() -> TestResult {
    probe_is_killed(
        3,
        &[
            "page fault (#PF) in ring 3",
            "P=1 (protection violation) W/R=1 (write) U/S=1 (user)",
        ],
    )
}

fn ring3_privileged() -> TestResult {
    probe_is_killed(4, &["general protection fault (#GP) in ring 3"])
}

fn unknown_syscall() -> TestResult {
    let ended = probe(5)?;
    let text = format!("{ended}");
    println!("  probe 5: {text}");
    check(text.contains("system call 999 does not exist"), || {
        format!("probe 5 ended {text}")
    })
}

/// The ring-3 runtime is not trusted to bound `chan_select`'s list: a probe asking for a
/// million endpoints is ended by the kernel, which copies at most 64 onto its stack
/// (before, it collected the whole list into a heap vector of the caller's size).
fn oversized_select() -> TestResult {
    let ended = probe(8)?;
    let text = format!("{ended}");
    println!("  probe 8: {text}");
    check(
        text.contains("chan_select over 1048576 endpoints (1 to 64)"),
        || format!("probe 8 ended {text}"),
    )
}

fn probe_reclaim() -> TestResult {
    probe(1)?; // warm-up: kernel tables reach their working size
    sched::yield_now();
    let before = mm::Usage::now();
    probe(1)?;
    probe(1)?;
    sched::yield_now();
    let after = mm::Usage::now();
    println!("  {}", before.compare(&after));
    check(after == before, || {
        format!("not reclaimed: {}", before.compare(&after))
    })?;
    // Killed programs give back every frame too (their records keep the fault reports,
    // so only frames are compared).
    for n in 2..=5 {
        probe(n)?;
    }
    sched::yield_now();
    let killed = mm::frames::free_frames();
    check(killed == before.free_frames, || {
        format!(
            "killed programs kept frames: {} free before, {killed} after",
            before.free_frames
        )
    })
}

// --- copy-on-write fork ----------------------------------------------------------------

fn vm_err(e: vm::MapError) -> String {
    format!("{e:?}")
}

fn counters() -> (u64, u64) {
    (
        vm::COW_FAULTS.load(Ordering::Relaxed),
        vm::PAGES_COPIED.load(Ordering::Relaxed),
    )
}

fn fork_isolates() -> TestResult {
    let baseline = mm::frames::free_frames();
    let base = vm::user_base();
    let data = base + 0x10_000u64;
    // A stack region at the top of a 1 MiB window, as a SIP's stack would sit.
    let stack = base + 0x100_000u64 - 2 * 4096u64;
    let page = |region: x86_64::VirtAddr, i: u64| region + i * 4096;
    {
        let mut parent = vm::AddressSpace::new().ok_or("no memory")?;
        parent.map_zeroed(data, 4).map_err(vm_err)?;
        parent.map_zeroed(stack, 2).map_err(vm_err)?;
        for i in 0..4 {
            parent.write_u64(page(data, i), 0xa0 + i).map_err(vm_err)?;
        }
        for i in 0..2 {
            parent
                .write_u64(page(stack, i) + 8u64, 0x5a0 + i)
                .map_err(vm_err)?;
        }
        let (faults0, copies0) = counters();
        let mut child = parent.fork().ok_or("fork: no memory")?;
        check(child.user_pages() == 6, || {
            "child does not map the parent's six pages".into()
        })?;
        // The child sees the parent's memory...
        for i in 0..4 {
            check(
                child.read_u64(page(data, i)).map_err(vm_err)? == 0xa0 + i,
                || "child reads differ".into(),
            )?;
        }
        // ...and its writes, stack included, stay its own.
        child.write_u64(page(data, 0), 0xc0).map_err(vm_err)?;
        child.write_u64(page(data, 2), 0xc2).map_err(vm_err)?;
        child
            .write_u64(page(stack, 1) + 8u64, 0xc5)
            .map_err(vm_err)?;
        let (faults1, copies1) = counters();
        check(faults1 - faults0 == 3 && copies1 - copies0 == 3, || {
            format!(
                "child writes: {} faults, {} copies (want 3, 3)",
                faults1 - faults0,
                copies1 - copies0
            )
        })?;
        check(
            parent.read_u64(page(data, 0)).map_err(vm_err)? == 0xa0,
            || "child write reached the parent".into(),
        )?;
        check(
            parent.read_u64(page(stack, 1) + 8u64).map_err(vm_err)? == 0x5a1,
            || "child stack write reached the parent".into(),
        )?;
        // Page 0 is now the parent's alone: its write faults once but copies nothing.
        parent.write_u64(page(data, 0), 0xa9).map_err(vm_err)?;
        let (faults2, copies2) = counters();
        check(faults2 - faults1 == 1 && copies2 == copies1, || {
            "last holder's write copied a page".into()
        })?;
        // Page 1 is still shared: the parent's write copies it.
        parent.write_u64(page(data, 1), 0xa8).map_err(vm_err)?;
        check(
            child.read_u64(page(data, 1)).map_err(vm_err)? == 0xa1,
            || "parent write reached the child".into(),
        )?;
        check(
            child.read_u64(page(data, 0)).map_err(vm_err)? == 0xc0,
            || "child lost its write".into(),
        )?;
        check(
            parent.read_u64(page(data, 0)).map_err(vm_err)? == 0xa9,
            || "parent lost its write".into(),
        )?;
        drop(child);
        drop(parent);
    }
    let after = mm::frames::free_frames();
    check(after == baseline, || {
        format!("free frames {after} after both spaces ended, baseline {baseline}")
    })
}

fn fork_copies_only_written() -> TestResult {
    const PAGES: u64 = 1024; // 4 MiB
    const WRITTEN: u64 = 16;
    let baseline = mm::frames::free_frames();
    let region = vm::user_base() + 0x4000_0000u64;
    {
        let mut parent = vm::AddressSpace::new().ok_or("no memory")?;
        parent.map_zeroed(region, PAGES as usize).map_err(vm_err)?;
        for i in 0..PAGES {
            parent.write_u64(region + i * 4096, i).map_err(vm_err)?;
        }
        let before_fork = mm::frames::free_frames();
        let start = cycles::start();
        let mut child = parent.fork().ok_or("fork: no memory")?;
        let fork_cycles = cycles::stop() - start;
        let fork_frames = before_fork - mm::frames::free_frames();
        let (_, copies0) = counters();
        let start = cycles::start();
        for i in 0..WRITTEN {
            child
                .write_u64(region + i * 64 * 4096, 0xdead)
                .map_err(vm_err)?;
        }
        let write_cycles = cycles::stop() - start;
        // The same writes again hit private pages: no fault. The difference is the fault.
        let start = cycles::start();
        for i in 0..WRITTEN {
            child
                .write_u64(region + i * 64 * 4096, 0xdead)
                .map_err(vm_err)?;
        }
        let plain_cycles = cycles::stop() - start;
        let (_, copies1) = counters();
        check(copies1 - copies0 == WRITTEN, || {
            format!("{} pages copied for {WRITTEN} written", copies1 - copies0)
        })?;
        let child_frames = before_fork - mm::frames::free_frames();
        check(child_frames == fork_frames + WRITTEN, || {
            format!(
                "child holds {child_frames} new frames; want {fork_frames} page tables + {WRITTEN} copies"
            )
        })?;
        for i in 0..PAGES {
            let want = if i % 64 == 0 && i / 64 < WRITTEN {
                0xdead
            } else {
                i
            };
            check(
                child.read_u64(region + i * 4096).map_err(vm_err)? == want,
                || format!("child page {i} wrong"),
            )?;
            check(
                parent.read_u64(region + i * 4096).map_err(vm_err)? == i,
                || format!("parent page {i} changed"),
            )?;
        }
        println!(
            "  fork of {PAGES} pages: {fork_cycles} cycles ({} per page), {fork_frames} frames for page tables; \
             copy-on-write fault (fault + copy + invlpg): {} cycles ({WRITTEN} faults, minus the same writes without a fault) \
             (TSC; emulated cost under TCG)",
            fork_cycles / PAGES,
            write_cycles.saturating_sub(plain_cycles) / WRITTEN
        );
        drop(child);
        drop(parent);
    }
    let after = mm::frames::free_frames();
    check(after == baseline, || {
        format!("free frames {after} after both spaces ended, baseline {baseline}")
    })
}

// --- memory ----------------------------------------------------------------------------

fn frames() -> TestResult {
    let baseline = mm::frames::free_frames();
    let mut blocks: Vec<FrameBlock> = Vec::new();
    for order in 0..=6 {
        for _ in 0..3 {
            let block = FrameBlock::alloc(order).ok_or("out of frames")?;
            blocks.push(block);
        }
    }
    let used: u64 = blocks.iter().map(|b| b.len() as u64 / mm::FRAME_SIZE).sum();
    check(mm::frames::free_frames() == baseline - used, || {
        "free-frame count does not match the blocks handed out".into()
    })?;
    let mut spans: Vec<(u64, u64)> = blocks
        .iter()
        .map(|b| (b.start().as_u64(), b.start().as_u64() + b.len() as u64))
        .collect();
    spans.sort_unstable();
    check(spans.windows(2).all(|w| w[0].1 <= w[1].0), || {
        "two frame blocks overlap".into()
    })?;
    for (i, block) in blocks.iter_mut().enumerate() {
        check(block.start().as_u64() % block.len() as u64 == 0, || {
            "block not aligned to its size".into()
        })?;
        let words = block.as_mut_slice();
        check(words.iter().all(|&w| w == 0), || "block not zeroed".into())?;
        words.fill(i as u64 * 0x0101_0101);
    }
    for (i, block) in blocks.iter_mut().enumerate() {
        let expected = i as u64 * 0x0101_0101;
        check(block.as_mut_slice().iter().all(|&w| w == expected), || {
            format!("block {i} lost its contents")
        })?;
    }
    drop(blocks);
    let after = mm::frames::free_frames();
    check(after == baseline, || {
        format!("free frames {after} after freeing, baseline {baseline}")
    })
}

fn heap() -> TestResult {
    let (allocated_before, _) = mm::heap::usage();
    let big: Vec<u64> = (0..(1u64 << 20)).collect(); // 8 MiB
    let sum: u64 = big.iter().sum();
    check(sum == (1u64 << 20) * ((1u64 << 20) - 1) / 2, || {
        "wrong sum".into()
    })?;
    let small: Vec<Box<[u8; 48]>> = (0..10_000).map(|i| Box::new([i as u8; 48])).collect();
    check(
        small.iter().enumerate().all(|(i, b)| b[47] == i as u8),
        || "small allocations overlap".into(),
    )?;
    let (allocated_during, claimed) = mm::heap::usage();
    println!(
        "  heap: {} KiB allocated of {} KiB claimed",
        allocated_during >> 10,
        claimed >> 10
    );
    drop(big);
    drop(small);
    let (allocated_after, _) = mm::heap::usage();
    check(allocated_after == allocated_before, || {
        format!("heap holds {allocated_after} bytes after freeing, {allocated_before} before")
    })
}

fn exhaustion() -> TestResult {
    let baseline = mm::frames::free_frames();
    let mut blocks = Vec::new();
    while let Some(block) = FrameBlock::alloc(kernel_core::buddy::MAX_ORDER) {
        blocks.push(block);
    }
    let mut small = Vec::new();
    while let Some(block) = FrameBlock::alloc(0) {
        small.push(block);
    }
    let empty = mm::frames::free_frames();
    let took = blocks.len();
    drop(blocks);
    drop(small);
    let after = mm::frames::free_frames();
    println!("  took {took} 4 MiB blocks and every remaining frame, then gave them back");
    check(empty == 0, || {
        format!("{empty} frames left after exhausting memory")
    })?;
    check(after == baseline, || {
        format!("free frames {after} after returning all, baseline {baseline}")
    })
}

// --- smp -------------------------------------------------------------------------------

use crate::arch::smp;

fn two_processors() -> TestResult {
    check(smp::online() >= 2, || {
        format!(
            "{} processor(s) running: boot with --smp 2 or more",
            smp::online()
        )
    })
}

fn every_processor_answers() -> TestResult {
    two_processors()?;
    for cpu in 0..smp::online() {
        let before = smp::report()[cpu].calls_served;
        let answer = smp::call_on(cpu, smp::apic_id_here, 0);
        check(answer == smp::apic_ids()[cpu] as u64, || {
            format!(
                "CPU {cpu} answered from local APIC {answer}, expected {}",
                smp::apic_ids()[cpu]
            )
        })?;
        let served = smp::report()[cpu].calls_served - before;
        // A call to oneself runs in place, without an IPI.
        let expected = u64::from(cpu != 0);
        check(served == expected, || {
            format!("CPU {cpu} served {served} calls for one call, expected {expected}")
        })?;
    }
    Ok(())
}

/// Runs on CPU 1 and calls CPU 0, which is waiting for this very call to return.
fn call_cpu0(_: u64) -> u64 {
    smp::call_on(0, smp::apic_id_here, 0) + 1000
}

fn call_back() -> TestResult {
    two_processors()?;
    for _ in 0..100 {
        let answer = smp::call_on(1, call_cpu0, 0);
        let expected = smp::apic_ids()[0] as u64 + 1000;
        check(answer == expected, || {
            format!("the nested call answered {answer}, expected {expected}")
        })?;
    }
    Ok(())
}

fn read_stack_word(addr: u64) -> u64 {
    mm::stacks::read_word(addr).unwrap_or(u64::MAX)
}

const OLD_MARK: u64 = 0x0bad_cafe_0000_0001;
const NEW_MARK: u64 = 0x600d_f00d_0000_0002;

/// Every other processor reads a stack page (caching its translation); CPU 0 unmaps it,
/// freeing its frame, and maps a new frame at the same address; each reads again. Returns
/// the second reads, by CPU (1, 2, …).
fn reread_after_remap(shootdowns: bool) -> Result<Vec<u64>, String> {
    let one_frame = || FrameBlock::alloc(0).ok_or_else(|| String::from("no frame"));
    let mut old = mm::stacks::GuardedStack::new(one_frame()?).ok_or("no stack window")?;
    let addr = old.bottom_address();
    old.as_mut_slice()[0] = OLD_MARK;
    for cpu in 1..smp::online() {
        let first = smp::call_on(cpu, read_stack_word, addr);
        check(first == OLD_MARK, || {
            format!("CPU {cpu} read {first:#x} at {addr:#x}, expected {OLD_MARK:#x}")
        })?;
    }
    // Taken before the old stack goes, so the new mapping gets a different frame.
    let frames = one_frame()?;
    smp::set_shootdowns(shootdowns);
    drop(old);
    let new = mm::stacks::GuardedStack::new(frames);
    smp::set_shootdowns(true);
    let mut new = new.ok_or("no stack window")?;
    check(new.bottom_address() == addr, || {
        format!(
            "the new stack is at {:#x}, not in the window just freed ({addr:#x})",
            new.bottom_address()
        )
    })?;
    new.as_mut_slice()[0] = NEW_MARK;
    Ok((1..smp::online())
        .map(|cpu| smp::call_on(cpu, read_stack_word, addr))
        .collect())
}

fn shootdown_prevents_stale_reads() -> TestResult {
    two_processors()?;
    let shootdowns_before = smp::SHOOTDOWNS.load(Ordering::Relaxed);
    let without = reread_after_remap(false)?;
    check(without.iter().all(|&w| w == OLD_MARK), || {
        format!(
            "with shootdowns off the other processors read {without:#x?}, not the freed frame's {OLD_MARK:#x}: this test could not see a missing shootdown"
        )
    })?;
    println!(
        "ktest smp: with shootdowns off, CPU 1 read {:#x} from a frame already freed (a stale translation; {} processor(s) did)",
        without[0],
        without.len()
    );
    let with = reread_after_remap(true)?;
    check(with.iter().all(|&w| w == NEW_MARK), || {
        format!(
            "with shootdowns on the other processors read {with:#x?}: a stale translation survived, expected {NEW_MARK:#x}"
        )
    })?;
    let shootdowns = smp::SHOOTDOWNS.load(Ordering::Relaxed) - shootdowns_before;
    check(shootdowns >= 1, || {
        String::from("no shootdown was counted for the unmapping")
    })?;
    println!(
        "ktest smp: with shootdowns on, every other processor read {:#x} (the new frame); {shootdowns} shootdown(s) counted",
        with[0]
    );
    Ok(())
}

/// A thread on CPU 1 exits and CPU 1 frees its stack, whose shootdown waits for this
/// processor's answer; this processor holds the answer back (interrupts masked) and, while
/// the call is pending, asks whether every exited thread is reaped: it must not be (the
/// stack is in neither the zombie list nor freed). Ending a run, or measuring memory, on
/// that answer once lost the stack's frames.
fn stack_in_flight_is_not_reaped() -> TestResult {
    two_processors()?;
    sched::settle();
    let before = mm::Usage::now();
    // Masked from before the thread exists: no tick here can reap it in CPU 1's place.
    let watched = x86_64::instructions::interrupts::without_interrupts(|| {
        let thread = sched::spawn_on("exits-on-cpu1", 1, || {}).map_err(|e| format!("{e:?}"))?;
        let me = smp::current_cpu();
        let start = cycles::now();
        // The thread has ended and a call waits here: nothing else runs in this group, so
        // it is the shootdown of the thread's stack. Bounded: CPU 1 gets there within a
        // few of its ticks.
        while !(thread.is_finished() && smp::call_pending(me)) {
            if cycles::now() - start > 20_000_000_000 {
                return Ok((thread, None));
            }
            core::hint::spin_loop();
        }
        Ok::<_, String>((thread, Some(sched::all_reaped())))
    });
    let (thread, seen) = watched?;
    thread.join();
    sched::settle();
    match seen {
        None => return Err("CPU 1 never asked this processor to answer a shootdown".into()),
        Some(true) => {
            return Err(
                "a stack in the middle of its shootdown counted as reaped: a run could end, or memory be measured, before its frames come back".into(),
            );
        }
        Some(false) => {}
    }
    let after = mm::Usage::now();
    check(after.free_frames == before.free_frames, || {
        format!("not reclaimed: {}", before.compare(&after))
    })?;
    println!(
        "ktest smp: CPU 1's stack waited in its shootdown for this processor's answer and counted as not yet reaped; frames back after the answer"
    );
    Ok(())
}

/// The user space CPU 1 loads in the user-space shootdown test (its top-level table).
static SPACE_ON_CPU1: AtomicU64 = AtomicU64::new(0);
/// Written by CPU 1 through the translation it holds, after the fork.
const STRAY_MARK: u64 = 0x5742_4159_0000_0003;

/// The page the user-space shootdown test shares between a space and its fork.
fn shared_page() -> u64 {
    vm::user_base().as_u64()
}

/// Calls run on CPU 1: a write and a read of the shared page in the loaded space.
fn write_on_cpu1(value: u64) -> u64 {
    vm::access_through_tlb(
        SPACE_ON_CPU1.load(Ordering::SeqCst),
        shared_page(),
        Some(value),
    )
}

fn read_on_cpu1(_: u64) -> u64 {
    vm::access_through_tlb(SPACE_ON_CPU1.load(Ordering::SeqCst), shared_page(), None)
}

/// What each party saw in [`fork_while_cpu1_writes`]: CPU 1's read after the fork and
/// the parent's copy-on-write, then (after CPU 1 wrote [`STRAY_MARK`]) the child's word
/// and the parent's.
struct ForkViews {
    cpu1_read: u64,
    child: u64,
    parent: u64,
}

/// CPU 1 loads a space and writes its page (caching a writable translation); CPU 0 forks
/// the space (the page becomes copy-on-write in both) and writes the parent's page, which
/// copies it to a new frame; CPU 1 reads, then writes [`STRAY_MARK`], through what it
/// holds. With `shootdowns` off for the fork and the copy, CPU 1's translation still
/// points at the frame now the child's alone.
fn fork_while_cpu1_writes(shootdowns: bool) -> Result<ForkViews, String> {
    let page = x86_64::VirtAddr::new(shared_page());
    let mut parent = vm::AddressSpace::new().ok_or("no frame for a space")?;
    parent
        .map_zeroed(page, 1)
        .map_err(|e| format!("mapping the page: {e:?}"))?;
    SPACE_ON_CPU1.store(parent.l4().as_u64(), Ordering::SeqCst);
    smp::call_on(1, write_on_cpu1, OLD_MARK);
    smp::set_shootdowns(shootdowns);
    let child = parent.fork();
    let copied = child.as_ref().map(|_| parent.write_u64(page, NEW_MARK));
    smp::set_shootdowns(true);
    let mut child = child.ok_or("no memory for the fork")?;
    copied
        .unwrap_or(Ok(()))
        .map_err(|e| format!("the parent's write: {e:?}"))?;
    let cpu1_read = smp::call_on(1, read_on_cpu1, 0);
    smp::call_on(1, write_on_cpu1, STRAY_MARK);
    let views = ForkViews {
        cpu1_read,
        child: child.read_u64(page).map_err(|e| format!("{e:?}"))?,
        parent: parent.read_u64(page).map_err(|e| format!("{e:?}"))?,
    };
    // The parent goes last: dropping it takes it off CPU 1 too.
    drop(child);
    drop(parent);
    Ok(views)
}

/// The user-space half of the shootdown protocol: a fork makes a page copy-on-write
/// while another processor holds a writable translation of it. Without the flush, that
/// processor's write lands in the child's page (one space writing another's memory);
/// with it, in the parent's own copy.
fn user_shootdown_keeps_forks_apart() -> TestResult {
    two_processors()?;
    sched::settle();
    let before = mm::Usage::now();
    let shootdowns = vm::USER_SHOOTDOWNS.load(Ordering::Relaxed);
    let without = fork_while_cpu1_writes(false)?;
    check(
        without.cpu1_read == OLD_MARK && without.child == STRAY_MARK,
        || {
            format!(
                "with shootdowns off CPU 1 read {:#x} and the child holds {:#x}: expected {OLD_MARK:#x} and {STRAY_MARK:#x} (a stale translation); this test could not see a missing shootdown",
                without.cpu1_read, without.child
            )
        },
    )?;
    check(
        vm::USER_SHOOTDOWNS.load(Ordering::Relaxed) == shootdowns,
        || String::from("a user-space shootdown was counted while they were off"),
    )?;
    println!(
        "ktest smp: with user-space shootdowns off, CPU 1 read {:#x} after the fork and its write landed in the child's page ({:#x}): one space wrote another's memory",
        without.cpu1_read, without.child
    );
    let with = fork_while_cpu1_writes(true)?;
    check(
        with.cpu1_read == NEW_MARK && with.child == OLD_MARK && with.parent == STRAY_MARK,
        || {
            format!(
                "with shootdowns on CPU 1 read {:#x}, the child holds {:#x} and the parent {:#x}: expected {NEW_MARK:#x}, {OLD_MARK:#x} and {STRAY_MARK:#x}",
                with.cpu1_read, with.child, with.parent
            )
        },
    )?;
    let counted = vm::USER_SHOOTDOWNS.load(Ordering::Relaxed) - shootdowns;
    // The fork's write protection and the copy: one flush of CPU 1 each.
    check(counted == 2, || {
        format!("{counted} user-space shootdowns counted for a fork and a copy, expected 2")
    })?;
    println!(
        "ktest smp: with them on, CPU 1 read the parent's copy ({:#x}), its write stayed in the parent's space and the child kept {:#x}; {counted} user-space shootdowns",
        with.cpu1_read, with.child
    );
    let after = mm::Usage::now();
    check(after.free_frames == before.free_frames, || {
        format!("not reclaimed: {}", before.compare(&after))
    })
}

// --- stress ----------------------------------------------------------------------------

/// What happens to one Echo pair of the stress run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Both run to the end: the client's round trips, then Bye.
    Lives,
    /// The client is killed that many ticks in, racing its own sends.
    ClientKilled(u64),
    /// The server is killed that many ticks in: the client is told and exits 3.
    ServerKilled(u64),
}

/// The stress run: pairs that live (seed, round trips) and pairs whose client or server is
/// killed mid-run (rounds they never reach); `true`: the pair is split over two processors
/// (server pinned to CPU 1, client to CPU 0: every message crosses), else the scheduler
/// places and moves both.
const STRESS_PLAN: &[(u32, u32, Fate, bool)] = &[
    (1, 300, Fate::Lives, true),
    (2, 300, Fate::Lives, true),
    (3, 300, Fate::Lives, true),
    (4, 300, Fate::Lives, false),
    (5, 300, Fate::Lives, false),
    (6, 300, Fate::Lives, false),
    (7, 1_000_000, Fate::ClientKilled(40), true),
    (8, 1_000_000, Fate::ClientKilled(90), false),
    (9, 1_000_000, Fate::ServerKilled(60), true),
];

/// Starts every pair of `plan` (round trips divided by `scale`), held until its channel
/// exists, kills on schedule, waits for all and checks each ending.
fn run_stress_plan(plan: &[(u32, u32, Fate, bool)], scale: u32) -> TestResult {
    let mut pairs = Vec::new();
    for &(seed, rounds, fate, split) in plan {
        let rounds = if fate == Fate::Lives {
            rounds / scale
        } else {
            rounds
        };
        let pair = crate::bench::stress_pair(seed, rounds, split)?;
        pair.release();
        pairs.push((seed, fate, pair));
    }
    // Kills in the order of their ticks, racing the sends of every pair.
    let mut kills: Vec<(u64, process::Pid)> = pairs
        .iter()
        .filter_map(|(_, fate, pair)| match *fate {
            Fate::Lives => None,
            Fate::ClientKilled(at) => Some((at, pair.client.0)),
            Fate::ServerKilled(at) => Some((at, pair.server.0)),
        })
        .collect();
    kills.sort_unstable();
    let start = time::ticks();
    for (at, pid) in kills {
        let now = time::ticks() - start;
        if at > now {
            sched::sleep_ticks(at - now);
        }
        check(process::kill(pid), || {
            format!("kill refused live pid {pid}")
        })?;
    }
    for (seed, fate, pair) in &pairs {
        pair.join();
        let (server, client) = (ending(pair.server.0), ending(pair.client.0));
        let status = |code| Some(process::Ending::Ran(Exit::Status(code)));
        let killed = Some(process::Ending::Ran(Exit::Killed));
        let expected = match fate {
            Fate::Lives => (status(0), status(0)),
            // The server sees its client go away and exits 0.
            Fate::ClientKilled(_) => (status(0), killed.clone()),
            // The client is told its server closed and exits 3.
            Fate::ServerKilled(_) => (killed.clone(), status(3)),
        };
        check((server.clone(), client.clone()) == expected, || {
            format!(
                "pair {seed} ({fate:?}): server ended {server:?}, client {client:?}; expected {expected:?}"
            )
        })?;
    }
    Ok(())
}

/// Many SIP pairs exchanging checked messages on every processor while kills race with
/// sends; each processor must run threads for at least a quarter of the run, and memory
/// must be back to its baseline exactly.
fn stress_pairs() -> TestResult {
    two_processors()?;
    let cpus = smp::online();
    // A warm-up run (tables reach their working size), then the measured one.
    run_stress_plan(STRESS_PLAN, 1)?;
    sched::settle();
    // Taken before the baseline: it is still alive at the end.
    let ran_before: Vec<u64> = (0..cpus).map(|c| sched::processor_usage(c).0).collect();
    let before = mm::Usage::now();
    let messages = crate::ipc::MESSAGES.load(Ordering::Relaxed);
    let crossed = crate::ipc::RECEIVED_ELSEWHERE.load(Ordering::Relaxed);
    let ipis = smp::IPIS_SENT.load(Ordering::Relaxed);
    let kicks = smp::KICKS_SENT.load(Ordering::Relaxed);
    let (migrations, steals) = sched::migrations();
    let started = cycles::start();
    run_stress_plan(STRESS_PLAN, 1)?;
    let elapsed = cycles::stop() - started;
    sched::settle();
    let after = mm::Usage::now();
    let messages = crate::ipc::MESSAGES.load(Ordering::Relaxed) - messages;
    let crossed = crate::ipc::RECEIVED_ELSEWHERE.load(Ordering::Relaxed) - crossed;
    let (m, st) = sched::migrations();
    println!(
        "  {} pairs, {elapsed} cycles: {messages} messages, {crossed} received on another processor than they were sent from; {} IPIs ({} to reschedule); {} migrations ({} steals)",
        STRESS_PLAN.len(),
        smp::IPIS_SENT.load(Ordering::Relaxed) - ipis,
        smp::KICKS_SENT.load(Ordering::Relaxed) - kicks,
        m - migrations,
        st - steals,
    );
    for (cpu, before) in ran_before.iter().enumerate() {
        let ran = sched::processor_usage(cpu).0 - before;
        println!(
            "  CPU {cpu} ran threads {ran} cycles ({}% of the run)",
            ran * 100 / elapsed.max(1)
        );
        check(ran * 4 >= elapsed, || {
            format!("CPU {cpu} ran threads for {ran} of {elapsed} cycles, under a quarter")
        })?;
    }
    // The split pairs' messages all cross (about half of all).
    check(crossed * 4 >= messages, || {
        format!("only {crossed} of {messages} messages crossed processors")
    })?;
    println!("  {}", before.compare(&after));
    check(after == before, || {
        format!("not reclaimed: {}", before.compare(&after))
    })
}
