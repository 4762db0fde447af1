//! Memory management: physical frames (buddy allocator), the kernel heap (talc) and access
//! to physical memory through the bootloader's linear mapping.
//!
//! With `unsafe` confined here and in `arch`, the rest of the kernel gets memory only as
//! owned values ([`frames::FrameBlock`], heap allocations).

pub mod code;
pub mod frames;
pub mod heap;
pub mod stacks;
pub mod vm;

use bootloader_api::BootInfo;
use bootloader_api::info::MemoryRegionKind;
use spin::Once;
use x86_64::{PhysAddr, VirtAddr};

/// Size of a physical frame.
pub const FRAME_SIZE: u64 = 4096;

static PHYS_OFFSET: Once<u64> = Once::new();
static TRAMPOLINE: Once<PhysAddr> = Once::new();

/// The frame below 1 MiB kept back for the processor start-up code, if there was one.
pub fn trampoline_frame() -> Option<PhysAddr> {
    TRAMPOLINE.get().copied()
}

/// Virtual address at which physical address `phys` is mapped.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    let offset = *PHYS_OFFSET
        .get()
        .expect("mm::init ran before physical memory is used");
    VirtAddr::new(offset + phys.as_u64())
}

/// Memory in use, for checking that everything a SIP had was given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub heap_bytes: usize,
    pub free_frames: u64,
}

impl Usage {
    pub fn now() -> Usage {
        Usage {
            heap_bytes: heap::usage().0,
            free_frames: frames::free_frames(),
        }
    }

    /// "heap and frames back to baseline", or what differs.
    pub fn compare(&self, after: &Usage) -> alloc::string::String {
        if self == after {
            alloc::format!(
                "heap ({} bytes) and free frames ({}) back to their values before the SIPs started",
                self.heap_bytes,
                self.free_frames
            )
        } else {
            alloc::format!(
                "heap {} -> {} bytes ({:+}, kept by the process table and failure messages), free frames {} -> {}",
                self.heap_bytes,
                after.heap_bytes,
                after.heap_bytes as i64 - self.heap_bytes as i64,
                self.free_frames,
                after.free_frames
            )
        }
    }
}

/// What memory initialisation found, for the boot log.
#[derive(Clone, Copy, Debug)]
pub struct MemoryReport {
    pub usable_bytes: u64,
    pub heap_bytes: u64,
    pub free_frames: u64,
}

/// Takes over physical memory: every usable region goes to the buddy allocator, then the
/// kernel heap grows from its boot arena into a block of frames.
pub fn init(boot_info: &BootInfo) -> MemoryReport {
    let offset = boot_info
        .physical_memory_offset
        .into_option()
        .expect("bootloader maps physical memory (BOOTLOADER_CONFIG asks for it)");
    PHYS_OFFSET.call_once(|| offset);

    let mut usable_bytes = 0;
    for region in boot_info.memory_regions.iter() {
        if region.kind != MemoryRegionKind::Usable {
            continue;
        }
        // Whole frames only; frame 0 is never handed out so that a null physical
        // address always means "none".
        let mut start = region.start.div_ceil(FRAME_SIZE).max(1);
        let end = region.end / FRAME_SIZE;
        // The first free frame below 1 MiB is kept for the other processors' start-up
        // code (a STARTUP IPI can only point there).
        if TRAMPOLINE.get().is_none() && start < end && start < 0x100 {
            TRAMPOLINE.call_once(|| PhysAddr::new(start * FRAME_SIZE));
            start += 1;
        }
        if end > start {
            frames::add_region(start, end - start);
            usable_bytes += (end - start) * FRAME_SIZE;
        }
    }
    let heap_bytes = heap::grow_from_frames(usable_bytes);
    vm::init();
    stacks::init();
    code::init();
    MemoryReport {
        usable_bytes,
        heap_bytes,
        free_frames: frames::free_frames(),
    }
}

/// The ramdisk the bootloader loaded (the boot package), if any.
pub fn ramdisk(boot_info: &BootInfo) -> Option<&'static [u8]> {
    let addr = boot_info.ramdisk_addr.into_option()?;
    let len = usize::try_from(boot_info.ramdisk_len).ok()?;
    // SAFETY: the bootloader mapped the ramdisk read-only at `addr` for `len` bytes and
    // never unmaps it; the kernel never writes to it.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
}

/// The page-table flags of the 4 KiB page (or larger page) holding `addr` in the active
/// address space; `None` if it is not mapped.
pub fn page_flags(addr: VirtAddr) -> Option<x86_64::structures::paging::PageTableFlags> {
    translate(addr).map(|(_, flags)| flags)
}

/// The physical address behind `bytes` (kernel memory, e.g. an exchange-heap block), if
/// the whole range is mapped onto physically contiguous memory: what a device needs to
/// DMA into it.
pub fn dma_address(bytes: &[u8]) -> Option<u64> {
    let start = bytes.as_ptr() as u64;
    let (first, _) = translate(VirtAddr::new(start))?;
    let mut page = start & !0xfff;
    let end = start + bytes.len() as u64;
    while page < end {
        let (phys, _) = translate(VirtAddr::new(page.max(start)))?;
        if phys.as_u64() - first.as_u64() != page.max(start) - start {
            return None;
        }
        page += 0x1000;
    }
    Some(first.as_u64())
}

/// Physical address and flags of the page holding `addr` in the active address space.
fn translate(addr: VirtAddr) -> Option<(PhysAddr, x86_64::structures::paging::PageTableFlags)> {
    use x86_64::structures::paging::mapper::{Translate, TranslateResult};
    use x86_64::structures::paging::{OffsetPageTable, PageTable};
    let (l4_frame, _) = x86_64::registers::control::Cr3::read();
    let l4_virt = phys_to_virt(l4_frame.start_address());
    // SAFETY: CR3 points at the active level-4 table, which the physical-memory mapping
    // makes reachable at `l4_virt`; the table is only read here, on the one processor.
    let table = unsafe {
        OffsetPageTable::new(
            &mut *l4_virt.as_mut_ptr::<PageTable>(),
            VirtAddr::new(*PHYS_OFFSET.get()?),
        )
    };
    match table.translate(addr) {
        TranslateResult::Mapped {
            flags,
            frame,
            offset,
        } => Some((frame.start_address() + offset, flags)),
        _ => None,
    }
}
