//! Buddy frame allocator bookkeeping.
//!
//! Physical memory is handed out in blocks of 2^order frames, each aligned to its own size.
//! Freeing a block merges it with its buddy (the other half of the next-larger block) as
//! long as the buddy is free too, so free memory stays in the largest blocks possible. The
//! allocator works on frame numbers only; the kernel's `mm` turns them into addresses.
//!
//! Free blocks are kept in one ordered set per order, which also lets [`BuddyAllocator::free`]
//! refuse double and overlapping frees instead of corrupting its lists.

use alloc::collections::BTreeSet;
use core::fmt;

/// Largest block order: 2^10 frames = 4 MiB with 4 KiB frames.
pub const MAX_ORDER: usize = 10;

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// `order` is above [`MAX_ORDER`].
    OrderTooLarge { order: usize },
    /// The frame number is not aligned to the block size.
    Misaligned { frame: u64, order: usize },
    /// Some frame of the block is already free.
    AlreadyFree { frame: u64, order: usize },
    /// The block lies (partly) outside every region given to the allocator.
    NotManaged { frame: u64, order: usize },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::OrderTooLarge { order } => {
                write!(f, "order {order} is above the maximum {MAX_ORDER}")
            }
            FreeError::Misaligned { frame, order } => {
                write!(
                    f,
                    "frame {frame:#x} is not aligned for an order-{order} block"
                )
            }
            FreeError::AlreadyFree { frame, order } => {
                write!(
                    f,
                    "order-{order} block at frame {frame:#x} is already (partly) free"
                )
            }
            FreeError::NotManaged { frame, order } => {
                write!(
                    f,
                    "order-{order} block at frame {frame:#x} is outside managed memory"
                )
            }
        }
    }
}

/// Buddy allocator over frame numbers.
#[derive(Debug)]
pub struct BuddyAllocator {
    free_lists: [BTreeSet<u64>; MAX_ORDER + 1],
    /// Managed regions as half-open frame ranges, for ownership checks on free.
    regions: alloc::vec::Vec<(u64, u64)>,
    total_frames: u64,
    free_frames: u64,
}

impl Default for BuddyAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Smallest order whose block holds `frames` frames, or `None` above [`MAX_ORDER`].
pub fn order_for(frames: u64) -> Option<usize> {
    let order = frames.max(1).next_power_of_two().trailing_zeros() as usize;
    (order <= MAX_ORDER).then_some(order)
}

impl BuddyAllocator {
    pub const fn new() -> Self {
        BuddyAllocator {
            free_lists: [const { BTreeSet::new() }; MAX_ORDER + 1],
            regions: alloc::vec::Vec::new(),
            total_frames: 0,
            free_frames: 0,
        }
    }

    /// Hands the frames `start .. start + count` to the allocator. Regions must not overlap
    /// each other (the bootloader's memory map guarantees it for usable regions).
    pub fn add_region(&mut self, start: u64, count: u64) {
        if count == 0 {
            return;
        }
        let end = start + count;
        debug_assert!(
            self.regions.iter().all(|&(s, e)| end <= s || start >= e),
            "overlapping region"
        );
        // Adjacent regions (common in UEFI memory maps) are one stretch of memory: blocks
        // may merge across the seam, so ownership is checked against the joined range.
        self.regions.push((start, end));
        self.regions.sort_unstable();
        self.regions.dedup_by(|next, prev| {
            let adjacent = prev.1 == next.0;
            if adjacent {
                prev.1 = next.1;
            }
            adjacent
        });
        self.total_frames += count;
        // Carve the range into the largest aligned blocks that fit.
        let mut frame = start;
        while frame < end {
            let align_order = if frame == 0 {
                MAX_ORDER
            } else {
                (frame.trailing_zeros() as usize).min(MAX_ORDER)
            };
            let mut order = align_order;
            while frame + (1 << order) > end {
                order -= 1;
            }
            self.release(frame, order);
            frame += 1 << order;
        }
    }

    /// Allocates a block of 2^order frames; returns its first frame number.
    pub fn alloc(&mut self, order: usize) -> Option<u64> {
        if order > MAX_ORDER {
            return None;
        }
        let from = (order..=MAX_ORDER).find(|&o| !self.free_lists[o].is_empty())?;
        let frame = self.free_lists[from].pop_first()?;
        // Split down, returning the upper halves to the free lists.
        for o in (order..from).rev() {
            self.free_lists[o].insert(frame + (1 << o));
        }
        self.free_frames -= 1 << order;
        Some(frame)
    }

    /// Returns a block obtained from [`BuddyAllocator::alloc`] with the same order.
    pub fn free(&mut self, frame: u64, order: usize) -> Result<(), FreeError> {
        if order > MAX_ORDER {
            return Err(FreeError::OrderTooLarge { order });
        }
        if frame & ((1 << order) - 1) != 0 {
            return Err(FreeError::Misaligned { frame, order });
        }
        let end = frame + (1 << order);
        if !self.regions.iter().any(|&(s, e)| frame >= s && end <= e) {
            return Err(FreeError::NotManaged { frame, order });
        }
        if self.overlaps_free(frame, order) {
            return Err(FreeError::AlreadyFree { frame, order });
        }
        self.release(frame, order);
        Ok(())
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> u64 {
        self.free_frames
    }

    /// One past the highest frame number handed to the allocator.
    pub fn end_frame(&self) -> u64 {
        self.regions.iter().map(|&(_, end)| end).max().unwrap_or(0)
    }

    /// Frames ever handed to the allocator.
    pub fn total_frames(&self) -> u64 {
        self.total_frames
    }

    /// Number of free blocks of `order` (for statistics and tests).
    pub fn free_blocks(&self, order: usize) -> usize {
        self.free_lists.get(order).map_or(0, BTreeSet::len)
    }

    /// True if any frame of the block is on a free list.
    fn overlaps_free(&self, frame: u64, order: usize) -> bool {
        let end = frame + (1 << order);
        (0..=MAX_ORDER).any(|o| {
            if o >= order {
                // A free block of this order containing `frame`?
                let base = frame & !((1u64 << o) - 1);
                self.free_lists[o].contains(&base)
            } else {
                self.free_lists[o].range(frame..end).next().is_some()
            }
        })
    }

    /// Puts a block on the free lists, merging with free buddies.
    fn release(&mut self, mut frame: u64, mut order: usize) {
        self.free_frames += 1 << order;
        while order < MAX_ORDER {
            let buddy = frame ^ (1 << order);
            if !self.free_lists[order].remove(&buddy) {
                break;
            }
            frame = frame.min(buddy);
            order += 1;
        }
        self.free_lists[order].insert(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carves_unaligned_region_into_aligned_blocks() {
        let mut buddy = BuddyAllocator::new();
        buddy.add_region(3, 13); // frames 3..16: 3, 4..8, 8..16
        assert_eq!(buddy.total_frames(), 13);
        assert_eq!(buddy.free_frames(), 13);
        assert_eq!(buddy.free_blocks(0), 1);
        assert_eq!(buddy.free_blocks(2), 1);
        assert_eq!(buddy.free_blocks(3), 1);
    }

    #[test]
    fn splits_and_merges_back() {
        let mut buddy = BuddyAllocator::new();
        buddy.add_region(0, 1024);
        assert_eq!(buddy.free_blocks(MAX_ORDER), 1);
        let a = buddy.alloc(0).unwrap();
        assert_eq!(buddy.free_frames(), 1023);
        // One free block at every order below the maximum after splitting 1024 down to 1.
        for order in 0..MAX_ORDER {
            assert_eq!(buddy.free_blocks(order), 1, "order {order}");
        }
        let b = buddy.alloc(3).unwrap();
        assert_eq!(b % 8, 0);
        buddy.free(a, 0).unwrap();
        buddy.free(b, 3).unwrap();
        assert_eq!(buddy.free_frames(), 1024);
        assert_eq!(buddy.free_blocks(MAX_ORDER), 1);
        for order in 0..MAX_ORDER {
            assert_eq!(buddy.free_blocks(order), 0, "order {order}");
        }
    }

    #[test]
    fn blocks_never_overlap_and_exhaustion_is_reported() {
        let mut buddy = BuddyAllocator::new();
        buddy.add_region(100, 300);
        let mut taken = alloc::vec::Vec::new();
        let mut owner = [false; 400];
        while let Some(frame) = buddy.alloc(1) {
            assert_eq!(frame % 2, 0);
            for f in frame..frame + 2 {
                assert!((100..400).contains(&f));
                assert!(!owner[f as usize], "frame {f} handed out twice");
                owner[f as usize] = true;
            }
            taken.push(frame);
        }
        assert_eq!(taken.len(), 150);
        assert_eq!(buddy.free_frames(), 0);
        assert_eq!(buddy.alloc(0), None);
        for frame in taken {
            buddy.free(frame, 1).unwrap();
        }
        assert_eq!(buddy.free_frames(), 300);
    }

    #[test]
    fn refuses_bad_frees() {
        let mut buddy = BuddyAllocator::new();
        buddy.add_region(0, 64);
        let frame = buddy.alloc(2).unwrap();
        assert_eq!(
            buddy.free(frame + 1, 2),
            Err(FreeError::Misaligned {
                frame: frame + 1,
                order: 2
            })
        );
        assert_eq!(
            buddy.free(1 << 20, 0),
            Err(FreeError::NotManaged {
                frame: 1 << 20,
                order: 0
            })
        );
        assert_eq!(
            buddy.free(0, MAX_ORDER + 1),
            Err(FreeError::OrderTooLarge {
                order: MAX_ORDER + 1
            })
        );
        buddy.free(frame, 2).unwrap();
        assert_eq!(
            buddy.free(frame, 2),
            Err(FreeError::AlreadyFree { frame, order: 2 })
        );
        // A single frame inside a free block is also refused.
        assert!(matches!(
            buddy.free(frame + 1, 0),
            Err(FreeError::AlreadyFree { .. })
        ));
        assert_eq!(buddy.free_frames(), 64);
    }

    #[test]
    fn blocks_merged_across_adjacent_regions_can_be_freed() {
        let mut buddy = BuddyAllocator::new();
        buddy.add_region(0, 16);
        buddy.add_region(32, 32);
        buddy.add_region(16, 16); // bridges the two: 0..64 is one stretch
        assert_eq!(buddy.free_blocks(6), 1, "0..64 merged into one block");
        let block = buddy.alloc(6).unwrap();
        assert_eq!(block, 0);
        buddy.free(block, 6).unwrap();
        assert_eq!(buddy.free_frames(), 64);
    }

    #[test]
    fn order_for_rounds_up() {
        assert_eq!(order_for(0), Some(0));
        assert_eq!(order_for(1), Some(0));
        assert_eq!(order_for(3), Some(2));
        assert_eq!(order_for(1024), Some(10));
        assert_eq!(order_for(1025), None);
    }
}
