//! Trap entry: the interrupt descriptor table, the entry stubs, the trap frame and the
//! decoding of CPU exceptions.
//!
//! Every vector (0–255) enters through a 16-byte stub that makes the stack look the same
//! whether or not the CPU pushed an error code, then through one common path that saves
//! the general registers and calls [`cordon_trap_dispatch`] with a [`TrapFrame`]. The
//! frame is the same for ring 0 and ring 3 (in 64-bit mode the CPU always pushes SS:RSP),
//! so user-mode entry later reuses it unchanged.
//!
//! Kernel-mode exceptions panic with a decoded report (page faults: CR2 and the P, W/R,
//! U/S, RSVD, I/D bits). Hardware interrupts go to the timer and the scheduler.

use core::fmt;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;

use super::{gdt, ioapic};

/// Registers saved on the kernel stack at every trap, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    // Pushed by `cordon_trap_common` (last pushed first).
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the vector's stub.
    pub vector: u64,
    /// Pushed by the CPU for vectors 8, 10–14, 17, 21, 29, 30; a 0 pushed by the stub
    /// otherwise.
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// The stubs and the common path below depend on this exact size (22 words), which also
// keeps the stack 16-byte aligned at the call into Rust.
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

impl TrapFrame {
    /// Privilege level the trap came from (0 = kernel, 3 = user).
    pub fn cpl(&self) -> u8 {
        (self.cs & 3) as u8
    }
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  rip={:#018x} cs={:#06x} rflags={:#010x} rsp={:#018x} ss={:#06x}",
            self.rip, self.cs, self.rflags, self.rsp, self.ss
        )?;
        writeln!(
            f,
            "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
            self.rax, self.rbx, self.rcx, self.rdx
        )?;
        writeln!(
            f,
            "  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}",
            self.rsi, self.rdi, self.rbp, self.r8
        )?;
        writeln!(
            f,
            "  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
            self.r9, self.r10, self.r11, self.r12
        )?;
        write!(
            f,
            "  r13={:#018x} r14={:#018x} r15={:#018x}",
            self.r13, self.r14, self.r15
        )
    }
}

/// CPU exception vectors.
pub mod vector {
    pub const BREAKPOINT: u64 = 3;
    pub const DOUBLE_FAULT: u64 = 8;
    pub const PAGE_FAULT: u64 = 14;
    pub const MACHINE_CHECK: u64 = 18;
    pub const NMI: u64 = 2;
    /// First vector of the remapped legacy PIC.
    pub const IRQ_BASE: u64 = 32;
    pub const TIMER: u64 = IRQ_BASE;
}

/// The architectural name of an exception vector.
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt (NMI)",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection fault (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point exception (#XM)",
        20 => "virtualization exception (#VE)",
        21 => "control protection exception (#CP)",
        28 => "hypervisor injection exception (#HV)",
        29 => "VMM communication exception (#VC)",
        30 => "security exception (#SX)",
        _ => "reserved exception",
    }
}

/// The page-fault error code, decoded bit by bit (Intel SDM vol. 3, 4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultCode(pub u64);

impl PageFaultCode {
    /// P: 0 = the page was not present, 1 = a protection violation.
    pub fn present(self) -> bool {
        self.0 & 1 != 0
    }
    /// W/R: the access was a write.
    pub fn write(self) -> bool {
        self.0 & 2 != 0
    }
    /// U/S: the access came from ring 3.
    pub fn user(self) -> bool {
        self.0 & 4 != 0
    }
    /// RSVD: a reserved bit was set in a paging-structure entry.
    pub fn reserved_bit(self) -> bool {
        self.0 & 8 != 0
    }
    /// I/D: the access was an instruction fetch.
    pub fn instruction_fetch(self) -> bool {
        self.0 & 16 != 0
    }
}

impl fmt::Display for PageFaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error={:#x}: P={} ({}) W/R={} ({}) U/S={} ({}) RSVD={} I/D={} ({})",
            self.0,
            u8::from(self.present()),
            if self.present() {
                "protection violation"
            } else {
                "page not present"
            },
            u8::from(self.write()),
            if self.write() { "write" } else { "read" },
            u8::from(self.user()),
            if self.user() { "user" } else { "supervisor" },
            u8::from(self.reserved_bit()),
            u8::from(self.instruction_fetch()),
            if self.instruction_fetch() {
                "instruction fetch"
            } else {
                "data access"
            },
        )
    }
}

/// Vectors whose stub must not push a dummy error code (the CPU pushes one).
macro_rules! has_error_code_condition {
    () => {
        "(vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)"
    };
}

// 256 entry stubs, 16 bytes apart starting at `cordon_trap_stubs`, then the common path.
core::arch::global_asm!(
    concat!(
        r#"
    .section .text.cordon_trap, "ax"
    .global cordon_trap_stubs
    .balign 16
cordon_trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if "#,
        has_error_code_condition!(),
        r#"
    pushq $vec
    .else
    pushq $0
    pushq $vec
    .endif
    jmp cordon_trap_common
    .set vec, vec + 1
    .endr

cordon_trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    cmpb $0, CORDON_SMAP_ON(%rip)
    je 1f
    clac
1:
    call cordon_trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
"#
    ),
    options(att_syntax)
);

unsafe extern "C" {
    /// First of the 256 entry stubs (not callable: only its address is used).
    static cordon_trap_stubs: u8;
}

const STUB_SIZE: u64 = 16;

/// One 64-bit interrupt gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    const EMPTY: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// Present interrupt gate (interrupts masked on entry), DPL 0, optional IST slot.
    fn interrupt(handler: u64, selector: u16, ist_slot: Option<u16>) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: ist_slot.map_or(0, |slot| slot as u8 + 1),
            type_attr: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate::EMPTY; 256]);

/// Fills and loads the IDT: every vector points at its stub.
pub fn init() {
    let stubs = (&raw const cordon_trap_stubs) as u64;
    let code = gdt::selectors().kernel_code.0;
    // SAFETY: runs once at boot with interrupts disabled, before the IDT is loaded, so no
    // CPU access to the table races with these writes; afterwards the table is 'static and
    // never written again.
    unsafe {
        let idt_ptr = &raw mut IDT;
        let idt = &mut *idt_ptr;
        for (vec, gate) in idt.0.iter_mut().enumerate() {
            let ist = match vec as u64 {
                vector::DOUBLE_FAULT => Some(gdt::DOUBLE_FAULT_IST),
                vector::NMI => Some(gdt::NMI_IST),
                vector::MACHINE_CHECK => Some(gdt::MACHINE_CHECK_IST),
                _ => None,
            };
            *gate = Gate::interrupt(stubs + vec as u64 * STUB_SIZE, code, ist);
        }
    }
    load_idt();
}

/// Loads the IDT [`init`] filled (on each processor).
pub fn load_idt() {
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new((&raw const IDT) as u64),
    };
    // SAFETY: the pointer describes a 'static table that `init` filled on the boot
    // processor before any other processor started, and that is never written again;
    // its gates point at the stubs above with the kernel code selector.
    unsafe { lidt(&pointer) };
}

/// Where acknowledged interrupts go: registered once at boot by the kernel above `arch`
/// (time, the console, devices), so that `arch` depends on none of them.
static INTERRUPT_HOOK: spin::Once<fn(u8)> = spin::Once::new();

/// Registers the function every acknowledged interrupt line is handed to (the timer's too);
/// a line fired before it is registered is acknowledged and dropped.
pub fn set_interrupt_hook(hook: fn(u8)) {
    INTERRUPT_HOOK.call_once(|| hook);
}

/// Called by the common entry path for every trap.
#[unsafe(no_mangle)]
extern "C" fn cordon_trap_dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        vector::BREAKPOINT => log::warn!("breakpoint at rip={:#x}", frame.rip),
        vector::PAGE_FAULT if crate::mm::vm::resolve_fault(Cr2::read_raw(), frame.error_code) => {}
        v if v < vector::IRQ_BASE => exception(frame),
        // The 8259s' vectors: once the I/O APIC is in use only a spurious interrupt from
        // a masked 8259 can arrive there, and is dropped.
        v if v < vector::IRQ_BASE + 16 && super::ioapic::in_use() => {}
        v if v < vector::IRQ_BASE + 16 => {
            let irq = (v - vector::IRQ_BASE) as u8;
            if v != vector::TIMER {
                // A device line stays masked until its driver has acknowledged the device.
                super::pic::set_masked(irq, true);
            }
            if super::pic::acknowledge(irq) {
                hand_up(irq);
            }
        }
        v if (ioapic::VECTOR_BASE as u64..(ioapic::VECTOR_BASE + ioapic::LINES) as u64)
            .contains(&v) =>
        {
            let line = (v - ioapic::VECTOR_BASE as u64) as u8;
            super::lines::on_io_apic_line(line);
            hand_up(line);
        }
        v if v == super::apic::TIMER_VECTOR as u64 => {
            super::apic::end_of_interrupt();
            // CPU 0's tick drives time; every processor's preempts its own thread.
            if super::smp::on_tick() {
                hand_up(super::lines::TIMER);
            } else {
                hand_up(super::lines::CPU_TICK);
            }
        }
        v if v == super::apic::CALL_VECTOR as u64 => super::smp::on_call_interrupt(),
        v if v == super::apic::RESCHEDULE_VECTOR as u64 => {
            super::apic::end_of_interrupt();
            hand_up(super::lines::RESCHEDULE);
        }
        // Never acknowledged (the local APIC did not mark it in service).
        v if v == super::apic::SPURIOUS_VECTOR as u64 => {}
        v => log::warn!("unexpected interrupt vector {v}"),
    }
    super::user::on_trap_return(frame);
}

/// Hands an acknowledged line to the layers above (see [`set_interrupt_hook`]).
fn hand_up(line: u8) {
    if let Some(hook) = INTERRUPT_HOOK.get() {
        hook(line);
    }
}

/// A CPU exception: a program's ends that program (`arch::user`); the kernel's own panics
/// with a decoded report.
fn exception(frame: &TrapFrame) -> ! {
    program_exception(frame);
    kernel_exception(frame)
}

/// An exception that may belong to the running program (`arch::user` ends it then).
fn program_exception(frame: &TrapFrame) {
    super::user::on_exception(frame, || {
        let ring = frame.cpl();
        if frame.vector == vector::PAGE_FAULT {
            alloc::format!(
                "page fault (#PF) in ring {ring} at rip={:#x}: CR2={:#x}, {}",
                frame.rip,
                Cr2::read_raw(),
                PageFaultCode(frame.error_code)
            )
        } else {
            alloc::format!(
                "{} in ring {ring} at rip={:#x} (error code {:#x})",
                exception_name(frame.vector),
                frame.rip,
                frame.error_code
            )
        }
    });
}

/// The kernel's own exception: a decoded report, then a panic.
fn kernel_exception(frame: &TrapFrame) -> ! {
    let origin = if frame.cpl() == 0 { "kernel" } else { "user" };
    // A kernel thread that ran off the bottom of its stack hit the unmapped guard below it
    // (the page fault could not even be delivered on that stack: a double fault).
    if frame.cpl() == 0
        && matches!(frame.vector, vector::PAGE_FAULT | vector::DOUBLE_FAULT)
        && let Some(window) = crate::mm::stacks::guard_of(Cr2::read_raw())
    {
        panic!(
            "kernel stack overflow: a thread ran into the guard page below its stack (stack window {window}, CR2={:#x}, rip={:#x}, {})",
            Cr2::read_raw(),
            frame.rip,
            exception_name(frame.vector)
        );
    }
    if frame.vector == vector::PAGE_FAULT {
        let address = Cr2::read_raw();
        panic!(
            "{origin}-mode page fault at CR2={address:#x}, rip={:#x}\n  {}\n{frame}",
            frame.rip,
            PageFaultCode(frame.error_code)
        );
    }
    panic!(
        "{origin}-mode {} (vector {}, error code {:#x}) at rip={:#x}\n{frame}",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip
    );
}
