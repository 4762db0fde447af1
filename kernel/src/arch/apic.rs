//! The local APIC (xAPIC, memory-mapped): this processor's interrupt controller, used to
//! start the other processors and to interrupt them (inter-processor interrupts).
//!
//! Device interrupts still come through the 8259 PICs (`arch::pic`) to the boot processor:
//! its LINT0 stays in ExtINT mode when its local APIC is switched on. Every processor
//! reaches its own local APIC at the same physical address (IA32_APIC_BASE), through the
//! bootloader's physical-memory mapping, which covers the first 4 GiB; the MTRRs make that
//! range uncached.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::PhysAddr;
use x86_64::registers::model_specific::Msr;

/// The vector that asks a processor to run its pending cross-processor call.
pub const CALL_VECTOR: u8 = 0xf0;
/// Where the local APIC sends spurious interrupts (never acknowledged).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The vector that asks a processor to look at its run queue (fire and forget).
pub const RESCHEDULE_VECTOR: u8 = 0xee;
/// The local APIC timer's vector: every processor's scheduler tick (CPU 0's drives time).
pub const TIMER_VECTOR: u8 = 0xef;

const IA32_APIC_BASE: u32 = 0x1b;
const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_ESR: u64 = 0x280;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const REG_LVT_TIMER: u64 = 0x320;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;
/// ICR bit 12: the previous IPI has not been accepted yet.
const ICR_PENDING: u32 = 1 << 12;

/// Virtual address of the local APIC's registers (0 until [`init`]).
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer counts (divided by 16) per scheduler tick, measured once against the PIT (0: the
/// local APIC timers are not used).
static COUNTS_PER_TICK: AtomicU64 = AtomicU64::new(0);

fn register(offset: u64) -> *mut u32 {
    let base = BASE.load(Ordering::Relaxed);
    assert!(base != 0, "apic::init ran before the local APIC is used");
    (base + offset) as *mut u32
}

fn read(offset: u64) -> u32 {
    // SAFETY: `register` points into the 4 KiB local-APIC page mapped through the
    // physical mapping; the offsets are the architectural 32-bit registers, read whole.
    unsafe { core::ptr::read_volatile(register(offset)) }
}

fn write(offset: u64, value: u32) {
    // SAFETY: as in `read`; writes go to architectural registers of this processor's own
    // local APIC, with values the SDM defines.
    unsafe { core::ptr::write_volatile(register(offset), value) }
}

/// Switches this processor's local APIC on (software enable, spurious vector). On the
/// boot processor LINT0 is kept in ExtINT mode, so the PICs' interrupts still arrive
/// while they are in use, and LINT1 delivers NMIs; application processors mask both.
/// Calling it again changes nothing.
pub fn init(boot_processor: bool) {
    // SAFETY: reading IA32_APIC_BASE has no side effects; every x86_64 processor has it.
    let msr = unsafe { Msr::new(IA32_APIC_BASE).read() };
    let base = crate::mm::phys_to_virt(PhysAddr::new(msr & 0x000f_ffff_ffff_f000)).as_u64();
    BASE.store(base, Ordering::Relaxed);
    if msr & (1 << 11) == 0 {
        // SAFETY: sets the global enable bit, keeping the base; the APIC was disabled, so
        // nothing relied on it.
        unsafe { Msr::new(IA32_APIC_BASE).write(msr | 1 << 11) };
    }
    write(REG_TPR, 0);
    if boot_processor {
        if super::ioapic::in_use() {
            write(REG_LVT_LINT0, 1 << 16);
        } else {
            write(REG_LVT_LINT0, 0x700); // ExtINT, unmasked: the 8259s' interrupts
        }
        write(REG_LVT_LINT1, 0x400); // NMI
    } else {
        write(REG_LVT_LINT0, 1 << 16);
        write(REG_LVT_LINT1, 1 << 16);
    }
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32);
    write(REG_ESR, 0);
}

/// Whether the firmware left the local APIC in x2APIC mode (IA32_APIC_BASE bit 10), in
/// which its memory-mapped registers do not answer.
pub fn x2apic_enabled() -> bool {
    // SAFETY: reading IA32_APIC_BASE has no side effects; every x86_64 processor has it.
    unsafe { Msr::new(IA32_APIC_BASE).read() & (1 << 10) != 0 }
}

/// This processor's local APIC ID.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Signals the end of a local-APIC interrupt (an IPI; never a spurious one).
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

/// Writes the interrupt command register (high half first), interrupts masked so that a
/// handler on this processor cannot send between the two writes.
fn send(apic_id: u32, command: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        while read(REG_ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
        write(REG_ICR_HIGH, apic_id << 24);
        write(REG_ICR_LOW, command);
        while read(REG_ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
    });
}

/// INIT (assert, level), the first step of starting a processor.
pub fn send_init(apic_id: u32) {
    send(apic_id, 0x0000_4500);
}

/// STARTUP: the processor starts in real mode at physical `page` × 4096 (below 1 MiB).
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, 0x0000_4600 | page as u32);
}

/// A fixed interrupt with `vector` to the processor with `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    send(apic_id, 0x0000_4000 | vector as u32);
}

/// Measures this local APIC's timer against the PIT and starts it periodic at the
/// scheduler's tick rate. Later processors reuse the first measurement (one bus clock).
/// The measurement is the shortest of five 2 ms windows: a window this processor was held
/// up in (an emulator's thread descheduled) only comes out longer.
pub fn start_timer() {
    const WINDOW_US: u64 = 2_000;
    write(REG_TIMER_DIVIDE, 0b0011); // divide by 16
    if COUNTS_PER_TICK.load(Ordering::Relaxed) == 0 {
        write(REG_LVT_TIMER, 1 << 16); // masked, one-shot
        let shortest = (0..5)
            .map(|_| {
                write(REG_TIMER_INITIAL, u32::MAX);
                super::pic::one_shot_wait_us(WINDOW_US);
                u32::MAX - read(REG_TIMER_CURRENT)
            })
            .min()
            .unwrap_or(1);
        write(REG_TIMER_INITIAL, 0);
        let per_second = shortest as u64 * (1_000_000 / WINDOW_US);
        COUNTS_PER_TICK.store((per_second / super::pic::TICK_HZ).max(1), Ordering::Relaxed);
    }
    write(REG_LVT_TIMER, 1 << 17 | TIMER_VECTOR as u32); // periodic
    write(
        REG_TIMER_INITIAL,
        COUNTS_PER_TICK.load(Ordering::Relaxed).min(u32::MAX as u64) as u32,
    );
}

/// Timer counts per tick, if the local APIC timers drive the tick.
pub fn timer_counts_per_tick() -> Option<u64> {
    Some(COUNTS_PER_TICK.load(Ordering::Relaxed)).filter(|&c| c != 0)
}
