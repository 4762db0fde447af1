//! Kernel threads and the scheduler.
//!
//! Policy (who runs next, thread states) comes from `kernel_core::sched::RoundRobin`,
//! timeouts from `kernel_core::timer::TimerWheel`; this module adds stacks, the context
//! switch (through `arch::context`) and the timer tick. The timer preempts the running
//! thread every tick; threads block on wait queues ([`sync`]) and sleep on the wheel.
//!
//! Threads run on one processor, CPU 0 (the others only serve cross-processor calls,
//! `arch::smp`): the scheduler's state is guarded by a lock that masks interrupts, and
//! "check a condition, then block" is atomic because interrupts stay masked between the
//! two. Per-CPU run queues are the next step of the multiprocessor work.
#![deny(unsafe_code)]

pub mod sync;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel_core::sched::{RoundRobin, ThreadId, ThreadState};
use kernel_core::timer::{TimerHandle, TimerWheel};
use x86_64::instructions::interrupts;

use crate::arch::context::{self, ContextId};
use crate::arch::irq::IrqMutex;
use crate::mm::frames::FrameBlock;
use crate::mm::stacks::GuardedStack;

/// Kernel stacks are 2^4 frames = 64 KiB unless the spawner asks for more.
pub const STACK_ORDER: usize = 4;
/// Number of hashed wake-up lists.
const TIMER_LISTS: usize = 64;

type Entry = Box<dyn FnOnce() + Send>;

struct Thread {
    name: String,
    entry: Option<Entry>,
    done: Arc<AtomicBool>,
    /// The process the thread works for (0: the kernel's own), charged for its time.
    owner: usize,
}

struct Scheduler {
    policy: RoundRobin,
    threads: Vec<Option<Thread>>,
    timers: TimerWheel<ThreadId>,
    /// Exited threads whose stacks are freed once they are no longer running.
    zombies: Vec<ThreadId>,
}

impl Scheduler {
    /// The process the running thread works for (0: the kernel, or the idle loop).
    fn current_owner(&self) -> usize {
        self.policy
            .current()
            .and_then(|id| self.threads.get(id)?.as_ref())
            .map_or(0, |t| t.owner)
    }
}

static SCHED: IrqMutex<Option<Scheduler>> = IrqMutex::new(None);

/// Woken whenever a thread exits; [`JoinHandle::join`] waits here.
static EXITED: sync::WaitQueue = sync::WaitQueue::new();

fn with_sched<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let mut guard = SCHED.lock();
    f(guard.as_mut().expect("sched::init ran"))
}

/// Sets up the scheduler. The calling (boot) context becomes the idle loop.
pub fn init() {
    *SCHED.lock() = Some(Scheduler {
        policy: RoundRobin::new(),
        threads: Vec::new(),
        timers: TimerWheel::new(TIMER_LISTS),
        zombies: Vec::new(),
    });
}

/// Why a thread could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No physical memory for the thread's stack.
    OutOfMemory,
}

/// Waits for a thread to finish.
#[derive(Clone)]
pub struct JoinHandle {
    done: Arc<AtomicBool>,
}

impl JoinHandle {
    /// True once the thread's function has returned.
    pub fn is_finished(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Blocks until the thread has finished.
    pub fn join(&self) {
        EXITED.wait_until(|| self.is_finished());
    }
}

/// Starts a kernel thread running `f` on a 64 KiB stack.
pub fn spawn(
    name: impl Into<String>,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    spawn_with_stack(name, STACK_ORDER, f)
}

/// Starts a kernel thread running `f` on a stack of 2^`stack_order` frames.
pub fn spawn_with_stack(
    name: impl Into<String>,
    stack_order: usize,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    // The thread runs on a guarded mapping of its frames: an overflow faults on the
    // guard page below instead of overwriting other memory.
    let stack = FrameBlock::alloc(stack_order)
        .and_then(GuardedStack::new)
        .ok_or(SpawnError::OutOfMemory)?;
    let done = Arc::new(AtomicBool::new(false));
    let thread = Thread {
        name: name.into(),
        entry: Some(Box::new(f)),
        done: done.clone(),
        owner: 0,
    };
    let id = with_sched(|s| {
        let id = match s.threads.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                s.threads.push(None);
                s.threads.len() - 1
            }
        };
        s.threads[id] = Some(thread);
        context::create(id, stack, thread_start, id as u64);
        s.policy.spawn(id);
        id
    });
    log::debug!("thread {id} spawned");
    Ok(JoinHandle { done })
}

/// First Rust code of every thread (entered from the context trampoline, interrupts off).
extern "C" fn thread_start(arg: u64) -> ! {
    let id = arg as ThreadId;
    let entry = with_sched(|s| {
        s.threads[id]
            .as_mut()
            .and_then(|t| t.entry.take())
            .expect("new thread has an entry function")
    });
    reap_zombies();
    interrupts::enable();
    entry();
    exit_current()
}

/// Says which process the calling thread works for (its CPU time is charged to it).
pub fn set_owner(owner: usize) {
    with_sched(|s| {
        if let Some(id) = s.policy.current()
            && let Some(thread) = s.threads[id].as_mut()
        {
            thread.owner = owner;
        }
    });
}

/// The process the running thread works for (0: the kernel, or the idle loop).
pub fn current_owner() -> usize {
    // One lock: this runs on every timer tick, possibly before `init`.
    SCHED.lock().as_ref().map_or(0, Scheduler::current_owner)
}

/// [`current_owner`] for the page-fault path, which must not wait for the scheduler's
/// lock: 0 if the lock is held (the fault is then not charged).
pub fn current_owner_now() -> usize {
    SCHED
        .try_lock()
        .and_then(|guard| guard.as_ref().map(Scheduler::current_owner))
        .unwrap_or(0)
}

/// The time-stamp counter at the latest context switch: the running thread's owner is
/// charged from it to the next switch.
static SWITCHED_AT: AtomicU64 = AtomicU64::new(0);

/// Ends the calling thread.
pub fn exit_current() -> ! {
    interrupts::disable();
    with_sched(|s| {
        let id = s.policy.current().expect("exit from a thread");
        if let Some(thread) = s.threads[id].as_ref() {
            thread.done.store(true, Ordering::Release);
            log::debug!("thread {id} ({}) exited", thread.name);
        }
        s.policy.exit_current();
        s.zombies.push(id);
    });
    EXITED.notify_all();
    schedule();
    unreachable!("an exited thread was scheduled again");
}

/// Threads that have not exited.
pub fn live_threads() -> usize {
    with_sched(|s| s.policy.live())
}

/// Pending wake-ups on the timer wheel.
pub fn pending_timers() -> usize {
    with_sched(|s| s.timers.pending())
}

/// Gives the processor to the next ready thread, if any.
pub fn yield_now() {
    schedule();
}

/// Blocks the calling thread for `ticks` timer ticks.
pub fn sleep_ticks(ticks: u64) {
    interrupts::without_interrupts(|| {
        with_sched(|s| {
            let id = s.policy.current().expect("sleep from a thread");
            let deadline = crate::time::ticks() + ticks.max(1);
            s.timers.insert(deadline, id);
            s.policy.block_current();
        });
        schedule();
    });
}

/// Blocks the calling thread; `register` gets its id first (e.g. to queue it) while
/// interrupts are masked. With a timeout, returns false if the timeout woke the thread.
/// Must be called with interrupts disabled.
pub(crate) fn block_current(register: impl FnOnce(ThreadId), timeout: Option<u64>) -> bool {
    let timer: Option<TimerHandle> = with_sched(|s| {
        let id = s.policy.current().expect("block from a thread");
        register(id);
        s.policy.block_current();
        timeout.map(|ticks| s.timers.insert(crate::time::ticks() + ticks.max(1), id))
    });
    schedule();
    match timer {
        // Still pending: something else woke us before the timeout.
        Some(handle) => with_sched(|s| s.timers.cancel(handle).is_some()),
        None => true,
    }
}

/// Makes a blocked thread ready. Returns false if it was not blocked.
pub(crate) fn wake(id: ThreadId) -> bool {
    with_sched(|s| s.policy.wake(id))
}

/// Makes a blocked thread ready to run next (it was woken by a message).
pub(crate) fn wake_next(id: ThreadId) -> bool {
    with_sched(|s| s.policy.wake_next(id))
}

/// Called on every timer interrupt: fires due wake-ups, then preempts.
pub fn on_tick(now: u64) {
    if SCHED.lock().is_none() {
        return;
    }
    with_sched(|s| {
        let Scheduler { policy, timers, .. } = s;
        timers.advance(now, |id| {
            policy.wake(id);
        });
    });
    schedule();
}

/// Frees the stacks of exited threads that are no longer running.
fn reap_zombies() {
    let running = context::running();
    let reaped: Vec<ThreadId> = with_sched(|s| {
        let mut reaped = Vec::new();
        s.zombies.retain(|&id| {
            if running == ContextId::Thread(id) {
                return true;
            }
            s.policy.reap(id);
            s.threads[id] = None;
            reaped.push(id);
            false
        });
        reaped
    });
    for id in reaped {
        context::destroy(id);
    }
}

/// Picks the next thread and switches to it (or to the idle loop when the running thread
/// can no longer run and nothing is ready).
fn schedule() {
    interrupts::without_interrupts(|| {
        reap_zombies();
        // The outgoing thread's owner is read before the policy picks the next thread.
        let (owner, target) = with_sched(|s| {
            let owner = s.current_owner();
            let target = match s.policy.pick_next() {
                Some(id) => Some(ContextId::Thread(id)),
                None => {
                    let runnable = s
                        .policy
                        .current()
                        .is_some_and(|id| s.policy.state(id) == Some(ThreadState::Running));
                    if runnable {
                        None
                    } else {
                        s.policy.go_idle();
                        Some(ContextId::Idle)
                    }
                }
            };
            (owner, target)
        });
        if let Some(next) = target
            && next != context::running()
        {
            // The outgoing thread's time since the previous switch goes to its owner.
            let now = crate::arch::cycles::start();
            let ran = now.saturating_sub(SWITCHED_AT.swap(now, Ordering::Relaxed));
            if context::running() != ContextId::Idle {
                crate::process::charge_cycles(owner, ran);
            }
            context::switch_to(next);
        }
    });
}

/// TSC cycles the processor spent halted in the idle loop, waiting for an interrupt
/// because no thread could run (for a disk, or a timer), interrupt handlers included.
pub static IDLE_CYCLES: AtomicU64 = AtomicU64::new(0);

/// Runs the idle loop on the boot context until every thread has exited.
pub fn run_until_all_exited() {
    loop {
        interrupts::disable();
        schedule();
        reap_zombies();
        if live_threads() == 0 {
            interrupts::enable();
            return;
        }
        let switches = context_switches();
        let halted = crate::arch::cycles::start();
        crate::arch::wait_for_interrupt();
        // Counted only if the wake-up did not switch away, so no thread's time is in it.
        if context_switches() == switches {
            IDLE_CYCLES.fetch_add(crate::arch::cycles::stop() - halted, Ordering::Relaxed);
        }
    }
}

/// Context switches so far (for statistics and benchmarks).
pub fn context_switches() -> u64 {
    context::switches()
}
