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
