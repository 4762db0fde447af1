//! Deliberate faults for the kernel's self-tests: each one checks that its target really
//! is what the test needs (unmapped, or mapped read-only) before touching it, so a test
//! can only ever produce the fault it asks for.

use x86_64::VirtAddr;
use x86_64::structures::paging::PageTableFlags;

/// An address in the lower half that the bootloader's layout leaves unmapped.
pub const UNMAPPED_ADDRESS: u64 = 0xdead_beef * 0x1000;

static READ_ONLY_TARGET: u64 = 0x0123_4567_89ab_cdef;

/// Writes to [`UNMAPPED_ADDRESS`]: a supervisor write to a non-present page.
pub fn write_unmapped() -> ! {
    let addr = VirtAddr::new(UNMAPPED_ADDRESS);
    assert!(
        crate::mm::page_flags(addr).is_none(),
        "{addr:?} is mapped; pick another unmapped address for this test"
    );
    // SAFETY: the address was just checked to be unmapped, so this write faults before it
    // changes any memory; the page-fault handler reports it and never returns here.
    unsafe { core::ptr::write_volatile(addr.as_mut_ptr::<u64>(), 42) };
    unreachable!("write to an unmapped page did not fault");
}

/// Writes to a read-only kernel page: a supervisor write to a present page, which faults
/// because CR0.WP is set.
pub fn write_read_only() -> ! {
    let addr = VirtAddr::from_ptr(&READ_ONLY_TARGET);
    let flags = crate::mm::page_flags(addr).expect("kernel rodata is mapped");
    assert!(
        !flags.contains(PageTableFlags::WRITABLE),
        "read-only target is writable: {flags:?}"
    );
    assert!(
        x86_64::registers::control::Cr0::read()
            .contains(x86_64::registers::control::Cr0Flags::WRITE_PROTECT),
        "CR0.WP is clear: supervisor writes would ignore page protection"
    );
    // SAFETY: the page was just checked to be read-only with CR0.WP set, so the write
    // faults before it changes anything; the handler reports it and never returns here.
    unsafe { core::ptr::write_volatile(addr.as_u64() as *mut u64, 0) };
    unreachable!("write to a read-only page did not fault");
}

/// Calls, from ring 0, a `ret` placed on a page that ring 3 may use (a SIP's kind of page):
/// with SMEP on, the instruction fetch faults (I/D=1, U/S=0) before anything runs.
pub fn execute_user_page() -> ! {
    assert!(
        super::fpu::features().smep_available,
        "this processor has no SMEP; the test cannot show it"
    );
    let mut space = crate::mm::vm::AddressSpace::new().expect("a frame for an address space");
    let page = crate::mm::vm::user_base();
    space.map_zeroed(page, 1).expect("a user page");
    space
        .write_bytes(page, &[0xc3])
        .expect("the page is writable"); // ret
    space.activate();
    let entry = page.as_u64();
    // SAFETY: the page holds a lone `ret`, so even without SMEP the call would return at
    // once without touching memory; with SMEP the fetch faults and the page-fault handler
    // reports it and never returns here.
    unsafe {
        let f: extern "C" fn() = core::mem::transmute(entry as usize);
        f();
    }
    panic!("ring 0 executed a user page: SMEP is off");
}

/// Reads, from ring 0 and outside any system call's window, a page ring 3 may use: with
/// SMAP on, the data access faults (P=1, U/S=0, W/R=0) before anything is read.
pub fn read_user_page() -> ! {
    assert!(
        super::smap::enabled(),
        "SMAP is not on (the processor lacks it); the test cannot show it"
    );
    let mut space = crate::mm::vm::AddressSpace::new().expect("a frame for an address space");
    let page = crate::mm::vm::user_base();
    space.map_zeroed(page, 1).expect("a user page");
    space
        .write_bytes(page, &0x005e_c2e7_u64.to_le_bytes())
        .expect("the page is writable");
    space.activate();
    // SAFETY: the page is mapped (just above) and holds a u64, so even without SMAP the
    // read is of initialised memory; with SMAP it faults and the page-fault handler
    // reports it and never returns here.
    let value = unsafe { core::ptr::read_volatile(page.as_u64() as *const u64) };
    panic!("ring 0 read a user page ({value:#x}) outside a system call: SMAP is off");
}
