//! Scheduling policy: thread states and per-CPU round-robin run queues with work stealing.
//!
//! The kernel's scheduler owns stacks and does the context switch; this module decides who
//! runs next on which processor and keeps the state machine of every thread honest:
//!
//! ```text
//!   spawn -> Ready --pick--> Running --preempt/yield--> Ready
//!                               |  \--block--> Blocked --wake--> Ready
//!                               \--exit--> Exited
//! ```
//!
//! Each processor has its own ready queue and runs the threads in it in turn. A thread
//! lives on its *home* processor (the one it last ran on). Placement:
//! - a new thread goes to an idle processor if there is one, else to the shortest queue;
//! - a thread woken by an event goes home, unless home is busy and another processor is
//!   idle (then it moves there: the waker's caller sends that processor an IPI);
//! - a thread woken by a *message* runs next on the sender's processor (L4's direct
//!   switch: the receiver gets the processor its sender is about to give up);
//! - a processor with nothing to run steals the newest ready thread of the longest queue;
//! - a thread *pinned* to a processor (benchmarks that measure a crossing) only ever goes
//!   there and is never stolen.
//!
//! A wake-up of a thread that is not blocked is ignored (it may race with a timeout), so a
//! thread is never queued twice. A thread that blocked but has not been switched away from
//! yet is woken in place: it keeps running ("register, then check, then block" relies on
//! this to lose no wake-up between its check and its switch).

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

/// Index of a thread in the kernel's thread table.
pub type ThreadId = usize;
/// A processor's number (0: the boot processor).
pub type Cpu = usize;

/// Where a thread is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    Ready,
    Running,
    Blocked,
    Exited,
}

/// What a wake-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The thread was not blocked: nothing changed.
    NotBlocked,
    /// It had not been switched away from yet (on this processor): it keeps running.
    InPlace(Cpu),
    /// Queued on this processor, which was idle (it needs a nudge if it is not the
    /// caller's) or busy (its next tick or switch finds the thread).
    Queued { cpu: Cpu, was_idle: bool },
}

/// Per-CPU round-robin queues over a table of threads.
#[derive(Debug)]
pub struct RunQueues {
    states: Vec<Option<ThreadState>>,
    home: Vec<Cpu>,
    pinned: Vec<bool>,
    ready: Vec<VecDeque<ThreadId>>,
    current: Vec<Option<ThreadId>>,
    /// Processors that take threads (the first `online` of `ready`).
    online: usize,
    migrations: u64,
    steals: u64,
}

impl RunQueues {
    /// Queues for up to `cpus` processors, of which only CPU 0 takes threads until
    /// [`RunQueues::set_online`].
    pub fn new(cpus: usize) -> Self {
        let cpus = cpus.max(1);
        RunQueues {
            states: Vec::new(),
            home: Vec::new(),
            pinned: Vec::new(),
            ready: vec![VecDeque::new(); cpus],
            current: vec![None; cpus],
            online: 1,
            migrations: 0,
            steals: 0,
        }
    }

    /// Processors 0..`cpus` take threads from now on.
    pub fn set_online(&mut self, cpus: usize) {
        self.online = cpus.clamp(1, self.ready.len());
    }

    /// Processors that take threads.
    pub fn online(&self) -> usize {
        self.online
    }

    /// Registers a new thread as ready to run and returns the processor it was queued on
    /// (an idle one if any, else the one with the fewest threads). Ids may be reused once
    /// a thread has exited and been [`RunQueues::reap`]ed.
    pub fn spawn(&mut self, id: ThreadId) -> Woken {
        self.spawn_held(id);
        self.wake(id)
    }

    /// Registers a new thread that waits for a [`RunQueues::wake`] before it first runs
    /// (its creator wires it up first: no processor can run it meanwhile).
    pub fn spawn_held(&mut self, id: ThreadId) {
        self.spawn_held_on(id, None);
    }

    /// [`RunQueues::spawn_held`], pinned to `cpu` if given (clamped to the processors
    /// online): it runs there and nowhere else.
    pub fn spawn_held_on(&mut self, id: ThreadId, pin: Option<Cpu>) {
        if self.states.len() <= id {
            self.states.resize(id + 1, None);
            self.home.resize(id + 1, 0);
            self.pinned.resize(id + 1, false);
        }
        assert!(self.states[id].is_none(), "thread {id} spawned twice");
        let cpu = match pin {
            Some(cpu) => cpu.min(self.online - 1),
            None => (0..self.online)
                .min_by_key(|&c| (self.load(c), c))
                .unwrap_or(0),
        };
        self.states[id] = Some(ThreadState::Blocked);
        self.home[id] = cpu;
        self.pinned[id] = pin.is_some();
    }

    /// Threads on `cpu`: running there plus queued.
    fn load(&self, cpu: Cpu) -> usize {
        self.ready[cpu].len() + usize::from(self.current[cpu].is_some())
    }

    /// Whether `cpu` runs nothing and has nothing queued.
    pub fn is_idle(&self, cpu: Cpu) -> bool {
        self.current[cpu].is_none() && self.ready[cpu].is_empty()
    }

    /// The thread marked running on `cpu`.
    pub fn current(&self, cpu: Cpu) -> Option<ThreadId> {
        self.current.get(cpu).copied().flatten()
    }

    /// The processor `id` is current on, if any.
    pub fn running_on(&self, id: ThreadId) -> Option<Cpu> {
        self.current.iter().position(|&c| c == Some(id))
    }

    pub fn state(&self, id: ThreadId) -> Option<ThreadState> {
        self.states.get(id).copied().flatten()
    }

    /// Threads ready and waiting for `cpu`.
    pub fn ready_len(&self, cpu: Cpu) -> usize {
        self.ready[cpu].len()
    }

    /// Threads that have not exited.
    pub fn live(&self) -> usize {
        self.states
            .iter()
            .filter(|s| matches!(s, Some(state) if *state != ThreadState::Exited))
            .count()
    }

    /// Threads that started running on a processor other than their home.
    pub fn migrations(&self) -> u64 {
        self.migrations
    }

    /// Threads an idle processor took from another's queue.
    pub fn steals(&self) -> u64 {
        self.steals
    }

    /// Chooses the next thread to run on `cpu`. The running thread, if it is still
    /// runnable, goes to the back of this processor's queue. With nothing queued here, a
    /// processor whose thread can no longer run steals from the longest queue. Returns
    /// `None` when nothing is ready (the caller idles, or keeps running its thread if it
    /// still can).
    pub fn pick_next(&mut self, cpu: Cpu) -> Option<ThreadId> {
        let runnable = self
            .current(cpu)
            .is_some_and(|cur| self.states[cur] == Some(ThreadState::Running));
        let next = match self.ready[cpu].pop_front() {
            Some(next) => next,
            None if runnable => return None,
            None => self.steal(cpu)?,
        };
        if let Some(cur) = self.current[cpu].take()
            && self.states[cur] == Some(ThreadState::Running)
        {
            self.states[cur] = Some(ThreadState::Ready);
            self.ready[cpu].push_back(cur);
        }
        if self.home[next] != cpu {
            self.migrations += 1;
            self.home[next] = cpu;
        }
        self.states[next] = Some(ThreadState::Running);
        self.current[cpu] = Some(next);
        Some(next)
    }

    /// The newest ready thread that is not pinned, of the longest other queue.
    fn steal(&mut self, cpu: Cpu) -> Option<ThreadId> {
        let pinned = &self.pinned;
        let movable = |queue: &VecDeque<ThreadId>| queue.iter().filter(|&&t| !pinned[t]).count();
        let victim = (0..self.ready.len())
            .filter(|&c| c != cpu)
            .map(|c| (movable(&self.ready[c]), c))
            .filter(|&(n, _)| n > 0)
            .max()?
            .1;
        let queue = &mut self.ready[victim];
        let at = queue.iter().rposition(|&t| !self.pinned[t])?;
        self.steals += 1;
        queue.remove(at)
    }

    /// The thread running on `cpu` will wait for [`RunQueues::wake`].
    pub fn block_current(&mut self, cpu: Cpu) {
        let cur = self.current[cpu].expect("block without a running thread");
        self.states[cur] = Some(ThreadState::Blocked);
    }

    /// The thread running on `cpu` has finished.
    pub fn exit_current(&mut self, cpu: Cpu) {
        let cur = self.current[cpu].expect("exit without a running thread");
        self.states[cur] = Some(ThreadState::Exited);
    }

    /// Makes a blocked thread ready at the back of a queue: its home's, or an idle
    /// processor's if home is busy.
    pub fn wake(&mut self, id: ThreadId) -> Woken {
        if let Some(woken) = self.wake_in_place(id) {
            return woken;
        }
        let home = self.home[id];
        let cpu = if self.current[home].is_none() || self.pinned[id] {
            home
        } else {
            (0..self.online).find(|&c| self.is_idle(c)).unwrap_or(home)
        };
        let was_idle = self.is_idle(cpu);
        self.states[id] = Some(ThreadState::Ready);
        self.ready[cpu].push_back(id);
        Woken::Queued { cpu, was_idle }
    }

    /// Makes a blocked thread ready at the *front* of `cpu`'s queue, so it runs next
    /// there: a thread woken by a message gets the processor its sender is about to give
    /// up (L4's direct switch), instead of waiting behind every ready thread.
    pub fn wake_next(&mut self, id: ThreadId, cpu: Cpu) -> Woken {
        if let Some(woken) = self.wake_in_place(id) {
            return woken;
        }
        let cpu = if self.pinned[id] { self.home[id] } else { cpu };
        let was_idle = self.is_idle(cpu);
        self.states[id] = Some(ThreadState::Ready);
        self.ready[cpu].push_front(id);
        Woken::Queued { cpu, was_idle }
    }

    /// The part of a wake-up that needs no queue: not blocked, or still current.
    fn wake_in_place(&mut self, id: ThreadId) -> Option<Woken> {
        if self.state(id) != Some(ThreadState::Blocked) {
            return Some(Woken::NotBlocked);
        }
        let cpu = self.running_on(id)?;
        self.states[id] = Some(ThreadState::Running);
        Some(Woken::InPlace(cpu))
    }

    /// Takes back a block the running thread on `cpu` announced but no longer needs (its
    /// condition held after all). A wake-up that came first already did this.
    pub fn unblock_current(&mut self, cpu: Cpu) {
        if let Some(cur) = self.current[cpu]
            && self.states[cur] == Some(ThreadState::Blocked)
        {
            self.states[cur] = Some(ThreadState::Running);
        }
    }

    /// Forgets an exited thread that is current nowhere, freeing its id.
    pub fn reap(&mut self, id: ThreadId) -> bool {
        if self.state(id) == Some(ThreadState::Exited) && self.running_on(id).is_none() {
            self.states[id] = None;
            true
        } else {
            false
        }
    }

    /// Marks that `cpu` left its current thread for the idle loop (nothing else was ready
    /// and the thread blocked or exited).
    pub fn go_idle(&mut self, cpu: Cpu) {
        if let Some(cur) = self.current[cpu]
            && self.states[cur] != Some(ThreadState::Running)
        {
            self.current[cpu] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_cpus() -> RunQueues {
        let mut rq = RunQueues::new(2);
        rq.set_online(2);
        rq
    }

    fn one_cpu(threads: usize) -> RunQueues {
        let mut rq = RunQueues::new(1);
        for id in 0..threads {
            rq.spawn(id);
        }
        rq
    }

    #[test]
    fn round_robin_order() {
        let mut rq = one_cpu(3);
        let order: Vec<_> = (0..7).map(|_| rq.pick_next(0).unwrap()).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn single_thread_keeps_running_when_nothing_else_is_ready() {
        let mut rq = one_cpu(1);
        assert_eq!(rq.pick_next(0), Some(0));
        assert_eq!(rq.pick_next(0), None);
        assert_eq!(rq.current(0), Some(0));
        assert_eq!(rq.state(0), Some(ThreadState::Running));
    }

    #[test]
    fn blocked_threads_are_skipped_until_woken() {
        let mut rq = one_cpu(2);
        assert_eq!(rq.pick_next(0), Some(0));
        rq.block_current(0);
        assert_eq!(rq.pick_next(0), Some(1));
        assert_eq!(rq.pick_next(0), None, "0 is blocked, 1 is alone");
        assert!(matches!(rq.wake(0), Woken::Queued { cpu: 0, .. }));
        assert_eq!(rq.wake(0), Woken::NotBlocked, "double wake is ignored");
        assert_eq!(rq.pick_next(0), Some(0));
        assert_eq!(rq.pick_next(0), Some(1));
        assert_eq!(rq.ready_len(0), 1);
    }

    #[test]
    fn woken_by_message_runs_next() {
        let mut rq = one_cpu(3);
        assert_eq!(rq.pick_next(0), Some(0));
        rq.block_current(0);
        assert_eq!(rq.pick_next(0), Some(1));
        rq.wake_next(0, 0);
        assert_eq!(
            rq.pick_next(0),
            Some(0),
            "ahead of 2, which was waiting longer"
        );
        assert_eq!(rq.pick_next(0), Some(2));
    }

    #[test]
    fn wake_before_switch_keeps_thread_running() {
        let mut rq = one_cpu(1);
        rq.pick_next(0);
        rq.block_current(0);
        assert_eq!(rq.wake(0), Woken::InPlace(0));
        assert_eq!(rq.state(0), Some(ThreadState::Running));
        assert_eq!(rq.ready_len(0), 0);
    }

    #[test]
    fn an_announced_block_can_be_taken_back() {
        let mut rq = one_cpu(1);
        rq.pick_next(0);
        rq.block_current(0);
        rq.unblock_current(0);
        assert_eq!(rq.state(0), Some(ThreadState::Running));
        assert_eq!(rq.wake(0), Woken::NotBlocked);
    }

    #[test]
    fn exited_threads_never_run_again_and_can_be_reaped() {
        let mut rq = one_cpu(2);
        rq.pick_next(0);
        rq.exit_current(0);
        assert_eq!(rq.wake(0), Woken::NotBlocked);
        assert!(!rq.reap(0), "still current");
        assert_eq!(rq.pick_next(0), Some(1));
        assert_eq!(rq.pick_next(0), None);
        assert_eq!(rq.live(), 1);
        assert!(rq.reap(0));
        rq.spawn(0);
        assert_eq!(rq.pick_next(0), Some(0));
    }

    #[test]
    fn idle_after_last_thread_blocks() {
        let mut rq = one_cpu(1);
        rq.pick_next(0);
        rq.block_current(0);
        assert_eq!(rq.pick_next(0), None);
        rq.go_idle(0);
        assert_eq!(rq.current(0), None);
        assert!(matches!(
            rq.wake(0),
            Woken::Queued {
                cpu: 0,
                was_idle: true
            }
        ));
        assert_eq!(rq.pick_next(0), Some(0));
    }

    #[test]
    fn a_held_thread_runs_only_once_woken() {
        let mut rq = two_cpus();
        rq.spawn_held(0);
        assert_eq!((rq.pick_next(0), rq.pick_next(1)), (None, None));
        assert_eq!(rq.live(), 1);
        assert!(matches!(
            rq.wake(0),
            Woken::Queued {
                cpu: 0,
                was_idle: true
            }
        ));
        assert_eq!(rq.pick_next(0), Some(0));
    }

    #[test]
    fn a_pinned_thread_stays_on_its_processor() {
        let mut rq = two_cpus();
        rq.spawn_held_on(0, Some(1));
        rq.spawn_held_on(1, Some(1));
        rq.wake(0);
        rq.wake(1);
        assert_eq!(rq.pick_next(0), None, "CPU 0 may not steal pinned threads");
        assert_eq!(rq.pick_next(1), Some(0));
        rq.block_current(1);
        assert_eq!(rq.pick_next(1), Some(1));
        assert_eq!(
            rq.wake_next(0, 0),
            Woken::Queued {
                cpu: 1,
                was_idle: false
            },
            "a message from CPU 0 does not move it"
        );
        assert_eq!(rq.steals(), 0);
    }

    #[test]
    fn new_threads_spread_over_online_processors() {
        let mut rq = RunQueues::new(4);
        rq.set_online(2);
        let placed: Vec<_> = (0..4)
            .map(|id| match rq.spawn(id) {
                Woken::Queued { cpu, .. } => cpu,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(placed, vec![0, 1, 0, 1], "CPUs 2 and 3 are not online");
        assert_eq!(rq.pick_next(0), Some(0));
        assert_eq!(rq.pick_next(1), Some(1));
    }

    #[test]
    fn an_idle_processor_steals_and_the_thread_moves_home() {
        let mut rq = two_cpus();
        for id in 0..3 {
            rq.spawn(id); // 0 and 2 on CPU 0, 1 on CPU 1
        }
        assert_eq!(rq.pick_next(0), Some(0));
        assert_eq!(rq.pick_next(1), Some(1));
        rq.exit_current(1);
        assert_eq!(rq.pick_next(1), Some(2), "CPU 1 took CPU 0's queued thread");
        assert_eq!((rq.steals(), rq.migrations()), (1, 1));
        assert_eq!(rq.running_on(2), Some(1));
        rq.block_current(1);
        rq.go_idle(1);
        rq.pick_next(1);
        rq.go_idle(1);
        assert!(
            matches!(
                rq.wake(2),
                Woken::Queued {
                    cpu: 1,
                    was_idle: true
                }
            ),
            "home is now CPU 1"
        );
    }

    #[test]
    fn a_busy_processor_does_not_steal_while_its_thread_can_run() {
        let mut rq = two_cpus();
        for id in 0..3 {
            rq.spawn(id);
        }
        assert_eq!(rq.pick_next(1), Some(1));
        assert_eq!(
            rq.pick_next(1),
            None,
            "1 keeps running; CPU 0's queue is its own"
        );
        assert_eq!(rq.steals(), 0);
    }

    #[test]
    fn a_woken_thread_whose_home_is_busy_goes_to_an_idle_processor() {
        let mut rq = two_cpus();
        rq.spawn(0); // CPU 0
        rq.spawn(1); // CPU 1
        assert_eq!(rq.pick_next(0), Some(0));
        assert_eq!(rq.pick_next(1), Some(1));
        rq.block_current(0);
        assert_eq!(rq.pick_next(0), None, "nothing to steal");
        rq.go_idle(0);
        rq.exit_current(1);
        assert_eq!(rq.pick_next(1), None);
        rq.go_idle(1);
        rq.spawn(2); // both idle: CPU 0
        assert_eq!(rq.pick_next(0), Some(2));
        assert_eq!(
            rq.wake(0),
            Woken::Queued {
                cpu: 1,
                was_idle: true
            },
            "home (CPU 0) is busy, CPU 1 idle"
        );
        assert_eq!(rq.pick_next(1), Some(0));
        assert_eq!(rq.migrations(), 1);
    }

    #[test]
    fn a_blocked_thread_still_current_on_another_cpu_is_woken_in_place() {
        let mut rq = two_cpus();
        rq.spawn(0);
        rq.spawn(1);
        rq.pick_next(0);
        rq.pick_next(1);
        rq.block_current(1);
        assert_eq!(rq.wake(1), Woken::InPlace(1));
        assert_eq!(rq.pick_next(1), None, "keeps running");
        assert_eq!(rq.current(1), Some(1));
    }

    #[test]
    fn a_message_moves_the_receiver_to_the_senders_processor() {
        let mut rq = two_cpus();
        rq.spawn(0); // receiver, CPU 0
        rq.spawn(1); // sender, CPU 1
        rq.pick_next(1);
        rq.pick_next(0);
        rq.block_current(0);
        assert_eq!(rq.pick_next(0), None);
        rq.go_idle(0);
        assert_eq!(
            rq.wake_next(0, 1),
            Woken::Queued {
                cpu: 1,
                was_idle: false
            }
        );
        rq.block_current(1); // the sender waits for the reply
        assert_eq!(rq.pick_next(1), Some(0));
    }
}
