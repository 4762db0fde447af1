//! Running code outside the kernel proper: ring 3 with system calls, or ring 0 in a SIP's
//! own address space with a call gate (Singularity's intermediate configurations).
//!
//! [`run`] enters a program and returns only when the program is done: the [`Handler`]
//! it was given decided so in a system call (`exit`, a violation), or a fault or kill
//! ended it. Entering saves the kernel's callee-saved registers and stack pointer; leaving
//! restores them, discarding whatever kernel frames were in between (a system call's, a
//! trap's), so those paths never hold locks or owned values when they leave.
//!
//! System calls (`syscall`, ring 3) arrive at [`cordon_syscall_entry`], which moves to the
//! thread's kernel stack, saves the user's return state in a [`SyscallFrame`] and calls the
//! handler. The stack pointer of the thread running on each processor is in that
//! processor's [`EntryScratch`], which the context switch saves and restores like the
//! processor's `TSS.RSP0`; the entry finds it through `IA32_KERNEL_GS_BASE`, swapped in by
//! `swapgs` for the four instructions that need it and swapped straight back (the kernel
//! never uses GS otherwise, so no other entry path has to know which base is loaded). Arguments are never
//! trusted: the handler reaches user memory only through [`UserAccess`]. The dispatch is
//! bounded by ABI operation number in the handler (see `crate::syscall`).
//!
//! A program in ring 0 makes the same calls through [`cordon_gate`], a plain function.

use core::arch::naked_asm;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, KernelGsBase, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

use super::gdt;
use super::smp::{MAX_CPUS, current_cpu};
use super::trap::TrapFrame;
pub use crate::mm::vm::UserAccess;

/// What runs a program's system calls and hears about its end.
pub trait Handler {
    /// One system call. `Some` results go back in rax/rdx; `None` ends the program.
    fn syscall(&mut self, access: &UserAccess, op: u64, args: [u64; 6]) -> Option<[u64; 2]>;
    /// The program faulted (`report` decodes the exception); it is ended after this.
    fn fault(&mut self, report: alloc::string::String);
    /// Asked whenever the program would resume after an interrupt or system call; true
    /// ends it (a kill request).
    fn should_stop(&mut self) -> bool;
}

/// Where and how to enter a program.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub rip: u64,
    pub rsp: u64,
    /// Passed in rdi.
    pub arg: u64,
    pub ring3: bool,
    /// The program's address range (a fault with rip in it is the program's, even in
    /// ring 0).
    pub program: (u64, u64),
}

/// One running program's link back to the kernel, on the stack of [`run`].
struct Session {
    /// Kernel stack pointer to resume at when the program ends.
    resume_rsp: u64,
    handler: *mut dyn Handler,
    entry: Entry,
}

/// The session of the thread running on each processor, or null (switched with the
/// thread).
static SESSION: [AtomicPtr<Session>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// What the system-call entry of one processor reads through GS (offsets fixed: the
/// entry's assembly names them).
#[repr(C)]
struct EntryScratch {
    /// The user stack pointer during the first instructions of a system call (offset 0).
    user_rsp: AtomicU64,
    /// Kernel stack pointer for system calls of the thread running here (offset 8).
    syscall_rsp: AtomicU64,
}

static SCRATCH: [EntryScratch; MAX_CPUS] = [const {
    EntryScratch {
        user_rsp: AtomicU64::new(0),
        syscall_rsp: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// System calls taken since boot.
pub static SYSCALLS: AtomicU64 = AtomicU64::new(0);

/// The per-thread state the context switch saves and restores.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadState {
    session: usize,
    syscall_rsp: u64,
}

/// The state of the thread running on `cpu` (called by the context switch there before
/// switching away).
pub(super) fn save_thread(cpu: usize) -> ThreadState {
    ThreadState {
        session: SESSION[cpu].load(Ordering::Relaxed) as usize,
        syscall_rsp: SCRATCH[cpu].syscall_rsp.load(Ordering::Relaxed),
    }
}

/// Installs the next thread's state on `cpu` (before switching to it there).
pub(super) fn restore_thread(cpu: usize, state: ThreadState) {
    SESSION[cpu].store(state.session as *mut Session, Ordering::Relaxed);
    SCRATCH[cpu]
        .syscall_rsp
        .store(state.syscall_rsp, Ordering::Relaxed);
    if state.syscall_rsp != 0 {
        gdt::set_kernel_stack(cpu, state.syscall_rsp);
    }
}

/// This processor's session entry (interrupts masked by the caller, or the thread could
/// move to another processor between reading the CPU number and using the entry).
fn session_slot() -> &'static AtomicPtr<Session> {
    &SESSION[current_cpu()]
}

/// Turns on `syscall`/`sysret` on this processor: the entry point, the selectors (from
/// the GDT's fixed layout), the flags masked on entry (interrupts stay off until the entry
/// path has moved to the kernel stack) and this processor's entry scratch as the kernel GS
/// base. Every processor runs it once, after its GDT is loaded.
pub fn init() {
    let cpu = current_cpu();
    KernelGsBase::write(VirtAddr::from_ptr(&raw const SCRATCH[cpu]));
    let s = gdt::selectors();
    // SAFETY: EFER.SCE only enables the instructions; the entry point and selectors are
    // written before any ring-3 code can run.
    unsafe {
        Efer::update(|efer| efer.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    LStar::write(VirtAddr::new(cordon_syscall_entry as *const () as u64));
    Star::write(s.user_code, s.user_data, s.kernel_code, s.kernel_data)
        .expect("the GDT's selectors are in sysret order");
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK,
    );
}

/// Runs the program at `entry` until it ends; `handler` serves its calls. Must be called
/// on a kernel thread, with the program's address space active for this thread.
pub fn run(entry: Entry, handler: &mut dyn Handler) {
    // SAFETY: only the lifetime is erased; the pointer is used while this function runs
    // (the session is unregistered before it returns).
    let handler: *mut dyn Handler = unsafe {
        core::mem::transmute::<*mut (dyn Handler + '_), *mut (dyn Handler + 'static)>(handler)
    };
    let mut session = Session {
        resume_rsp: 0,
        handler,
        entry,
    };
    let s = gdt::selectors();
    let (cs, ss) = if entry.ring3 {
        (s.user_code.0 | 3, s.user_data.0 | 3)
    } else {
        (s.kernel_code.0, s.kernel_data.0)
    };
    let frame = [
        entry.rip,
        u64::from(cs),
        (RFlags::INTERRUPT_FLAG | RFlags::from_bits_retain(2)).bits(),
        entry.rsp,
        u64::from(ss),
        entry.arg,
    ];
    x86_64::instructions::interrupts::disable();
    let cpu = current_cpu();
    SESSION[cpu].store(&raw mut session, Ordering::Relaxed);
    let rsp0 = gdt::kernel_stack_field(cpu);
    assert!(!rsp0.is_null(), "CPU {cpu} has no TSS");
    // SAFETY: `enter` saves this context and enters the program with the frame above
    // (a valid code selector for the requested ring, a mapped stack and entry point set
    // up by the caller); it comes back here only through `leave`, which restores the
    // saved registers and stack pointer. The session outlives the program. Interrupts
    // stay masked until the program runs, so the two fields written are this processor's.
    unsafe {
        enter(
            &raw mut session.resume_rsp,
            frame.as_ptr(),
            SCRATCH[cpu].syscall_rsp.as_ptr(),
            rsp0,
        )
    };
    // The thread may have moved to another processor while the program ran.
    let cpu = current_cpu();
    SESSION[cpu].store(core::ptr::null_mut(), Ordering::Relaxed);
    SCRATCH[cpu].syscall_rsp.store(0, Ordering::Relaxed);
    x86_64::instructions::interrupts::enable();
}

/// Saves the kernel context (callee-saved registers, stack pointer into `*resume`),
/// makes the rest of this stack the thread's system-call and interrupt stack (writing it
/// to `*syscall_rsp` and `*rsp0`, this processor's entry scratch and TSS field), and
/// enters the program through `iretq` with `frame` = [rip, cs, rflags, rsp, ss, rdi].
#[unsafe(naked)]
unsafe extern "C" fn enter(
    resume: *mut u64,
    frame: *const u64,
    syscall_rsp: *mut u64,
    rsp0: *mut u64,
) {
    naked_asm!(
        push_callee_saved!(),
        "mov [rdi], rsp",
        // Kernel entries from the program land just below the saved context.
        "mov rax, rsp",
        "and rax, -16",
        "mov [rdx], rax",
        "mov [rcx], rax",
        "push qword ptr [rsi + 32]",
        "push qword ptr [rsi + 24]",
        "push qword ptr [rsi + 16]",
        "push qword ptr [rsi + 8]",
        "push qword ptr [rsi]",
        "mov rdi, [rsi + 40]",
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor esi, esi",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "iretq",
    )
}

/// Restores the context `enter` saved at `resume_rsp`: `enter` returns.
#[unsafe(naked)]
unsafe extern "C" fn resume(resume_rsp: u64) -> ! {
    naked_asm!("mov rsp, rdi", pop_callee_saved!(), "ret",)
}

/// Ends the running program: back to [`run`]'s caller. Interrupts off.
fn leave() -> ! {
    x86_64::instructions::interrupts::disable();
    // The call's window onto user memory ends with it (its `UserAccess` is abandoned).
    super::smap::forbid_user_access();
    let session = session_slot().load(Ordering::Relaxed);
    assert!(!session.is_null(), "leaving a program outside a session");
    // SAFETY: the session lives on the frame of `run` below us on this thread's stack;
    // its resume point was saved by `enter`. Everything above it on the stack is
    // abandoned: callers of `leave` hold no locks or owned values.
    unsafe { resume((*session).resume_rsp) }
}

/// The running thread's handler and entry, if it runs a program.
fn session() -> Option<(&'static mut dyn Handler, Entry)> {
    let session = x86_64::instructions::interrupts::without_interrupts(|| {
        session_slot().load(Ordering::Relaxed)
    });
    if session.is_null() {
        return None;
    }
    // SAFETY: a non-null SESSION entry points at the live session of the thread running
    // on that processor (the context switch swaps it per thread), read with interrupts
    // masked, so this thread's: it stays valid wherever the thread moves; the handler is used by this thread alone and
    // never re-entered (system calls and traps of one program do not nest).
    unsafe { Some((&mut *(*session).handler, (*session).entry)) }
}

/// Registers saved by the system-call entry, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct SyscallFrame {
    pub rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub r10: u64,
    pub r8: u64,
    pub r9: u64,
    /// The user's rip (saved by `syscall` in rcx).
    pub rip: u64,
    /// The user's rflags (saved by `syscall` in r11).
    pub rflags: u64,
    pub rsp: u64,
}

/// Entry of the `syscall` instruction (LSTAR).
#[unsafe(naked)]
unsafe extern "C" fn cordon_syscall_entry() {
    naked_asm!(
        // Interrupts are masked (SFMASK): the kernel GS base is this processor's scratch
        // for exactly these four instructions.
        "swapgs",
        "mov gs:[0], rsp",
        "mov rsp, gs:[8]",
        "push qword ptr gs:[0]",
        "swapgs",
        "push r11",
        "push rcx",
        "push r9",
        "push r8",
        "push r10",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rax",
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "pop rax",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop r10",
        "pop r8",
        "pop r9",
        "pop rcx",
        "pop r11",
        "pop rsp",
        "sysretq",
        dispatch = sym syscall_dispatch,
    )
}

/// Sanitised user flags for `sysret`: the arithmetic flags the program had, interrupts
/// on, nothing privileged.
fn user_rflags(rflags: u64) -> u64 {
    const ARITHMETIC: u64 = 0x8d5; // CF PF AF ZF SF OF
    (rflags & ARITHMETIC) | RFlags::INTERRUPT_FLAG.bits() | 2
}

/// Serves one call of the running program, `syscall` or gate alike; returns rax, rdx, or
/// does not return when the call (or a pending kill) ends the program.
fn serve(via: &str, op: u64, args: [u64; 6]) -> [u64; 2] {
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
    let Some((handler, _)) = session() else {
        panic!("{via} from a thread that runs no program (operation {op})");
    };
    let access = UserAccess::new();
    let Some(result) = handler.syscall(&access, op, args) else {
        leave()
    };
    if handler.should_stop() {
        leave()
    }
    result
}

extern "C" fn syscall_dispatch(frame: &mut SyscallFrame) {
    x86_64::instructions::interrupts::enable();
    let args = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    let [first, second] = serve("system call", frame.rax, args);
    x86_64::instructions::interrupts::disable();
    frame.rax = first;
    frame.rdx = second;
    // Nothing of the kernel's leaks back through the argument registers.
    frame.rdi = 0;
    frame.rsi = 0;
    frame.r10 = 0;
    frame.r8 = 0;
    frame.r9 = 0;
    frame.rflags = user_rflags(frame.rflags);
    // sysret to a non-canonical rip faults in ring 0 on Intel processors: refuse it.
    if VirtAddr::try_new(frame.rip).is_err() || frame.rip >= 1 << 47 {
        if let Some((handler, _)) = session() {
            handler.fault(alloc::format!(
                "system call returning to a non-canonical address {:#x}",
                frame.rip
            ));
        }
        leave()
    }
}

/// Result registers of [`cordon_gate`].
#[repr(C)]
pub struct Pair {
    pub first: u64,
    pub second: u64,
}

/// The call gate of programs that run in ring 0: the same calls as `syscall`, as a plain
/// function call on the program's own stack.
pub extern "sysv64" fn cordon_gate(
    op: u64,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> Pair {
    let [first, second] = serve("gate call", op, [a0, a1, a2, a3, a4, a5]);
    Pair { first, second }
}

/// The gate's address, for the program's arguments.
pub fn gate_address() -> u64 {
    cordon_gate as *const () as u64
}

/// Called by the trap path for an exception. Returns normally only if the exception is
/// not a program's (the kernel's own: the caller panics); a program's ends it.
pub(super) fn on_exception(frame: &TrapFrame, report: impl FnOnce() -> alloc::string::String) {
    if let Some(handler) = interrupted_program(frame) {
        handler.fault(report());
        leave()
    }
}

/// Called at the end of every trap: a program about to be resumed is ended instead if
/// the kernel wants it stopped.
pub(super) fn on_trap_return(frame: &TrapFrame) {
    if interrupted_program(frame).is_some_and(|handler| handler.should_stop()) {
        leave()
    }
}

/// The running program's handler if the trap interrupted the program itself (ring 3, or
/// ring 0 with rip in its window), not the kernel working on its behalf.
fn interrupted_program(frame: &TrapFrame) -> Option<&'static mut dyn Handler> {
    let (handler, entry) = session()?;
    let in_program = frame.rip >= entry.program.0 && frame.rip < entry.program.1;
    (frame.cpl() == 3 || in_program).then_some(handler)
}
