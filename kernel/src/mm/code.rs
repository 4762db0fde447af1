//! Memory for compiled SIP code (W^X).
//!
//! Each loaded artifact gets a window of the code area (an area of the kernel half made at
//! boot, mapped 4 KiB at a time like the stack area, shared by every address space) and a
//! block of frames mapped there read-write, never executable, while the kernel copies the
//! artifact in. When wasmtime publishes the module, [`KernelCodeMemory`] makes the whole
//! image read-only and its text read+execute: no page of the area is ever writable and
//! executable at once, and nothing in the ABI can make memory executable — the code a SIP
//! runs is fixed before it starts (sealed). Unpublishing (when the module is dropped) makes
//! the pages non-executable again, and dropping the [`CodeWindow`] unmaps them and frees
//! the frames. Pages are supervisor-only: SMEP keeps ring 3 from running them in ring 0,
//! and ring 3 cannot reach them at all.
//!
//! The frames are also reachable through the physical-memory map (read-write, never
//! executable), like every frame; only the kernel itself can write there.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::VirtAddr;
use x86_64::instructions::tlb;
use x86_64::structures::paging::PageTableFlags as Flags;

use super::frames::FrameBlock;
use super::stacks::{area_entry, make_area};
use crate::arch::irq::IrqMutex;

/// Bytes of one window: the largest artifact (the largest frame block, 2^10 frames).
pub const WINDOW_BYTES: u64 = 4 << 20;
/// Compiled SIPs that can be loaded at once.
pub const WINDOWS: usize = 64;
const PAGE: u64 = 4096;
const L1_TABLES: usize = (WINDOWS as u64 * WINDOW_BYTES / (2 << 20)) as usize;

static AREA: AtomicU64 = AtomicU64::new(0);
static L1: IrqMutex<[u64; L1_TABLES]> = IrqMutex::new([0; L1_TABLES]);
/// Pages of the image in each window; 0 = window free.
static IMAGE_PAGES: IrqMutex<[u32; WINDOWS]> = IrqMutex::new([0; WINDOWS]);

/// Makes the code area. Runs once at boot, before any address space copies the kernel's
/// top level.
pub fn init() {
    AREA.store(
        make_area(&mut L1.lock()[..], "compiled code"),
        Ordering::Relaxed,
    );
}

fn window_base(window: usize) -> u64 {
    AREA.load(Ordering::Relaxed) + window as u64 * WINDOW_BYTES
}

/// Sets the flags of every page in [`start`, `end`) of the area (mapped pages only).
fn set_flags(start: u64, end: u64, flags: Flags) {
    let area = AREA.load(Ordering::Relaxed);
    {
        let mut l1s = L1.lock();
        let mut page = start;
        while page < end {
            let entry = area_entry(area, &mut l1s[..], page);
            if !entry.is_unused() {
                entry.set_flags(flags);
            }
            page += PAGE;
        }
    }
    // Another processor may hold the old permissions (W^X flips); shot down after the
    // lock is released (a processor spinning for it with interrupts masked could not
    // answer).
    crate::arch::smp::shootdown_range(VirtAddr::new(start), (end - start).div_ceil(PAGE));
}

/// One artifact in a window of the code area.
pub struct CodeWindow {
    #[expect(
        dead_code,
        reason = "owned, not read: the frames behind the window, freed on drop"
    )]
    frames: FrameBlock,
    window: usize,
    len: usize,
}

impl CodeWindow {
    /// Copies `artifact` into a fresh window, read-write and not executable.
    pub fn new(artifact: &[u8]) -> Result<CodeWindow, String> {
        let pages = (artifact.len() as u64).div_ceil(PAGE).max(1);
        if pages * PAGE > WINDOW_BYTES {
            return Err(format!(
                "compiled artifact of {} KiB exceeds the {} KiB a code window holds",
                artifact.len() >> 10,
                WINDOW_BYTES >> 10
            ));
        }
        let order = pages.next_power_of_two().trailing_zeros() as usize;
        let frames = FrameBlock::alloc(order)
            .ok_or_else(|| format!("no memory for {} KiB of compiled code", pages * 4))?;
        let window = {
            let mut used = IMAGE_PAGES.lock();
            let window = used.iter().position(|&p| p == 0).ok_or_else(|| {
                format!("every one of the {WINDOWS} code windows holds a loaded SIP")
            })?;
            used[window] = pages as u32;
            window
        };
        let base = window_base(window);
        {
            let area = AREA.load(Ordering::Relaxed);
            let mut l1s = L1.lock();
            for page in 0..pages {
                area_entry(area, &mut l1s[..], base + page * PAGE).set_addr(
                    frames.start() + page * PAGE,
                    Flags::PRESENT | Flags::WRITABLE | super::vm::no_execute(),
                );
                tlb::flush(VirtAddr::new(base + page * PAGE));
            }
        }
        let code = CodeWindow {
            frames,
            window,
            len: artifact.len(),
        };
        // SAFETY: [base, base + len) was just mapped read-write onto `frames`, which this
        // value owns; nothing else maps the window.
        unsafe { core::slice::from_raw_parts_mut(base as *mut u8, artifact.len()) }
            .copy_from_slice(artifact);
        Ok(code)
    }
}

// SAFETY: `bytes` is always the same mapping of frames this value owns until it drops;
// after the copy in `new` nothing writes it (`KernelCodeMemory` only changes its flags).
unsafe impl sip_runtime::compiled::CodeImage for CodeWindow {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the window maps `self.frames` for as long as `self` lives; shared reads.
        unsafe { core::slice::from_raw_parts(window_base(self.window) as *const u8, self.len) }
    }
}

impl Drop for CodeWindow {
    fn drop(&mut self) {
        let base = window_base(self.window);
        let pages = IMAGE_PAGES.lock()[self.window] as u64;
        {
            let area = AREA.load(Ordering::Relaxed);
            let mut l1s = L1.lock();
            for page in 0..pages {
                area_entry(area, &mut l1s[..], base + page * PAGE).set_unused();
            }
        }
        // The frames go back to the allocator: no processor may keep reaching them. Shot
        // down after the lock is released, before the window can be taken again.
        crate::arch::smp::shootdown_range(VirtAddr::new(base), pages);
        IMAGE_PAGES.lock()[self.window] = 0;
        // `frames` drops after this, with no mapping left onto them.
    }
}

/// wasmtime's hook for making published code executable: flips the pages of a window.
pub struct KernelCodeMemory;

impl KernelCodeMemory {
    /// The window image holding [`ptr`, `ptr + len`), page-aligned: (image start, end).
    fn image_of(ptr: *const u8, len: usize) -> Option<(u64, u64)> {
        let (start, area) = (ptr as u64, AREA.load(Ordering::Relaxed));
        let end = start.checked_add(len as u64)?;
        if start < area || start % PAGE != 0 || end % PAGE != 0 {
            return None;
        }
        let window = ((start - area) / WINDOW_BYTES) as usize;
        let pages = *IMAGE_PAGES.lock().get(window)? as u64;
        let base = window_base(window);
        (pages > 0 && end <= base + pages * PAGE).then_some((base, base + pages * PAGE))
    }
}

impl sip_runtime::compiled::wasmtime::CustomCodeMemory for KernelCodeMemory {
    fn required_alignment(&self) -> usize {
        PAGE as usize
    }

    fn publish_executable(
        &self,
        ptr: *const u8,
        len: usize,
    ) -> sip_runtime::compiled::wasmtime::Result<()> {
        let Some((image_start, image_end)) = Self::image_of(ptr, len) else {
            return Err(sip_runtime::compiled::wasmtime::format_err!(
                "code at {ptr:p} (+{len}) is not in a code window"
            ));
        };
        // The whole image read-only first, then its text read+execute.
        set_flags(
            image_start,
            image_end,
            Flags::PRESENT | super::vm::no_execute(),
        );
        set_flags(ptr as u64, ptr as u64 + len as u64, Flags::PRESENT);
        Ok(())
    }

    fn unpublish_executable(
        &self,
        ptr: *const u8,
        len: usize,
    ) -> sip_runtime::compiled::wasmtime::Result<()> {
        if Self::image_of(ptr, len).is_none() {
            return Err(sip_runtime::compiled::wasmtime::format_err!(
                "code at {ptr:p} (+{len}) is not in a code window"
            ));
        }
        set_flags(
            ptr as u64,
            ptr as u64 + len as u64,
            Flags::PRESENT | super::vm::no_execute(),
        );
        Ok(())
    }
}
