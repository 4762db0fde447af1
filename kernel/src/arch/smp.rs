//! The other processors: started with INIT-SIPI-SIPI through a real-mode trampoline, and
//! cross-processor calls (a function run on another processor, asked for by an IPI), on
//! which the TLB shootdown is built.
//!
//! Bring-up: the firmware's MADT lists the processors (`arch::acpi`). The trampoline
//! below is copied to a frame below 1 MiB that `mm` kept back; a STARTUP IPI starts a
//! processor there in real mode. It loads a small GDT, enters protected mode, turns on PAE
//! and long mode with a temporary top-level table (the kernel's entries plus an identity
//! mapping of the trampoline page, below 4 GiB because CR3 is loaded from 32-bit code),
//! and calls [`application_processor_entry`] on a guarded kernel stack of its own. That
//! function loads the kernel's own table, a GDT and TSS (with IST stacks) of the
//! processor's own, the shared IDT, switches its local APIC on and reports in. Processors
//! are started one at a time, so one trampoline page serves all.
//!
//! Once up, each processor runs the scheduler's idle loop (registered with
//! [`set_idle_loop`]): threads run on every processor; between them it halts until a tick,
//! a reschedule IPI ([`kick`]) or a cross-processor call arrives.
//!
//! Calls ([`call_on`]): each processor has a mailbox. The caller, interrupts masked,
//! takes the target's sender lock, leaves the function and its argument, sends
//! [`apic::CALL_VECTOR`] and waits for the reply, serving its own mailbox meanwhile, so
//! two processors calling each other cannot deadlock. Called functions run with
//! interrupts masked on the target and must never wait for a lock a caller may hold; one
//! may call back the processor that called it (which serves its mailbox while it waits),
//! but not a third processor whose sender lock that caller might hold.
//!
//! Shootdown ([`shootdown_range`]): a change to mappings another processor may have
//! cached is followed by `invlpg` here and one call of `invlpg` over the range on every
//! other online processor, waited for: once it returns, no processor can reach the old
//! translations.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::{PhysAddr, VirtAddr};

use super::apic;

// The trampoline. Runs at any page-aligned address below 1 MiB (CS = page << 8): its own
// data is reached relative to CS in real mode and relative to EBX (its linear base) after.
core::arch::global_asm!(
    r#"
    .pushsection .text.cordon_ap_trampoline, "ax"
    .global cordon_ap_trampoline_start
    .global cordon_ap_trampoline_end
    .global cordon_ap_params
    .balign 16
    .code16
cordon_ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    movzwl %ax, %ebx
    shll $4, %ebx
    leal (ap_gdt - cordon_ap_trampoline_start)(%ebx), %eax
    movl %eax, (ap_gdtr - cordon_ap_trampoline_start + 2)
    lgdtl (ap_gdtr - cordon_ap_trampoline_start)
    leal (ap_protected - cordon_ap_trampoline_start)(%ebx), %eax
    movl %eax, (ap_far32 - cordon_ap_trampoline_start)
    movw $0x08, (ap_far32 - cordon_ap_trampoline_start + 4)
    leal (ap_long - cordon_ap_trampoline_start)(%ebx), %eax
    movl %eax, (ap_far64 - cordon_ap_trampoline_start)
    movw $0x18, (ap_far64 - cordon_ap_trampoline_start + 4)
    movl %cr0, %eax
    andl $0x9fffffff, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl *(ap_far32 - cordon_ap_trampoline_start)

    .code32
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    leal 4096(%ebx), %esp
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl (cordon_ap_params - cordon_ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    movl (cordon_ap_params - cordon_ap_trampoline_start + 8)(%ebx), %eax
    movl (cordon_ap_params - cordon_ap_trampoline_start + 12)(%ebx), %edx
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmpl *(ap_far64 - cordon_ap_trampoline_start)(%ebx)

    .code64
ap_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movl %ebx, %ebx
    movq (cordon_ap_params - cordon_ap_trampoline_start + 16)(%rbx), %rsp
    movq (cordon_ap_params - cordon_ap_trampoline_start + 32)(%rbx), %rdi
    movq (cordon_ap_params - cordon_ap_trampoline_start + 24)(%rbx), %rax
    callq *%rax
2:
    hlt
    jmp 2b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_gdtr:
    .word 31
    .long 0
ap_far32:
    .long 0
    .word 0
ap_far64:
    .long 0
    .word 0
    .balign 8
cordon_ap_params:
    .quad 0, 0, 0, 0, 0
cordon_ap_trampoline_end:
    .code64
    .popsection
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static cordon_ap_trampoline_start: u8;
    static cordon_ap_trampoline_end: u8;
    static cordon_ap_params: u8;
}

/// What the trampoline reads at `cordon_ap_params` (offsets fixed in the assembly).
#[repr(C)]
#[derive(Clone, Copy)]
struct Params {
    cr3: u64,
    efer: u64,
    stack_top: u64,
    entry: u64,
    cpu: u64,
}

/// A function run on another processor: argument in, result out.
pub type Call = fn(u64) -> u64;

/// One processor's mailbox for cross-processor calls.
struct Mailbox {
    /// Held by the one caller whose call is in flight.
    sender: spin::Mutex<()>,
    request: spin::Mutex<Option<(Call, u64)>>,
    reply: spin::Mutex<Option<u64>>,
    /// Calls this processor has served.
    served: AtomicU64,
}

impl Mailbox {
    const fn new() -> Mailbox {
        Mailbox {
            sender: spin::Mutex::new(()),
            request: spin::Mutex::new(None),
            reply: spin::Mutex::new(None),
            served: AtomicU64::new(0),
        }
    }
}

/// Most processors Cordon starts.
pub const MAX_CPUS: usize = 16;

static MAILBOXES: [Mailbox; MAX_CPUS] = [const { Mailbox::new() }; MAX_CPUS];
/// Local APIC ID of each processor by CPU number (CPU 0 is the boot processor).
static APIC_IDS: spin::Once<Vec<u32>> = spin::Once::new();
/// Processors running (the boot processor included).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Set by a starting processor once it runs on the kernel's own table.
static REPORTED: AtomicBool = AtomicBool::new(false);
/// Whether mapping changes are shot down on other processors (a self-test turns it off
/// to show what a missing shootdown lets through).
static SHOOTDOWNS_ON: AtomicBool = AtomicBool::new(true);

/// What each processor did, for the end-of-run report (so that an idle processor cannot
/// pass for a working one).
struct CpuStats {
    /// Local APIC timer ticks it took.
    ticks: AtomicU64,
    /// TSC cycles spent halted (the interrupts that woke it included).
    halted: AtomicU64,
    /// TSC cycles spent running the calls it served.
    serving: AtomicU64,
    /// The TSC when it reported in.
    started: AtomicU64,
}

static STATS: [CpuStats; MAX_CPUS] = [const {
    CpuStats {
        ticks: AtomicU64::new(0),
        halted: AtomicU64::new(0),
        serving: AtomicU64::new(0),
        started: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// One processor's figures since it started.
#[derive(Clone, Copy, Debug)]
pub struct CpuReport {
    pub cpu: usize,
    pub apic_id: u32,
    pub ticks: u64,
    pub calls_served: u64,
    pub serving_cycles: u64,
    pub halted_cycles: u64,
    /// TSC cycles since it reported in (since boot for CPU 0).
    pub cycles: u64,
}

/// Every running processor's figures (halted time: what [`halt_until_interrupt`] counted).
pub fn report() -> Vec<CpuReport> {
    let now = super::cycles::now();
    (0..online())
        .map(|cpu| {
            let stats = &STATS[cpu];
            CpuReport {
                cpu,
                apic_id: apic_ids().get(cpu).copied().unwrap_or(0),
                ticks: stats.ticks.load(Ordering::Relaxed),
                calls_served: MAILBOXES[cpu].served.load(Ordering::Relaxed),
                serving_cycles: stats.serving.load(Ordering::Relaxed),
                halted_cycles: stats.halted.load(Ordering::Relaxed),
                cycles: now.saturating_sub(stats.started.load(Ordering::Relaxed)),
            }
        })
        .collect()
}

/// TSC cycles processor `cpu` spent halted waiting for an interrupt because nothing could
/// run (for a disk, or a timer), the interrupts that woke it included.
pub fn halted_cycles(cpu: usize) -> u64 {
    STATS[cpu].halted.load(Ordering::Relaxed)
}

/// A local APIC timer tick arrived (trap dispatch): counted for this processor. True on
/// CPU 0, whose tick drives time and scheduling.
pub(super) fn on_tick() -> bool {
    let cpu = current_cpu();
    STATS[cpu].ticks.fetch_add(1, Ordering::Relaxed);
    cpu == 0
}

/// Inter-processor interrupts sent for calls since boot.
pub static IPIS_SENT: AtomicU64 = AtomicU64::new(0);
/// Shootdowns since boot: mapping changes whose `invlpg` other processors were asked for.
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Processors running.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Local APIC IDs of the running processors, by CPU number.
pub fn apic_ids() -> &'static [u32] {
    APIC_IDS.get().map_or(&[], Vec::as_slice)
}

/// This processor's CPU number (0 on the boot processor): kept in IA32_TSC_AUX (set by
/// [`init_boot_processor`] and by each processor as it starts), read with `rdtscp`.
pub fn current_cpu() -> usize {
    super::cycles::now_on_cpu().1
}

/// Numbers the boot processor CPU 0 (before anything asks [`current_cpu`]).
pub fn init_boot_processor() {
    set_cpu_number(0);
    STATS[0]
        .started
        .store(super::cycles::now(), Ordering::Relaxed);
}

const IA32_TSC_AUX: u32 = 0xc000_0103;

/// Tells this processor its CPU number (in IA32_TSC_AUX, where `rdtscp` returns it).
fn set_cpu_number(cpu: usize) {
    // SAFETY: IA32_TSC_AUX only holds the value `rdtscp` and `rdpid` return; nothing else
    // depends on it.
    unsafe { x86_64::registers::model_specific::Msr::new(IA32_TSC_AUX).write(cpu as u64) };
}

/// Why a processor did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// `mm` found no free frame below 1 MiB for the trampoline.
    NoTrampolinePage,
    /// No memory for the temporary page table or the processor's stack.
    OutOfMemory,
    /// It never reported in after INIT-SIPI-SIPI.
    NoAnswer,
    /// More processors than [`MAX_CPUS`].
    TooMany,
    /// The firmware put the local APICs in x2APIC mode, or the ID needs it (above 255):
    /// Cordon drives the local APIC through its memory-mapped (xAPIC) registers only.
    X2Apic,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StartError::NoTrampolinePage => "no free page below 1 MiB for the start-up code",
            StartError::OutOfMemory => "out of memory for its stack or start-up page table",
            StartError::NoAnswer => "did not answer INIT-SIPI-SIPI",
            StartError::TooMany => "more processors than Cordon starts",
            StartError::X2Apic => "needs x2APIC mode, which Cordon does not drive",
        })
    }
}

/// Starts the processors the MADT lists (`listed`: every local APIC ID it marks usable,
/// `madt_boot_id` the one it calls the boot processor), one at a time. The processor
/// running this is CPU 0 whatever the MADT's order: its own local APIC ID is left out.
/// Returns how each start went, in order. Runs once at boot, on the boot processor,
/// interrupts masked, before any thread exists.
pub fn start(madt_boot_id: u32, listed: &[u32]) -> Vec<(u32, Result<(), StartError>)> {
    if listed.iter().all(|&id| id == madt_boot_id) {
        // One processor: its local APIC stays as the firmware (or `lines`) left it.
        APIC_IDS.call_once(|| alloc::vec![madt_boot_id]);
        return Vec::new();
    }
    let x2apic = apic::x2apic_enabled();
    let boot_id = if x2apic {
        madt_boot_id
    } else {
        apic::init(true);
        apic::id()
    };
    let mut aps: Vec<u32> = listed.iter().copied().filter(|&id| id != boot_id).collect();
    aps.dedup();
    let mut ids = alloc::vec![boot_id];
    let results = start_all(&aps, x2apic, &mut ids);
    let online = ids.len();
    APIC_IDS.call_once(|| ids);
    ONLINE.store(online, Ordering::Release);
    results
}

fn start_all(aps: &[u32], x2apic: bool, ids: &mut Vec<u32>) -> Vec<(u32, Result<(), StartError>)> {
    let refuse_all = |why| aps.iter().map(|&id| (id, Err(why))).collect();
    if x2apic {
        return refuse_all(StartError::X2Apic);
    }
    let Some(page) = crate::mm::trampoline_frame() else {
        return refuse_all(StartError::NoTrampolinePage);
    };
    let Some(table) = crate::mm::vm::BootTable::identity(page) else {
        return refuse_all(StartError::OutOfMemory);
    };
    copy_trampoline(page);
    let mut results = Vec::new();
    for &id in aps {
        let result = if ids.len() == MAX_CPUS {
            Err(StartError::TooMany)
        } else if id > 0xff {
            Err(StartError::X2Apic)
        } else {
            start_one(id, ids.len(), page, &table)
        };
        if result.is_ok() {
            ids.push(id);
        }
        results.push((id, result));
    }
    // Everyone started runs on the kernel's table now (one that never answered was sent
    // INIT again, so it waits for a STARTUP that never comes): the temporary one can go.
    drop(table);
    results
}

/// Copies the trampoline into its page below 1 MiB.
fn copy_trampoline(page: PhysAddr) {
    let start = (&raw const cordon_ap_trampoline_start) as usize;
    let end = (&raw const cordon_ap_trampoline_end) as usize;
    assert!(
        end - start <= 4096 - 256,
        "the trampoline and its stack fit one page"
    );
    let to = crate::mm::phys_to_virt(page).as_mut_ptr::<u8>();
    // SAFETY: the source is the trampoline's bytes in kernel text; the destination is the
    // page `mm` kept back for it (no allocator hands it out), mapped writable through the
    // physical mapping, and no processor runs it yet.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, to, end - start) };
}

fn start_one(
    apic_id: u32,
    cpu: usize,
    page: PhysAddr,
    table: &crate::mm::vm::BootTable,
) -> Result<(), StartError> {
    let stack = crate::mm::frames::FrameBlock::alloc(crate::mm::stacks::AP_STACK_ORDER)
        .and_then(crate::mm::stacks::GuardedStack::new)
        .ok_or(StartError::OutOfMemory)?;
    let params = Params {
        cr3: table.l4().as_u64(),
        // LMA is set by the processor itself when paging comes on.
        efer: Efer::read_raw() & !EferFlags::LONG_MODE_ACTIVE.bits(),
        stack_top: stack.top(),
        entry: application_processor_entry as *const () as u64,
        cpu: cpu as u64,
    };
    let offset =
        (&raw const cordon_ap_params) as usize - (&raw const cordon_ap_trampoline_start) as usize;
    let at = crate::mm::phys_to_virt(page + offset as u64).as_mut_ptr::<Params>();
    // SAFETY: `at` is the parameter block inside the trampoline page (8-byte aligned in
    // the assembly), which no processor is running: the previous one reported in.
    unsafe { core::ptr::write_volatile(at, params) };
    REPORTED.store(false, Ordering::Release);
    // INIT, 10 ms, then STARTUP twice 200 µs apart (Intel's MP start-up sequence).
    apic::send_init(apic_id);
    super::pic::delay_us(10_000);
    let vector = (page.as_u64() >> 12) as u8;
    for _ in 0..2 {
        apic::send_startup(apic_id, vector);
        super::pic::delay_us(200);
        if REPORTED.load(Ordering::Acquire) {
            break;
        }
    }
    // Give it up to a second (emulated processors may start slowly).
    for _ in 0..1000 {
        if REPORTED.load(Ordering::Acquire) {
            // The stack is the processor's for as long as the kernel runs.
            core::mem::forget(stack);
            return Ok(());
        }
        super::pic::delay_us(1000);
    }
    // Back to waiting for a STARTUP IPI, so that it cannot wake later on the next
    // processor's parameters or a freed start-up table; its stack is never given back.
    apic::send_init(apic_id);
    core::mem::forget(stack);
    Err(StartError::NoAnswer)
}

/// First Rust code on an application processor (from the trampoline, on its own stack,
/// interrupts masked, on the temporary page table).
extern "C" fn application_processor_entry(cpu: u64) -> ! {
    // First: everything after (the loaded-table record included) asks which CPU it is.
    set_cpu_number(cpu as usize);
    crate::mm::vm::AddressSpace::activate_kernel();
    // SAFETY: as on the boot processor (`arch::init`): WP only makes the processor stricter.
    unsafe {
        x86_64::registers::control::Cr0::update(|cr0| {
            cr0.insert(x86_64::registers::control::Cr0Flags::WRITE_PROTECT)
        });
    }
    super::fpu::init();
    super::gdt::init_application_processor(cpu as usize);
    super::trap::load_idt();
    super::user::init();
    apic::init(false);
    if apic::timer_counts_per_tick().is_some() {
        apic::start_timer();
    }
    log::debug!("CPU {cpu} (local APIC {}) online", apic::id());
    let stats = &STATS[cpu as usize];
    stats.started.store(super::cycles::now(), Ordering::Relaxed);
    REPORTED.store(true, Ordering::Release);
    match IDLE_LOOP.get() {
        // The scheduler's: this boot context becomes the processor's idle context.
        Some(idle_loop) => idle_loop(),
        None => loop {
            halt_until_interrupt();
        },
    }
}

/// What an application processor runs once it is up (the scheduler's idle loop; without
/// one it only serves calls and counts ticks).
static IDLE_LOOP: spin::Once<fn() -> !> = spin::Once::new();

/// Registers the loop application processors run once up (before [`start_processors`]).
pub fn set_idle_loop(idle_loop: fn() -> !) {
    IDLE_LOOP.call_once(|| idle_loop);
}

/// Sleeps until an interrupt arrives and has been handled; the time asleep is counted as
/// this processor's halted time. Called with interrupts masked (they are again on return):
/// an interrupt that became pending after the caller last looked wakes it at once.
pub fn halt_until_interrupt() {
    let cpu = current_cpu();
    let halted = super::cycles::now();
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
    STATS[cpu]
        .halted
        .fetch_add(super::cycles::now() - halted, Ordering::Relaxed);
}

/// Asks processor `cpu` to look at its run queue (fire and forget; no answer awaited).
pub fn kick(cpu: usize) {
    if cpu >= online() || cpu == current_cpu() {
        return;
    }
    KICKS_SENT.fetch_add(1, Ordering::Relaxed);
    IPIS_SENT.fetch_add(1, Ordering::Relaxed);
    apic::send_ipi(apic_ids()[cpu], apic::RESCHEDULE_VECTOR);
}

/// Reschedule IPIs sent since boot (also counted in [`IPIS_SENT`]).
pub static KICKS_SENT: AtomicU64 = AtomicU64::new(0);

/// The top-level page tables each processor may cache translations of, for shootdowns
/// of user address spaces: [0] the table it has loaded (or is loading), [1] during a
/// switch of tables, the one it is leaving (0 otherwise). A processor that loaded a space
/// may cache its translations until it loads another, so it stays listed until then.
static LOADED_CR3: [[AtomicU64; 2]; MAX_CPUS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_CPUS];

/// Loads the top-level table at `l4` on this processor, recorded for shootdowns. Call
/// with interrupts masked.
///
/// # Safety
/// `l4` must be a live top-level table that maps the kernel as the loaded one does (and
/// the code and stack running now).
pub unsafe fn load_table(l4: u64) {
    let entry = &LOADED_CR3[current_cpu()];
    let leaving = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    entry[1].store(leaving, Ordering::SeqCst);
    entry[0].store(l4, Ordering::SeqCst);
    // SAFETY: as the caller promises.
    unsafe {
        x86_64::registers::control::Cr3::write_raw(
            x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(l4)),
            0,
        )
    };
    entry[1].store(0, Ordering::SeqCst);
}

/// Records the table this processor runs on at start (its first load was not recorded).
pub fn note_loaded_table() {
    let l4 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    LOADED_CR3[current_cpu()][0].store(l4, Ordering::SeqCst);
}

/// Processor `cpu`'s entry in the loaded-table record, for the context switch's assembly
/// (which follows [`load_table`]'s steps).
pub(super) fn loaded_cr3_slot(cpu: usize) -> *mut u64 {
    LOADED_CR3[cpu][0].as_ptr()
}

/// The processors other than this one that have the table at `l4` loaded (and so may
/// cache its translations). Call after the change to the tables is written: the fence
/// orders that write before the reads, so a processor that loads the table later sees
/// the new entries (its CR3 load flushes its non-global translations).
pub fn others_with_cr3(l4: u64) -> impl Iterator<Item = usize> {
    core::sync::atomic::fence(Ordering::SeqCst);
    let me = current_cpu();
    (0..online())
        .filter(move |&c| c != me && LOADED_CR3[c].iter().any(|e| e.load(Ordering::SeqCst) == l4))
}

/// Runs `f(arg)` on processor `cpu` and returns its result (on this processor if `cpu`
/// is this one). Waits, interrupts masked, until the call is done.
pub fn call_on(cpu: usize, f: Call, arg: u64) -> u64 {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let me = current_cpu();
        if cpu == me {
            return f(arg);
        }
        assert!(cpu < online(), "call_on: CPU {cpu} is not running");
        let mailbox = &MAILBOXES[cpu];
        let _sender = loop {
            if let Some(guard) = mailbox.sender.try_lock() {
                break guard;
            }
            serve(me);
            core::hint::spin_loop();
        };
        *mailbox.request.lock() = Some((f, arg));
        IPIS_SENT.fetch_add(1, Ordering::Relaxed);
        apic::send_ipi(apic_ids()[cpu], apic::CALL_VECTOR);
        loop {
            if let Some(result) = mailbox.reply.lock().take() {
                return result;
            }
            serve(me);
            core::hint::spin_loop();
        }
    })
}

/// Whether a call to processor `cpu` waits to be served (for the self-test that holds a
/// shootdown's answer back).
pub fn call_pending(cpu: usize) -> bool {
    MAILBOXES[cpu].request.lock().is_some()
}

/// Serves processor `cpu`'s pending call, if any.
fn serve(cpu: usize) {
    let mailbox = &MAILBOXES[cpu];
    let pending = mailbox.request.lock().take();
    if let Some((f, arg)) = pending {
        let start = super::cycles::now();
        let result = f(arg);
        STATS[cpu]
            .serving
            .fetch_add(super::cycles::now() - start, Ordering::Relaxed);
        mailbox.served.fetch_add(1, Ordering::Relaxed);
        *mailbox.reply.lock() = Some(result);
    }
}

/// The call IPI arrived (trap dispatch, interrupts masked).
pub(super) fn on_call_interrupt() {
    apic::end_of_interrupt();
    serve(current_cpu());
}

/// Most pages one shootdown call names (its argument packs the count in the low 12 bits
/// of the page-aligned start).
const PAGES_PER_CALL: u64 = 4096;

fn invalidate_here(packed: u64) -> u64 {
    let start = packed & !0xfff;
    for page in 0..(packed & 0xfff) + 1 {
        x86_64::instructions::tlb::flush(VirtAddr::new(start + page * 4096));
    }
    0
}

/// Drops the translations of `pages` pages from `first` on this processor and, if
/// shootdowns are on, on every other running processor, waiting until each has done so:
/// one IPI per processor for the whole range. For mappings any processor may have
/// cached: the kernel half, shared by every address space.
pub fn shootdown_range(first: VirtAddr, pages: u64) {
    // Masked throughout: a thread moved to another processor between the local `invlpg`s
    // and reading its CPU number would leave that processor out.
    x86_64::instructions::interrupts::without_interrupts(|| shootdown_range_here(first, pages));
}

fn shootdown_range_here(first: VirtAddr, pages: u64) {
    debug_assert!(first.is_aligned(4096u64), "shootdown of an unaligned range");
    for page in 0..pages {
        invalidate_local(first + page * 4096);
    }
    if online() < 2 || pages == 0 || !SHOOTDOWNS_ON.load(Ordering::Relaxed) {
        return;
    }
    let me = current_cpu();
    let mut done = 0;
    while done < pages {
        let count = (pages - done).min(PAGES_PER_CALL);
        let packed = (first + done * 4096).as_u64() | (count - 1);
        SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
        for cpu in (0..online()).filter(|&c| c != me) {
            call_on(cpu, invalidate_here, packed);
        }
        done += count;
    }
}

/// [`shootdown_range`] of one page.
pub fn shootdown(page: VirtAddr) {
    shootdown_range(page, 1);
}

/// Drops `page`'s translation on this processor only (what a change no other processor
/// can have cached needs).
pub fn invalidate_local(page: VirtAddr) {
    x86_64::instructions::tlb::flush(page);
}

/// Whether mapping changes are shot down on other processors (always, but in the
/// self-tests that show what a missing shootdown lets through).
pub fn shootdowns_on() -> bool {
    SHOOTDOWNS_ON.load(Ordering::Relaxed)
}

/// Turns shootdowns on or off (for the self-tests that show what they prevent; nothing
/// else may run meanwhile: a page unmapped or a stack freed while they are off stays
/// reachable through other processors' translations).
pub fn set_shootdowns(on: bool) {
    SHOOTDOWNS_ON.store(on, Ordering::Relaxed);
}

/// The local APIC ID of the processor this runs on (a call to check who answered).
pub fn apic_id_here(_: u64) -> u64 {
    apic::id() as u64
}
