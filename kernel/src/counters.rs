//! Event counters that explain what an isolation configuration costs: kernel entries,
//! address-space switches, TLB work (shootdowns and the IPIs that carry them included), faults, messages and copies, device activity, time
//! spent halted with nothing to run and the rest (busy: under `-icount`, instructions), and
//! the longest section any lock kept interrupts masked. A snapshot is taken before
//! something runs (and starts the longest-section measurement anew);
//! [`Counters::print_since`] prints the difference on one line that `cordon bench` reads.
#![deny(unsafe_code)]

use core::sync::atomic::Ordering;

use crate::mm::vm;
use crate::{println, sched};

pub struct Counters {
    syscalls: u64,
    cr3_loads: u64,
    tlb_invalidations: u64,
    shootdowns: u64,
    ipis: u64,
    switches: u64,
    demand_faults: u64,
    cow_faults: u64,
    messages: u64,
    direct: u64,
    bytes_copied: u64,
    interrupts: u64,
    registers: u64,
    idle_cycles: u64,
    /// The time-stamp counter when the snapshot was taken.
    at: u64,
    /// The longest interrupts-masked lock section since the previous snapshot.
    longest_masked: crate::arch::irq::Masked,
}

impl Counters {
    pub fn now() -> Counters {
        Counters::read(crate::arch::irq::take_longest_masked())
    }

    fn read(longest_masked: crate::arch::irq::Masked) -> Counters {
        Counters {
            syscalls: crate::arch::user::SYSCALLS.load(Ordering::Relaxed),
            cr3_loads: crate::arch::context::cr3_loads(),
            tlb_invalidations: vm::TLB_INVALIDATIONS.load(Ordering::Relaxed),
            shootdowns: crate::arch::smp::SHOOTDOWNS.load(Ordering::Relaxed),
            ipis: crate::arch::smp::IPIS_SENT.load(Ordering::Relaxed),
            switches: sched::context_switches(),
            demand_faults: vm::DEMAND_FAULTS.load(Ordering::Relaxed),
            cow_faults: vm::COW_FAULTS.load(Ordering::Relaxed),
            messages: crate::ipc::MESSAGES.load(Ordering::Relaxed),
            direct: crate::ipc::DELIVERED_DIRECTLY.load(Ordering::Relaxed),
            bytes_copied: crate::ipc::BYTES_COPIED.load(Ordering::Relaxed),
            interrupts: crate::devices::INTERRUPTS.load(Ordering::Relaxed),
            registers: crate::devices::REGISTER_ACCESSES.load(Ordering::Relaxed),
            // CPU 0's halts: the processor whose clock the snapshots read.
            idle_cycles: crate::arch::smp::halted_cycles(0),
            at: crate::arch::cycles::start(),
            longest_masked,
        }
    }

    /// Counts since boot (a snapshot of zeros taken at boot).
    pub fn since_boot() -> Counters {
        Counters::read(crate::arch::irq::Masked::NONE)
    }

    /// Writes each count (since boot) on a line of its own: the kernel's `counters` table.
    /// Takes no snapshot: the longest-masked-section measurement carries on undisturbed.
    pub fn write_lines(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        let rows: [(&str, u64); 14] = [
            ("system calls", self.syscalls),
            ("CR3 loads", self.cr3_loads),
            ("TLB invalidations", self.tlb_invalidations),
            ("TLB shootdowns", self.shootdowns),
            ("IPIs sent", self.ipis),
            ("context switches", self.switches),
            ("demand-zero faults", self.demand_faults),
            ("copy-on-write faults", self.cow_faults),
            ("channel messages", self.messages),
            ("  delivered directly", self.direct),
            ("bytes copied by the kernel", self.bytes_copied),
            ("device interrupts", self.interrupts),
            ("device register accesses", self.registers),
            ("idle cycles", self.idle_cycles),
        ];
        for (name, value) in rows {
            writeln!(w, "{name:<28} {value:>16}")?;
        }
        writeln!(
            w,
            "{:<28} {:>16}",
            "busy cycles",
            self.at.saturating_sub(self.idle_cycles)
        )
    }

    /// Prints what happened since `self` was taken.
    pub fn print_since(&self, what: &str) {
        let now = Counters::now();
        println!(
            "  counters ({what}): {} system calls, {} CR3 loads, {} TLB invalidations, {} TLB shootdowns, {} IPIs sent, {} context switches, {} demand-zero faults, {} copy-on-write faults, {} channel messages ({} delivered directly), {} bytes copied by the kernel, {} device interrupts, {} device register accesses, {} idle cycles, {} busy cycles, {} cycles longest interrupts-masked lock section (lock taken at {}){}",
            now.syscalls - self.syscalls,
            now.cr3_loads - self.cr3_loads,
            now.tlb_invalidations - self.tlb_invalidations,
            now.shootdowns - self.shootdowns,
            now.ipis - self.ipis,
            now.switches - self.switches,
            now.demand_faults - self.demand_faults,
            now.cow_faults - self.cow_faults,
            now.messages - self.messages,
            now.direct - self.direct,
            now.bytes_copied - self.bytes_copied,
            now.interrupts - self.interrupts,
            now.registers - self.registers,
            now.idle_cycles - self.idle_cycles,
            (now.at - self.at).saturating_sub(now.idle_cycles - self.idle_cycles),
            now.longest_masked.longest,
            now.longest_masked.at.map_or_else(
                || alloc::string::String::from("-"),
                |l| alloc::format!("{}:{}", l.file(), l.line())
            ),
            per_cpu_masked(&now.longest_masked),
        );
    }
}

/// With more than one processor, each one's longest interrupts-masked lock section.
fn per_cpu_masked(masked: &crate::arch::irq::Masked) -> alloc::string::String {
    let online = crate::arch::smp::online();
    if online < 2 {
        return alloc::string::String::new();
    }
    let each: alloc::vec::Vec<alloc::string::String> = masked.per_cpu[..online]
        .iter()
        .enumerate()
        .map(|(cpu, cycles)| alloc::format!("CPU {cpu} {cycles}"))
        .collect();
    alloc::format!("; longest per CPU: {}", each.join(", "))
}
