//! Kernel threads and the scheduler.
//!
//! Policy (who runs next where, thread states) comes from `kernel_core::sched::RunQueues`,
//! timeouts from `kernel_core::timer::TimerWheel`; this module adds stacks, the context
//! switch (through `arch::context`), the timer ticks and the idle loops. Every processor
//! runs threads from its own queue and preempts its running thread on each of its local
//! APIC ticks; an idle processor steals from the longest queue, and a thread queued on an
//! idle processor wakes it with an IPI (`arch::smp::kick`). CPU 0's tick alone advances
//! time and the wake-up wheel.
//!
//! Locking: the policy, the thread table, the wheel and the exited threads are one
//! structure under one lock ([`SCHED`], interrupts masked). Lock order: `SCHED` before a
//! wait queue's list and before the context table; nothing that holds either takes
//! `SCHED`. "Check a condition, then block" registers the thread and marks it blocked
//! *before* the check ([`sync::WaitQueue`]): a wake-up from another processor between the
//! check and the switch finds it blocked and sets it running again in place.
#![deny(unsafe_code)]

pub mod sync;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kernel_core::sched::{RunQueues, ThreadId, ThreadState, Woken};
use kernel_core::timer::{TimerHandle, TimerWheel};
use x86_64::instructions::interrupts;

use crate::arch::context::{self, ContextId};
use crate::arch::irq::IrqMutex;
use crate::arch::smp::{self, MAX_CPUS, current_cpu};
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
    policy: RunQueues,
    threads: Vec<Option<Thread>>,
    timers: TimerWheel<ThreadId>,
    /// Exited threads whose stacks are freed once they are no longer running.
    zombies: Vec<ThreadId>,
}

impl Scheduler {
    /// The process the thread running on `cpu` works for (0: the kernel, or the idle
    /// loop).
    fn current_owner(&self, cpu: usize) -> usize {
        self.policy
            .current(cpu)
            .and_then(|id| self.threads.get(id)?.as_ref())
            .map_or(0, |t| t.owner)
    }

    /// Every exited thread's context and stack are freed: none waits on the zombie list,
    /// none is being freed (read under the scheduler's lock, which the step from one to
    /// the other holds).
    fn all_reaped(&self) -> bool {
        self.zombies.is_empty() && FREEING.load(Ordering::Acquire) == 0
    }
}

static SCHED: IrqMutex<Option<Scheduler>> = IrqMutex::new(None);

/// Woken whenever a thread exits; [`JoinHandle::join`] waits here.
static EXITED: sync::WaitQueue = sync::WaitQueue::new();

fn with_sched<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let mut guard = SCHED.lock();
    f(guard.as_mut().expect("sched::init ran"))
}

/// Sets up the scheduler. The calling (boot) context becomes CPU 0's idle loop.
pub fn init() {
    *SCHED.lock() = Some(Scheduler {
        policy: RunQueues::new(MAX_CPUS),
        threads: Vec::new(),
        timers: TimerWheel::new(TIMER_LISTS),
        zombies: Vec::new(),
    });
}

/// Processors 0..`cpus` take threads from now on (after they started: each runs
/// [`idle_loop`] when it has nothing else to do).
pub fn set_processors(cpus: usize) {
    with_sched(|s| s.policy.set_online(cpus));
}

/// Scheduling statistics: threads that ran on a processor other than the one they last
/// ran on, and of those, threads an idle processor took from another's queue.
pub fn migrations() -> (u64, u64) {
    with_sched(|s| (s.policy.migrations(), s.policy.steals()))
}

/// Sends an IPI to a processor a thread was queued on while it idled (its halt would
/// otherwise last until its next tick).
fn nudge(woken: Woken) {
    if let Woken::Queued {
        cpu,
        was_idle: true,
    } = woken
    {
        smp::kick(cpu);
    }
}

/// Why a thread could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No physical memory for the thread's stack.
    OutOfMemory,
}

/// Waits for a thread to finish (and starts a held one).
#[derive(Clone)]
pub struct JoinHandle {
    done: Arc<AtomicBool>,
    thread: ThreadId,
    held: Arc<AtomicBool>,
}

impl JoinHandle {
    /// Lets a thread made by [`spawn_held`] run (once; later calls do nothing).
    pub fn release(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            wake(self.thread);
        }
    }

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
    make_thread(name.into(), stack_order, Box::new(f), false, None)
}

/// Starts a kernel thread running `f` on processor `cpu` only (a driver whose measurements
/// or checks are relative to the processor it runs on).
pub fn spawn_on(
    name: impl Into<String>,
    cpu: usize,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    let thread = spawn_held(name, STACK_ORDER, Some(cpu), f)?;
    thread.release();
    Ok(thread)
}

/// Like [`spawn_with_stack`], but the thread does not run before [`JoinHandle::release`]
/// (on several processors another could run it at once: its creator wires it up first),
/// and only ever on processor `pin` if given (benchmarks that measure a crossing).
pub fn spawn_held(
    name: impl Into<String>,
    stack_order: usize,
    pin: Option<usize>,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    make_thread(name.into(), stack_order, Box::new(f), true, pin)
}

fn make_thread(
    name: String,
    stack_order: usize,
    f: Entry,
    held: bool,
    pin: Option<usize>,
) -> Result<JoinHandle, SpawnError> {
    // The thread runs on a guarded mapping of its frames: an overflow faults on the
    // guard page below instead of overwriting other memory.
    let stack = FrameBlock::alloc(stack_order)
        .and_then(GuardedStack::new)
        .ok_or(SpawnError::OutOfMemory)?;
    let done = Arc::new(AtomicBool::new(false));
    let thread = Thread {
        name,
        entry: Some(f),
        done: done.clone(),
        owner: 0,
    };
    let (id, woken) = with_sched(|s| {
        let id = match s.threads.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                s.threads.push(None);
                s.threads.len() - 1
            }
        };
        s.threads[id] = Some(thread);
        context::create(id, stack, thread_start, id as u64);
        s.policy.spawn_held_on(id, pin);
        if held {
            (id, Woken::NotBlocked)
        } else {
            (id, s.policy.wake(id))
        }
    });
    nudge(woken);
    log::debug!("thread {id} spawned");
    Ok(JoinHandle {
        done,
        thread: id,
        held: Arc::new(AtomicBool::new(held)),
    })
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
        if let Some(id) = s.policy.current(current_cpu())
            && let Some(thread) = s.threads[id].as_mut()
        {
            thread.owner = owner;
        }
    });
}

/// The process the thread running on this processor works for (0: the kernel, or the
/// idle loop).
pub fn current_owner() -> usize {
    // One lock: this runs on every timer tick, possibly before `init`. The processor is
    // read under it (interrupts masked), so the answer is about this processor.
    let guard = SCHED.lock();
    guard.as_ref().map_or(0, |s| s.current_owner(current_cpu()))
}

/// [`current_owner`] for the page-fault path, which must not wait for the scheduler's
/// lock: 0 if the lock is held (the fault is then not charged).
pub fn current_owner_now() -> usize {
    SCHED
        .try_lock()
        .and_then(|guard| guard.as_ref().map(|s| s.current_owner(current_cpu())))
        .unwrap_or(0)
}

/// The time-stamp counter at each processor's latest context switch: the owner of the
/// thread running there is charged from it to the next switch.
static SWITCHED_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Ends the calling thread.
pub fn exit_current() -> ! {
    interrupts::disable();
    with_sched(|s| {
        let cpu = current_cpu();
        let id = s.policy.current(cpu).expect("exit from a thread");
        if let Some(thread) = s.threads[id].as_ref() {
            thread.done.store(true, Ordering::Release);
            log::debug!("thread {id} ({}) exited", thread.name);
        }
        s.policy.exit_current(cpu);
        s.zombies.push(id);
    });
    EXITED.notify_all();
    schedule();
    unreachable!("an exited thread was scheduled again");
}

/// Waits (giving the processor away) until every exited thread's stack and context are
/// freed: another processor may still be switching away from one that just exited, or
/// freeing its stack. For checks that memory is back to a baseline.
pub fn settle() {
    while with_sched(|s| !s.all_reaped()) {
        yield_now();
        core::hint::spin_loop();
    }
}

/// Whether every exited thread's context and stack are freed (none on the zombie list,
/// none in the middle of being freed).
pub fn all_reaped() -> bool {
    with_sched(|s| s.all_reaped())
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
            let cpu = current_cpu();
            let id = s.policy.current(cpu).expect("sleep from a thread");
            let deadline = crate::time::ticks() + ticks.max(1);
            s.timers.insert(deadline, id);
            s.policy.block_current(cpu);
        });
        schedule();
    });
}

/// How [`block_unless`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unblocked {
    /// The condition held once the thread was registered: it never blocked.
    ConditionHeld,
    /// A wake-up came (before or after the switch away).
    Woken,
    /// The timeout came first.
    TimedOut,
}

/// Blocks the calling thread unless `condition` holds. `register` gets the thread's id
/// first and the thread is marked blocked before `condition` is checked, so a wake-up
/// from any processor after the check cannot be lost: it finds the thread blocked and
/// either queues it or (before the switch) sets it running again in place. With a
/// timeout, wakes after `ticks` ticks anyway. Must be called with interrupts disabled.
pub(crate) fn block_unless(
    register: impl FnOnce(ThreadId),
    condition: impl FnOnce() -> bool,
    timeout: Option<u64>,
) -> (ThreadId, Unblocked) {
    let (id, timer): (ThreadId, Option<TimerHandle>) = with_sched(|s| {
        let cpu = current_cpu();
        let id = s.policy.current(cpu).expect("block from a thread");
        register(id);
        s.policy.block_current(cpu);
        let timer = timeout.map(|ticks| s.timers.insert(crate::time::ticks() + ticks.max(1), id));
        (id, timer)
    });
    if condition() {
        with_sched(|s| {
            s.policy.unblock_current(current_cpu());
            if let Some(handle) = timer {
                s.timers.cancel(handle);
            }
        });
        return (id, Unblocked::ConditionHeld);
    }
    schedule();
    let woken = match timer {
        // Still pending: something else woke us before the timeout.
        Some(handle) => with_sched(|s| s.timers.cancel(handle).is_some()),
        None => true,
    };
    (
        id,
        if woken {
            Unblocked::Woken
        } else {
            Unblocked::TimedOut
        },
    )
}

/// Makes a blocked thread ready. Returns false if it was not blocked.
pub(crate) fn wake(id: ThreadId) -> bool {
    let woken = with_sched(|s| s.policy.wake(id));
    nudge(woken);
    woken != Woken::NotBlocked
}

/// Makes a blocked thread ready to run next on this processor (it was woken by a message
/// this processor's thread sent).
pub(crate) fn wake_next(id: ThreadId) -> bool {
    let woken = with_sched(|s| s.policy.wake_next(id, current_cpu()));
    nudge(woken);
    woken != Woken::NotBlocked
}

/// Called on every tick of CPU 0: fires due wake-ups, then preempts.
pub fn on_tick(now: u64) {
    if SCHED.lock().is_none() {
        return;
    }
    with_sched(|s| {
        let Scheduler { policy, timers, .. } = s;
        timers.advance(now, |id| nudge(policy.wake(id)));
    });
    preempt();
}

/// Called on the ticks of the other processors, and when a processor is asked to look at
/// its queue: the running thread goes to the back of it if another is ready. On the
/// idle context nothing happens here: the idle loop looks after the interrupt.
pub fn preempt() {
    if SCHED.lock().is_none() || context::running() == ContextId::Idle {
        return;
    }
    schedule();
}

/// Frees the stacks of exited threads that no processor runs on any more.
fn reap_zombies() {
    // The id is freed and the context taken out in one step under the lock (another
    // processor may make a thread with that id at once); the stacks are freed after it
    // (freeing one may shoot its mapping down).
    let retired: Vec<context::Retired> = with_sched(|s| {
        // Counted as being freed in the step that takes them off the zombie list, so
        // `all_reaped` never sees a stack in neither place.
        let mut retired = Vec::new();
        let Scheduler {
            policy,
            threads,
            zombies,
            ..
        } = s;
        zombies.retain(|&id| {
            // Current nowhere, and off its stack (the switch away has finished).
            if policy.running_on(id).is_some() {
                return true;
            }
            let Some(context) = context::retire(id) else {
                return true;
            };
            let reaped = policy.reap(id);
            debug_assert!(reaped, "an exited thread current nowhere is reaped");
            threads[id] = None;
            retired.push(context);
            false
        });
        FREEING.fetch_add(retired.len(), Ordering::AcqRel);
        retired
    });
    let count = retired.len();
    drop(retired);
    FREEING.fetch_sub(count, Ordering::AcqRel);
}

/// Retired contexts taken off the zombie list whose stacks are still being freed (a
/// processor in the middle of the stack's shootdown).
static FREEING: AtomicUsize = AtomicUsize::new(0);

/// Picks the next thread for this processor and switches to it (or to its idle loop when
/// the running thread can no longer run and nothing is ready).
fn schedule() {
    interrupts::without_interrupts(|| {
        reap_zombies();
        let cpu = current_cpu();
        // The outgoing thread's owner is read before the policy picks the next thread.
        let (owner, target) = with_sched(|s| {
            let owner = s.current_owner(cpu);
            let target = match s.policy.pick_next(cpu) {
                Some(id) => Some(ContextId::Thread(id)),
                None => {
                    let runnable = s
                        .policy
                        .current(cpu)
                        .is_some_and(|id| s.policy.state(id) == Some(ThreadState::Running));
                    if runnable {
                        None
                    } else {
                        s.policy.go_idle(cpu);
                        Some(ContextId::Idle)
                    }
                }
            };
            (owner, target)
        });
        let running = context::running();
        if let Some(next) = target
            && next != running
        {
            // The outgoing thread's time since the previous switch here goes to its owner.
            let now = crate::arch::cycles::start();
            let ran = now.saturating_sub(SWITCHED_AT[cpu].swap(now, Ordering::Relaxed));
            if running != ContextId::Idle {
                crate::process::charge_cycles(owner, ran);
                THREAD_CYCLES[cpu].fetch_add(ran, Ordering::Relaxed);
            }
            SWITCHES[cpu].fetch_add(1, Ordering::Relaxed);
            context::switch_to(next);
        }
    });
}

/// TSC cycles each processor spent running threads (counted at each switch away from a
/// thread: a thread still running is not in it yet).
static THREAD_CYCLES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Context switches on each processor.
static SWITCHES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// What processor `cpu` did for threads: (cycles it ran threads, context switches).
pub fn processor_usage(cpu: usize) -> (u64, u64) {
    (
        THREAD_CYCLES[cpu].load(Ordering::Relaxed),
        SWITCHES[cpu].load(Ordering::Relaxed),
    )
}

/// Runs CPU 0's idle loop on the boot context until every thread has exited and been
/// reaped.
pub fn run_until_all_exited() {
    loop {
        interrupts::disable();
        schedule();
        reap_zombies();
        // Done once every thread has exited and had its stack freed (another processor
        // may still be switching away from the last one, or freeing its stack: its
        // shootdown needs this processor to answer, so interrupts stay on until then).
        if with_sched(|s| s.policy.live() == 0 && s.all_reaped()) {
            interrupts::enable();
            return;
        }
        // Counted as halted time (`smp::halted_cycles`); interrupt handlers do not
        // switch away from the idle context (the loop does, above), so no thread's time
        // is in it.
        smp::halt_until_interrupt();
    }
}

/// The idle loop of every other processor (its boot context), for ever: runs what its
/// queue or another's holds, halts when there is nothing.
pub fn idle_loop() -> ! {
    loop {
        interrupts::disable();
        let taking = SCHED
            .lock()
            .as_ref()
            .is_some_and(|s| current_cpu() < s.policy.online());
        if !taking {
            // Up before the scheduler (or not given threads): calls and ticks only.
            smp::halt_until_interrupt();
            continue;
        }
        schedule();
        reap_zombies();
        smp::halt_until_interrupt();
    }
}

/// Context switches so far (for statistics and benchmarks).
pub fn context_switches() -> u64 {
    context::switches()
}
