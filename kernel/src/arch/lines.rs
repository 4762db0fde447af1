//! Interrupt lines 0–15 as the layers above see them: masked and unmasked by number,
//! whichever controller delivers them — the I/O APIC when the MADT lists one (after
//! [`use_io_apic`]), the 8259 PICs otherwise.

use super::{apic, ioapic, pic};

/// The scheduler tick's line number (the PIT's; with the I/O APIC the tick comes from
/// each processor's local APIC timer and is handed up under the same number).
pub const TIMER: u8 = pic::TIMER_IRQ;

/// Not a device line: a local APIC timer tick on a processor other than CPU 0 (whose
/// ticks come as [`TIMER`]): it preempts that processor's thread.
pub const CPU_TICK: u8 = 16;
/// Not a device line: another processor asked this one to look at its run queue (a thread
/// was queued here while it idled).
pub const RESCHEDULE: u8 = 17;

/// Masks (`true`) or unmasks one line, 0–15. The timer and the cascade are the kernel's:
/// requests for them are ignored.
pub fn set_masked(line: u8, masked: bool) {
    if line == 0 || line == 2 || line >= 16 {
        return;
    }
    if ioapic::in_use() {
        ioapic::set_masked(line, masked);
    } else {
        pic::set_masked(line, masked);
    }
}

/// Moves the device lines from the 8259s to the I/O APIC at `address` and the tick from
/// the PIT to the boot processor's local APIC timer. Lines keep their numbers; each stays
/// masked until someone unmasks it. Runs at boot, interrupts masked.
pub fn use_io_apic(address: u32, first_gsi: u32, overrides: &[ioapic::Override]) {
    apic::init(true);
    ioapic::init(address, first_gsi, overrides, apic::id());
    pic::disable();
    // Again, now that the I/O APIC is in use: LINT0 (the 8259s' path) is masked.
    apic::init(true);
    apic::start_timer();
}

/// Line `line` fired through the I/O APIC (its vector minus the base). Level-triggered
/// lines are masked until their handler is done with the device (edge-triggered ones
/// cannot fire again until a new edge, which the local APIC keeps while this one is in
/// service); then the local APIC gets its end of interrupt.
pub(super) fn on_io_apic_line(line: u8) {
    if line != TIMER && ioapic::is_level(line) {
        ioapic::set_masked(line, true);
    }
    apic::end_of_interrupt();
}
