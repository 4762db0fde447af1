//! The kernel's own tables as text: what the `report` operation hands a SIP with the
//! `inspect` power (the shell's `ps`, `channels`, `contracts`, `counters`), and what the
//! kernel prints at the end of a run. One formatter per table serves both, so the shell
//! and the end-of-run accounting never disagree.
//!
//! A table is written straight into the caller's buffer through [`Clipped`], which keeps
//! what fits and counts the rest: answering takes no kernel memory, and the work is bounded
//! by the process table and each SIP's kernel-object quota. Locks are taken per row.
#![deny(unsafe_code)]

use core::fmt::{self, Write};

use cordon_abi::{report, sip_state};

use crate::process::{self, MAX_PROCESSES};
use crate::{counters, ipc, mm};

/// A `fmt::Write` into a fixed buffer: keeps the first `buf.len()` bytes, counts all.
pub struct Clipped<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Clipped<'a> {
    pub fn new(buf: &'a mut [u8]) -> Clipped<'a> {
        Clipped { buf, len: 0 }
    }

    /// Bytes the whole text takes (more than the buffer when it was clipped).
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Write for Clipped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        if self.len < self.buf.len() {
            let room = self.buf.len() - self.len;
            let n = room.min(bytes.len());
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        }
        self.len += bytes.len();
        Ok(())
    }
}

/// `report(table, out)`: writes the start of `table` into `out`; its whole length.
pub fn write(table: u32, out: &mut [u8]) -> Result<i32, alloc::string::String> {
    let mut w = Clipped::new(out);
    let written = match table {
        report::SIPS => sips(&mut w),
        report::CHANNELS => channels(&mut w),
        report::CONTRACTS => contracts(&mut w),
        report::COUNTERS => counters(&mut w),
        other => {
            return Err(alloc::format!(
                "report: no table {other} (tables 0 to {}: {})",
                report::NAMES.len() - 1,
                report::NAMES.join(", ")
            ));
        }
    };
    // Clipped never fails; a table is far below 2 GiB.
    let _ = written;
    Ok(i32::try_from(w.len()).unwrap_or(i32::MAX))
}

/// How a SIP stands, in one word (the table splits at spaces).
fn state(info: &cordon_abi::SipInfo) -> StateText {
    StateText(info.state, info.ending)
}

struct StateText(u32, i32);

impl fmt::Display for StateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match (self.0, self.1) {
            (sip_state::RUNNING, _) => "running",
            (_, sip_state::KILLED) => "killed",
            (_, sip_state::FAULTED) => "faulted",
            (_, sip_state::NOT_LOADED) => "unloaded",
            (_, status) => {
                let mut buf = [0u8; 16];
                let mut text = Clipped::new(&mut buf);
                write!(text, "exit={status}")?;
                let len = text.len().min(16);
                return f.pad(core::str::from_utf8(&buf[..len]).unwrap_or("exit=?"));
            }
        };
        f.pad(text)
    }
}

/// The per-SIP accounting, one row per process the kernel still has a record of, then the
/// kernel's memory and channels.
pub fn sips(w: &mut impl Write) -> fmt::Result {
    writeln!(
        w,
        "{:>4} {:>3} {:<14} {:<8} {:<9} {:<10} {:>13} {:>6} {:>9} {:>8} {:>8} {:>11} {:>8} {:>9} {:>6}",
        "pid",
        "gen",
        "sip",
        "engine",
        "isolation",
        "state",
        "cycles",
        "ticks",
        "calls",
        "sent",
        "received",
        "copied",
        "mem KiB",
        "objects",
        "faults"
    )?;
    let mut running = 0;
    for row in (0..MAX_PROCESSES).map_while(process::row) {
        // A slot reused since keeps only the newest process's counts.
        let Some(info) = process::info(row.pid) else {
            continue;
        };
        running += usize::from(info.state == sip_state::RUNNING);
        writeln!(
            w,
            "{:>4} {:>3} {:<14} {:<8} {:<9} {:<10} {:>13} {:>6} {:>9} {:>8} {:>8} {:>11} {:>8} {:>4}/{:<4} {:>6}",
            row.pid,
            row.incarnation,
            row.name.as_str(),
            row.engine.map_or("-", bootpkg::Engine::name),
            row.placement.map_or("-", placement_name),
            state(&info),
            info.cycles,
            info.ticks,
            info.kernel_calls,
            info.messages_sent,
            info.messages_received,
            info.bytes_copied,
            info.memory_bytes.div_ceil(1024),
            info.objects,
            info.peak_objects,
            info.faults,
        )?;
    }
    let usage = mm::Usage::now();
    let channels = ipc::counts();
    writeln!(
        w,
        "{running} running; kernel heap {} KiB in use; {} of {} frames free; {} endpoints, {} exchange-heap blocks",
        usage.heap_bytes.div_ceil(1024),
        usage.free_frames,
        mm::frames::total_frames(),
        channels.endpoints,
        channels.blocks
    )
}

/// Prints the SIP table and its legend to the console (the end of a run).
pub fn print_sips() {
    let _ = sips(&mut Console);
    crate::println!("{SIPS_LEGEND}");
}

/// `fmt::Write` onto the kernel console.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::arch::serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// The legend printed under [`sips`] at the end of a run.
pub const SIPS_LEGEND: &str = "(gen: incarnation of its system-manifest entry; cycles: TSC cycles its threads ran, charged at each context switch; \
ticks: timer ticks that found it running; calls: kernel calls; sent/received: channel messages; copied: bytes the kernel copied for it; \
mem: kernel heap promised to it for its declared limits (in soft its runtime and linear memory too; in its own space those come from its own frames); objects: kernel objects held now/at most; faults: page faults resolved for it. \
All counted by the kernel itself, also in ring 3.)";

/// The name of a placement in the SIP table (one word).
fn placement_name(placement: bootpkg::Placement) -> &'static str {
    match placement {
        bootpkg::Placement::Kernel => "soft",
        bootpkg::Placement::SharedSpace => "paged-r0",
        bootpkg::Placement::OwnSpace { ring3: false } => "own-r0",
        bootpkg::Placement::OwnSpace { ring3: true } => "own-r3",
    }
}

/// Every endpoint a running SIP holds.
fn channels(w: &mut impl Write) -> fmt::Result {
    writeln!(
        w,
        "{:>4} {:<14} {:<18} {:<8} {:<16} {:>6} {:<6}",
        "pid", "sip", "contract", "role", "state", "queued", "peer"
    )?;
    let mut result = Ok(());
    for row in (0..MAX_PROCESSES).map_while(process::row) {
        if !process::is_running(row.pid) {
            continue;
        }
        ipc::each_endpoint(row.pid, |view| {
            if result.is_ok() {
                result = writeln!(
                    w,
                    "{:>4} {:<14} {:<18} {:<8} {:<16} {:>6} {:<6}",
                    row.pid,
                    row.name.as_str(),
                    view.contract,
                    view.role.name(),
                    view.state,
                    view.queued,
                    if view.peer_open { "open" } else { "closed" }
                );
            }
        });
    }
    result
}

/// The contracts the kernel compiled at boot.
fn contracts(w: &mut impl Write) -> fmt::Result {
    writeln!(
        w,
        "{:<18} {:>8} {:>6} {:>11} {:>14} {:>14}",
        "contract", "messages", "states", "max bytes", "to exporter", "to importer"
    )?;
    let mut result = Ok(());
    ipc::each_protocol(|p| {
        if result.is_ok() {
            result = writeln!(
                w,
                "{:<18} {:>8} {:>6} {:>11} {:>14} {:>14}",
                p.name,
                p.messages.len(),
                p.states.len(),
                p.max_message_bytes(),
                p.max_in_flight[0],
                p.max_in_flight[1],
            );
        }
    });
    result
}

/// The kernel's event counters since boot, one per line.
fn counters(w: &mut impl Write) -> fmt::Result {
    counters::Counters::since_boot().write_lines(w)?;
    writeln!(
        w,
        "console input: {} bytes received, {} dropped (typed faster than read)",
        crate::console::received(),
        crate::console::dropped()
    )
}
