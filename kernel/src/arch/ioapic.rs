//! The I/O APIC: the legacy interrupt lines 0–15 (ISA devices, and PCI INTx lines as the
//! firmware numbered them) routed to the boot processor's local APIC, each at vector
//! [`VECTOR_BASE`] + line, with the trigger mode and polarity the MADT's interrupt source
//! overrides give (ISA's edge-triggered, active-high otherwise).
//!
//! What this cannot route: a PCI INTx line that the firmware describes only in ACPI's
//! `_PRT` methods (AML) and not by an interrupt line in configuration space plus an
//! override. Cordon has no AML interpreter; QEMU's machines need none.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::PhysAddr;

/// Vector of line 0; line N arrives at `VECTOR_BASE + N` (above the 8259s' 32–47, so a
/// spurious interrupt from the masked 8259s is told apart).
pub const VECTOR_BASE: u8 = 48;
/// Lines routed.
pub const LINES: u8 = 16;

const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u32 = 1 << 16;
const LEVEL: u32 = 1 << 15;
const ACTIVE_LOW: u32 = 1 << 13;

/// Virtual address of the I/O APIC's registers (0: not in use).
static BASE: AtomicU64 = AtomicU64::new(0);
/// The input pin (GSI − the I/O APIC's first GSI) and the trigger of each line, packed
/// as `pin | level << 8 | 1 << 9` (0: not routed).
static ROUTES: [AtomicU64; LINES as usize] = [const { AtomicU64::new(0) }; LINES as usize];
/// Serialises the select-then-access register pairs.
static REGISTERS: spin::Mutex<()> = spin::Mutex::new(());

/// Reads (`value` None) or writes one register; the caller holds [`REGISTERS`].
fn access(_held: &spin::MutexGuard<'_, ()>, register: u32, value: Option<u32>) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    assert!(base != 0, "ioapic::init ran before the I/O APIC is used");
    // SAFETY: IOREGSEL (base) and IOWIN (base + 0x10) of the I/O APIC the MADT lists,
    // mapped through the physical map (below 4 GiB); the caller's lock keeps the select
    // and the access together. Register numbers are the architectural ones.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, register);
        let window = (base + 0x10) as *mut u32;
        match value {
            Some(value) => {
                core::ptr::write_volatile(window, value);
                value
            }
            None => core::ptr::read_volatile(window),
        }
    }
}

/// How one ISA line arrives at the I/O APIC (from an interrupt source override).
#[derive(Clone, Copy, Debug)]
pub struct Override {
    pub line: u8,
    pub gsi: u32,
    pub level: bool,
    pub active_low: bool,
}

/// Takes over lines 0–15 from the I/O APIC at physical `address` (whose first input is
/// GSI `first_gsi`), delivering to local APIC `destination`; every line starts masked.
/// Returns how many inputs the I/O APIC has.
pub fn init(address: u32, first_gsi: u32, overrides: &[Override], destination: u32) -> u32 {
    let base = crate::mm::phys_to_virt(PhysAddr::new(address as u64)).as_u64();
    BASE.store(base, Ordering::Relaxed);
    let held = REGISTERS.lock();
    let inputs = ((access(&held, REG_VERSION, None) >> 16) & 0xff) + 1;
    for pin in 0..inputs {
        access(&held, REG_REDIRECTION + 2 * pin, Some(MASKED));
    }
    for line in 0..LINES {
        let o = overrides.iter().find(|o| o.line == line);
        // A line whose own input another line's override took (QEMU moves the PIT's
        // line 0 to input 2, the cascade's) stays unrouted.
        if o.is_none()
            && overrides
                .iter()
                .any(|o| o.gsi == line as u32 && o.line != line)
        {
            continue;
        }
        let gsi = o.map_or(line as u32, |o| o.gsi);
        let (level, active_low) = o.map_or((false, false), |o| (o.level, o.active_low));
        let Some(pin) = gsi.checked_sub(first_gsi).filter(|&p| p < inputs) else {
            continue;
        };
        let low = (VECTOR_BASE + line) as u32
            | MASKED
            | if level { LEVEL } else { 0 }
            | if active_low { ACTIVE_LOW } else { 0 };
        access(
            &held,
            REG_REDIRECTION + 2 * pin + 1,
            Some(destination << 24),
        );
        access(&held, REG_REDIRECTION + 2 * pin, Some(low));
        ROUTES[line as usize].store(pin as u64 | (level as u64) << 8 | 1 << 9, Ordering::Relaxed);
    }
    inputs
}

/// Whether lines come through the I/O APIC.
pub fn in_use() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Whether `line` is routed level-triggered (it must stay masked until its device is
/// dealt with, or it fires again at once).
pub fn is_level(line: u8) -> bool {
    ROUTES
        .get(line as usize)
        .is_some_and(|r| r.load(Ordering::Relaxed) & (1 << 8) != 0)
}

/// Masks or unmasks `line` (ignored for lines that are not routed).
pub fn set_masked(line: u8, masked: bool) {
    let Some(route) = ROUTES.get(line as usize).map(|r| r.load(Ordering::Relaxed)) else {
        return;
    };
    if route & (1 << 9) == 0 {
        return;
    }
    let register = REG_REDIRECTION + 2 * (route & 0xff) as u32;
    // One critical section for the read-modify-write: another processor masking or
    // unmasking a line in between cannot be lost.
    x86_64::instructions::interrupts::without_interrupts(|| {
        let held = REGISTERS.lock();
        let low = access(&held, register, None);
        let low = if masked { low | MASKED } else { low & !MASKED };
        access(&held, register, Some(low));
    });
}
