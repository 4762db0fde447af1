//! Kernel time: the tick counter driven by the PIT interrupt.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

pub use crate::arch::pic::TICK_HZ;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Timer ticks since interrupts were enabled.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Called by the trap dispatcher on every timer interrupt (interrupts disabled).
pub fn on_timer_interrupt() {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    // The tick is charged to the process whose thread it interrupted (sampling, as Unix
    // does), before the scheduler may switch away.
    crate::process::charge_tick(crate::sched::current_owner());
    crate::recovery::watchdog(now);
    crate::sched::on_tick(now);
}
