//! Kernel-thread context switch.
//!
//! A suspended thread's state is its kernel stack: [`switch`] pushes RFLAGS and the
//! callee-saved registers, stores the stack pointer in the old thread's slot, loads the
//! new thread's and pops its registers and flags (RFLAGS.AC, the SMAP window of a system
//! call, belongs to its thread). Caller-saved registers are already saved by the compiler
//! around the call, and a thread preempted by the timer has its full register set in the
//! [`TrapFrame`](super::trap::TrapFrame) further up its stack.
//!
//! A new thread's stack is prepared by [`prepare_stack`] so that its first switch "returns"
//! into [`thread_trampoline`], which calls the scheduler's entry function with the thread's
//! start argument.

use core::arch::naked_asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Number of callee-saved registers [`switch`] keeps on the stack (below RFLAGS).
const SAVED_REGISTERS: usize = 6;
/// RFLAGS a new thread starts with: interrupts masked, AC clear (bit 1 is always set).
const INITIAL_RFLAGS: u64 = 0x2;

/// Saves the current context into `*save_rsp` and resumes the one whose stack pointer is
/// `next_rsp`; then clears `*leaving` (the outgoing context's "on a processor" flag), once
/// nothing runs on its stack any more, so another processor may resume it.
///
/// # Safety
/// Interrupts must be disabled. `save_rsp` and `leaving` must be valid for a write and
/// `loaded_cr3` too when `next_cr3` is not zero. `next_rsp` must be a stack pointer saved
/// by an earlier `switch` or made by [`prepare_stack`], whose stack is still allocated and
/// which no other processor is running on.
///
/// A non-zero `next_cr3` is loaded between the two stacks (and recorded in `loaded_cr3`,
/// this processor's two-word entry for TLB shootdowns): a thread running a program in
/// ring 0 may be suspended on a stack that only its own address space maps.
#[unsafe(naked)]
pub unsafe extern "C" fn switch(
    save_rsp: *mut u64,
    next_rsp: u64,
    next_cr3: u64,
    leaving: *const AtomicBool,
    loaded_cr3: *mut u64,
) {
    naked_asm!(
        "pushfq",
        push_callee_saved!(),
        "mov [rdi], rsp",
        // A new table: listed as leaving and loaded before the load (as
        // `smp::load_table` does), the one left unlisted after it.
        "test rdx, rdx",
        "jz 2f",
        "mov rax, cr3",
        "and rax, -4096",
        "mov [r8 + 8], rax",
        "mov [r8], rdx",
        "mfence",
        "mov cr3, rdx",
        "mov qword ptr [r8 + 8], 0",
        "2:",
        "mov rsp, rsi",
        "mov byte ptr [rcx], 0",
        pop_callee_saved!(),
        "popfq",
        "ret",
    )
}

/// First code a new thread runs: moves its start argument (kept in r12 by
/// [`prepare_stack`]) into the first argument register and calls the entry function kept
/// in r13. The entry function never returns.
#[unsafe(naked)]
unsafe extern "C" fn thread_trampoline() -> ! {
    naked_asm!("mov rdi, r12", "call r13", "ud2")
}

/// Writes the initial frame for a new thread at the top of `stack` and returns the stack
/// pointer to hand to [`switch`]. The thread starts with interrupts disabled, in
/// `entry(arg)`.
pub fn prepare_stack(stack: &mut [u64], entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    // Frame, from the returned stack pointer upwards: r15, r14, r13, r12, rbx, rbp, RFLAGS,
    // return address, then two padding words so the trampoline runs with rsp 16-byte
    // aligned (its `call` then leaves the entry function with the usual rsp % 16 == 8).
    let top_index = stack.len() & !1; // keep the top 16-byte aligned
    let frame_words = SAVED_REGISTERS + 2;
    let base = top_index - frame_words - 2;
    let frame = &mut stack[base..top_index];
    frame.fill(0);
    frame[2] = entry as *const () as u64; // r13
    frame[3] = arg; // r12
    frame[SAVED_REGISTERS] = INITIAL_RFLAGS;
    frame[SAVED_REGISTERS + 1] = thread_trampoline as *const () as u64;
    let rsp = frame.as_ptr() as u64;
    debug_assert_eq!((rsp + 8 * frame_words as u64) % 16, 0);
    rsp
}

// ---------------------------------------------------------------------------------------
// The context table: a safe interface over `switch`.
// ---------------------------------------------------------------------------------------

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::irq::IrqMutex;
use super::smp::{self, MAX_CPUS};
use crate::mm::stacks::GuardedStack;

/// Which saved context: a processor's boot/idle context or a kernel thread's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextId {
    /// The processor's boot stack, which becomes its idle loop (each processor has its
    /// own; `Idle` names the one of the processor asking).
    Idle,
    Thread(usize),
}

/// Written at the lowest word of every thread stack; found changed on a switch, it means
/// the thread overflowed its stack.
const STACK_CANARY: u64 = 0x5741_434b_4f56_4552; // "WACKOVER"

struct Slot {
    rsp: u64,
    stack: Option<GuardedStack>,
    /// The thread's address space (its top-level table), or 0: any will do (kernel
    /// threads run in whichever space is loaded).
    cr3: u64,
    /// System-call stack and program session (see `arch::user`).
    user: super::user::ThreadState,
    /// x87/SSE registers while the thread is not running.
    vectors: super::fpu::VectorState,
    /// The compiled engine's thread-local pointer while the thread is not running.
    wasm_tls: usize,
    /// Set while a processor runs on this context's stack: from the switch to it until the
    /// switch away has saved its stack pointer. Another processor resuming the context
    /// waits for it to clear, and its stack is not freed before.
    on_cpu: AtomicBool,
}

impl Slot {
    fn new(rsp: u64, stack: Option<GuardedStack>, on_cpu: bool) -> Box<Slot> {
        Box::new(Slot {
            rsp,
            stack,
            cr3: 0,
            user: Default::default(),
            vectors: super::fpu::initial(),
            wasm_tls: 0,
            on_cpu: AtomicBool::new(on_cpu),
        })
    }
}

struct Table {
    /// Each processor's idle context, made the first time it switches away from it.
    idle: [Option<Box<Slot>>; MAX_CPUS],
    threads: Vec<Option<Box<Slot>>>,
    running: [ContextId; MAX_CPUS],
    switches: u64,
    cr3_loads: u64,
}

impl Table {
    fn slot(&mut self, cpu: usize, id: ContextId) -> &mut Slot {
        match id {
            // Only ever first asked for by the processor itself, which runs on it.
            ContextId::Idle => self.idle[cpu].get_or_insert_with(|| Slot::new(0, None, true)),
            ContextId::Thread(i) => self
                .threads
                .get_mut(i)
                .and_then(Option::as_mut)
                .unwrap_or_else(|| panic!("no context for thread {i}")),
        }
    }
}

static TABLE: IrqMutex<Option<Table>> = IrqMutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut guard = TABLE.lock();
    f(guard.get_or_insert_with(|| Table {
        idle: [const { None }; MAX_CPUS],
        threads: Vec::new(),
        running: [ContextId::Idle; MAX_CPUS],
        switches: 0,
        cr3_loads: 0,
    }))
}

/// Creates the context of thread `index` on `stack`; its first switch runs `entry(arg)`
/// with interrupts disabled.
pub fn create(index: usize, mut stack: GuardedStack, entry: extern "C" fn(u64) -> !, arg: u64) {
    let words = stack.as_mut_slice();
    words[0] = STACK_CANARY;
    let rsp = prepare_stack(words, entry, arg);
    with_table(|table| {
        if table.threads.len() <= index {
            table.threads.resize_with(index + 1, || None);
        }
        assert!(table.threads[index].is_none(), "context {index} exists");
        table.threads[index] = Some(Slot::new(rsp, Some(stack), false));
    });
}

/// The context of a thread that will never run again, taken out of the table: dropping
/// it frees the thread's stack (which may shoot its mapping down, so drop it with no lock
/// held).
pub struct Retired(#[expect(dead_code, reason = "held only to be dropped")] Box<Slot>);

/// Takes the context of a thread that will never run again out of the table, once no
/// processor runs on its stack any more; `None` (nothing taken) while one still does: the
/// caller tries again later. Its index is free for a new context as soon as this returns.
pub fn retire(index: usize) -> Option<Retired> {
    with_table(|table| {
        // Still on a processor (its switch away may not have begun: the scheduler's
        // choice is made before the table changes): not yet.
        if table
            .threads
            .get(index)?
            .as_ref()?
            .on_cpu
            .load(Ordering::Acquire)
        {
            return None;
        }
        assert!(
            !table.running.contains(&ContextId::Thread(index)),
            "retiring a running context that is on no processor"
        );
        table.threads[index].take().map(Retired)
    })
}

/// The context now running on this processor.
pub fn running() -> ContextId {
    with_table(|table| table.running[smp::current_cpu()])
}

/// Context switches so far (every processor's).
pub fn switches() -> u64 {
    with_table(|table| table.switches)
}

/// CR3 loads by the context switch so far.
pub fn cr3_loads() -> u64 {
    with_table(|table| table.cr3_loads)
}

/// Gives the running thread the address space whose top-level table is at `l4` (0: none
/// of its own) and loads it.
pub fn set_address_space(l4: u64) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        with_table(|table| {
            let cpu = smp::current_cpu();
            let running = table.running[cpu];
            table.slot(cpu, running).cr3 = l4;
        });
        if l4 != 0 {
            load_cr3(l4);
        }
    });
}

/// The running thread's address space (0: none of its own).
pub fn address_space() -> u64 {
    with_table(|table| {
        let cpu = smp::current_cpu();
        let running = table.running[cpu];
        table.slot(cpu, running).cr3
    })
}

fn load_cr3(l4: u64) {
    // SAFETY: `l4` is the top-level table of a live address space, which maps the kernel
    // exactly as every other space does (shared kernel entries); interrupts are masked.
    unsafe { smp::load_table(l4) };
}

/// Suspends the running context and resumes `next`. Returns when something switches back.
/// Must be called with interrupts disabled; `next` must not be running on this processor
/// and must be the scheduler's choice for it (no other processor will resume it).
pub fn switch_to(next: ContextId) {
    assert!(
        !x86_64::instructions::interrupts::are_enabled(),
        "context switch with interrupts enabled"
    );
    let cpu = smp::current_cpu();
    // The processor that last ran `next` may still be on its stack, between giving it up
    // and saving its registers: wait until it is off (a few instructions, interrupts
    // masked there too).
    if let ContextId::Thread(_) = next {
        let flag: *const AtomicBool = with_table(|table| &raw const table.slot(cpu, next).on_cpu);
        // SAFETY: the slot is boxed, so the flag does not move, and a thread the
        // scheduler chose to run has not exited, so its slot is not freed meanwhile.
        while unsafe { (*flag).load(Ordering::Acquire) } {
            core::hint::spin_loop();
        }
    }
    let (save, next_rsp, next_cr3, leaving) = with_table(|table| {
        let from = table.running[cpu];
        assert_ne!(from, next, "switch to the running context");
        if let ContextId::Thread(i) = from {
            let slot = table.slot(cpu, from);
            let stack = slot.stack.as_mut().expect("thread context has a stack");
            if stack.as_mut_slice()[0] != STACK_CANARY {
                panic!("kernel stack overflow in thread {i}");
            }
        }
        table.slot(cpu, from).user = super::user::save_thread(cpu);
        // Vector registers: the running thread's into its slot, the next one's back.
        let next_vectors: *const super::fpu::VectorState = &table.slot(cpu, next).vectors;
        // SAFETY: `next` != `from` (asserted above), so the two slots are distinct boxes
        // and the shared borrow of `next`'s state does not alias `from`'s.
        super::fpu::switch(&mut table.slot(cpu, from).vectors, unsafe {
            &*next_vectors
        });
        let (next_rsp, next_cr3, next_user) = {
            let slot = table.slot(cpu, next);
            slot.on_cpu.store(true, Ordering::Relaxed);
            (slot.rsp, slot.cr3, slot.user)
        };
        super::user::restore_thread(cpu, next_user);
        table.slot(cpu, from).wasm_tls = super::wasm_tls::save(cpu);
        super::wasm_tls::restore(cpu, table.slot(cpu, next).wasm_tls);
        let current_cr3 = x86_64::registers::control::Cr3::read_raw()
            .0
            .start_address();
        let load_cr3 = next_cr3 != 0 && next_cr3 != current_cr3.as_u64();
        if load_cr3 {
            table.cr3_loads += 1;
        }
        let from_slot = table.slot(cpu, from);
        let save: *mut u64 = &mut from_slot.rsp;
        let leaving: *const AtomicBool = &from_slot.on_cpu;
        table.running[cpu] = next;
        table.switches += 1;
        (save, next_rsp, if load_cr3 { next_cr3 } else { 0 }, leaving)
    });
    // SAFETY: interrupts are disabled, so nothing runs on this processor between
    // releasing the table lock and the switch; another processor cannot resume `from`
    // before `switch` clears its flag, after saving its stack pointer. `save` and
    // `leaving` point into the boxed slot of the running context, which `destroy` refuses
    // to free while its flag is set. `next_rsp` was saved by an earlier switch away from
    // `next` (whose processor has left it: we waited for its flag) or made by
    // `prepare_stack`, and `next`'s stack is owned by its slot, still in the table. A
    // non-zero `next_cr3` is a live space mapping the kernel like every other; the
    // processor's shootdown entry is a static.
    unsafe { switch(save, next_rsp, next_cr3, leaving, smp::loaded_cr3_slot(cpu)) }
}
