//! The kernel heap: `talc` as the global allocator.
//!
//! It starts on a static boot arena (enough for the frame allocator's own lists), then
//! [`grow_from_frames`] claims a share of physical memory in maximal buddy blocks. The
//! allocator masks interrupts while it holds its lock, so the timer handler may allocate.

use core::alloc::{GlobalAlloc, Layout};
use kernel_core::buddy::MAX_ORDER;
use talc::TalcLock;
use talc::source::Manual;

use super::frames::FrameBlock;
use super::phys_to_virt;

const BOOT_ARENA_SIZE: usize = 1 << 20;
/// Upper bound on the heap claimed at boot.
const MAX_HEAP_BYTES: u64 = 1 << 30;

#[repr(align(4096))]
#[expect(dead_code, reason = "handed to talc by address")]
struct Arena([u8; BOOT_ARENA_SIZE]);

static mut BOOT_ARENA: Arena = Arena([0; BOOT_ARENA_SIZE]);

struct KernelHeap {
    talc: TalcLock<spin::Mutex<()>, Manual>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    talc: TalcLock::new(Manual),
};

// SAFETY: delegates to talc's GlobalAlloc with interrupts masked, so an interrupt handler
// can never find the lock held by the code it interrupted on this processor.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc's contract.
        x86_64::instructions::interrupts::without_interrupts(|| unsafe { self.talc.alloc(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc's contract.
        x86_64::instructions::interrupts::without_interrupts(|| unsafe {
            self.talc.dealloc(ptr, layout)
        })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc's contract.
        x86_64::instructions::interrupts::without_interrupts(|| unsafe {
            self.talc.realloc(ptr, layout, new_size)
        })
    }
}

/// Whether [`ptr`, `ptr + len`) touches the static boot arena: the one part of the heap
/// whose pages need not be physically contiguous (it lies in the kernel image, mapped page
/// by page by the bootloader; everything else is claimed through the physical-memory map in
/// buddy blocks, so it is contiguous wherever it is contiguous in address).
pub fn in_boot_arena(ptr: *const u8, len: usize) -> bool {
    let start = (&raw const BOOT_ARENA) as usize;
    let (from, to) = (ptr as usize, (ptr as usize).saturating_add(len));
    from < start + BOOT_ARENA_SIZE && to > start
}

/// Claims the static boot arena. Must run before the first allocation.
pub fn init_boot_arena() {
    x86_64::instructions::interrupts::without_interrupts(|| {
        // SAFETY: the arena is a static used by nothing else; it is claimed exactly once
        // (init runs once at boot) and stays valid for the life of the kernel.
        unsafe {
            let base = (&raw mut BOOT_ARENA).cast::<u8>();
            HEAP.talc.lock().claim(base, BOOT_ARENA_SIZE);
        }
    });
}

/// Grows the heap to half of usable memory (at most [`MAX_HEAP_BYTES`]) in blocks of
/// frames; a block adjacent to the previous one extends that heap, so large allocations
/// can span blocks. Returns the bytes the heap holds in total.
pub fn grow_from_frames(usable_bytes: u64) -> u64 {
    // SIP linear memories, translated code and exchange-heap blocks live here.
    let target = (usable_bytes / 2).min(MAX_HEAP_BYTES);
    let mut claimed = 0u64;
    // (where the last claimed span ends in memory, talc's end-of-heap marker for it)
    let mut last: Option<(*mut u8, core::ptr::NonNull<u8>)> = None;
    while claimed < target {
        let Some(block) = FrameBlock::alloc(MAX_ORDER) else {
            break;
        };
        let (start, len) = block.leak();
        let base = phys_to_virt(start).as_mut_ptr::<u8>();
        let end = base.wrapping_add(len);
        last = x86_64::instructions::interrupts::without_interrupts(|| {
            let mut talc = HEAP.talc.lock();
            // SAFETY: the frames were just taken from the buddy allocator and leaked, so
            // nothing else will ever use them; they are mapped read-write at `base`. When
            // they directly follow the previous span, `heap_end` is the marker talc
            // returned for that span, as `extend` requires.
            unsafe {
                match last {
                    Some((span_end, heap_end)) if span_end == base => {
                        Some((end, talc.extend(heap_end, end)))
                    }
                    _ => talc.claim(base, len).map(|heap_end| (end, heap_end)),
                }
            }
        });
        claimed += len as u64;
    }
    claimed + BOOT_ARENA_SIZE as u64
}

/// Heap kept for the kernel's own allocations, never promised to SIPs.
const KERNEL_RESERVE: usize = 8 << 20;
/// Bytes promised to running SIPs (see [`Reservation`]).
static RESERVED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Heap promised to one SIP for its declared limits; given back when dropped. Because
/// every SIP's worst case is reserved before it runs, no SIP can exhaust the heap the
/// kernel itself allocates from.
#[derive(Debug)]
pub struct Reservation {
    bytes: usize,
}

/// Why a reservation was refused: (bytes asked, bytes still available).
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    pub asked: usize,
    pub available: usize,
}

impl Reservation {
    /// Promises `bytes` of heap, or refuses if promises would exceed what the heap holds.
    pub fn new(bytes: usize) -> Result<Reservation, Refused> {
        use core::sync::atomic::Ordering;
        let capacity = usage().1.saturating_sub(KERNEL_RESERVE);
        let mut current = RESERVED.load(Ordering::Relaxed);
        loop {
            let available = capacity.saturating_sub(current);
            if bytes > available {
                return Err(Refused {
                    asked: bytes,
                    available,
                });
            }
            match RESERVED.compare_exchange(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Reservation { bytes }),
                Err(now) => current = now,
            }
        }
    }

    /// Gives back all but `bytes` of the promise (never grows it).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            RESERVED.fetch_sub(self.bytes - bytes, core::sync::atomic::Ordering::AcqRel);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        RESERVED.fetch_sub(self.bytes, core::sync::atomic::Ordering::AcqRel);
    }
}

/// Heap statistics: (bytes allocated, bytes claimed).
pub fn usage() -> (usize, usize) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let talc = HEAP.talc.lock();
        let counters = talc.counters();
        (counters.allocated_bytes, counters.claimed_bytes)
    })
}
