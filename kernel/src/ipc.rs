//! Channels in the kernel: the contract-checked channel manager of
//! `kernel_core::channel` behind an interrupt-safe readers-writer lock, plus blocking.
//!
//! Sends and receives of messages that carry no endpoint or block, `chan_select`, posted
//! receives and exchange-heap reads and writes take the manager *shared*: each changes
//! only its channel's two endpoints (or its block) under their own locks, so they run at
//! once on different processors. Whatever moves holders or charges (a message carrying
//! endpoints or blocks, making, closing and reaping channels, ending a SIP) takes it
//! alone. Lock order: the initial-endpoint lists, then the manager, then endpoint flows
//! (lower handle first) or a block's bytes.
//!
//! A receive that finds nothing waits on its process's queue in [`EVENTS`] (with an
//! optional timeout on the hashed wake-up lists); a send wakes the waiters of the process
//! that holds the receiving end, and every close, connection or kill wakes all of them;
//! each re-checks its own endpoints. (One queue per process, not one for the system: on
//! several processors a send would otherwise wake every waiting SIP, and each would take
//! the channel lock to find nothing.) Sends never block and never allocate: queues were sized from the
//! contract when the channel was made. Contract violations and handles a SIP does not
//! hold come back as `Err(report)`: the runtime terminates that SIP, the peer sees the
//! channel closed when the SIP's endpoints are released.
//!
//! Every endpoint and block is charged to a SIP's account (its quota comes from its
//! manifest, within the kernel's policy); running out is `OUT_OF_MEMORY` for that SIP only.
//! Destruction runs in steps of at most [`STEP`] objects, with interrupts let in between
//! steps, so closing a chain of any length never masks interrupts for long.
#![deny(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use cordon_abi::status;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kernel_core::channel::{
    Channels, Counts, CreateError, EndpointId, Owner, Queue, Quota, RecvError, SendError, Usage,
};

use crate::arch::irq::{IrqMutex, IrqRwLock};
use crate::process::Pid;
use crate::sched::sync::WaitQueue;

/// The channel manager. Messages without endpoints or blocks in them (nearly all) go
/// through it shared, each changing only its channel's two endpoints under their own
/// locks ([`with_shared`]); everything else has it alone ([`with`]).
static CHANNELS: IrqRwLock<Option<Channels>> = IrqRwLock::new(None);
/// Each process slot's waiters: woken by a send to an endpoint it holds, and on every
/// close, connection and kill.
static EVENTS: [WaitQueue; crate::process::MAX_PROCESSES] =
    [const { WaitQueue::new() }; crate::process::MAX_PROCESSES];

/// The queue `pid` waits on.
fn events_of(pid: Pid) -> &'static WaitQueue {
    &EVENTS[slot_index(pid)]
}

/// Wakes every waiting thread, to re-check (an endpoint closed or appeared, or a kill).
fn notify_everyone() {
    for queue in &EVENTS {
        queue.notify_all();
    }
}
/// Messages sent since boot.
pub static MESSAGES: AtomicU64 = AtomicU64::new(0);
/// Of those, messages received on another processor than the one the receiver's latest
/// message was sent from (each process slot remembers that processor).
pub static RECEIVED_ELSEWHERE: AtomicU64 = AtomicU64::new(0);
/// The processor (plus one; 0: none yet) each process slot's latest message was sent from.
static SENT_FROM: [AtomicUsize; crate::process::MAX_PROCESSES] =
    [const { AtomicUsize::new(0) }; crate::process::MAX_PROCESSES];

fn slot_index(pid: Pid) -> usize {
    pid.saturating_sub(1) % crate::process::MAX_PROCESSES
}

/// This processor's number (read with interrupts masked: the thread cannot move meanwhile).
fn this_cpu() -> usize {
    x86_64::instructions::interrupts::without_interrupts(crate::arch::smp::current_cpu)
}

/// Of those, messages copied straight into a waiting receiver's buffer (one copy).
pub static DELIVERED_DIRECTLY: AtomicU64 = AtomicU64::new(0);
/// Bytes the kernel copied for channels and exchange-heap access since boot: messages into
/// queues or straight into a waiting receiver's buffer, out of queues, `buf_write` and
/// `buf_read`. Moving a block in a message copies nothing: its handle changes owner.
pub static BYTES_COPIED: AtomicU64 = AtomicU64::new(0);

fn copied(bytes: usize) {
    BYTES_COPIED.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// Largest exchange-heap block.
const MAX_BLOCK: usize = 16 << 20;
/// Objects handled per interrupts-masked step when destroying or releasing.
const STEP: usize = 8;

/// Initial endpoints handed out by the system manifest: (pid, name, handle).
static INITIAL: IrqMutex<Vec<(Pid, String, EndpointId)>> = IrqMutex::new(Vec::new());

/// Initial endpoints SIPs took, by the name they took them under, so that a closed peer
/// can be told apart from one being restarted ([`closed`]). Bounded by the system
/// manifest's endpoints; an entry that cannot be recorded (no memory) only means that
/// endpoint reports `PEER_CLOSED`.
static TAKEN: IrqMutex<Vec<(Pid, EndpointId, String)>> = IrqMutex::new(Vec::new());

/// Removes the entries of `list` that `gone` picks.
fn forget<T>(list: &IrqMutex<Vec<T>>, mut gone: impl FnMut(&T) -> bool) {
    let mut list = list.lock();
    list.retain(|entry| !gone(entry));
    release_if_empty(&mut list);
}

/// An empty list gives its memory back: otherwise it would keep what its busiest moment
/// needed (and a run that peaks higher than the last would look like a leak to the
/// reclaim checks, which compare the heap before and after).
fn release_if_empty<T>(list: &mut Vec<T>) {
    if list.is_empty() {
        *list = Vec::new();
    }
}

/// Installs the compiled contracts. Runs once at boot.
pub fn init(protocols: Vec<contracts::Protocol>) {
    let mut channels = Channels::new(protocols);
    channels
        .reserve_accounts(crate::process::MAX_PROCESSES)
        .expect("boot-time heap for the process accounts");
    *CHANNELS.write() = Some(channels);
}

/// Runs `f` with the channel manager alone (interrupts masked on this processor).
#[track_caller]
fn with<R>(f: impl FnOnce(&mut Channels) -> R) -> R {
    f(CHANNELS.write().as_mut().expect("ipc::init ran"))
}

/// Runs `f` with the channel manager shared: other processors may be in it too, each
/// sending or receiving on other channels (interrupts masked on this processor). `f` must
/// not call [`with`] or `with_shared` (a second read behind a waiting writer would wait
/// for ever). With [`set_shared`] off, `f` has the manager alone instead.
#[track_caller]
fn with_shared<R>(f: impl FnOnce(&Channels) -> R) -> R {
    if SHARED.load(Ordering::Relaxed) {
        f(CHANNELS.read().as_ref().expect("ipc::init ran"))
    } else {
        f(CHANNELS.write().as_ref().expect("ipc::init ran"))
    }
}

/// Whether the message path takes the channel manager shared (see [`with_shared`]).
static SHARED: AtomicBool = AtomicBool::new(true);

/// Turns the shared message path on or off: off, every channel operation has the manager
/// alone, as one global lock would (for the micro suite, which measures both side by
/// side). Takes effect for operations that start afterwards.
pub fn set_shared(on: bool) {
    SHARED.store(on, Ordering::Relaxed);
}

/// Names of the contracts the kernel knows.
pub fn contract_names() -> Vec<String> {
    with(|c| c.protocols().iter().map(|p| p.name.clone()).collect())
}

/// Counts of live endpoints and blocks (for reclaim checks).
pub fn counts() -> Counts {
    with(|c| c.counts())
}

/// Connects `exporter`'s endpoint `exp_name` and `importer`'s `imp_name` with a new
/// channel of `contract` (the system manifest's wiring), at boot or when an on-request SIP
/// starts. An end the same SIP was given earlier under the same name and never took is
/// closed and replaced (its peer, an earlier incarnation, sees the channel closed). Fails
/// if either SIP has ended or memory is short; then nothing is left behind.
pub fn connect(contract: &str, exporter: (Pid, &str), importer: (Pid, &str)) -> Result<(), String> {
    let (index, shapes) = with(|c| {
        let index = c.contract_index(contract)?;
        Some((index, c.queue_shapes(index)?))
    })
    .ok_or_else(|| alloc::format!("unknown contract `{contract}`"))?;
    let no_memory = || alloc::format!("no kernel memory for a channel of {contract}");
    // Zeroing the queues is the longest part of making a channel: do it with interrupts on.
    let queues = Queue::pair(shapes).ok_or_else(no_memory)?;
    let mut names = [String::new(), String::new()];
    for (name, end) in names.iter_mut().zip([exporter.1, importer.1]) {
        name.try_reserve_exact(end.len()).map_err(|_| no_memory())?;
        name.push_str(end);
    }
    let [exp_name, imp_name] = names;
    let mut stale = Vec::new();
    stale.try_reserve_exact(2).map_err(|_| no_memory())?;
    {
        // INITIAL before CHANNELS, as in `take_initial`.
        let mut initial = INITIAL.lock();
        initial.try_reserve(2).map_err(|_| no_memory())?;
        let (exp, imp) = with(|c| c.connect_with(index, exporter.0, importer.0, queues)).map_err(
            |e| match e {
                CreateError::OwnerEnded => {
                    alloc::format!("a SIP that channel {contract} connects has ended")
                }
                _ => no_memory(),
            },
        )?;
        initial.retain(|(p, n, ep)| {
            let replaced = (*p, n.as_str()) == (exporter.0, exporter.1)
                || (*p, n.as_str()) == (importer.0, importer.1);
            if replaced {
                stale.push((*p, *ep));
            }
            !replaced
        });
        initial.push((exporter.0, exp_name, exp));
        initial.push((importer.0, imp_name, imp));
    }
    if !stale.is_empty() {
        for (pid, ep) in stale {
            // Held by `pid` since the wiring gave it: closing it cannot fault.
            let _ = with(|c| c.close(pid, ep));
        }
        reap();
        notify_everyone();
    }
    Ok(())
}

/// The initial endpoint `name` of `pid`, checked to be of `contract` and role; taken once.
/// While the SIP at its other end may still bring it (it has a restart policy and is being
/// restarted, or is still running), waits for it (a kill ends the wait; the SIP then ends
/// at its next check): see `recovery::peer_may_return`. With `wait_for_it`, also waits
/// while an `on-request` peer may yet be started (`recovery::peer_may_be_started`).
pub fn take_initial(
    pid: Pid,
    name: &str,
    contract: &str,
    importer: bool,
    wait_for_it: bool,
) -> Result<i32, String> {
    let mut taken = None;
    let mut attempt = || {
        // Asked first: a restart that completes in between has put the new end in INITIAL.
        let may_return = crate::recovery::peer_may_return(pid, name)
            || (wait_for_it && crate::recovery::peer_may_be_started(pid, name));
        match take_now(pid, name, contract, importer) {
            Ok(status::NOT_FOUND) if may_return => false,
            other => {
                taken = Some(other);
                true
            }
        }
    };
    wait(pid, None, &mut attempt);
    taken.unwrap_or(Ok(status::NOT_FOUND))
}

/// [`take_initial`] without waiting.
fn take_now(pid: Pid, name: &str, contract: &str, importer: bool) -> Result<i32, String> {
    let mut initial = INITIAL.lock();
    let Some(at) = initial.iter().position(|(p, n, _)| *p == pid && n == name) else {
        return Ok(status::NOT_FOUND);
    };
    let ep = initial[at].2;
    let role = if importer {
        contracts::Role::Importer
    } else {
        contracts::Role::Exporter
    };
    if !with(|c| c.is(pid, ep, contract, role)).map_err(|f| f.0)? {
        return Err(alloc::format!(
            "initial endpoint `{name}` is not the {} end of {contract}",
            role.name()
        ));
    }
    let (_, name, _) = initial.swap_remove(at);
    release_if_empty(&mut initial);
    drop(initial);
    let mut taken = TAKEN.lock();
    if taken.try_reserve(1).is_ok() {
        taken.push((pid, ep, name));
    }
    Ok(ep as i32)
}

/// Whether `pid` holds endpoint `ep` as its exporter (serving end).
pub fn exports(pid: Pid, ep: u32) -> bool {
    with(|c| c.role_of(pid, ep)) == Ok(contracts::Role::Exporter)
}

/// Whether a peer waits on `pid`: a message queued in one of its endpoints, or a serving
/// end whose contract state says it owes its (still present) client a reply (the
/// supervisor's watchdog). A walk of the table; allocates nothing.
pub fn has_waiting(pid: Pid) -> bool {
    with(|c| {
        c.held_endpoints(pid)
            .any(|view| view.queued > 0 || (view.owes_reply && view.peer_open))
    })
}

/// One line per endpoint `pid` holds, for its crash record: contract, role, state, queue,
/// whether the peer is still there. Formatted under the channel lock, printed by the
/// caller after it (the console is slow; interrupts stay masked under the lock).
pub fn describe_endpoints(pid: Pid) -> Vec<String> {
    with(|c| {
        c.held_endpoints(pid)
            .map(|view| {
                alloc::format!(
                    "{} {} in state {}, {} queued, peer {}",
                    view.contract,
                    view.role.name(),
                    view.state,
                    view.queued,
                    if view.peer_open { "open" } else { "closed" }
                )
            })
            .collect()
    })
}

/// Calls `each` for every endpoint `pid` holds, under the channel lock (for the kernel's
/// `channels` table; bounded by `pid`'s quota, allocating nothing).
pub fn each_endpoint(pid: Pid, mut each: impl FnMut(kernel_core::channel::EndpointView<'_>)) {
    with(|c| c.held_endpoints(pid).for_each(&mut each));
}

/// Calls `each` for every contract the kernel compiled, under the channel lock.
pub fn each_protocol(mut each: impl FnMut(&contracts::Protocol)) {
    with(|c| c.protocols().iter().for_each(&mut each));
}

/// Initial endpoints of `pid` the SIP never took (checked against its manifest).
pub fn initial_names(pid: Pid) -> Vec<String> {
    INITIAL
        .lock()
        .iter()
        .filter(|(p, _, _)| *p == pid)
        .map(|(_, n, _)| n.clone())
        .collect()
}

/// Opens `pid`'s account with the default quota (a new process; its manifest's quota
/// replaces it once verified).
pub fn open_account(pid: Pid) -> Result<(), ()> {
    with(|c| c.open_account(pid, quota(&cordon_abi::Limits::default()))).map_err(|_| ())
}

/// The channel quota `limits` ask for.
pub fn quota(limits: &cordon_abi::Limits) -> Quota {
    Quota {
        objects: limits.max_kernel_objects,
        bytes: limits.max_kernel_bytes,
    }
}

/// Sets `pid`'s quota from its verified manifest.
pub fn set_quota(pid: Pid, limits: &cordon_abi::Limits) {
    with(|c| c.set_quota(pid, quota(limits)));
}

/// What `pid` is charged for now, and the most it ever was.
pub fn usage(pid: Pid) -> (Usage, Usage) {
    with(|c| (c.usage(pid), c.peak(pid)))
}

pub fn create(pid: Pid, contract: &str) -> Result<(u32, u32), i32> {
    let (index, shapes, fits) = with(|c| {
        let index = c.contract_index(contract)?;
        Some((index, c.queue_shapes(index)?, c.can_create(index, pid)))
    })
    .ok_or(status::NOT_FOUND)?;
    if !fits {
        return Err(status::OUT_OF_MEMORY);
    }
    // Zeroing the queues is the longest part of making a channel: do it with interrupts on.
    let queues = Queue::pair(shapes).ok_or(status::OUT_OF_MEMORY)?;
    with(|c| c.create_with(index, pid, queues)).map_err(|e| match e {
        CreateError::NoContract => status::NOT_FOUND,
        CreateError::OutOfMemory | CreateError::OwnerEnded => status::OUT_OF_MEMORY,
    })
}

pub fn send(pid: Pid, ep: u32, message: &[u8]) -> Result<i32, String> {
    // A receiver blocked in another address space gets the message copied straight into
    // its buffer (one copy); otherwise it waits in the queue.
    let mut deliver = |landing, bytes: &[u8]| {
        let done = crate::mm::vm::deliver(landing, bytes);
        if done {
            DELIVERED_DIRECTLY.fetch_add(1, Ordering::Relaxed);
        }
        done
    };
    // Shared first: a message without endpoints or blocks in it changes only its
    // channel. One that carries some (or is malformed: its fault is reported there) moves
    // holders and charges, with the manager alone.
    let shared = with_shared(|c| {
        c.send_shared(pid, ep, message, &mut deliver)
            .map(|peer| peer.map(|peer| c.holder_of(peer)))
    });
    let (sent, doomed) = match shared {
        Ok(Some(receiver)) => (Ok(receiver), false),
        Err(e) => (Err(e), false),
        Ok(None) => with(|c| {
            let sent = c
                .send_direct(pid, ep, message, &mut deliver)
                .map(|peer| c.holder_of(peer));
            (sent, c.has_doomed())
        }),
    };
    if doomed {
        // The message closed a cycle of endpoints in transit: free it.
        reap();
    }
    match sent {
        Ok(receiver) => {
            MESSAGES.fetch_add(1, Ordering::Relaxed);
            copied(message.len());
            // An end in transit has no one waiting on it: its next holder checks its
            // queue before it waits.
            if let Some(receiver) = receiver {
                SENT_FROM[slot_index(receiver)].store(this_cpu() + 1, Ordering::Relaxed);
                events_of(receiver).notify_all_next();
            }
            Ok(status::OK)
        }
        Err(SendError::PeerClosed) => Ok(closed(pid, ep)),
        Err(SendError::Fault(fault)) => Err(fault.0),
    }
}

/// Wakes every thread waiting for a channel event, to re-check (a kill was requested).
pub fn wake_waiters() {
    notify_everyone();
}

/// Retries `attempt` on every channel event until it succeeds, `timeout` ticks pass
/// (`None`: forever; `Some(0)`: once) or `pid` is asked to stop. Returns whether it
/// succeeded.
fn wait(pid: Pid, timeout: Option<u64>, attempt: &mut impl FnMut() -> bool) -> bool {
    let mut attempt = || attempt() || crate::process::kill_requested(pid);
    // Waiting on others is not hanging (the supervisor's watchdog skips it).
    crate::process::set_waiting(pid, true);
    let events = events_of(pid);
    let done = match timeout {
        None => {
            events.wait_until(attempt);
            true
        }
        Some(0) => attempt(),
        Some(ticks) => events.wait_until_timeout(attempt, ticks),
    };
    crate::process::set_waiting(pid, false);
    done
}

/// What one receive attempt found with the manager shared.
enum Attempt {
    /// A message its sender delivered into the posted buffer: its length.
    Delivered(usize),
    /// The next queued message (its length), or why there was none.
    Received(Result<usize, RecvError>),
    /// The next queued message carries endpoints or blocks: it is received alone.
    CarriesHandles,
}

/// Receives into `out`, blocking up to `timeout` ticks (`None`: forever; `Some(0)`: poll).
/// When `out` is user memory (a SIP in an address space), the receive is posted while it
/// waits, so the sender can deliver into `out` directly.
pub fn recv(pid: Pid, ep: u32, out: &mut [u8], timeout: Option<u64>) -> Result<i32, String> {
    let landing = crate::mm::vm::landing(out);
    let capacity = out.len();
    let mut outcome: Option<Result<usize, RecvError>> = None;
    let mut attempt = || {
        // Shared: a message delivered into the posted buffer, or the next queued one if it
        // carries no endpoints or blocks; one that does is received alone.
        let shared = with_shared(|c| {
            if let Some(len) = c.take_delivered(pid, ep) {
                return Attempt::Delivered(len);
            }
            match c.recv_shared(pid, ep, out) {
                Ok(Some(len)) => Attempt::Received(Ok(len)),
                Ok(None) => Attempt::CarriesHandles,
                Err(RecvError::Empty) => {
                    if let Some(landing) = landing {
                        // Fails only for a handle the SIP does not hold, which the
                        // receive above already reported.
                        let _ = c.post(pid, ep, capacity, landing);
                    }
                    Attempt::Received(Err(RecvError::Empty))
                }
                Err(other) => Attempt::Received(Err(other)),
            }
        });
        // A delivered message was counted by its sender, which copied it.
        let received = match shared {
            Attempt::Delivered(len) => Ok(len),
            Attempt::Received(result) => result.inspect(|&len| copied(len)),
            Attempt::CarriesHandles => with(|c| c.recv(pid, ep, out)).inspect(|&len| copied(len)),
        };
        outcome = match received {
            Err(RecvError::Empty) => None,
            other => Some(other),
        };
        outcome.is_some()
    };
    wait(pid, timeout, &mut attempt);
    if landing.is_some() {
        // Withdraw the post; a message delivered after the last attempt still arrived.
        if let Some(len) = with_shared(|c| c.take_delivered(pid, ep)) {
            outcome = Some(Ok(len));
        }
    }
    // Nothing: the time ran out, or the SIP is being killed (its runtime ends it next).
    let Some(outcome) = outcome else {
        return Ok(status::TIMEOUT);
    };
    match outcome {
        Ok(len) => {
            let from = SENT_FROM[slot_index(pid)].load(Ordering::Relaxed);
            if from != 0 && from - 1 != this_cpu() {
                RECEIVED_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
            }
            Ok(len as i32)
        }
        Err(RecvError::PeerClosed) => Ok(closed(pid, ep)),
        Err(RecvError::TooSmall(_)) => Ok(status::BUFFER_TOO_SMALL),
        Err(RecvError::OverQuota) => Ok(status::OUT_OF_MEMORY),
        Err(RecvError::Fault(fault)) => Err(fault.0),
        Err(RecvError::Empty) => unreachable!("an empty queue keeps waiting"),
    }
}

/// Waits until one of `eps` can be received from; returns its index.
pub fn select(pid: Pid, eps: &[u32], timeout: Option<u64>) -> Result<i32, String> {
    if eps.is_empty() {
        return Err("chan_select over no endpoints".into());
    }
    let mut outcome: Option<Result<usize, String>> = None;
    let mut attempt = || {
        let ready = with_shared(|c| {
            for (i, &ep) in eps.iter().enumerate() {
                match c.ready(pid, ep) {
                    Ok(true) => return Some(Ok(i)),
                    Ok(false) => {}
                    Err(fault) => return Some(Err(fault.0)),
                }
            }
            None
        });
        outcome = ready;
        outcome.is_some()
    };
    wait(pid, timeout, &mut attempt);
    match outcome {
        Some(ready) => ready.map(|i| i as i32),
        None => Ok(status::TIMEOUT),
    }
}

pub fn close(pid: Pid, ep: u32) -> Result<i32, String> {
    with(|c| c.close(pid, ep)).map_err(|f| f.0)?;
    forget(&TAKEN, |(p, e, _)| (*p, *e) == (pid, ep));
    reap();
    notify_everyone();
    Ok(status::OK)
}

/// Frees doomed endpoints, [`STEP`] at a time with interrupts let in between.
fn reap() {
    while with(|c| c.reap(STEP)) {}
}

pub fn is(pid: Pid, ep: u32, contract: &str, importer: bool) -> Result<i32, String> {
    let role = if importer {
        contracts::Role::Importer
    } else {
        contracts::Role::Exporter
    };
    with(|c| c.is(pid, ep, contract, role))
        .map(i32::from)
        .map_err(|f| f.0)
}

/// Frees every endpoint and block `pid` holds (the SIP ended) and tells the peers.
/// Follows the SIP's own lists of what it holds, [`STEP`] objects per masked section:
/// the work is what it holds, never what other SIPs hold.
pub fn release(pid: Pid) {
    // First: from now on no channel is made to it (see `connect`).
    with(|c| c.close_account(pid));
    while with(|c| c.release_step(pid as Owner, STEP)) {}
    reap();
    forget(&INITIAL, |(p, _, _)| *p == pid);
    forget(&TAKEN, |(p, _, _)| *p == pid);
    notify_everyone();
}

/// What a SIP is told when the peer of its endpoint `ep` has gone: `PEER_RESTARTED` for an
/// endpoint it took by name whose peer may come back (the supervisor restarts it), else
/// `PEER_CLOSED`.
fn closed(pid: Pid, ep: u32) -> i32 {
    let name = TAKEN
        .lock()
        .iter()
        .find(|(p, e, _)| (*p, *e) == (pid, ep))
        .map(|(_, _, name)| name.clone());
    match name {
        Some(name) if crate::recovery::peer_may_return(pid, &name) => status::PEER_RESTARTED,
        _ => status::PEER_CLOSED,
    }
}

pub fn buf_alloc(pid: Pid, size: u32) -> Result<i32, String> {
    let size = size as usize;
    if size > MAX_BLOCK || with(|c| c.charge_block(pid, size)).is_err() {
        return Ok(status::OUT_OF_MEMORY);
    }
    // Charged first, then allocated and zeroed with interrupts on.
    let Some(data) = new_block(size) else {
        with(|c| c.cancel_block(pid, size));
        return Ok(status::OUT_OF_MEMORY);
    };
    match with(|c| c.add_block(pid, data)) {
        Ok(id) => Ok(id as i32),
        Err(_) => Ok(status::OUT_OF_MEMORY),
    }
}

/// A zeroed block of `size` bytes, physically contiguous so that a driver's device can DMA
/// into it (`buf_dma`). The heap is contiguous everywhere but in its static boot arena: a
/// block that lands there is held aside while the next attempt is made (so it cannot land
/// in the same place), and the attempts held aside are freed at the end. `None` when the
/// heap has no room.
fn new_block(size: usize) -> Option<Vec<u8>> {
    const ATTEMPTS: usize = 16;
    let mut aside: [Option<Vec<u8>>; ATTEMPTS] = [const { None }; ATTEMPTS];
    let mut data = Vec::new();
    for slot in aside.iter_mut() {
        data = Vec::new();
        data.try_reserve_exact(size).ok()?;
        if size == 0 || !crate::mm::heap::in_boot_arena(data.as_ptr(), size) {
            break;
        }
        *slot = Some(core::mem::take(&mut data));
    }
    if data.capacity() < size {
        // Every attempt landed in the arena (its free space held that many such blocks):
        // take the last one; `buf_dma` refuses it if a device is ever pointed at it.
        data = aside.iter_mut().rev().find_map(Option::take)?;
    }
    data.resize(size, 0);
    Some(data)
}

fn block_range(
    len: usize,
    offset: u32,
    count: usize,
    buf: u32,
) -> Result<core::ops::Range<usize>, String> {
    let start = offset as usize;
    match start.checked_add(count) {
        Some(end) if end <= len => Ok(start..end),
        _ => Err(alloc::format!(
            "buffer {buf}: [{start}, +{count}) is outside its {len} bytes"
        )),
    }
}

pub fn buf_write(pid: Pid, buf: u32, offset: u32, data: &[u8]) -> Result<i32, String> {
    with_shared(|c| {
        c.block_data_shared(pid, buf, |block| {
            let range = block_range(block.len(), offset, data.len(), buf)?;
            block[range].copy_from_slice(data);
            copied(data.len());
            Ok(status::OK)
        })
        .map_err(|f| f.0)?
    })
}

pub fn buf_read(pid: Pid, buf: u32, offset: u32, out: &mut [u8]) -> Result<i32, String> {
    with_shared(|c| {
        c.block_data_shared(pid, buf, |block| {
            let range = block_range(block.len(), offset, out.len(), buf)?;
            out.copy_from_slice(&block[range]);
            copied(out.len());
            Ok(status::OK)
        })
        .map_err(|f| f.0)?
    })
}

pub fn buf_free(pid: Pid, buf: u32) -> Result<i32, String> {
    // A block a driver's device may still write is kept until the driver ends.
    let data = with(|c| c.free_block(pid, buf)).map_err(|f| f.0)?;
    drop(data);
    Ok(status::OK)
}

pub fn buf_size(pid: Pid, buf: u32) -> Result<i32, String> {
    with_shared(|c| c.block_len(pid, buf).map(|len| len as i32)).map_err(|f| f.0)
}

/// The physical address of `pid`'s block `buf`, for a driver's device to DMA into.
pub fn buf_dma(pid: Pid, buf: u32) -> Result<i64, String> {
    if !crate::devices::is_driver(pid) {
        return Err(alloc::format!(
            "buf_dma({buf}): only a SIP granted a device may learn physical addresses"
        ));
    }
    with(|c| {
        let block = c.pin_block(pid, buf).map_err(|f| f.0)?;
        crate::mm::dma_address(block)
            .map(|addr| addr as i64)
            .ok_or_else(|| alloc::format!("buf_dma({buf}): the block is not physically contiguous"))
    })
}
