//! Address spaces: page tables with a private user region, and copy-on-write fork.
//!
//! Every address space shares the kernel's top-level entries (the same lower-level tables,
//! so kernel mappings are identical everywhere) and owns one top-level slot, unused by the
//! bootloader's layout, as its user region. Pages there are mapped 4 KiB at a time from the
//! frame allocator; each mapped frame has a reference count.
//!
//! [`AddressSpace::fork`] gives the child the same frames: every writable page of the parent
//! becomes read-only with the copy-on-write mark (PTE bit 9) in both, and its count goes up.
//! A write to such a page faults (error code P=1, W/R=1); [`resolve_fault`] copies the page
//! into a fresh frame if others still share it, or just makes it writable again if the
//! faulting space is the last holder. Every mapping change is followed by `invlpg` when
//! the space is active. Dropping a space drops its references; frames whose count reaches
//! zero, and its page tables, go back to the frame allocator.
//!
//! Pages can also be reserved *demand-zero* ([`AddressSpace::reserve_lazy`]): nothing is
//! mapped until the first touch faults, and [`resolve_fault`] then maps a zeroed frame.
//! The hosted SIP runtime's heap (where its SIP's linear memory lives) works this way.
//!
//! System calls reach user memory only through [`UserAccess`], which checks that every
//! page of a range is mapped in the caller's space (faulting in demand-zero and
//! copy-on-write pages) before it hands out a slice.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use x86_64::instructions::tlb;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::{alloc_frame, free_frame};
use super::{FRAME_SIZE, phys_to_virt};
use crate::arch::irq::IrqMutex;
use crate::arch::smp;

/// The copy-on-write mark in a page-table entry (an OS-available bit).
const COW: Flags = Flags::BIT_9;
const PAGE: u64 = 4096;
/// Flags of the page tables above user pages.
const TABLE: Flags = Flags::PRESENT
    .union(Flags::WRITABLE)
    .union(Flags::USER_ACCESSIBLE);

static USER_SLOT: AtomicUsize = AtomicUsize::new(0);
/// Whether EFER.NXE is on, so that non-executable pages can say so.
static NX: AtomicBool = AtomicBool::new(false);
/// Demand-zero ranges: (top-level table of the space, range, flags of the pages).
static LAZY: IrqMutex<Vec<(u64, Range<u64>, Flags)>> = IrqMutex::new(Vec::new());
/// Demand-zero pages mapped since boot.
pub static DEMAND_FAULTS: AtomicU64 = AtomicU64::new(0);
static KERNEL_L4: AtomicU64 = AtomicU64::new(0);
/// References to each frame mapped in some user region, by frame number.
static REFS: IrqMutex<Vec<u16>> = IrqMutex::new(Vec::new());

/// Copy-on-write faults resolved since boot.
pub static COW_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Single-page TLB invalidations (`invlpg`) after mapping changes.
pub static TLB_INVALIDATIONS: AtomicU64 = AtomicU64::new(0);

/// Drops `page`'s translation from the TLB (every mapping change ends with this).
fn invalidate(page: VirtAddr) {
    TLB_INVALIDATIONS.fetch_add(1, Ordering::Relaxed);
    tlb::flush(page);
}
/// Pages copied by those faults (a fault on a page no one else shares copies nothing).
pub static PAGES_COPIED: AtomicU64 = AtomicU64::new(0);

/// Finds the user slot and sizes the reference counts. Runs once, after `mm::init`.
pub fn init() {
    let (l4, _) = Cr3::read();
    KERNEL_L4.store(l4.start_address().as_u64(), Ordering::Relaxed);
    smp::note_loaded_table();
    // SAFETY: CR3 holds the active top-level table, reachable through the physical
    // mapping; it is only read here.
    let kernel = unsafe { &*table(l4.start_address()) };
    let slot = (1..256)
        .find(|&i| kernel[i].is_unused())
        .expect("a free top-level slot in the lower half for user space");
    USER_SLOT.store(slot, Ordering::Relaxed);
    let efer = x86_64::registers::model_specific::Efer::read();
    NX.store(
        efer.contains(x86_64::registers::model_specific::EferFlags::NO_EXECUTE_ENABLE),
        Ordering::Relaxed,
    );
    *REFS.lock() = vec![0; super::frames::end_frame() as usize];
}

/// First address of every space's user region (512 GiB long).
pub fn user_base() -> VirtAddr {
    VirtAddr::new((USER_SLOT.load(Ordering::Relaxed) as u64) << 39)
}

/// Whether pages can be marked non-executable (EFER.NXE).
pub fn nx_enabled() -> bool {
    NX.load(Ordering::Relaxed)
}

/// `NO_EXECUTE` where EFER.NXE is on (the bit is reserved otherwise), else no flag.
pub fn no_execute() -> Flags {
    if nx_enabled() {
        Flags::NO_EXECUTE
    } else {
        Flags::empty()
    }
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub writable: bool,
    pub executable: bool,
    /// Reachable from ring 3 (otherwise ring 0 only).
    pub user: bool,
}

impl Access {
    fn flags(self) -> Flags {
        let mut flags = Flags::PRESENT;
        if self.writable {
            flags |= Flags::WRITABLE;
        }
        if self.user {
            flags |= Flags::USER_ACCESSIBLE;
        }
        if !self.executable {
            flags |= no_execute();
        }
        flags
    }
}

fn in_user_region(addr: u64) -> bool {
    let base = user_base().as_u64();
    addr >= base && addr < base + (1 << 39)
}

/// Checks that [`addr`, `addr + len`) is page-aligned at its start, does not wrap and lies
/// in the user region.
fn check_range(addr: VirtAddr, len: u64) -> Result<(), MapError> {
    let end = addr.as_u64().checked_add(len).ok_or(MapError::BadAddress)?;
    if len == 0
        || !addr.is_aligned(PAGE)
        || !in_user_region(addr.as_u64())
        || !in_user_region(end - 1)
    {
        return Err(MapError::BadAddress);
    }
    Ok(())
}

fn table(phys: PhysAddr) -> *mut PageTable {
    phys_to_virt(phys).as_mut_ptr::<PageTable>()
}

fn frame_number(addr: PhysAddr) -> usize {
    (addr.as_u64() / FRAME_SIZE) as usize
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Outside the user region, or not page-aligned.
    BadAddress,
    /// Something is already mapped there.
    Mapped,
    OutOfMemory,
}

/// One address space.
pub struct AddressSpace {
    l4: PhysAddr,
}

impl AddressSpace {
    /// A space with the kernel's mappings and an empty user region.
    pub fn new() -> Option<AddressSpace> {
        let l4 = alloc_frame()?;
        let kernel = PhysAddr::new(KERNEL_L4.load(Ordering::Relaxed));
        let slot = USER_SLOT.load(Ordering::Relaxed);
        // SAFETY: both tables are mapped through the physical mapping; `l4` was just
        // allocated for this space alone, the kernel table is only read.
        unsafe {
            let (src, dst) = (&*table(kernel), &mut *table(l4));
            for i in (0..512).filter(|&i| i != slot) {
                dst[i] = src[i].clone();
            }
        }
        Some(AddressSpace { l4 })
    }

    /// Physical address of the top-level table (what CR3 holds for this space).
    pub fn l4(&self) -> PhysAddr {
        self.l4
    }

    /// Whether this space is loaded in CR3.
    pub fn is_active(&self) -> bool {
        Cr3::read().0.start_address() == self.l4
    }

    /// Loads this space. Kernel code and data stay where they were.
    pub fn activate(&self) {
        x86_64::instructions::interrupts::without_interrupts(|| {
            // SAFETY: the table maps the kernel exactly as the active one does (shared
            // top-level entries), so execution continues unaffected.
            unsafe { smp::load_table(self.l4.as_u64()) }
        });
    }

    /// Loads the kernel's own space.
    pub fn activate_kernel() {
        let kernel = KERNEL_L4.load(Ordering::Relaxed);
        x86_64::instructions::interrupts::without_interrupts(|| {
            // SAFETY: the boot page table, from which every space copies its kernel
            // entries.
            unsafe { smp::load_table(kernel) }
        });
    }

    /// The leaf entry for `addr`, creating the tables above it if `create`.
    fn leaf(&mut self, addr: VirtAddr, create: bool) -> Option<&mut PageTableEntry> {
        let indices = [addr.p4_index(), addr.p3_index(), addr.p2_index()];
        let mut current = self.l4;
        for index in indices {
            // SAFETY: `current` is a page table of this space (its top level or one it
            // allocated), mapped through the physical mapping; one reference at a time.
            let entry = unsafe { &mut (&mut *table(current))[index] };
            if entry.is_unused() {
                if !create {
                    return None;
                }
                entry.set_addr(alloc_frame()?, TABLE);
            }
            current = entry.addr();
        }
        // SAFETY: as above, for the last-level table.
        Some(unsafe { &mut (&mut *table(current))[addr.p1_index()] })
    }

    /// Maps `pages` fresh zeroed pages at `addr` in the user region, writable from ring 3.
    pub fn map_zeroed(&mut self, addr: VirtAddr, pages: usize) -> Result<(), MapError> {
        let access = Access {
            writable: true,
            executable: true,
            user: true,
        };
        self.map_pages(addr, pages as u64, access)
    }

    /// Maps `pages` zeroed pages at `addr` with `access`. A page that is already mapped
    /// keeps its frame and gains the rights `access` adds (segments may share a page).
    pub fn map_pages(
        &mut self,
        addr: VirtAddr,
        pages: u64,
        access: Access,
    ) -> Result<(), MapError> {
        check_range(addr, pages.checked_mul(PAGE).ok_or(MapError::BadAddress)?)?;
        // Rights only grow here, but a processor holding the old, narrower translation
        // would fault on a right the page now has.
        self.change(|space| space.map_pages_locked(addr, pages, access))
    }

    fn map_pages_locked(
        &mut self,
        addr: VirtAddr,
        pages: u64,
        access: Access,
    ) -> Result<(), MapError> {
        let active = self.is_active();
        let wanted = access.flags();
        for i in 0..pages {
            let page = addr + i * PAGE;
            let entry = self.leaf(page, true).ok_or(MapError::OutOfMemory)?;
            if entry.is_unused() {
                let frame = alloc_frame().ok_or(MapError::OutOfMemory)?;
                REFS.lock()[frame_number(frame)] = 1;
                entry.set_addr(frame, wanted);
            } else {
                if REFS.lock()[frame_number(entry.addr())] != 1 {
                    return Err(MapError::Mapped); // never widen a shared frame's rights
                }
                let mut flags = entry.flags() | (wanted - Flags::NO_EXECUTE);
                if !wanted.contains(Flags::NO_EXECUTE) {
                    flags -= Flags::NO_EXECUTE;
                }
                entry.set_flags(flags);
            }
            if active {
                invalidate(page);
            }
        }
        Ok(())
    }

    /// Maps the frames behind `pages` pages at `from` in `source` at `to` in this space as
    /// well, read-only (shared text: one copy of a program's code for every SIP). Each
    /// frame's reference count goes up; unmapping or dropping either space drops it.
    pub fn alias_from(
        &mut self,
        source: &mut AddressSpace,
        from: VirtAddr,
        to: VirtAddr,
        pages: u64,
    ) -> Result<(), MapError> {
        check_range(to, pages.checked_mul(PAGE).ok_or(MapError::BadAddress)?)?;
        let active = self.is_active();
        for i in 0..pages {
            let (frame, flags) = match source.leaf(from + i * PAGE, false) {
                Some(entry) if !entry.is_unused() => (entry.addr(), entry.flags()),
                _ => return Err(MapError::BadAddress),
            };
            let page = to + i * PAGE;
            let entry = self.leaf(page, true).ok_or(MapError::OutOfMemory)?;
            if !entry.is_unused() {
                return Err(MapError::Mapped);
            }
            entry.set_addr(frame, flags - Flags::WRITABLE - COW);
            REFS.lock()[frame_number(frame)] += 1;
            if active {
                invalidate(page);
            }
        }
        Ok(())
    }

    /// Copies `data` to `addr` through the physical mapping (the space need not be
    /// active, and read-only pages can be filled). Every page must be mapped.
    pub fn write_bytes(&mut self, addr: VirtAddr, data: &[u8]) -> Result<(), MapError> {
        let mut done = 0usize;
        while done < data.len() {
            let at = addr + done as u64;
            let in_page = (PAGE - at.as_u64() % PAGE) as usize;
            let chunk = in_page.min(data.len() - done);
            let entry = self
                .leaf(at.align_down(PAGE), false)
                .ok_or(MapError::BadAddress)?;
            if entry.is_unused() {
                return Err(MapError::BadAddress);
            }
            let target = phys_to_virt(entry.addr()) + at.as_u64() % PAGE;
            // SAFETY: the frame is mapped in this space's user region, so it belongs to
            // the frame allocator's user pages; `chunk` stays inside it.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data[done..].as_ptr(),
                    target.as_mut_ptr::<u8>(),
                    chunk,
                );
            }
            done += chunk;
        }
        Ok(())
    }

    /// Reserves [`addr`, `addr + len`) demand-zero: pages appear, zeroed, on first touch.
    pub fn reserve_lazy(
        &mut self,
        addr: VirtAddr,
        len: u64,
        access: Access,
    ) -> Result<(), MapError> {
        check_range(addr, len)?;
        LAZY.lock().push((
            self.l4.as_u64(),
            addr.as_u64()..addr.as_u64() + len,
            access.flags(),
        ));
        Ok(())
    }

    /// Unmaps every page in [`start`, `end`) and drops its demand-zero reservations;
    /// frames no other space shares go back to the allocator.
    pub fn unmap_range(&mut self, start: VirtAddr, end: VirtAddr) {
        let l4 = self.l4.as_u64();
        LAZY.lock().retain(|(space, range, _)| {
            *space != l4 || range.end <= start.as_u64() || range.start >= end.as_u64()
        });
        // Frames are released only once no processor can reach them any more.
        let freed = self.change(|space| {
            let active = space.is_active();
            let mut freed = Vec::new();
            space.for_each_page(|addr, entry| {
                if addr >= start && addr < end {
                    freed.push(entry.addr());
                    entry.set_unused();
                    if active {
                        invalidate(addr);
                    }
                }
            });
            freed
        });
        release_frames(freed);
    }

    /// Makes a change to this space's tables under the page-table lock (a space may be
    /// shared, and its faults resolved on several processors at once), then drops the
    /// translations other processors that have the space loaded may hold: one IPI to
    /// each, which reloads its CR3 (this processor's own `invlpg`s are the change's).
    /// Interrupts stay masked from the change to the last flush: the thread cannot move
    /// to a processor that the list of "others" would then leave out.
    fn change<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let result = {
                let _tables = TABLES.lock();
                f(self)
            };
            flush_elsewhere(self.l4.as_u64());
            result
        })
    }

    /// Calls `f` for every mapped user page: (address, leaf entry).
    fn for_each_page(&mut self, mut f: impl FnMut(VirtAddr, &mut PageTableEntry)) {
        let slot = USER_SLOT.load(Ordering::Relaxed);
        // SAFETY (all four levels): the tables belong to this space and are reached through
        // the physical mapping; each reference lives only inside its loop iteration.
        let l4 = unsafe { &mut *table(self.l4) };
        if l4[slot].is_unused() {
            return;
        }
        let l3 = unsafe { &mut *table(l4[slot].addr()) };
        for (i3, e3) in l3.iter_mut().enumerate().filter(|(_, e)| !e.is_unused()) {
            let l2 = unsafe { &mut *table(e3.addr()) };
            for (i2, e2) in l2.iter_mut().enumerate().filter(|(_, e)| !e.is_unused()) {
                let l1 = unsafe { &mut *table(e2.addr()) };
                for (i1, e1) in l1.iter_mut().enumerate().filter(|(_, e)| !e.is_unused()) {
                    let addr = ((slot as u64) << 39)
                        | ((i3 as u64) << 30)
                        | ((i2 as u64) << 21)
                        | ((i1 as u64) << 12);
                    f(VirtAddr::new(addr), e1);
                }
            }
        }
    }

    /// Pages mapped in the user region.
    pub fn user_pages(&mut self) -> usize {
        let mut count = 0;
        self.for_each_page(|_, _| count += 1);
        count
    }

    /// A copy of this space that shares every user page copy-on-write.
    pub fn fork(&mut self) -> Option<AddressSpace> {
        let mut child = AddressSpace::new()?;
        let pages = self.change(|space| {
            let active = space.is_active();
            let mut pages = Vec::new();
            space.for_each_page(|addr, entry| {
                let mut flags = entry.flags();
                if flags.contains(Flags::WRITABLE) || flags.contains(COW) {
                    flags = (flags - Flags::WRITABLE) | COW;
                    entry.set_flags(flags);
                    if active {
                        invalidate(addr);
                    }
                }
                pages.push((addr, entry.addr(), flags));
            });
            pages
        });
        let mut refs = REFS.lock();
        for (addr, frame, flags) in pages {
            let Some(entry) = child.leaf(addr, true) else {
                drop(refs);
                return None; // `child` drops what it has mapped so far
            };
            entry.set_addr(frame, flags);
            refs[frame_number(frame)] += 1;
        }
        Some(child)
    }

    /// Runs `f` with this space loaded, then reloads the one that was active.
    /// The space becomes the running thread's for the time (so it stays loaded if the
    /// thread moves to another processor); afterwards the thread's own space, or the
    /// kernel's, is loaded again.
    fn with_active<R>(&self, f: impl FnOnce() -> R) -> R {
        let own = crate::arch::context::address_space();
        crate::arch::context::set_address_space(self.l4.as_u64());
        let result = f();
        crate::arch::context::set_address_space(own);
        if own == 0 {
            AddressSpace::activate_kernel();
        }
        result
    }

    fn check_mapped(&mut self, addr: VirtAddr) -> Result<(), MapError> {
        if !addr.is_aligned(8u64) || !in_user_region(addr.as_u64()) {
            return Err(MapError::BadAddress);
        }
        match self.leaf(addr, false) {
            Some(entry) if !entry.is_unused() => Ok(()),
            _ => Err(MapError::BadAddress),
        }
    }

    /// Writes a word at user address `addr` of this space, through its own mapping (so a
    /// copy-on-write page faults and is copied, as a user write would). For the kernel's
    /// copy-on-write tests and benchmarks: a window onto user pages for one write.
    pub fn write_u64(&mut self, addr: VirtAddr, value: u64) -> Result<(), MapError> {
        self.check_mapped(addr)?;
        self.with_active(|| {
            crate::arch::smap::allow_user_access();
            // SAFETY: the page is mapped in this space (checked), which is active; a
            // copy-on-write page faults and `resolve_fault` makes it writable first.
            unsafe { core::ptr::write_volatile(addr.as_mut_ptr::<u64>(), value) };
            crate::arch::smap::forbid_user_access();
        });
        Ok(())
    }

    /// Writes `value` to the first word of each of `pages` pages from `start`, all in one
    /// activation of this space, as a user loop would: a copy-on-write page faults and is
    /// copied, a demand-zero page faults and is mapped (both trapped, through
    /// [`resolve_fault`]). Every page must be mapped or reserved demand-zero. For the
    /// kernel's fault benchmarks: the faults they time are the processor's own.
    pub fn touch_pages(&mut self, start: VirtAddr, pages: u64, value: u64) -> Result<(), MapError> {
        let l4 = self.l4.as_u64();
        for i in 0..pages {
            let page = start + i * PAGE;
            if self.check_mapped(page).is_err() {
                let reserved = LAZY
                    .lock()
                    .iter()
                    .any(|(s, range, _)| *s == l4 && range.contains(&page.as_u64()));
                if !reserved {
                    return Err(MapError::BadAddress);
                }
            }
        }
        self.with_active(|| {
            crate::arch::smap::allow_user_access();
            for i in 0..pages {
                let page = start + i * PAGE;
                // SAFETY: every page is mapped in this space or reserved demand-zero
                // (checked), and the space is active: the write lands, or faults and is
                // resolved by `resolve_fault` before it lands.
                unsafe { core::ptr::write_volatile(page.as_mut_ptr::<u64>(), value) };
            }
            crate::arch::smap::forbid_user_access();
        });
        Ok(())
    }

    /// Reads a word at user address `addr` of this space (a window for one read).
    pub fn read_u64(&mut self, addr: VirtAddr) -> Result<u64, MapError> {
        self.check_mapped(addr)?;
        Ok(self.with_active(|| {
            crate::arch::smap::allow_user_access();
            // SAFETY: the page is mapped in this space (checked), which is active.
            let value = unsafe { core::ptr::read_volatile(addr.as_ptr::<u64>()) };
            crate::arch::smap::forbid_user_access();
            value
        }))
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        let l4 = self.l4.as_u64();
        // Off every processor that still has it loaded (one that ran a thread of it and
        // has only idled or run kernel threads since), this one included, before its
        // tables are freed: masked, so the thread cannot move between the two.
        x86_64::instructions::interrupts::without_interrupts(|| {
            if self.is_active() {
                AddressSpace::activate_kernel();
            }
            for cpu in smp::others_with_cr3(l4) {
                smp::call_on(cpu, evict_if_loaded, l4);
            }
        });
        LAZY.lock().retain(|(space, _, _)| *space != l4);
        let mut frames = Vec::new();
        self.for_each_page(|_, entry| frames.push(entry.addr()));
        release_frames(frames);
        // Page tables of the user region, bottom up, then the top level.
        let slot = USER_SLOT.load(Ordering::Relaxed);
        // SAFETY: the space is no longer active and its tables are no longer reachable
        // from anywhere else; each is read once before being freed.
        unsafe {
            let l4 = &mut *table(self.l4);
            if !l4[slot].is_unused() {
                let l3 = &mut *table(l4[slot].addr());
                for e3 in l3.iter().filter(|e| !e.is_unused()) {
                    let l2 = &*table(e3.addr());
                    for e2 in l2.iter().filter(|e| !e.is_unused()) {
                        free_frame(e2.addr());
                    }
                    free_frame(e3.addr());
                }
                free_frame(l4[slot].addr());
            }
        }
        free_frame(self.l4);
    }
}

/// Serializes changes to page tables and the resolution of faults: spaces can be shared
/// (the `paged` configurations), so two processors may fault in one space at once.
/// Taken before [`REFS`] and [`LAZY`]; never held across a cross-processor call.
static TABLES: IrqMutex<()> = IrqMutex::new(());

/// User-space shootdowns: changes to a space another processor had loaded, whose
/// translations it was made to drop.
pub static USER_SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Drops the translations of the space at `l4` on every other processor that has it
/// loaded (call after the change, with no lock held).
fn flush_elsewhere(l4: u64) {
    if !smp::shootdowns_on() {
        return;
    }
    let mut asked = false;
    for cpu in smp::others_with_cr3(l4) {
        smp::call_on(cpu, flush_if_loaded, l4);
        asked = true;
    }
    if asked {
        USER_SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
        smp::SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    }
}

/// For the user-space shootdown self-test, run on another processor by a call that
/// interrupted its idle loop: loads the space at `l4` here unless it is loaded (recorded,
/// as a context switch would record it), then reads the word at user address `addr` — or
/// writes `value` there and returns it — through whatever translation this processor
/// holds. The caller keeps the page
/// mapped, and every frame the space had at `addr` alive, until the call returns.
pub fn access_through_tlb(l4: u64, addr: u64, value: Option<u64>) -> u64 {
    assert!(
        in_user_region(addr) && addr.is_multiple_of(8),
        "not an aligned user address"
    );
    // The space stays loaded after the call: only a processor in its idle loop (whose
    // context has no space of its own) may be given one behind its back.
    assert!(
        crate::arch::context::running() == crate::arch::context::ContextId::Idle,
        "access_through_tlb interrupted a thread, which would resume on the test's space"
    );
    x86_64::instructions::interrupts::without_interrupts(|| {
        if Cr3::read().0.start_address().as_u64() != l4 {
            // SAFETY: `l4` is a live space's top-level table (the caller's), which maps
            // the kernel exactly as every space does; interrupts are masked.
            unsafe { smp::load_table(l4) };
        }
        crate::arch::smap::allow_user_access();
        let word = addr as *mut u64;
        // SAFETY: the caller keeps `addr` mapped in the space at `l4`, now loaded, and
        // keeps alive every frame it was ever mapped to while this runs: a stale
        // translation (the point of the test) reaches a live frame of the test's own.
        let result = unsafe {
            match value {
                Some(value) => {
                    core::ptr::write_volatile(word, value);
                    value
                }
                None => core::ptr::read_volatile(word),
            }
        };
        crate::arch::smap::forbid_user_access();
        result
    })
}

/// A shootdown call: every translation of the space at `l4`, if this processor has it
/// loaded (it may have moved on since it was asked).
fn flush_if_loaded(l4: u64) -> u64 {
    if Cr3::read().0.start_address().as_u64() == l4 {
        tlb::flush_all();
    }
    0
}

/// An eviction call: the kernel's table instead of the space at `l4`, about to be freed.
fn evict_if_loaded(l4: u64) -> u64 {
    if Cr3::read().0.start_address().as_u64() == l4 {
        AddressSpace::activate_kernel();
    }
    0
}

/// Drops one reference to each frame; frames nobody holds any more are freed.
fn release_frames(mut frames: Vec<PhysAddr>) {
    {
        let mut refs = REFS.lock();
        frames.retain(|frame| {
            let count = &mut refs[frame_number(*frame)];
            *count -= 1;
            *count == 0
        });
    }
    for frame in frames {
        free_frame(frame);
    }
}

const PRESENT: u64 = 1;
const WRITE: u64 = 2;

/// A temporary handle on the active space (never dropped), or `None` for the kernel's.
fn active_space() -> Option<core::mem::ManuallyDrop<AddressSpace>> {
    let l4 = Cr3::read().0.start_address();
    if l4.as_u64() == KERNEL_L4.load(Ordering::Relaxed) {
        return None;
    }
    Some(core::mem::ManuallyDrop::new(AddressSpace { l4 }))
}

/// Resolves a page fault at `addr` with error `code` if it is a write to a copy-on-write
/// page or the first touch of a demand-zero page of the active space. Returns false for
/// any other fault.
pub fn resolve_fault(addr: u64, code: u64) -> bool {
    // Masked throughout (a fault arrives so; `UserAccess` calls with interrupts on): the
    // processor that changed the entry is the one left out of the flush.
    x86_64::instructions::interrupts::without_interrupts(|| resolve_fault_here(addr, code))
}

fn resolve_fault_here(addr: u64, code: u64) -> bool {
    if !in_user_region(addr) {
        return false;
    }
    let Some(mut space) = active_space() else {
        return false;
    };
    let page = VirtAddr::new(addr).align_down(PAGE);
    let l4 = space.l4.as_u64();
    let _tables = TABLES.lock();
    let resolved = if code & PRESENT == 0 {
        // A new translation: no processor can hold a stale one (absent entries are
        // not cached), so nobody else is asked.
        let mapped = map_demand_zero(&mut space, page);
        drop(_tables);
        mapped
    } else {
        let copied = code & WRITE != 0 && copy_on_write(&mut space, page);
        drop(_tables);
        if copied {
            flush_elsewhere(l4);
        }
        copied
    };
    if resolved {
        crate::process::charge_fault(crate::sched::current_owner_now());
    }
    resolved
}

/// Gives `page` of the active `space` a frame of its own, writable, if it is marked
/// copy-on-write (copying it unless this space is its last holder). Under [`TABLES`].
fn copy_on_write(space: &mut AddressSpace, page: VirtAddr) -> bool {
    let Some(entry) = space.leaf(page, false) else {
        return false;
    };
    let flags = entry.flags();
    if !flags.contains(COW) {
        // Another processor may have resolved it since this one faulted (a shared
        // space): then it is writable, and the retried write succeeds (a fault drops
        // the faulting translation).
        return flags.contains(Flags::PRESENT | Flags::WRITABLE);
    }
    let old = entry.addr();
    let writable = (flags - COW) | Flags::WRITABLE;
    let mut refs = REFS.lock();
    if refs[frame_number(old)] == 1 {
        // The last holder: no copy needed.
        entry.set_flags(writable);
    } else {
        let Some(new) = alloc_frame() else {
            return false;
        };
        // SAFETY: both frames are mapped through the physical mapping; `new` was just
        // allocated, `old` is a live user frame only read here.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(old).as_ptr::<u8>(),
                phys_to_virt(new).as_mut_ptr::<u8>(),
                PAGE as usize,
            );
        }
        refs[frame_number(old)] -= 1;
        refs[frame_number(new)] = 1;
        entry.set_addr(new, writable);
        PAGES_COPIED.fetch_add(1, Ordering::Relaxed);
    }
    invalidate(page);
    COW_FAULTS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Maps a zeroed frame at `page` of the active `space` if a demand-zero reservation
/// covers it.
fn map_demand_zero(space: &mut AddressSpace, page: VirtAddr) -> bool {
    let l4 = space.l4.as_u64();
    let flags = LAZY
        .lock()
        .iter()
        .find(|(s, range, _)| *s == l4 && range.contains(&page.as_u64()))
        .map(|(_, _, flags)| *flags);
    let Some(flags) = flags else {
        return false;
    };
    let Some(entry) = space.leaf(page, true) else {
        return false;
    };
    if !entry.is_unused() {
        // Mapped by another processor since this one faulted (a shared space).
        return entry.flags().contains(Flags::PRESENT);
    }
    let Some(frame) = alloc_frame() else {
        return false;
    };
    REFS.lock()[frame_number(frame)] = 1;
    entry.set_addr(frame, flags);
    invalidate(page);
    DEMAND_FAULTS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Where a receive into `out` can be delivered directly by a sender in another space:
/// (top-level table, address), if `out` is user memory of the active space.
pub fn landing(out: &[u8]) -> Option<[u64; 2]> {
    let addr = out.as_ptr() as u64;
    if out.is_empty() || !in_user_region(addr) {
        return None;
    }
    let space = active_space()?;
    Some([space.l4.as_u64(), addr])
}

/// Copies `bytes` to a [`landing`] in another (or the same) space, through the physical
/// mapping: the one copy of a message delivered to a waiting receiver. False if any page
/// of the range is not mapped writable there (it was checked when the receive was posted).
pub fn deliver(landing: [u64; 2], bytes: &[u8]) -> bool {
    let [l4, addr] = landing;
    let Some(end) = addr.checked_add(bytes.len() as u64) else {
        return false;
    };
    if bytes.is_empty() || !in_user_region(addr) || !in_user_region(end - 1) {
        return bytes.is_empty();
    }
    // A handle on the receiver's space, which lives while its owner waits in the kernel
    // for this message; never dropped here.
    let mut space = core::mem::ManuallyDrop::new(AddressSpace {
        l4: PhysAddr::new(l4),
    });
    let mut page = addr & !(PAGE - 1);
    while page < end {
        match space.leaf(VirtAddr::new(page), false) {
            Some(entry) if entry.flags().contains(Flags::PRESENT | Flags::WRITABLE) => {}
            _ => return false,
        }
        page += PAGE;
    }
    space.write_bytes(VirtAddr::new(addr), bytes).is_ok()
}

/// Access to the memory of the space that made the current system call. Created by the
/// system-call entry for the duration of one call; slices it hands out live no longer.
/// With SMAP on, its first checked access opens the kernel's window onto user pages and
/// dropping it closes the window ([`crate::arch::smap`]).
pub struct UserAccess {
    open: core::cell::Cell<bool>,
}

impl UserAccess {
    /// For `arch::user` only: one per system call.
    pub(crate) fn new() -> UserAccess {
        UserAccess {
            open: core::cell::Cell::new(false),
        }
    }

    /// Opens the window onto user pages for the rest of the call.
    fn open_window(&self) {
        if !self.open.replace(true) {
            crate::arch::smap::allow_user_access();
        }
    }

    /// Checks that [`addr`, `addr + len`) lies in the user region of the active space and
    /// is mapped (writable if `write`), faulting in demand-zero and copy-on-write pages.
    fn check(&self, addr: u64, len: u64, write: bool) -> bool {
        if len == 0 {
            return true;
        }
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        if !in_user_region(addr) || !in_user_region(end - 1) {
            return false;
        }
        let Some(mut space) = active_space() else {
            return false;
        };
        let mut page = addr & !(PAGE - 1);
        while page < end {
            let flags = match space.leaf(VirtAddr::new(page), false) {
                Some(entry) if !entry.is_unused() => entry.flags(),
                _ => {
                    if !resolve_fault(page, 0) {
                        return false;
                    }
                    continue;
                }
            };
            if write && !flags.contains(Flags::WRITABLE) && !resolve_fault(page, PRESENT | WRITE) {
                return false;
            }
            page += PAGE;
        }
        true
    }

    /// The bytes [`addr`, `addr + len`) of the caller's memory, if it may read them.
    pub fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        if !self.check(addr, len, false) {
            return None;
        }
        if len == 0 {
            return Some(&[]);
        }
        self.open_window();
        // SAFETY: every page of the range is mapped in the active space (checked), which
        // stays loaded whenever this thread runs until the call returns; the caller's own
        // thread is inside this call, so nothing of it changes the memory meanwhile.
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) })
    }

    /// The bytes [`addr`, `addr + len`) of the caller's memory, if it may write them.
    #[expect(
        clippy::mut_from_ref,
        reason = "the memory is the user's, not this token's; callers never overlap slices"
    )]
    pub fn bytes_mut(&self, addr: u64, len: u64) -> Option<&mut [u8]> {
        if !self.check(addr, len, true) {
            return None;
        }
        if len == 0 {
            return Some(&mut []);
        }
        self.open_window();
        // SAFETY: as in `bytes`, and the pages are writable. Callers never hold two
        // overlapping slices (the system-call layer refuses overlapping ranges).
        Some(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len as usize) })
    }
}

impl Drop for UserAccess {
    fn drop(&mut self) {
        if self.open.get() {
            crate::arch::smap::forbid_user_access();
        }
    }
}

/// A temporary top-level table for starting other processors: the kernel's entries plus
/// an identity mapping of one page below 1 MiB (the start-up code, which turns paging on
/// while running at its physical address). Every table on the identity page's path is a
/// copy, so the kernel's own tables are not touched; the top level is below 4 GiB (the
/// start-up code loads CR3 from 32-bit code). Freed on drop.
pub struct BootTable {
    l4: PhysAddr,
    /// Every frame this table allocated (the top level included).
    frames: Vec<PhysAddr>,
}

impl BootTable {
    /// The table for identity-mapping `page`; `None` without memory below 4 GiB or if the
    /// kernel maps `page`'s address with a large page.
    pub fn identity(page: PhysAddr) -> Option<BootTable> {
        let mut table_frames = BootTable {
            l4: PhysAddr::zero(),
            frames: Vec::new(),
        };
        let mut fresh = |from: Option<PhysAddr>| -> Option<PhysAddr> {
            let frame = alloc_frame()?;
            table_frames.frames.push(frame);
            // Only the top level is loaded from 32-bit code.
            if table_frames.frames.len() == 1 && frame.as_u64() >= 1 << 32 {
                return None;
            }
            if let Some(from) = from {
                // SAFETY: `from` is a live page table reached through the physical map
                // (only read); `frame` was just allocated for this table alone.
                unsafe { *table(frame) = (*table(from)).clone() };
            }
            Some(frame)
        };
        let kernel = PhysAddr::new(KERNEL_L4.load(Ordering::Relaxed));
        let l4 = fresh(Some(kernel));
        let Some(l4) = l4 else {
            drop(fresh);
            return None;
        };
        let addr = VirtAddr::new(page.as_u64());
        let mut current = l4;
        for index in [addr.p4_index(), addr.p3_index(), addr.p2_index()] {
            // SAFETY: `current` is one of this table's own copies, mapped through the
            // physical map; one entry borrowed at a time.
            let entry = unsafe { &mut (&mut *table(current))[index] };
            if entry.flags().contains(Flags::HUGE_PAGE) {
                drop(fresh);
                return None;
            }
            let below = if entry.is_unused() {
                fresh(None)
            } else {
                fresh(Some(entry.addr()))
            };
            let Some(below) = below else {
                drop(fresh);
                return None;
            };
            entry.set_addr(below, Flags::PRESENT | Flags::WRITABLE);
            current = below;
        }
        drop(fresh);
        // SAFETY: as above, for this table's own last-level copy.
        unsafe {
            (&mut *table(current))[addr.p1_index()].set_addr(page, Flags::PRESENT | Flags::WRITABLE)
        };
        table_frames.l4 = l4;
        Some(table_frames)
    }

    /// What CR3 holds while a processor starts.
    pub fn l4(&self) -> PhysAddr {
        self.l4
    }
}

impl Drop for BootTable {
    fn drop(&mut self) {
        for frame in self.frames.drain(..) {
            free_frame(frame);
        }
    }
}
