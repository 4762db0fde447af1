//! Scheduling policy: thread states and a round-robin run queue.
//!
//! The kernel's scheduler owns stacks and does the context switch; this module decides who
//! runs next and keeps the state machine of every thread honest:
//!
//! ```text
//!   spawn -> Ready --pick--> Running --preempt/yield--> Ready
//!                               |  \--block--> Blocked --wake--> Ready
//!                               \--exit--> Exited
//! ```
//!
//! A wake-up of a thread that is not blocked is ignored (it may race with a timeout), so a
//! thread is never queued twice.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Index of a thread in the kernel's thread table.
pub type ThreadId = usize;

/// Where a thread is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    Ready,
    Running,
    Blocked,
    Exited,
}

/// Round-robin policy over a table of threads.
#[derive(Debug, Default)]
pub struct RoundRobin {
    states: Vec<Option<ThreadState>>,
    ready: VecDeque<ThreadId>,
    current: Option<ThreadId>,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new thread as ready to run. Ids may be reused once a thread has exited
    /// and been [`RoundRobin::reap`]ed.
    pub fn spawn(&mut self, id: ThreadId) {
        if self.states.len() <= id {
            self.states.resize(id + 1, None);
        }
        assert!(self.states[id].is_none(), "thread {id} spawned twice");
        self.states[id] = Some(ThreadState::Ready);
        self.ready.push_back(id);
    }

    /// The thread marked running.
    pub fn current(&self) -> Option<ThreadId> {
        self.current
    }

    pub fn state(&self, id: ThreadId) -> Option<ThreadState> {
        self.states.get(id).copied().flatten()
    }

    /// Threads ready and waiting for the processor.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Threads that have not exited.
    pub fn live(&self) -> usize {
        self.states
            .iter()
            .filter(|s| matches!(s, Some(state) if *state != ThreadState::Exited))
            .count()
    }

    /// Chooses the next thread to run. The running thread, if it is still runnable, goes to
    /// the back of the queue. Returns `None` when nothing is ready (the caller idles); the
    /// running thread then stays current if it can still run.
    pub fn pick_next(&mut self) -> Option<ThreadId> {
        let next = self.ready.pop_front()?;
        if let Some(cur) = self.current.take()
            && self.states[cur] == Some(ThreadState::Running)
        {
            self.states[cur] = Some(ThreadState::Ready);
            self.ready.push_back(cur);
        }
        self.states[next] = Some(ThreadState::Running);
        self.current = Some(next);
        Some(next)
    }

    /// The running thread will wait for [`RoundRobin::wake`].
    pub fn block_current(&mut self) {
        let cur = self.current.expect("block without a running thread");
        self.states[cur] = Some(ThreadState::Blocked);
    }

    /// The running thread has finished.
    pub fn exit_current(&mut self) {
        let cur = self.current.expect("exit without a running thread");
        self.states[cur] = Some(ThreadState::Exited);
    }

    /// Makes a blocked thread ready at the back of the queue. Returns false (and does
    /// nothing) if it was not blocked.
    pub fn wake(&mut self, id: ThreadId) -> bool {
        self.wake_at(id, false)
    }

    /// Makes a blocked thread ready at the *front* of the queue, so it runs next: a
    /// thread woken by a message gets the processor its sender is about to give up
    /// (L4's direct switch), instead of waiting behind every ready thread.
    pub fn wake_next(&mut self, id: ThreadId) -> bool {
        self.wake_at(id, true)
    }

    fn wake_at(&mut self, id: ThreadId, front: bool) -> bool {
        if self.state(id) != Some(ThreadState::Blocked) {
            return false;
        }
        // A thread that blocked but has not yet been switched away from is still current:
        // it simply keeps running.
        if self.current == Some(id) {
            self.states[id] = Some(ThreadState::Running);
        } else {
            self.states[id] = Some(ThreadState::Ready);
            if front {
                self.ready.push_front(id);
            } else {
                self.ready.push_back(id);
            }
        }
        true
    }

    /// Forgets an exited thread that is no longer current, freeing its id.
    pub fn reap(&mut self, id: ThreadId) -> bool {
        if self.state(id) == Some(ThreadState::Exited) && self.current != Some(id) {
            self.states[id] = None;
            true
        } else {
            false
        }
    }

    /// Marks that the processor left `current` for the idle loop (nothing else was ready
    /// and the current thread blocked or exited).
    pub fn go_idle(&mut self) {
        if let Some(cur) = self.current
            && self.states[cur] != Some(ThreadState::Running)
        {
            self.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_order() {
        let mut rr = RoundRobin::new();
        for id in 0..3 {
            rr.spawn(id);
        }
        let order: Vec<_> = (0..7).map(|_| rr.pick_next().unwrap()).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn single_thread_keeps_running_when_nothing_else_is_ready() {
        let mut rr = RoundRobin::new();
        rr.spawn(0);
        assert_eq!(rr.pick_next(), Some(0));
        assert_eq!(rr.pick_next(), None);
        assert_eq!(rr.current(), Some(0));
        assert_eq!(rr.state(0), Some(ThreadState::Running));
    }

    #[test]
    fn blocked_threads_are_skipped_until_woken() {
        let mut rr = RoundRobin::new();
        rr.spawn(0);
        rr.spawn(1);
        assert_eq!(rr.pick_next(), Some(0));
        rr.block_current();
        assert_eq!(rr.pick_next(), Some(1));
        assert_eq!(rr.pick_next(), None, "0 is blocked, 1 is alone");
        assert!(rr.wake(0));
        assert!(!rr.wake(0), "double wake is ignored");
        assert_eq!(rr.pick_next(), Some(0));
        assert_eq!(rr.pick_next(), Some(1));
        assert_eq!(rr.ready_len(), 1);
    }

    #[test]
    fn woken_by_message_runs_next() {
        let mut rr = RoundRobin::new();
        for id in 0..3 {
            rr.spawn(id);
        }
        assert_eq!(rr.pick_next(), Some(0));
        rr.block_current();
        assert_eq!(rr.pick_next(), Some(1));
        assert!(rr.wake_next(0));
        assert_eq!(
            rr.pick_next(),
            Some(0),
            "ahead of 2, which was waiting longer"
        );
        assert_eq!(rr.pick_next(), Some(2));
    }

    #[test]
    fn wake_before_switch_keeps_thread_running() {
        let mut rr = RoundRobin::new();
        rr.spawn(0);
        rr.pick_next();
        rr.block_current();
        assert!(rr.wake(0));
        assert_eq!(rr.state(0), Some(ThreadState::Running));
        assert_eq!(rr.ready_len(), 0);
    }

    #[test]
    fn exited_threads_never_run_again_and_can_be_reaped() {
        let mut rr = RoundRobin::new();
        rr.spawn(0);
        rr.spawn(1);
        rr.pick_next();
        rr.exit_current();
        assert!(!rr.wake(0));
        assert!(!rr.reap(0), "still current");
        assert_eq!(rr.pick_next(), Some(1));
        assert_eq!(rr.pick_next(), None);
        assert_eq!(rr.live(), 1);
        assert!(rr.reap(0));
        rr.spawn(0);
        assert_eq!(rr.pick_next(), Some(0));
    }

    #[test]
    fn idle_after_last_thread_blocks() {
        let mut rr = RoundRobin::new();
        rr.spawn(0);
        rr.pick_next();
        rr.block_current();
        assert_eq!(rr.pick_next(), None);
        rr.go_idle();
        assert_eq!(rr.current(), None);
        assert!(rr.wake(0));
        assert_eq!(rr.pick_next(), Some(0));
    }
}
