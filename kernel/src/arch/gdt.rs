//! Global descriptor table and task-state segment.
//!
//! Segment layout (fixed, because `syscall`/`sysret` derive selectors from STAR):
//!
//! | selector | descriptor |
//! |---|---|
//! | 0x08 | kernel code (ring 0) |
//! | 0x10 | kernel data |
//! | 0x18 | user data (ring 3) |
//! | 0x20 | user code (ring 3) |
//! | 0x28 | TSS (two slots) |
//!
//! The TSS holds the interrupt stack table: the double fault, NMI and machine check run on
//! stacks of their own, so a kernel stack overflow still produces a report instead of a
//! triple fault. `RSP0` (the stack used when an interrupt arrives in ring 3) is set per
//! thread: by `arch::user` when a thread enters a program, by the context switch after.

use core::sync::atomic::{AtomicPtr, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use super::smp::MAX_CPUS;

/// IST slot (0-based, as the IDT entry API counts) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot of the NMI stack.
pub const NMI_IST: u16 = 1;
/// IST slot of the machine-check stack.
pub const MACHINE_CHECK_IST: u16 = 2;

const IST_STACK_SIZE: usize = 20 * 1024;

#[repr(align(16))]
#[expect(dead_code, reason = "only written by the CPU through the IST")]
struct IstStack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];
/// The boot processor's task-state segment.
static mut TSS: TaskStateSegment = TaskStateSegment::new();

/// The selectors of the loaded GDT.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

fn ist_top(index: usize) -> VirtAddr {
    // SAFETY: only the address of the static is taken; the stacks are written by the CPU
    // alone, when it switches to them.
    let base = unsafe { (&raw const IST_STACKS[index]) as u64 };
    VirtAddr::new(base + IST_STACK_SIZE as u64)
}

/// Builds a GDT with the fixed layout above around `tss`.
fn build(tss: &'static TaskStateSegment) -> (GlobalDescriptorTable, Selectors) {
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    // Ring-3 descriptors, in the order sysret expects (data, then code).
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    let tss = gdt.append(Descriptor::tss_segment(tss));
    (
        gdt,
        Selectors {
            kernel_code,
            kernel_data,
            user_data,
            user_code,
            tss,
        },
    )
}

/// Loads `gdt` and reloads every segment register and the task register from `selectors`.
fn load(gdt: &'static GlobalDescriptorTable, selectors: Selectors) {
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose descriptors are valid 64-bit
    // kernel code/data and TSS descriptors.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }
}

/// Each processor's TSS (for `RSP0`), by CPU number.
static TSS_OF: [AtomicPtr<TaskStateSegment>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Gives application processor `cpu` a GDT and TSS of its own (a TSS is marked busy when
/// loaded, and each processor needs its own IST stacks and `RSP0`), with the same layout
/// as the boot processor's. They live as long as the kernel.
pub fn init_application_processor(cpu: usize) {
    let mut tss = alloc::boxed::Box::new(TaskStateSegment::new());
    for slot in [DOUBLE_FAULT_IST, NMI_IST, MACHINE_CHECK_IST] {
        let stack = alloc::boxed::Box::leak(alloc::boxed::Box::new(IstStack([0; IST_STACK_SIZE])));
        let base = stack as *mut IstStack as u64;
        tss.interrupt_stack_table[slot as usize] = VirtAddr::new(base + IST_STACK_SIZE as u64);
    }
    let tss: &'static mut TaskStateSegment = alloc::boxed::Box::leak(tss);
    TSS_OF[cpu].store(tss, Ordering::Release);
    let (gdt, selectors) = build(tss);
    load(
        alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt)),
        selectors,
    );
}

/// Loads the GDT and TSS and reloads every segment register.
pub fn init() {
    // SAFETY: init runs once on the boot processor before interrupts are enabled, so
    // nothing else reads the TSS while it is being filled in.
    let tss: &'static TaskStateSegment = unsafe {
        let tss_ptr = &raw mut TSS;
        let tss = &mut *tss_ptr;
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = ist_top(0);
        tss.interrupt_stack_table[NMI_IST as usize] = ist_top(1);
        tss.interrupt_stack_table[MACHINE_CHECK_IST as usize] = ist_top(2);
        &*tss_ptr
    };
    TSS_OF[0].store(&raw mut TSS, Ordering::Release);
    let (gdt, selectors) = GDT.call_once(|| build(tss));
    load(gdt, *selectors);
}

/// The address of processor `cpu`'s `RSP0`, the stack it switches to when an interrupt
/// arrives in ring 3 (written by [`set_kernel_stack`] and by `arch::user` on entering a
/// program). Null before the processor has a TSS.
pub(super) fn kernel_stack_field(cpu: usize) -> *mut u64 {
    let tss = TSS_OF[cpu].load(Ordering::Acquire);
    if tss.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: only the field's address is computed, in a TSS that lives as long as the
    // kernel (the TSS is packed: the field may be unaligned, so it is written with
    // unaligned stores).
    unsafe { (&raw mut (*tss).privilege_stack_table[0]).cast::<u64>() }
}

/// Sets processor `cpu`'s `RSP0`. Called by `cpu` itself, interrupts disabled.
pub(super) fn set_kernel_stack(cpu: usize, rsp: u64) {
    let field = kernel_stack_field(cpu);
    if field.is_null() {
        return;
    }
    // SAFETY: the field of this processor's own TSS (each processor has one, leaked or
    // static, living as long as the kernel), written by this processor alone with
    // interrupts disabled; the processor reads it only on a later ring-3 interrupt.
    unsafe { field.write_unaligned(rsp) };
}

/// The selectors of the loaded GDT (after [`init`]).
pub fn selectors() -> Selectors {
    GDT.get().expect("gdt::init ran").1
}
