//! Kernel logic that needs no hardware, kept apart so ordinary `cargo test` checks it on the
//! host. The kernel crate wraps each piece with the hardware it manages.
//!
//! - [`buddy`]: the buddy frame allocator's bookkeeping over physical frame numbers.
//! - [`timer`]: hashed wake-up lists (n unsorted lists indexed by wake-up time mod n).
//! - [`sched`]: thread states and per-CPU round-robin run queues with work stealing.
//! - [`channel`]: channels checked against their contracts, endpoints and exchange-heap
//!   blocks with single owners.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod buddy;
pub mod channel;
pub mod sched;
pub mod timer;
