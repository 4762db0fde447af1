//! Kernel time: the tick counter, driven by CPU 0's tick (its local APIC timer, or the
//! PIT without an I/O APIC); the other processors' ticks only charge and preempt.
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

/// Called on every tick of a processor other than CPU 0 (interrupts disabled): the tick
/// is charged to the process whose thread it interrupted there, which is then preempted.
pub fn on_processor_tick() {
    crate::process::charge_tick(crate::sched::current_owner());
    crate::sched::preempt();
}
