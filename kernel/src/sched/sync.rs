//! Blocking primitives for kernel threads: wait queues (with timeouts on the hashed
//! wake-up lists) and counting semaphores built on them. Safe across processors: a
//! waiter registers before it checks its condition (see [`WaitQueue::wait_until`]); lock
//! order: the scheduler's lock, then a queue's list; a notifier takes the list, releases
//! it, then wakes.
#![deny(unsafe_code)]

use alloc::collections::VecDeque;
use kernel_core::sched::ThreadId;
use x86_64::instructions::interrupts;

use crate::arch::irq::IrqMutex;

/// Threads waiting for a condition, woken in FIFO order.
pub struct WaitQueue {
    waiters: IrqMutex<VecDeque<ThreadId>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue {
            waiters: IrqMutex::new(VecDeque::new()),
        }
    }

    /// Blocks until `condition` holds. The thread joins the queue and is marked blocked
    /// before each check (`sched::block_unless`), so a notification from any processor
    /// between the check and the switch away cannot be lost.
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        interrupts::without_interrupts(|| {
            while !condition() {
                let (me, how) = super::block_unless(
                    |id| self.waiters.lock().push_back(id),
                    &mut condition,
                    None,
                );
                if how == super::Unblocked::ConditionHeld {
                    self.leave(me);
                    return;
                }
            }
        });
    }

    /// Like [`WaitQueue::wait_until`] but gives up after `ticks`; returns whether the
    /// condition holds.
    pub fn wait_until_timeout(&self, mut condition: impl FnMut() -> bool, ticks: u64) -> bool {
        let deadline = crate::time::ticks() + ticks;
        interrupts::without_interrupts(|| {
            loop {
                if condition() {
                    return true;
                }
                let now = crate::time::ticks();
                if now >= deadline {
                    return false;
                }
                let (me, how) = super::block_unless(
                    |id| self.waiters.lock().push_back(id),
                    &mut condition,
                    Some(deadline - now),
                );
                match how {
                    super::Unblocked::ConditionHeld => {
                        self.leave(me);
                        return true;
                    }
                    // Leave the queue so a later notification goes to a thread that is
                    // still waiting.
                    super::Unblocked::TimedOut => self.leave(me),
                    super::Unblocked::Woken => {}
                }
            }
        })
    }

    /// Takes `me` off the queue (it stopped waiting without being notified), so that no
    /// later notification is spent on it — or wakes it early from another wait.
    fn leave(&self, me: ThreadId) {
        let mut waiters = self.waiters.lock();
        waiters.retain(|&w| w != me);
        release_if_empty(&mut waiters);
    }

    /// Wakes the longest-waiting thread. Returns whether one was woken.
    pub fn notify_one(&self) -> bool {
        loop {
            let Some(id) = self.pop(VecDeque::pop_front) else {
                return false;
            };
            // A thread whose timeout already woke it is skipped.
            if super::wake(id) {
                return true;
            }
        }
    }

    /// Wakes every waiting thread.
    pub fn notify_all(&self) {
        while self.notify_one() {}
    }

    /// Wakes every waiting thread and lets them run before other ready threads (for
    /// message delivery: the receiver should get the processor its sender gives up).
    pub fn notify_all_next(&self) {
        loop {
            let Some(id) = self.pop(VecDeque::pop_back) else {
                return;
            };
            // Taken newest first and each pushed to the front: they run in FIFO order.
            super::wake_next(id);
        }
    }

    /// Takes one waiter off the list (freeing the list's memory once it is empty).
    fn pop(&self, take: fn(&mut VecDeque<ThreadId>) -> Option<ThreadId>) -> Option<ThreadId> {
        let mut waiters = self.waiters.lock();
        let id = take(&mut waiters);
        release_if_empty(&mut waiters);
        id
    }

    /// Number of threads queued.
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An empty list gives its memory back: a queue per process slot (the channel waits)
/// would otherwise keep what its busiest moment needed, for ever.
fn release_if_empty(waiters: &mut VecDeque<ThreadId>) {
    if waiters.is_empty() && waiters.capacity() > 0 {
        *waiters = VecDeque::new();
    }
}

/// A counting semaphore.
pub struct Semaphore {
    count: IrqMutex<usize>,
    queue: WaitQueue,
}

impl Semaphore {
    pub const fn new(initial: usize) -> Self {
        Semaphore {
            count: IrqMutex::new(initial),
            queue: WaitQueue::new(),
        }
    }

    fn try_take(&self) -> bool {
        let mut count = self.count.lock();
        if *count > 0 {
            *count -= 1;
            true
        } else {
            false
        }
    }

    /// P: waits until the count is positive, then decrements it.
    pub fn down(&self) {
        self.queue.wait_until(|| self.try_take());
    }

    /// V: increments the count and wakes one waiter.
    pub fn up(&self) {
        *self.count.lock() += 1;
        self.queue.notify_one();
    }
}
