//! Hashed wake-up lists for timeouts (the L4 design summarised in seed `002_…`).
//!
//! A wake-up at tick `t` goes into list `t mod n`, unsorted. Each clock tick looks at one
//! list only and wakes the entries that are due; entries more than `n` ticks away stay
//! there until their round comes. Insert and cancel cost O(1) plus a short scan, and a tick
//! costs the length of one list, not of every pending timeout: the common case for IPC
//! timeouts is that they are cancelled long before they fire.

use alloc::vec::Vec;

/// Names one pending wake-up so it can be cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerHandle {
    bucket: usize,
    id: u64,
}

#[derive(Debug)]
struct Entry<T> {
    id: u64,
    deadline: u64,
    item: T,
}

/// `n` unsorted wake-up lists indexed by wake-up time mod `n`.
#[derive(Debug)]
pub struct TimerWheel<T> {
    buckets: Vec<Vec<Entry<T>>>,
    /// The last tick processed by [`TimerWheel::advance`].
    now: u64,
    next_id: u64,
    pending: usize,
}

impl<T> TimerWheel<T> {
    /// A wheel with `lists` wake-up lists (at least one), starting at tick 0.
    pub fn new(lists: usize) -> Self {
        let lists = lists.max(1);
        TimerWheel {
            buckets: (0..lists).map(|_| Vec::new()).collect(),
            now: 0,
            next_id: 0,
            pending: 0,
        }
    }

    /// The last tick processed.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of wake-ups not yet fired or cancelled.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Schedules `item` for tick `deadline`. A deadline already passed fires on the next
    /// tick.
    pub fn insert(&mut self, deadline: u64, item: T) -> TimerHandle {
        let deadline = deadline.max(self.now + 1);
        let bucket = (deadline % self.buckets.len() as u64) as usize;
        let id = self.next_id;
        self.next_id += 1;
        self.buckets[bucket].push(Entry { id, deadline, item });
        self.pending += 1;
        TimerHandle { bucket, id }
    }

    /// Removes a pending wake-up; `None` if it already fired or was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        let list = &mut self.buckets[handle.bucket];
        let at = list.iter().position(|entry| entry.id == handle.id)?;
        self.pending -= 1;
        let item = list.swap_remove(at).item;
        release_if_empty(list);
        Some(item)
    }

    /// Processes every tick up to and including `now`, calling `fire` for each due item.
    pub fn advance(&mut self, now: u64, mut fire: impl FnMut(T)) {
        while self.now < now {
            self.now += 1;
            let tick = self.now;
            let bucket = (tick % self.buckets.len() as u64) as usize;
            let list = &mut self.buckets[bucket];
            let mut i = 0;
            while i < list.len() {
                if list[i].deadline <= tick {
                    let entry = list.swap_remove(i);
                    self.pending -= 1;
                    fire(entry.item);
                } else {
                    i += 1;
                }
            }
            release_if_empty(list);
        }
    }
}

/// An empty list gives its memory back: a kernel whose usage must return to a baseline
/// exactly cannot keep what its busiest moment needed in whichever lists it used.
fn release_if_empty<T>(list: &mut Vec<T>) {
    if list.is_empty() && list.capacity() > 0 {
        *list = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired_at(wheel: &mut TimerWheel<u32>, tick: u64) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.advance(tick, |item| out.push(item));
        out.sort();
        out
    }

    #[test]
    fn emptied_lists_hold_no_memory() {
        let mut wheel = TimerWheel::new(4);
        let handle = wheel.insert(2, 1u32);
        wheel.insert(3, 2u32);
        wheel.cancel(handle);
        assert_eq!(wheel.buckets[2].capacity(), 0);
        assert_eq!(fired_at(&mut wheel, 3), vec![2]);
        assert!(wheel.buckets.iter().all(|list| list.capacity() == 0));
    }

    #[test]
    fn fires_exactly_at_deadline() {
        let mut wheel = TimerWheel::new(8);
        wheel.insert(3, 1);
        wheel.insert(5, 2);
        wheel.insert(3, 3);
        assert_eq!(fired_at(&mut wheel, 2), Vec::<u32>::new());
        assert_eq!(fired_at(&mut wheel, 3), vec![1, 3]);
        assert_eq!(wheel.pending(), 1);
        assert_eq!(fired_at(&mut wheel, 4), Vec::<u32>::new());
        assert_eq!(fired_at(&mut wheel, 5), vec![2]);
        assert_eq!(wheel.pending(), 0);
    }

    #[test]
    fn far_deadlines_wait_for_their_round() {
        let mut wheel = TimerWheel::new(4);
        wheel.insert(2, 1);
        wheel.insert(10, 2); // same list as tick 2 and 6
        assert_eq!(fired_at(&mut wheel, 2), vec![1]);
        assert_eq!(fired_at(&mut wheel, 6), Vec::<u32>::new());
        assert_eq!(fired_at(&mut wheel, 9), Vec::<u32>::new());
        assert_eq!(fired_at(&mut wheel, 10), vec![2]);
    }

    #[test]
    fn advancing_many_ticks_at_once_misses_nothing() {
        let mut wheel = TimerWheel::new(5);
        for i in 1..=40u32 {
            wheel.insert(u64::from(i), i);
        }
        let fired = fired_at(&mut wheel, 100);
        assert_eq!(fired, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn cancelled_wakeups_never_fire() {
        let mut wheel = TimerWheel::new(8);
        let a = wheel.insert(4, 1);
        let _b = wheel.insert(4, 2);
        assert_eq!(wheel.cancel(a), Some(1));
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(fired_at(&mut wheel, 4), vec![2]);
    }

    #[test]
    fn past_deadline_fires_next_tick() {
        let mut wheel = TimerWheel::new(8);
        wheel.advance(10, |_: u32| {});
        let handle = wheel.insert(3, 7);
        assert_eq!(fired_at(&mut wheel, 11), vec![7]);
        assert_eq!(wheel.cancel(handle), None);
    }
}
