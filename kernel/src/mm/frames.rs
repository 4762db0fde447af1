//! Physical frames: the buddy allocator (bookkeeping in `kernel_core::buddy`) behind an
//! interrupt-safe lock, and [`FrameBlock`], an owned block of frames that returns itself
//! to the allocator when dropped.

use kernel_core::buddy::{BuddyAllocator, FreeError};
use x86_64::PhysAddr;

use super::{FRAME_SIZE, phys_to_virt};
use crate::arch::irq::IrqMutex;

static BUDDY: IrqMutex<BuddyAllocator> = IrqMutex::new(BuddyAllocator::new());

pub(super) fn add_region(first_frame: u64, count: u64) {
    BUDDY.lock().add_region(first_frame, count);
}

/// Frames currently free.
pub fn free_frames() -> u64 {
    BUDDY.lock().free_frames()
}

/// One past the highest frame number managed.
pub fn end_frame() -> u64 {
    BUDDY.lock().end_frame()
}

/// One zeroed frame whose lifetime the caller manages (page tables, mapped pages).
pub(super) fn alloc_frame() -> Option<PhysAddr> {
    let frame = BUDDY.lock().alloc(0)?;
    let start = PhysAddr::new(frame * FRAME_SIZE);
    // SAFETY: the frame was just handed out by the buddy allocator to this caller alone and
    // is mapped read-write through the physical-memory mapping.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(start).as_mut_ptr::<u8>(),
            0,
            FRAME_SIZE as usize,
        )
    };
    Some(start)
}

/// Returns a frame from [`alloc_frame`].
pub(super) fn free_frame(start: PhysAddr) {
    if let Err(err) = BUDDY.lock().free(start.as_u64() / FRAME_SIZE, 0) {
        panic!("frame allocator refused a page frame it handed out: {err}");
    }
}

/// Frames managed in total.
pub fn total_frames() -> u64 {
    BUDDY.lock().total_frames()
}

/// 2^order contiguous, zeroed physical frames, owned until dropped.
#[derive(Debug)]
pub struct FrameBlock {
    first_frame: u64,
    order: usize,
}

impl FrameBlock {
    /// Allocates and zeroes a block of 2^order frames; `None` if memory is exhausted.
    pub fn alloc(order: usize) -> Option<FrameBlock> {
        let first_frame = BUDDY.lock().alloc(order)?;
        let mut block = FrameBlock { first_frame, order };
        block.as_mut_slice().fill(0);
        Some(block)
    }

    /// Physical address of the first byte.
    pub fn start(&self) -> PhysAddr {
        PhysAddr::new(self.first_frame * FRAME_SIZE)
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        (FRAME_SIZE << self.order) as usize
    }

    /// The block's memory as 64-bit words, through the physical-memory mapping.
    pub fn as_mut_slice(&mut self) -> &mut [u64] {
        let ptr = phys_to_virt(self.start()).as_mut_ptr::<u64>();
        // SAFETY: the block was handed out by the buddy allocator to this value alone, is
        // mapped read-write at `phys_to_virt`, page-aligned, and lives until `self` drops;
        // the borrow of `self` keeps the slice from outliving it or aliasing another one.
        unsafe { core::slice::from_raw_parts_mut(ptr, self.len() / 8) }
    }

    /// Gives the frames up without freeing them (for memory handed to the heap for good).
    pub(super) fn leak(self) -> (PhysAddr, usize) {
        let span = (self.start(), self.len());
        core::mem::forget(self);
        span
    }
}

impl Drop for FrameBlock {
    fn drop(&mut self) {
        let result: Result<(), FreeError> = BUDDY.lock().free(self.first_frame, self.order);
        if let Err(err) = result {
            panic!("frame allocator refused a block it handed out: {err}");
        }
    }
}

/// Frames kept back from [`FramePromise`]s for the kernel's own needs (stacks, tables).
const KERNEL_RESERVE_FRAMES: u64 = 2048;
/// Frames promised to running programs.
static PROMISED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Frames promised to one program in a SIP address space (its worst case, like the
/// heap's `Reservation` in soft mode), so demand-zero faults of admitted programs always
/// find a frame. Given back when dropped. Conservative: frames a program already uses
/// count both as used and as promised.
#[derive(Debug)]
pub struct FramePromise {
    frames: u64,
}

impl FramePromise {
    /// Promises `frames`, or says how many could be: Err((asked, available)).
    pub fn new(frames: u64) -> Result<FramePromise, (u64, u64)> {
        use core::sync::atomic::Ordering;
        let _guard = BUDDY.lock(); // one decision at a time
        let promised = PROMISED.load(Ordering::Relaxed);
        let free = _guard.free_frames();
        let available = free
            .saturating_sub(KERNEL_RESERVE_FRAMES)
            .saturating_sub(promised);
        if frames > available {
            return Err((frames, available));
        }
        PROMISED.store(promised + frames, Ordering::Relaxed);
        Ok(FramePromise { frames })
    }
}

impl Drop for FramePromise {
    fn drop(&mut self) {
        PROMISED.fetch_sub(self.frames, core::sync::atomic::Ordering::Relaxed);
    }
}
