//! Kernel thread stacks with guard pages.
//!
//! A thread's stack frames come from the buddy allocator as before, but the thread runs on
//! a second mapping of them in the stack area: a top-level slot of the kernel half that
//! [`init`] sets up at boot with 4 KiB page tables (outside the physical map's large
//! pages), shared by every address space. Each stack gets a [`SLOT_BYTES`] window and is
//! mapped at its top; everything below it in the window stays unmapped. A thread that
//! overflows its stack therefore faults on that guard instead of silently overwriting
//! whatever frames lie below, and the fault handler names the thread (see [`guard_of`]).
//!
//! All page tables of the area are made at boot, so mapping and unmapping stacks never
//! allocates frames (and the frame counts the reclaim checks compare stay exact).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::{FrameBlock, alloc_frame};
use super::phys_to_virt;
use crate::arch::irq::IrqMutex;

/// Virtual window per stack: the largest stack (256 KiB) plus at least one guard page.
pub const SLOT_BYTES: u64 = 512 << 10;
/// Stack of an application processor: 2^4 frames = 64 KiB.
pub const AP_STACK_ORDER: usize = 4;
/// Stacks that can exist at once.
pub const MAX_STACKS: usize = 512;
const PAGE: u64 = 4096;

/// First address of the stack area (0 until [`init`]).
static AREA: AtomicU64 = AtomicU64::new(0);
/// Physical addresses of the area's last-level tables, one per 2 MiB.
static L1: IrqMutex<[u64; L1_TABLES]> = IrqMutex::new([0; L1_TABLES]);
const L1_TABLES: usize = (MAX_STACKS as u64 * SLOT_BYTES / (2 << 20)) as usize;
/// Which windows are in use.
static USED: IrqMutex<[u64; MAX_STACKS / 64]> = IrqMutex::new([0; MAX_STACKS / 64]);

fn table(phys: u64) -> *mut PageTable {
    phys_to_virt(PhysAddr::new(phys)).as_mut_ptr::<PageTable>()
}

/// Makes the stack area. Runs once at boot, before any address space copies the kernel's
/// top level.
pub fn init() {
    AREA.store(make_area(&mut L1.lock()[..], "stacks"), Ordering::Relaxed);
}

/// Makes an area of the kernel half mapped 4 KiB at a time: a free top-level slot and
/// every table below it for `l1s.len()` × 2 MiB (at most 1 GiB), whose last-level tables'
/// physical addresses go into `l1s`. Returns the area's first address. Every address
/// space made later shares it (they copy the kernel's top level), and using it never
/// allocates page tables. Runs at boot on the only processor.
pub(super) fn make_area(l1s: &mut [u64], what: &str) -> u64 {
    assert!(l1s.len() <= 512, "an area spans at most 1 GiB");
    let inner = Flags::PRESENT | Flags::WRITABLE;
    let l4 = Cr3::read().0.start_address().as_u64();
    // SAFETY: CR3's table is live and mapped through the physical mapping; this runs at
    // boot on the only processor, before other spaces copy its entries, and only fills an
    // unused entry with tables allocated here.
    let slot = unsafe {
        let top = &mut *table(l4);
        let slot = (256..511)
            .rev()
            .find(|&i| top[i].is_unused())
            .unwrap_or_else(|| panic!("no free top-level slot in the kernel half for {what}"));
        let l3 = alloc_frame().expect("boot-time frames for a kernel area");
        let l2 = alloc_frame().expect("boot-time frames for a kernel area");
        top[slot].set_addr(l3, inner);
        (&mut *table(l3.as_u64()))[0].set_addr(l2, inner);
        for (i, l1) in l1s.iter_mut().enumerate() {
            let frame = alloc_frame().expect("boot-time frames for a kernel area");
            (&mut *table(l2.as_u64()))[i].set_addr(frame, inner);
            *l1 = frame.as_u64();
        }
        slot
    };
    // Sign-extend: the area lies in the upper half.
    0xffff_0000_0000_0000 | ((slot as u64) << 39)
}

/// The entry mapping `addr` of the area at `area` whose last-level tables are `l1s`; the
/// caller holds the lock of `l1s`, and `addr` lies in the area.
pub(super) fn area_entry(
    area: u64,
    l1s: &mut [u64],
    addr: u64,
) -> &mut x86_64::structures::paging::page_table::PageTableEntry {
    let offset = addr - area;
    let l1 = l1s[(offset / (2 << 20)) as usize];
    // SAFETY: `l1` is one of the area's tables made by `make_area`, mapped through the
    // physical mapping; the caller holds the lock of `l1s` for as long as the entry is
    // borrowed, so one entry is touched at a time.
    unsafe { &mut (&mut *table(l1))[((offset / PAGE) % 512) as usize] }
}

/// The entry mapping `addr` of the stack area; the caller holds the `L1` lock (`l1s`).
fn entry(
    l1s: &mut [u64; L1_TABLES],
    addr: u64,
) -> &mut x86_64::structures::paging::page_table::PageTableEntry {
    area_entry(AREA.load(Ordering::Relaxed), &mut l1s[..], addr)
}

/// A thread's stack, mapped with unmapped guard space below it; unmapped and freed on
/// drop.
#[derive(Debug)]
pub struct GuardedStack {
    frames: FrameBlock,
    window: usize,
}

impl GuardedStack {
    /// Maps `frames` at the top of a free window; `None` if every window is in use or the
    /// block leaves no room for a guard page.
    pub fn new(frames: FrameBlock) -> Option<GuardedStack> {
        if frames.len() as u64 + PAGE > SLOT_BYTES || AREA.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let window = {
            let mut used = USED.lock();
            let index = (0..MAX_STACKS).find(|&i| used[i / 64] & (1 << (i % 64)) == 0)?;
            used[index / 64] |= 1 << (index % 64);
            index
        };
        let stack = GuardedStack { frames, window };
        let flags = Flags::PRESENT | Flags::WRITABLE | super::vm::no_execute();
        let mut l1s = L1.lock();
        for page in 0..stack.frames.len() as u64 / PAGE {
            let at = stack.bottom() + page * PAGE;
            entry(&mut l1s, at).set_addr(stack.frames.start() + page * PAGE, flags);
        }
        drop(l1s);
        Some(stack)
    }

    /// Lowest mapped address.
    fn bottom(&self) -> u64 {
        AREA.load(Ordering::Relaxed) + (self.window as u64 + 1) * SLOT_BYTES
            - self.frames.len() as u64
    }

    /// One past the highest address of the stack (where a new stack pointer starts).
    pub fn top(&self) -> u64 {
        self.bottom() + self.frames.len() as u64
    }

    /// The address of the stack's lowest word.
    pub fn bottom_address(&self) -> u64 {
        self.bottom()
    }

    /// The stack's memory as 64-bit words, at its guarded address.
    pub fn as_mut_slice(&mut self) -> &mut [u64] {
        let ptr = self.bottom() as *mut u64;
        // SAFETY: [bottom, bottom + len) maps exactly `self.frames`, read-write, for as
        // long as `self` lives; the borrow of `self` keeps the slice from outliving it.
        unsafe { core::slice::from_raw_parts_mut(ptr, self.frames.len() / 8) }
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        let pages = self.frames.len() as u64 / PAGE;
        {
            let mut l1s = L1.lock();
            for page in 0..pages {
                entry(&mut l1s, self.bottom() + page * PAGE).set_unused();
            }
        }
        // The frames go back to the allocator: no processor may keep reaching them. Shot
        // down after the lock is released (a processor spinning for it with interrupts
        // masked could not answer), before the window can be taken again.
        crate::arch::smp::shootdown_range(VirtAddr::new(self.bottom()), pages);
        USED.lock()[self.window / 64] &= !(1 << (self.window % 64));
        // `frames` drops after this, with no mapping left pointing at them.
    }
}

/// If `addr` lies in the unmapped guard space of a window, that window's number.
pub fn guard_of(addr: u64) -> Option<usize> {
    let area = AREA.load(Ordering::Relaxed);
    if area == 0 || addr < area || addr >= area + MAX_STACKS as u64 * SLOT_BYTES {
        return None;
    }
    let window = ((addr - area) / SLOT_BYTES) as usize;
    let mut l1s = L1.try_lock()?;
    entry(&mut l1s, addr & !(PAGE - 1))
        .is_unused()
        .then_some(window)
}

/// Reads the word at `addr` in the stack area through whatever translation this processor
/// holds (the shootdown self-test reads a stack's page on another processor this way,
/// before and after the stack is unmapped and its window mapped again). `None` if `addr`
/// is not an aligned address of the area, its page is not mapped now, or the area's lock
/// is held.
pub fn read_word(addr: u64) -> Option<u64> {
    let area = AREA.load(Ordering::Relaxed);
    if area == 0 || addr < area || addr >= area + MAX_STACKS as u64 * SLOT_BYTES || addr % 8 != 0 {
        return None;
    }
    // Only tried: this runs as a cross-processor call, which must never wait for a lock
    // the waiting caller may hold.
    if entry(&mut *L1.try_lock()?, addr & !(PAGE - 1)).is_unused() {
        return None;
    }
    // SAFETY: `addr` is an aligned address of the stack area whose page the page tables
    // map (checked just above): a volatile read of one word of a stack's frames. What the
    // processor's TLB translates it to is exactly what the self-test looks at.
    Some(unsafe { core::ptr::read_volatile(addr as *const u64) })
}
