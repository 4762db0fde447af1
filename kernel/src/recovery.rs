//! The supervisor: restarts system-manifest entries whose restart policy says so, keeps
//! their generation numbers, and injects the faults `--inject` asks for.
//!
//! The supervisor is part of the kernel, not a privileged SIP: a restart re-grants
//! devices (after the kernel quiesced them), re-creates the entry's channels from the
//! system manifest and counts against the entry's policy — all kernel mechanisms already,
//! so doing it here adds no ABI operation and no power a SIP could misuse, and a
//! supervisor that cannot itself crash. The policy (when, how often, how long to wait) is
//! pure logic in `bootpkg::recovery`, tested on the host.
//!
//! When an incarnation ends, [`on_end`] decides *before* its endpoints close, so a peer
//! that wakes to `PEER_CLOSED` and asks for the endpoint again (`chan_initial`) waits for
//! the new incarnation's channel instead of being told `NOT_FOUND`. Each restart runs on a
//! short-lived kernel thread that sleeps out the backoff and then starts the entry like an
//! on-request start: fresh channels to the running peers (a peer that is itself being
//! restarted gets its channel when it starts), devices claimed again.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bootpkg::recovery::{Decision, History};
use bootpkg::{BootPackage, InjectKind, Injection, RestartPolicy};

use crate::arch::{cycles, irq::IrqMutex};
use crate::process::{self, Pid, StartError};
use crate::{println, sched, time};

/// What the supervisor keeps per system-manifest entry.
struct Entry {
    policy: Option<RestartPolicy>,
    history: History,
    /// Incarnations started so far (the running one's generation).
    generation: u32,
    /// A restart is scheduled or under way.
    pending: bool,
    /// When (cycles) the incarnation a pending restart replaces failed, until the new one
    /// first answers a client.
    failed_at: Option<u64>,
    /// Cycles from its latest failure to the new incarnation's first reply.
    restored_in: Option<u64>,
}

static ENTRIES: IrqMutex<Vec<Entry>> = IrqMutex::new(Vec::new());

/// An `--inject` with its count of calls so far.
struct Armed {
    injection: Injection,
    calls: AtomicU64,
    fired: AtomicBool,
}

static INJECTIONS: spin::Once<Vec<Armed>> = spin::Once::new();

/// Whether any `--inject` is in force (checked at every kernel call, so one load).
static INJECTING: AtomicBool = AtomicBool::new(false);

/// Whether kernel calls must be counted for `--inject` (see [`inject`]).
pub fn injecting() -> bool {
    INJECTING.load(Ordering::Relaxed)
}

/// Incarnations restarted, and restarts given up (a policy's limit reached, or a restart
/// that could not be made).
pub static RESTARTS: AtomicU64 = AtomicU64::new(0);
pub static GAVE_UP: AtomicU64 = AtomicU64::new(0);

/// Most restore times kept for the summary (each is one restart).
const MAX_RESTORES: usize = 256;
/// Cycles from each failure to the new incarnation's first reply to a client.
static RESTORES: IrqMutex<Vec<u64>> = IrqMutex::new(Vec::new());

/// Ticks a restart waits between attempts while the previous incarnation finishes.
const RETRY_TICKS: u64 = 1;
/// Attempts before a restart gives up on the previous incarnation finishing.
const MAX_ATTEMPTS: u32 = 1_000;

/// Reads the restart policies and injections of the boot package; refuses policies that
/// name no entry or make no sense (the runner checked them; a package built some other
/// way is checked again).
pub fn init(package: &BootPackage) -> Result<(), String> {
    let mut entries = Vec::new();
    entries
        .try_reserve_exact(package.sips.len())
        .map_err(|_| String::from("no memory for the supervisor's table"))?;
    for _ in &package.sips {
        entries.push(Entry {
            policy: None,
            history: History::new(),
            generation: 0,
            pending: false,
            failed_at: None,
            restored_in: None,
        });
    }
    for policy in &package.restarts {
        let Some(entry) = entries.get_mut(policy.sip as usize) else {
            return Err(format!(
                "a restart policy names entry #{}, which does not exist",
                policy.sip
            ));
        };
        policy.check().map_err(|why| {
            format!(
                "the restart policy of `{}`: {why}",
                package.sips[policy.sip as usize]
            )
        })?;
        entry.policy = Some(*policy);
        if policy.answer_within_ms.is_some() {
            WATCHDOG.store(true, Ordering::Relaxed);
        }
    }
    *ENTRIES.lock() = entries;
    RESTORES
        .lock()
        .try_reserve_exact(MAX_RESTORES)
        .map_err(|_| String::from("no memory for the supervisor's table"))?;
    INJECTING.store(!package.config.injections.is_empty(), Ordering::Relaxed);
    INJECTIONS.call_once(|| {
        package
            .config
            .injections
            .iter()
            .map(|injection| Armed {
                injection: injection.clone(),
                calls: AtomicU64::new(0),
                fired: AtomicBool::new(false),
            })
            .collect()
    });
    Ok(())
}

/// A new incarnation of `entry` is being made (its record exists): its generation (1 for
/// the first). A pending restart is done from here on: the new incarnation counts as
/// running, and if it fails before the restart thread has even returned, that failure
/// marks a restart pending again.
pub fn next_generation(entry: u32) -> u32 {
    let mut entries = ENTRIES.lock();
    entries.get_mut(entry as usize).map_or(1, |e| {
        e.generation += 1;
        e.pending = false;
        e.generation
    })
}

/// Called at every kernel call of a SIP called `name`: the fault to inject now, if an
/// `--inject` says so, with its report.
pub fn inject(name: &str) -> Option<(InjectKind, String)> {
    let armed = INJECTIONS.get()?;
    let mut fire = None;
    // Every injection for this SIP counts every call, whichever fires.
    for a in armed.iter().filter(|a| a.injection.sip == name) {
        let calls = a.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if calls == a.injection.at && !a.fired.swap(true, Ordering::Relaxed) {
            fire = Some((a.injection.kind, calls));
        }
    }
    fire.map(|(kind, calls)| {
        (
            kind,
            format!(
                "{} injected at kernel call {calls} of `{name}` (counted across incarnations)",
                match kind {
                    InjectKind::Crash => "crash",
                    InjectKind::Hang => "hang",
                }
            ),
        )
    })
}

/// Whether some policy has a watchdog (`answer-within-ms`).
static WATCHDOG: AtomicBool = AtomicBool::new(false);

/// Most entries the watchdog looks at per check (it copies them out of the table first).
const WATCHED: usize = 16;

/// The watchdog, from the timer interrupt: every 10 ticks, each running incarnation whose
/// policy has `answer-within-ms` and that has left a message waiting in one of its
/// endpoints (or owes a reply) while making no kernel call and waiting on nobody for that
/// long is killed (and then restarted by its policy, as any failure). Takes each lock
/// alone; allocates nothing; walks the channel table only for a SIP already quiet.
pub fn watchdog(now: u64) {
    if !WATCHDOG.load(Ordering::Relaxed) || now % 10 != 0 {
        return;
    }
    let mut watched = [(0u32, 0u64); WATCHED];
    let mut count = 0;
    for (index, e) in ENTRIES.lock().iter().enumerate() {
        if let Some(ms) = e.policy.and_then(|p| p.answer_within_ms)
            && !e.pending
            && count < WATCHED
        {
            watched[count] = (
                index as u32,
                ms.saturating_mul(time::TICK_HZ).div_ceil(1_000),
            );
            count += 1;
        }
    }
    for &(entry, limit) in &watched[..count] {
        let Some(pid) = process::running_entry(entry) else {
            continue;
        };
        // Quiet: no kernel call for that long, and not waiting in the kernel on others
        // (a file system waiting for a hung driver is not hung itself).
        if process::quiet_ticks(pid, now) > limit && crate::ipc::has_waiting(pid) {
            process::kill_hung(pid);
        }
    }
}

/// Whether a restart of `entry` is scheduled or under way.
pub fn restarting(entry: u32) -> bool {
    ENTRIES
        .lock()
        .get(entry as usize)
        .is_some_and(|e| e.pending)
}

/// The system-manifest entry at the other end of the endpoint `pid`'s entry calls `name`.
fn peer_entry(pid: Pid, name: &str) -> Option<u32> {
    let entry = process::record(pid).and_then(|r| r.entry)?;
    crate::boot_package().channels_of(entry).find_map(|c| {
        if c.exporter.sip == entry && c.exporter.endpoint == name {
            Some(c.importer.sip)
        } else if c.importer.sip == entry && c.importer.endpoint == name {
            Some(c.exporter.sip)
        } else {
            None
        }
    })
}

/// Whether the endpoint `pid`'s system manifest calls `name` may still be handed over by
/// a start: the SIP at its other end is an `on-request` entry, a SIP with the `start` power
/// runs (and may start it, making the channel), and the system is not shutting down. A SIP
/// ending wakes the waiters to ask again.
/// `chan_initial` with `INITIAL_WAIT` waits while this holds.
pub fn peer_may_be_started(pid: Pid, name: &str) -> bool {
    let Some(peer) = peer_entry(pid, name) else {
        return false;
    };
    crate::boot_package().on_request.contains(&peer)
        && process::shutdown_status().is_none()
        && process::a_starter_runs()
}

/// Whether the endpoint `pid`'s system manifest calls `name` may still come (again): the
/// SIP at its other end has a restart policy the supervisor has not given up on, and is
/// being restarted or is still running (it may have closed its end and be about to fail).
/// `chan_initial` waits while this holds.
pub fn peer_may_return(pid: Pid, name: &str) -> bool {
    let Some(peer) = peer_entry(pid, name) else {
        return false;
    };
    let (supervised, pending) = {
        let entries = ENTRIES.lock();
        let Some(e) = entries.get(peer as usize) else {
            return false;
        };
        let supervised = e
            .policy
            .is_some_and(|p| p.mode != bootpkg::RestartMode::Never)
            && !e.history.gave_up();
        (supervised, e.pending)
    };
    supervised && (pending || process::running_entry(peer).is_some())
}

/// What the supervisor does after an incarnation of an entry ended.
pub enum Verdict {
    /// Nothing: the policy does not restart it (or the SIP is no entry).
    Stay,
    /// A restart is scheduled after `delay_ms`, as generation `next`.
    Restart { delay_ms: u64, next: u32 },
    /// The policy's limit is reached.
    GaveUp { restarts: u32, window_ms: u64 },
}

/// Incarnation `generation` of `entry` ended after running `ran_ms`; `failed` unless it
/// exited with status 0. Decides (and marks a restart pending) before the caller closes
/// its endpoints.
pub fn on_end(entry: u32, ran_ms: u64, failed: bool) -> Verdict {
    let mut entries = ENTRIES.lock();
    let Some(e) = entries.get_mut(entry as usize) else {
        return Verdict::Stay;
    };
    let Some(policy) = e.policy else {
        return Verdict::Stay;
    };
    let now_ms = time::ticks() * 1_000 / time::TICK_HZ;
    match e.history.after_end(&policy, now_ms, ran_ms, failed) {
        Decision::Stay => Verdict::Stay,
        Decision::GiveUp { restarts } => {
            GAVE_UP.fetch_add(1, Ordering::Relaxed);
            Verdict::GaveUp {
                restarts,
                window_ms: policy.window_ms,
            }
        }
        Decision::Restart { delay_ms } => {
            e.pending = true;
            e.failed_at = Some(cycles::stop());
            Verdict::Restart {
                delay_ms,
                next: e.generation + 1,
            }
        }
    }
}

/// Starts the thread that restarts `entry` after `delay_ms`. If no thread can be made the
/// restart is given up, and said so.
pub fn schedule(entry: u32, delay_ms: u64) {
    let name: &'static str = &crate::boot_package().sips[entry as usize];
    let thread = format!("supervisor:{name}");
    if sched::spawn(thread, move || restart(entry, name, delay_ms)).is_err() {
        give_up_pending(entry, name, "no memory for the supervisor's restart thread");
    }
}

/// Ends a pending restart of `entry` without one.
fn give_up_pending(entry: u32, name: &str, why: &str) {
    if let Some(e) = ENTRIES.lock().get_mut(entry as usize) {
        e.pending = false;
        e.failed_at = None;
        e.history.give_up();
    }
    // Peers waiting for its endpoints learn that none will come.
    crate::ipc::wake_waiters();
    process::note_unrecovered();
    GAVE_UP.fetch_add(1, Ordering::Relaxed);
    println!("[supervisor] gave up restarting {name}: {why}");
}

/// The restart thread: waits out the backoff, then starts the entry again, waiting while
/// a peer it needs is itself being restarted.
fn restart(entry: u32, name: &str, delay_ms: u64) {
    let ticks = (delay_ms.saturating_mul(time::TICK_HZ))
        .div_ceil(1_000)
        .max(1);
    sched::sleep_ticks(ticks);
    if process::shutdown_status().is_some() {
        drop_for_shutdown(entry);
        return;
    }
    let package = crate::boot_package();
    let Some(module) = package.file(name) else {
        give_up_pending(entry, name, "its module is not in the boot package");
        return;
    };
    for _ in 0..MAX_ATTEMPTS {
        // One restart at a time: two entries restarted together then wire the channel
        // between them exactly once (the first skips its still-pending peer; the second
        // finds the first running).
        RESTARTING.down();
        let started = process::start_entry(entry, module);
        RESTARTING.up();
        match started {
            Ok(pid) => {
                let generation = process::record(pid).map_or(0, |r| r.incarnation);
                crate::ipc::wake_waiters();
                RESTARTS.fetch_add(1, Ordering::Relaxed);
                println!("[supervisor] {name} restarted: generation {generation}, pid {pid}");
                return;
            }
            // Started meanwhile by a SIP with the `start` power: nothing left to do.
            Err(StartError::Running) if !restarting(entry) => return,
            Err(StartError::ShuttingDown) => {
                drop_for_shutdown(entry);
                return;
            }
            // The previous incarnation is still finishing.
            Err(StartError::Running) => sched::sleep_ticks(RETRY_TICKS),
            Err(why) => {
                give_up_pending(entry, name, &format!("{why:?}"));
                return;
            }
        }
    }
    give_up_pending(entry, name, "its previous incarnation did not finish");
}

/// The system is shutting down: `entry`'s pending restart is dropped, quietly (the
/// shutdown ends every SIP; nothing is restarted any more).
fn drop_for_shutdown(entry: u32) {
    if let Some(e) = ENTRIES.lock().get_mut(entry as usize) {
        e.pending = false;
    }
}

/// Held while the supervisor starts an incarnation (see [`restart`]).
static RESTARTING: sched::sync::Semaphore = sched::sync::Semaphore::new(1);

/// `pid`, an incarnation of `entry`, sent its first message from an exporting endpoint:
/// if it replaces a failed one, the service is restored now.
pub fn first_reply(entry: u32) {
    let now = cycles::stop();
    let took = ENTRIES.lock().get_mut(entry as usize).and_then(|e| {
        let took = now.saturating_sub(e.failed_at.take()?);
        e.restored_in = Some(took);
        Some(took)
    });
    if let Some(took) = took {
        let mut restores = RESTORES.lock();
        if restores.len() < MAX_RESTORES {
            restores.push(took);
        }
    }
}

/// The end-of-run report: restarts, give-ups and the time from failure to service
/// restored (median and worst). Nothing when no entry has a policy.
pub fn print_summary() {
    if ENTRIES.lock().iter().all(|e| e.policy.is_none()) {
        return;
    }
    let mut restores = RESTORES.lock().clone();
    restores.sort_unstable();
    let restarts = RESTARTS.load(Ordering::Relaxed);
    let gave_up = GAVE_UP.load(Ordering::Relaxed);
    match (restores.first(), restores.last()) {
        (Some(best), Some(worst)) => println!(
            "supervisor: {restarts} restarts, {gave_up} given up; failure to first reply from the new incarnation: median {} cycles, best {best}, worst {worst} ({} measured)",
            restores[(restores.len() - 1) / 2],
            restores.len()
        ),
        _ => println!("supervisor: {restarts} restarts, {gave_up} given up"),
    }
    for (index, e) in ENTRIES.lock().iter().enumerate() {
        if let Some(policy) = e.policy {
            println!(
                "  {:<14} policy {:<10} generation {}{}{}",
                crate::boot_package().sips[index],
                policy.mode.name(),
                e.generation,
                if e.history.gave_up() {
                    ", given up"
                } else {
                    ""
                },
                e.restored_in.map_or_else(String::new, |c| format!(
                    ", last restored in {c} cycles (failure to first reply)"
                ))
            );
        }
    }
}
