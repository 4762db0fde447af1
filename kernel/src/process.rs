//! SIPs as kernel processes.
//!
//! Each SIP runs on a kernel thread of its own: the kernel verifies its module again
//! (whatever the runner checked), instantiates it with `sip_runtime` under its manifest's
//! limits, runs it to the end and records how it ended. The timer preempts a SIP like any
//! thread, so a SIP that never calls the kernel cannot starve the others; the runtime's
//! fuel slices let the kernel kill it. When the thread ends, dropping the runtime frees the
//! SIP's memory, engine and code, and its stack goes back to the frame allocator: the
//! process record is all that stays.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use bootpkg::Placement;
use sip_runtime::{Exit, Metering, Sip};

use crate::arch::{cycles, irq::IrqMutex, serial};
use crate::sched::{self, JoinHandle, SpawnError};
use crate::{devices, ipc};
use crate::{println, time};

/// SIP threads get 256 KiB stacks: module compilation and the interpreter's host frames
/// need more than a plain kernel thread.
const SIP_STACK_ORDER: usize = 6;

/// Process id (1-based).
pub type Pid = usize;

/// Process slots. Records never move or grow, so the process table takes no heap after
/// start-up and memory checks can be exact. A slot whose process has ended is reused
/// (oldest first once every slot has been used), with the next generation: pid = slot + 1
/// + `MAX_PROCESSES` × (generation − 1), so an old pid never names the new process.
pub const MAX_PROCESSES: usize = 256;

/// The slot of `pid` in the per-process tables.
fn slot_of(pid: Pid) -> Option<usize> {
    pid.checked_sub(1).map(|p| p % MAX_PROCESSES)
}

/// The generation of `pid`'s slot (1 for the first process in it).
pub fn generation(pid: Pid) -> u32 {
    (pid.saturating_sub(1) / MAX_PROCESSES) as u32 + 1
}

/// What the kernel keeps for the process living in one slot, reset for each generation.
/// The counts are the kernel's own, in every isolation configuration: nothing here comes
/// from the SIP's runtime, which in ring 3 is untrusted.
struct SlotState {
    /// The pid living here (0: none yet), so a reused slot's state is never touched on
    /// behalf of its previous process.
    pid: AtomicUsize,
    /// The process has finished with every table: the slot may be reused.
    free: AtomicBool,
    /// Asked to stop.
    kill: AtomicBool,
    /// Kernel calls it made.
    kernel_calls: AtomicU64,
    /// Timer ticks that found one of its threads running.
    cpu_ticks: AtomicU64,
    /// Its CPU budget in ticks (`u64::MAX`: none), and whether it ran out.
    cpu_budget: AtomicU64,
    over_budget: AtomicBool,
    /// Powers over other SIPs the system manifest gave it ([`Power`] bits).
    powers: AtomicU8,
    /// After the process ended: the heap still promised to what it sent that is still in
    /// transit (charged to it until received). The slot is not reused until that is gone.
    lingering: IrqMutex<Option<crate::mm::heap::Reservation>>,
    /// A compiled SIP's epoch, advanced by the ticks that find it running so that its
    /// code asks whether to stop (see `sip_runtime::compiled`).
    epoch: IrqMutex<Option<sip_runtime::compiled::Epoch>>,
    /// The tick it was made at (how long an incarnation ran, for its restart policy).
    started_tick: AtomicU64,
    /// The tick of its latest kernel call, and whether the supervisor's watchdog killed it
    /// for leaving a message unanswered (see `recovery::watchdog`).
    last_call_tick: AtomicU64,
    hung: AtomicBool,
    /// Blocked in a kernel wait (a receive, a device interrupt): waiting on others.
    waiting: AtomicBool,
    /// Its last console lines, for its crash record.
    tail: IrqMutex<ConsoleTail>,
    /// Cycles its threads ran (charged by the scheduler at each switch away from them).
    cycles: AtomicU64,
    /// Channel messages it sent and received, and bytes the kernel copied for it.
    sent: AtomicU64,
    received: AtomicU64,
    copied: AtomicU64,
    /// Page faults the kernel resolved for it.
    faults: AtomicU64,
    /// Memory promised to it for its declared limits.
    memory: AtomicU64,
    /// Arguments its starter gave it (each followed by NUL), instead of its entry's.
    args: IrqMutex<Option<Vec<u8>>>,
    /// The SIP that ended it with `sip_kill` (0: none).
    killed_by: AtomicUsize,
}

/// The last [`ConsoleTail::LINES`] lines a SIP printed (each cut at
/// [`ConsoleTail::WIDTH`] bytes), in fixed storage: keeping them never allocates.
struct ConsoleTail {
    lines: [[u8; ConsoleTail::WIDTH]; ConsoleTail::LINES],
    lens: [usize; ConsoleTail::LINES],
    /// The line being written (index into `lines`), and how many are complete.
    current: usize,
    complete: usize,
}

impl ConsoleTail {
    const LINES: usize = 4;
    const WIDTH: usize = 120;

    const fn new() -> ConsoleTail {
        ConsoleTail {
            lines: [[0; ConsoleTail::WIDTH]; ConsoleTail::LINES],
            lens: [0; ConsoleTail::LINES],
            current: 0,
            complete: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only the end of a long write can reach the kept lines: the loop below runs with
        // interrupts masked, so it never looks at more than that.
        let keep = Self::LINES * (Self::WIDTH + 1);
        let bytes = match bytes.len().checked_sub(keep) {
            Some(cut) if cut > 0 => {
                self.lens[self.current] = 0;
                &bytes[cut..]
            }
            _ => bytes,
        };
        for &b in bytes {
            if b == b'\n' {
                self.current = (self.current + 1) % Self::LINES;
                self.lens[self.current] = 0;
                self.complete = (self.complete + 1).min(Self::LINES - 1);
            } else if self.lens[self.current] < Self::WIDTH {
                self.lines[self.current][self.lens[self.current]] = b;
                self.lens[self.current] += 1;
            }
        }
    }

    /// The kept lines, oldest first (an unfinished last line included).
    fn lines(&self) -> impl Iterator<Item = &str> {
        let kept = self.complete + usize::from(self.lens[self.current] > 0);
        let first = self.current + Self::LINES - self.complete;
        (0..kept).map(move |i| {
            let at = (first + i) % Self::LINES;
            core::str::from_utf8(&self.lines[at][..self.lens[at]]).unwrap_or("(not UTF-8)")
        })
    }
}

impl SlotState {
    const fn new() -> SlotState {
        SlotState {
            pid: AtomicUsize::new(0),
            free: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            kernel_calls: AtomicU64::new(0),
            cpu_ticks: AtomicU64::new(0),
            cpu_budget: AtomicU64::new(u64::MAX),
            over_budget: AtomicBool::new(false),
            powers: AtomicU8::new(0),
            lingering: IrqMutex::new(None),
            epoch: IrqMutex::new(None),
            started_tick: AtomicU64::new(0),
            last_call_tick: AtomicU64::new(0),
            hung: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            tail: IrqMutex::new(ConsoleTail::new()),
            cycles: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            copied: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            memory: AtomicU64::new(0),
            args: IrqMutex::new(None),
            killed_by: AtomicUsize::new(0),
        }
    }

    /// A fresh start for process `pid` (with `powers`).
    fn reset(&self, pid: Pid, powers: u8) {
        self.free.store(false, Ordering::Relaxed);
        self.kill.store(false, Ordering::Relaxed);
        self.kernel_calls.store(0, Ordering::Relaxed);
        self.cpu_ticks.store(0, Ordering::Relaxed);
        self.cpu_budget.store(u64::MAX, Ordering::Relaxed);
        self.over_budget.store(false, Ordering::Relaxed);
        self.powers.store(powers, Ordering::Relaxed);
        self.started_tick.store(time::ticks(), Ordering::Relaxed);
        self.last_call_tick.store(time::ticks(), Ordering::Relaxed);
        self.hung.store(false, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
        *self.tail.lock() = ConsoleTail::new();
        for count in [
            &self.cycles,
            &self.sent,
            &self.received,
            &self.copied,
            &self.faults,
            &self.memory,
        ] {
            count.store(0, Ordering::Relaxed);
        }
        drop(self.args.lock().take());
        self.killed_by.store(0, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Release);
    }
}

static SLOTS: [SlotState; MAX_PROCESSES] = [const { SlotState::new() }; MAX_PROCESSES];

/// Processes created since boot, and how many of them ended other than with status 0.
static STARTED: AtomicUsize = AtomicUsize::new(0);
static UNCLEAN: AtomicUsize = AtomicUsize::new(0);

/// `pid`'s slot state if `pid` is the process living there.
fn live_slot(pid: Pid) -> Option<&'static SlotState> {
    let slot = &SLOTS[slot_of(pid)?];
    (slot.pid.load(Ordering::Relaxed) == pid).then_some(slot)
}

/// A power over other SIPs, as a bit of [`SlotState::powers`].
#[derive(Clone, Copy, Debug)]
enum Power {
    Start = 1,
    Kill = 2,
    Inspect = 4,
    Console = 8,
    Shutdown = 16,
    Bench = 32,
}

impl Power {
    fn name(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Kill => "kill",
            Power::Inspect => "inspect",
            Power::Console => "console",
            Power::Shutdown => "shutdown",
            Power::Bench => "bench",
        }
    }
}

/// Charges `cycles` of processor time to `pid` (0: the kernel's own, not charged). Called
/// by the scheduler when it switches away from one of `pid`'s threads.
pub fn charge_cycles(pid: Pid, cycles: u64) {
    if let Some(slot) = live_slot(pid) {
        slot.cycles.fetch_add(cycles, Ordering::Relaxed);
    }
}

/// Charges a page fault the kernel resolved to `pid`.
pub fn charge_fault(pid: Pid) {
    if let Some(slot) = live_slot(pid) {
        slot.faults.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a SIP holding the `start` power runs.
pub fn a_starter_runs() -> bool {
    PROCESSES.lock().iter().enumerate().any(|(slot, r)| {
        r.ending.is_none() && SLOTS[slot].powers.load(Ordering::Relaxed) & Power::Start as u8 != 0
    })
}

/// Whether `pid` names a process that has not ended.
pub fn is_running(pid: Pid) -> bool {
    pid != 0
        && PROCESSES
            .lock()
            .iter()
            .any(|r| r.pid == pid && r.ending.is_none())
}

/// Charges one timer tick to `pid` (0: the kernel's own work, not charged), and asks a
/// process past its CPU budget to stop. Called from the timer interrupt.
pub fn charge_tick(pid: Pid) {
    let Some(slot) = live_slot(pid) else {
        return;
    };
    if let Some(epoch) = slot.epoch.lock().as_ref() {
        epoch.tick();
    }
    let used = slot.cpu_ticks.fetch_add(1, Ordering::Relaxed) + 1;
    if used > slot.cpu_budget.load(Ordering::Relaxed)
        && !slot.over_budget.swap(true, Ordering::Relaxed)
    {
        kill(pid);
    }
}

/// A SIP name kept inline (truncated to 32 bytes).
#[derive(Clone, Copy, Debug)]
pub struct Name {
    bytes: [u8; 32],
    len: usize,
}

impl Name {
    fn new(name: &str) -> Name {
        let mut len = name.len().min(32);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 32];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Name { bytes, len }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// Why a SIP could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// [`MAX_PROCESSES`] reached.
    TableFull,
    /// No memory for the SIP's thread.
    Thread(SpawnError),
    /// The system-manifest entry is running already (one incarnation at a time).
    Running,
    /// A SIP the entry's channels connect it to is not running: (channel, peer entry).
    PeerNotRunning(String, String),
    /// The entry's channels could not be made (memory, or the peer ended meanwhile).
    Wiring(String),
    /// No memory for a copy of the module.
    NoMemory,
    /// The system is shutting down.
    ShuttingDown,
}

impl StartError {
    /// What `sip_start` returns for it.
    fn status(&self) -> i32 {
        use cordon_abi::status;
        match self {
            StartError::Running => status::BUSY,
            StartError::PeerNotRunning(..) => status::PEER_CLOSED,
            StartError::TableFull
            | StartError::Thread(_)
            | StartError::Wiring(_)
            | StartError::NoMemory
            | StartError::ShuttingDown => status::OUT_OF_MEMORY,
        }
    }
}

/// How a SIP ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The verifier refused the module.
    Refused(String),
    /// The module verified but could not be instantiated.
    LoadFailed(String),
    /// It ran and ended this way.
    Ran(Exit),
}

impl Ending {
    /// True for a SIP that ran and exited with status 0.
    pub fn is_clean(&self) -> bool {
        *self == Ending::Ran(Exit::Status(0))
    }
}

impl core::fmt::Display for Ending {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Ending::Refused(why) => write!(f, "refused by the verifier: {why}"),
            Ending::LoadFailed(why) => write!(f, "could not be loaded: {why}"),
            Ending::Ran(exit) => write!(f, "{exit}"),
        }
    }
}

/// Cycle counts of one SIP's start-up, from the moment the kernel began creating it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub verify: u64,
    pub instantiate: u64,
    /// Creation until the SIP's first kernel call: create + start as the SIP sees it.
    pub first_call: Option<u64>,
    /// From entering the SIP to its end.
    pub run: u64,
}

/// What the kernel keeps of a process.
#[derive(Clone, Debug)]
pub struct Record {
    pub pid: Pid,
    pub name: Name,
    pub ending: Option<Ending>,
    pub timings: Timings,
    pub abi_calls: u64,
    pub fuel_used: u64,
    /// The most kernel objects (endpoints, blocks) and bytes of them charged to it at once.
    pub kernel_peak: (u32, u64),
    /// Timer ticks charged to it (counted by the kernel).
    pub cpu_ticks: u64,
    /// The system-manifest entry it incarnates, if any.
    pub entry: Option<u32>,
    /// Which incarnation of its entry it is (1 for the first; restarts count up). 1 for a
    /// SIP no entry names.
    pub incarnation: u32,
    /// The engine that ran it (set once it is instantiated).
    pub engine: Option<bootpkg::Engine>,
    /// Where it runs (set once it is verified).
    pub placement: Option<Placement>,
    /// Ended on purpose: by the SIP with this pid (its `kill` power), or by the shutdown
    /// (0).
    pub killed_by: Option<Pid>,
}

/// What the kernel's SIP table shows of one process record besides its accounting.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub pid: Pid,
    pub name: Name,
    pub incarnation: u32,
    pub engine: Option<bootpkg::Engine>,
    pub placement: Option<Placement>,
}

/// Row `index` of the process table (`None` past its end): one short lock, no allocation.
pub fn row(index: usize) -> Option<Row> {
    PROCESSES.lock().get(index).map(|r| Row {
        pid: r.pid,
        name: r.name,
        incarnation: r.incarnation,
        engine: r.engine,
        placement: r.placement,
    })
}

static PROCESSES: IrqMutex<Vec<Record>> = IrqMutex::new(Vec::new());

/// Held while a SIP writes to the console (see `console_write`).
static SIP_CONSOLE: sched::sync::Semaphore = sched::sync::Semaphore::new(1);

/// The kernel side of the SIP ABI: what every operation does for one SIP. In soft
/// isolation the runtime calls it directly; under the other configurations the
/// system-call table (`crate::syscall`) calls the same methods.
pub(crate) struct SipKernel {
    name: String,
    created: u64,
    first_call: Option<u64>,
    at_line_start: bool,
    pid: Pid,
    /// Console bytes it may still write (see [`CONSOLE_BUDGET`]).
    console_left: usize,
    /// Its system-manifest entry, until its first message from an exporting end (the
    /// supervisor times a restarted service to its first reply).
    awaiting_first_reply: Option<u32>,
}

/// Console bytes one SIP may write: the console is shared and slow (an emulated UART), so
/// a SIP printing without end would drown every other SIP's output. Past it, the kernel
/// says so once and drops the rest; the SIP's `console_write` still succeeds.
pub const CONSOLE_BUDGET: usize = 256 << 10;

impl SipKernel {
    fn new(pid: Pid, name: &str, created: u64) -> SipKernel {
        SipKernel {
            name: String::from(name),
            created,
            first_call: None,
            at_line_start: true,
            pid,
            console_left: CONSOLE_BUDGET,
            awaiting_first_reply: record(pid).and_then(|r| r.entry),
        }
    }

    /// `on_kernel_call`'s slow path when `--inject` is in force: the fault to inject
    /// at this call, if any (out of line: the common path stays a few instructions).
    #[cold]
    #[inline(never)]
    fn injected(&mut self) -> Result<(), String> {
        match crate::recovery::inject(&self.name) {
            Some((bootpkg::InjectKind::Crash, why)) => Err(why),
            Some((bootpkg::InjectKind::Hang, why)) => {
                println!(
                    "[kernel] SIP {} (pid {}) stops here: {why}",
                    self.name, self.pid
                );
                // The call never returns; a kill (the watchdog's) ends the SIP.
                while !kill_requested(self.pid) {
                    sched::sleep_ticks(1);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Tells the supervisor when this SIP first answers on an endpoint it exports.
    fn note_sent(&mut self, ep: u32, sent: &Result<i32, String>) {
        if let Some(entry) = self.awaiting_first_reply
            && *sent == Ok(cordon_abi::status::OK)
            && ipc::exports(self.pid, ep)
        {
            self.awaiting_first_reply = None;
            crate::recovery::first_reply(entry);
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Accounts a send that returned `sent` for a message of `len` bytes.
    fn count_sent(&self, sent: &Result<i32, String>, len: usize) {
        if *sent == Ok(cordon_abi::status::OK)
            && let Some(slot) = live_slot(self.pid)
        {
            slot.sent.fetch_add(1, Ordering::Relaxed);
            slot.copied.fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    /// Accounts a receive that returned `got` (a length, or a status).
    fn count_received(&self, got: &Result<i32, String>) {
        if let Ok(len) = *got
            && len >= 0
            && let Some(slot) = live_slot(self.pid)
        {
            slot.received.fetch_add(1, Ordering::Relaxed);
            slot.copied.fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    /// Accounts a block read or write that returned `moved` (bytes, or a status).
    fn count_copied(&self, moved: &Result<i32, String>) {
        if let Ok(len) = *moved
            && len > 0
            && let Some(slot) = live_slot(self.pid)
        {
            slot.copied.fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    /// Whether the system manifest gave this SIP `power`.
    fn has(&self, power: Power) -> bool {
        live_slot(self.pid).is_some_and(|s| s.powers.load(Ordering::Relaxed) & power as u8 != 0)
    }

    /// Misuse unless the system manifest gave this SIP `power`.
    fn need(&self, power: Power, op: &str) -> Result<(), String> {
        if self.has(power) {
            return Ok(());
        }
        Err(format!(
            "{op}: the system manifest did not give this SIP the `{}` power",
            power.name()
        ))
    }

    /// Cycles from creation to the SIP's first kernel call, once it made one.
    pub(crate) fn first_call(&self) -> Option<u64> {
        self.first_call
    }
}

impl sip_runtime::Kernel for SipKernel {
    fn on_kernel_call(&mut self, _op: &'static cordon_abi::Op) -> Result<(), String> {
        if let Some(slot) = live_slot(self.pid) {
            slot.kernel_calls.fetch_add(1, Ordering::Relaxed);
            slot.last_call_tick.store(time::ticks(), Ordering::Relaxed);
        }
        if self.first_call.is_none() {
            self.first_call = Some(cycles::stop() - self.created);
        }
        if crate::recovery::injecting() {
            return self.injected();
        }
        Ok(())
    }

    fn console_write(&mut self, bytes: &[u8]) {
        if self.console_left == 0 {
            return;
        }
        let allowed = bytes.len().min(self.console_left);
        self.console_left -= allowed;
        let bytes = &bytes[..allowed];
        // The console lock is taken in short pieces (interrupts get in between); this
        // sleeping lock keeps one SIP's write, label included, from being cut by
        // another's.
        if let Some(slot) = live_slot(self.pid) {
            slot.tail.lock().write(bytes);
        }
        SIP_CONSOLE.down();
        // Every line a SIP prints is labelled with its name, except the console SIP's: it
        // draws the console (prompts, echoed typing, what its clients print).
        let labelled = !self.has(Power::Console);
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start && labelled {
                serial::write_bytes(format!("[{}] ", self.name).as_bytes());
            }
            serial::write_bytes(line);
            self.at_line_start = line.ends_with(b"\n");
        }
        if self.console_left == 0 {
            println!(
                "\n[kernel] SIP {} (pid {}) used its console budget of {} KiB; the rest of its output is dropped",
                self.name,
                self.pid,
                CONSOLE_BUDGET >> 10
            );
            self.at_line_start = true;
        }
        SIP_CONSOLE.up();
    }

    fn yield_now(&mut self) {
        sched::yield_now();
    }

    fn ticks(&mut self) -> u64 {
        time::ticks()
    }

    fn cycles(&mut self) -> u64 {
        cycles::stop()
    }

    fn abi_version(&mut self) -> i32 {
        cordon_abi::VERSION
    }

    fn kill_requested(&mut self) -> bool {
        kill_requested(self.pid)
    }

    fn chan_create(&mut self, contract: &str) -> Result<Result<(u32, u32), i32>, String> {
        Ok(ipc::create(self.pid, contract))
    }

    fn chan_send(&mut self, ep: u32, message: &[u8]) -> Result<i32, String> {
        let sent = ipc::send(self.pid, ep, message);
        self.note_sent(ep, &sent);
        self.count_sent(&sent, message.len());
        sent
    }

    fn chan_recv(&mut self, ep: u32, out: &mut [u8], timeout: Option<u64>) -> Result<i32, String> {
        let got = ipc::recv(self.pid, ep, out, timeout);
        self.count_received(&got);
        got
    }

    fn chan_call(
        &mut self,
        ep: u32,
        message: &[u8],
        out: &mut [u8],
        timeout: Option<u64>,
    ) -> Result<i32, String> {
        let sent = ipc::send(self.pid, ep, message);
        self.note_sent(ep, &sent);
        self.count_sent(&sent, message.len());
        let sent = sent?;
        if sent != cordon_abi::status::OK {
            return Ok(sent);
        }
        let got = ipc::recv(self.pid, ep, out, timeout);
        self.count_received(&got);
        got
    }

    fn chan_select(&mut self, eps: &[u32], timeout: Option<u64>) -> Result<i32, String> {
        ipc::select(self.pid, eps, timeout)
    }

    fn chan_close(&mut self, ep: u32) -> Result<i32, String> {
        ipc::close(self.pid, ep)
    }

    fn chan_initial(
        &mut self,
        name: &str,
        contract: &str,
        importer: bool,
        wait: bool,
    ) -> Result<i32, String> {
        ipc::take_initial(self.pid, name, contract, importer, wait)
    }

    fn chan_check(&mut self, ep: u32, contract: &str, importer: bool) -> Result<i32, String> {
        ipc::is(self.pid, ep, contract, importer)
    }

    fn buf_alloc(&mut self, size: u32) -> Result<i32, String> {
        ipc::buf_alloc(self.pid, size)
    }

    fn buf_write(&mut self, buf: u32, offset: u32, data: &[u8]) -> Result<i32, String> {
        let written = ipc::buf_write(self.pid, buf, offset, data);
        self.count_copied(&written);
        written
    }

    fn buf_read(&mut self, buf: u32, offset: u32, out: &mut [u8]) -> Result<i32, String> {
        let read = ipc::buf_read(self.pid, buf, offset, out);
        self.count_copied(&read);
        read
    }

    fn buf_free(&mut self, buf: u32) -> Result<i32, String> {
        ipc::buf_free(self.pid, buf)
    }

    fn buf_size(&mut self, buf: u32) -> Result<i32, String> {
        ipc::buf_size(self.pid, buf)
    }

    fn dev_read(&mut self, resource: u32, offset: u32, width: u32) -> Result<i64, String> {
        devices::read(self.pid, resource, offset, width)
    }

    fn dev_write(
        &mut self,
        resource: u32,
        offset: u32,
        width: u32,
        value: u32,
    ) -> Result<i32, String> {
        devices::write(self.pid, resource, offset, width, value)
    }

    fn dev_wait(&mut self, resource: u32, timeout: Option<u64>) -> Result<i32, String> {
        devices::wait(self.pid, resource, timeout)
    }

    fn buf_dma(&mut self, buf: u32) -> Result<i64, String> {
        ipc::buf_dma(self.pid, buf)
    }

    fn sip_start(&mut self, module: &str, args: &[u8]) -> Result<i32, String> {
        self.need(Power::Start, "sip_start")?;
        if args.len() > bootpkg::MAX_ARGS_BYTES {
            return Err(format!(
                "sip_start: {} bytes of arguments; at most {} are allowed",
                args.len(),
                bootpkg::MAX_ARGS_BYTES
            ));
        }
        if args.last().is_some_and(|&b| b != 0) {
            return Err(String::from(
                "sip_start: the arguments do not end with a NUL byte (each argument is followed by one)",
            ));
        }
        let args = if args.is_empty() {
            None
        } else {
            let mut copy = Vec::new();
            if copy.try_reserve_exact(args.len()).is_err() {
                return Ok(cordon_abi::status::OUT_OF_MEMORY);
            }
            copy.extend_from_slice(args);
            Some(copy)
        };
        let package = crate::boot_package();
        let Some(bytes) = package
            .file(module)
            .filter(|_| !module.ends_with(".contract"))
        else {
            return Ok(cordon_abi::status::NOT_FOUND);
        };
        let started = match package.on_request_entry(module) {
            // Exactly what its system-manifest entry names.
            Some(entry) => start_entry_with(entry, bytes, args),
            // Nothing in the system manifest names it: no endpoints, devices or powers.
            None => copy_module(bytes)
                .and_then(|copy| start_with_args(module, copy, StartOptions::default(), args))
                .map(|(pid, _thread)| pid),
        };
        Ok(match started {
            Ok(pid) => pid as i32,
            Err(why) => {
                log::debug!("sip_start({module}) refused: {why:?}");
                why.status()
            }
        })
    }

    fn sip_kill(&mut self, pid: u32) -> Result<i32, String> {
        self.need(Power::Kill, "sip_kill")?;
        if let Some(slot) = live_slot(pid as Pid)
            && !slot.kill.load(Ordering::Acquire)
        {
            // Named only if nothing else (a watchdog, a budget) asked it to stop first: the
            // end is then this SIP's doing.
            let _ =
                slot.killed_by
                    .compare_exchange(0, self.pid, Ordering::Relaxed, Ordering::Relaxed);
        }
        Ok(if kill(pid as Pid) {
            cordon_abi::status::OK
        } else {
            cordon_abi::status::NOT_FOUND
        })
    }

    fn args(&mut self, out: &mut [u8]) -> Result<i32, String> {
        if let Some(slot) = live_slot(self.pid)
            && let Some(given) = slot.args.lock().as_deref()
        {
            if let Some(out) = out.get_mut(..given.len()) {
                out.copy_from_slice(given);
            }
            // At most MAX_ARGS_BYTES (checked by sip_start).
            return Ok(given.len() as i32);
        }
        let entry = PROCESSES
            .lock()
            .iter()
            .find(|r| r.pid == self.pid)
            .and_then(|r| r.entry);
        let args = crate::boot_package().args_of(entry);
        // Checked when the package was read: at most MAX_ARGS_BYTES, so it fits an i32.
        Ok(bootpkg::SipArgs::encode(args, out) as i32)
    }

    fn sip_info(&mut self, pid: u32, out: &mut [u8]) -> Result<i32, String> {
        self.need(Power::Inspect, "sip_info")?;
        let Some(info) = info(pid as Pid) else {
            return Ok(cordon_abi::status::NOT_FOUND);
        };
        let Some(out) = out.get_mut(..cordon_abi::SipInfo::BYTES) else {
            return Ok(cordon_abi::status::BUFFER_TOO_SMALL);
        };
        out.copy_from_slice(&info.to_bytes());
        Ok(cordon_abi::SipInfo::BYTES as i32)
    }

    fn console_read(&mut self, out: &mut [u8], timeout: Option<u64>) -> Result<i32, String> {
        self.need(Power::Console, "console_read")?;
        crate::console::read(self.pid, out, timeout)
    }

    fn report(&mut self, table: u32, out: &mut [u8]) -> Result<i32, String> {
        self.need(Power::Inspect, "report")?;
        crate::report::write(table, out)
    }

    fn bench(&mut self, suite: &str) -> Result<i32, String> {
        self.need(Power::Bench, "bench")?;
        // Waiting for the suite is not hanging (the supervisor's watchdog skips it).
        set_waiting(self.pid, true);
        let status = crate::bench::run_for(self.pid, suite);
        set_waiting(self.pid, false);
        Ok(status)
    }

    fn shutdown(&mut self, status: i32) -> Result<(), String> {
        self.need(Power::Shutdown, "shutdown")?;
        println!(
            "[kernel] SIP {} (pid {}) shuts the system down (status {status})",
            self.name, self.pid
        );
        shutdown(status);
        Ok(())
    }
}

/// Set once a SIP with the `shutdown` power asked: its status (`i64::MIN`: not asked).
static SHUTDOWN: AtomicI64 = AtomicI64::new(i64::MIN);

/// Ends every SIP (none is restarted from now on); the kernel powers off once they are
/// gone, as at the end of any run.
pub fn shutdown(status: i32) {
    if SHUTDOWN
        .compare_exchange(
            i64::MIN,
            i64::from(status),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return;
    }
    // Every SIP is asked at once (one lock, interrupts masked): none can end and close its
    // channels on a peer that is not yet asked, which would then fail for it.
    {
        let table = PROCESSES.lock();
        for (slot, record) in table.iter().enumerate() {
            if record.ending.is_none() {
                SLOTS[slot].kill.store(true, Ordering::Release);
            }
        }
    }
    wake_blocked();
}

/// Wakes every SIP blocked in the kernel (a receive, a device wait, the console) to see
/// whether it was asked to stop.
fn wake_blocked() {
    ipc::wake_waiters();
    devices::wake_waiters();
    crate::console::wake_reader();
}

/// The status a shutdown was asked with, once one was.
pub fn shutdown_status() -> Option<i32> {
    let status = SHUTDOWN.load(Ordering::Acquire);
    (status != i64::MIN).then_some(status as i32)
}

/// The kernel's account of process `pid`, live.
pub fn info(pid: Pid) -> Option<cordon_abi::SipInfo> {
    use cordon_abi::sip_state;
    // Read in place, not copied: a SIP with the `inspect` power asks for this as often as
    // it likes, and copying a record (its ending's text) would allocate each time.
    let (state, ending) =
        PROCESSES
            .lock()
            .iter()
            .find(|r| r.pid == pid)
            .map(|record| match &record.ending {
                None => (sip_state::RUNNING, 0),
                Some(Ending::Ran(Exit::Status(s))) => (sip_state::ENDED, *s),
                Some(Ending::Ran(Exit::Killed)) => (sip_state::ENDED, sip_state::KILLED),
                Some(Ending::Ran(_)) => (sip_state::ENDED, sip_state::FAULTED),
                Some(_) => (sip_state::ENDED, sip_state::NOT_LOADED),
            })?;
    let slot = live_slot(pid)?;
    let (now, peak) = ipc::usage(pid);
    Some(cordon_abi::SipInfo {
        state,
        ending,
        ticks: slot.cpu_ticks.load(Ordering::Relaxed),
        kernel_calls: slot.kernel_calls.load(Ordering::Relaxed),
        peak_objects: peak.objects,
        generation: generation(pid),
        peak_bytes: peak.bytes,
        cycles: slot.cycles.load(Ordering::Relaxed),
        messages_sent: slot.sent.load(Ordering::Relaxed),
        messages_received: slot.received.load(Ordering::Relaxed),
        bytes_copied: slot.copied.load(Ordering::Relaxed),
        objects: now.objects,
        faults: u32::try_from(slot.faults.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        object_bytes: now.bytes,
        memory_bytes: slot.memory.load(Ordering::Relaxed),
    })
}

/// Checks the ends the SIP started with `options` is given against the endpoints its own
/// manifest declares (`bootpkg::endpoint_mismatches`, the rule the runner applies before
/// boot). An entry's ends are every channel of the system manifest at its end, whether
/// made yet or made when an on-request peer starts, each with its contract and side; a
/// SIP no entry names has only the names handed to `pid` directly.
fn check_endpoints(
    pid: Pid,
    options: StartOptions,
    manifest: &cordon_abi::Manifest,
) -> Result<(), String> {
    let direct;
    let given: Vec<bootpkg::GivenEnd<'_>> = match options.system_index {
        Some(entry) => crate::boot_package()
            .channels_of(entry)
            .flat_map(|c| {
                [
                    (&c.exporter, cordon_abi::Role::Exporter),
                    (&c.importer, cordon_abi::Role::Importer),
                ]
                .into_iter()
                .filter(move |(end, _)| end.sip == entry)
                .map(move |(end, role)| bootpkg::GivenEnd {
                    endpoint: &end.endpoint,
                    contract: Some(&c.contract),
                    role: Some(role),
                })
            })
            .collect(),
        None => {
            direct = ipc::initial_names(pid);
            direct
                .iter()
                .map(|name| bootpkg::GivenEnd {
                    endpoint: name,
                    contract: None,
                    role: None,
                })
                .collect()
        }
    };
    match bootpkg::endpoint_mismatches(&given, &manifest.endpoints).first() {
        None => Ok(()),
        Some(mismatch) => Err(mismatch.describe(&manifest.name, &given, &manifest.endpoints)),
    }
}

pub(crate) fn update(pid: Pid, f: impl FnOnce(&mut Record)) {
    if let Some(record) = PROCESSES.lock().iter_mut().find(|r| r.pid == pid) {
        f(record);
    }
}

/// How to start a SIP.
#[derive(Clone, Copy, Debug)]
pub struct StartOptions {
    /// Fuel metering (benchmarks compare on and off).
    pub metering: Metering,
    /// Whether this is the system's client SIP, which the `client-*` isolation
    /// configurations place apart from the others.
    pub client: bool,
    /// Its index in the system manifest, whose device grants it gets (none for SIPs the
    /// kernel starts for its own tests and benchmarks).
    pub system_index: Option<u32>,
    /// The engine to run it in; `None`: the system manifest's choice for its entry, else
    /// the boot default (`--engine`).
    pub engine: Option<bootpkg::Engine>,
    /// Its thread waits for [`JoinHandle::release`] before it runs (its starter connects
    /// its channels first: on several processors another could run it at once).
    pub held: bool,
    /// The processor its thread runs on, and only there (benchmarks that measure a
    /// crossing); `None`: wherever the scheduler puts it.
    pub cpu: Option<usize>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            metering: Metering::Fuel,
            client: false,
            system_index: None,
            engine: None,
            held: false,
            cpu: None,
        }
    }
}

/// Creates and starts a SIP from `module`. `name` labels its output.
pub fn start(name: &str, module: Vec<u8>) -> Result<(Pid, JoinHandle), StartError> {
    start_with(name, module, StartOptions::default())
}

/// [`start`] with options.
pub fn start_with(
    name: &str,
    module: Vec<u8>,
    options: StartOptions,
) -> Result<(Pid, JoinHandle), StartError> {
    start_with_args(name, module, options, None)
}

/// [`start_with`], giving the SIP `args` (encoded, each followed by NUL) instead of its
/// entry's.
pub fn start_with_args(
    name: &str,
    module: Vec<u8>,
    options: StartOptions,
    args: Option<Vec<u8>>,
) -> Result<(Pid, JoinHandle), StartError> {
    let created = cycles::start();
    let pid = new_record(name, given_powers(options), options.system_index)?;
    give_args(pid, args);
    launch(pid, name, module, created, options)
}

/// One side of a pair of SIPs started by [`start_pair`].
pub struct PairSide<'a> {
    /// The name that labels its output.
    pub name: &'a str,
    pub module: Vec<u8>,
    /// Its arguments (encoded, each followed by NUL); `None`: none.
    pub args: Option<Vec<u8>>,
    /// Where it runs; `held` is implied.
    pub options: StartOptions,
    /// Its endpoint of the pair's channel.
    pub endpoint: &'a str,
}

/// A server and its client, started and connected, not yet running.
pub struct HeldPair {
    pub server: (Pid, JoinHandle),
    pub client: (Pid, JoinHandle),
}

impl HeldPair {
    /// Lets both run.
    pub fn release(&self) {
        self.server.1.release();
        self.client.1.release();
    }

    /// Waits for both to end.
    pub fn join(&self) {
        self.client.1.join();
        self.server.1.join();
    }
}

/// Starts `server` and `client` held (a SIP checks its endpoints as soon as it runs) and
/// connects them over `contract`, the server exporting. On an error whatever was started
/// is released: it finds its endpoint missing and ends, as any SIP would.
pub fn start_pair(
    contract: &str,
    server: PairSide<'_>,
    client: PairSide<'_>,
) -> Result<HeldPair, String> {
    let held = |options: StartOptions| StartOptions {
        held: true,
        ..options
    };
    let (s, s_thread) = start_with_args(
        server.name,
        server.module,
        held(server.options),
        server.args,
    )
    .map_err(|e| format!("{}: {e:?}", server.name))?;
    let (c, c_thread) = match start_with_args(
        client.name,
        client.module,
        held(client.options),
        client.args,
    ) {
        Ok(started) => started,
        Err(e) => {
            s_thread.release();
            return Err(format!("{}: {e:?}", client.name));
        }
    };
    let pair = HeldPair {
        server: (s, s_thread),
        client: (c, c_thread),
    };
    match ipc::connect(contract, (s, server.endpoint), (c, client.endpoint)) {
        Ok(()) => Ok(pair),
        Err(err) => {
            pair.release();
            Err(err)
        }
    }
}

/// Gives new process `pid` (not yet running) the arguments its starter chose.
fn give_args(pid: Pid, args: Option<Vec<u8>>) {
    if args.is_some()
        && let Some(slot) = live_slot(pid)
    {
        *slot.args.lock() = args;
    }
}

/// Runs SIP `pid` (its record made) on a new thread.
fn launch(
    pid: Pid,
    name: &str,
    module: Vec<u8>,
    created: u64,
    options: StartOptions,
) -> Result<(Pid, JoinHandle), StartError> {
    let thread_name = format!("sip:{name}");
    let name = String::from(name);
    spawn(pid, thread_name, options, move || {
        run(pid, name, module, created, options)
    })
}

/// A copy of a boot-package module for a new SIP, or `NoMemory`.
fn copy_module(bytes: &[u8]) -> Result<Vec<u8>, StartError> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(bytes.len())
        .map_err(|_| StartError::NoMemory)?;
    copy.extend_from_slice(bytes);
    Ok(copy)
}

/// The running incarnation of system-manifest entry `entry`, if any.
pub fn running_entry(entry: u32) -> Option<Pid> {
    incarnation(&PROCESSES.lock(), entry)
}

/// The process of `table` that incarnates `entry` and has not ended.
fn incarnation(table: &[Record], entry: u32) -> Option<Pid> {
    table
        .iter()
        .find(|r| r.entry == Some(entry) && r.ending.is_none())
        .map(|r| r.pid)
}

/// Starts on-request entry `entry` of the system manifest (for a SIP with the `start`
/// power, or the supervisor restarting any entry): its devices, powers and limits as for a
/// boot entry, and its channels made now, each peer's end waiting under its endpoint name
/// for the peer to take. Every peer must be running or being restarted (its channel is
/// then made when it starts), and the entry not: one incarnation at a time. `module` is the entry's
/// module from the boot package.
pub fn start_entry(entry: u32, module: &[u8]) -> Result<Pid, StartError> {
    start_entry_with(entry, module, None)
}

/// [`start_entry`], giving the SIP `args` (encoded) instead of its entry's.
fn start_entry_with(entry: u32, module: &[u8], args: Option<Vec<u8>>) -> Result<Pid, StartError> {
    let package = crate::boot_package();
    let name = package.sips[entry as usize].as_str();
    for c in package.channels_of(entry) {
        let peer = if c.exporter.sip == entry {
            &c.importer
        } else {
            &c.exporter
        };
        // A peer the supervisor is restarting gets its channel when it starts.
        if peer.sip != entry
            && running_entry(peer.sip).is_none()
            && !crate::recovery::restarting(peer.sip)
        {
            let peer_name = package.sips.get(peer.sip as usize).cloned();
            return Err(StartError::PeerNotRunning(
                c.contract.clone(),
                peer_name.unwrap_or_default(),
            ));
        }
    }
    let module = copy_module(module)?;
    let options = StartOptions {
        client: package.client == Some(entry),
        system_index: Some(entry),
        ..StartOptions::default()
    };
    let created = cycles::start();
    let pid = new_record(name, given_powers(options), Some(entry))?;
    give_args(pid, args);
    for c in package.channels_of(entry) {
        let pid_of = |sip: u32| {
            if sip == entry {
                Some(pid)
            } else if crate::recovery::restarting(sip) {
                // Being restarted (its old incarnation may still be finishing): the channel
                // is made when its new incarnation starts.
                None
            } else {
                running_entry(sip)
            }
        };
        let wired = match (pid_of(c.exporter.sip), pid_of(c.importer.sip)) {
            (Some(exp), Some(imp)) => ipc::connect(
                &c.contract,
                (exp, &c.exporter.endpoint),
                (imp, &c.importer.endpoint),
            ),
            (Some(_), None) | (None, Some(_))
                if crate::recovery::restarting(c.exporter.sip)
                    || crate::recovery::restarting(c.importer.sip) =>
            {
                Ok(())
            }
            _ => Err(format!("the peer of channel {} ended", c.contract)),
        };
        if let Err(why) = wired {
            finish(
                pid,
                format_args!("SIP {name}"),
                Ending::LoadFailed(why.clone()),
            );
            return Err(StartError::Wiring(why));
        }
    }
    // Peers waiting in `chan_initial` for the ends just made take them.
    ipc::wake_waiters();
    launch(pid, name, module, created, options).map(|(pid, _thread)| pid)
}

/// Starts the kernel's system-call probe (a test program, not a SIP: see
/// `sip-runtime/hosted/src/bin/syscall-probe.rs`) in its own ring-3 address space.
/// `target` is the kernel address the read and write probes touch.
pub fn start_probe(probe: u64, target: u64) -> Result<(Pid, JoinHandle), StartError> {
    let created = cycles::start();
    let name = format!("probe-{probe}");
    let pid = new_record(&name, 0, None)?;
    spawn(
        pid,
        format!("sip:{name}"),
        StartOptions::default(),
        move || {
            let setup = crate::hosted::Setup {
                placement: Placement::OwnSpace { ring3: true },
                limits: cordon_abi::Limits::default(),
                metering: Metering::Off,
                created,
                verify: 0,
                probe: Some((probe, target)),
                artifact: None,
            };
            let ending = crate::hosted::execute(SipKernel::new(pid, &name, created), &[], setup);
            finish(pid, format_args!("{name}"), ending);
        },
    )
}

/// Adds the record of a new process (an incarnation of system-manifest `entry`, if any,
/// which must not be running already).
fn new_record(name: &str, powers: u8, entry: Option<u32>) -> Result<Pid, StartError> {
    let mut table = PROCESSES.lock();
    // A shutdown ends every SIP: none starts after it began.
    if shutdown_status().is_some() {
        return Err(StartError::ShuttingDown);
    }
    if entry.is_some_and(|e| incarnation(&table, e).is_some()) {
        return Err(StartError::Running);
    }
    // A never-used slot first; then the free slot whose process ended longest ago.
    let (slot, pid) = if table.len() < MAX_PROCESSES {
        let room = MAX_PROCESSES - table.len();
        table.reserve_exact(room);
        (table.len(), table.len() + 1)
    } else {
        // A slot whose ended process still has objects in transit stays its own: its
        // account (and heap promise) lives until they are received or destroyed.
        let oldest = (0..MAX_PROCESSES)
            .filter(|&s| SLOTS[s].free.load(Ordering::Acquire))
            .filter(|&s| ipc::usage(table[s].pid).0.objects == 0)
            .min_by_key(|&s| table[s].pid)
            .ok_or(StartError::TableFull)?;
        drop(SLOTS[oldest].lingering.lock().take());
        (oldest, table[oldest].pid + MAX_PROCESSES)
    };
    ipc::open_account(pid).map_err(|()| StartError::TableFull)?;
    SLOTS[slot].reset(pid, powers);
    let incarnation = entry.map_or(1, crate::recovery::next_generation);
    STARTED.fetch_add(1, Ordering::Relaxed);
    let record = Record {
        pid,
        name: Name::new(name),
        ending: None,
        timings: Timings::default(),
        abi_calls: 0,
        fuel_used: 0,
        kernel_peak: (0, 0),
        cpu_ticks: 0,
        entry,
        incarnation,
        engine: None,
        placement: None,
        killed_by: None,
    };
    if slot == table.len() {
        table.push(record);
    } else {
        table[slot] = record;
    }
    Ok(pid)
}

/// Runs `body` on a new SIP thread for `pid`; a thread that cannot be made ends the SIP.
fn spawn(
    pid: Pid,
    thread_name: String,
    options: StartOptions,
    body: impl FnOnce() + Send + 'static,
) -> Result<(Pid, JoinHandle), StartError> {
    let body = move || {
        sched::set_owner(pid);
        body()
    };
    let made = if options.held || options.cpu.is_some() {
        sched::spawn_held(thread_name, SIP_STACK_ORDER, options.cpu, body).inspect(|thread| {
            if !options.held {
                thread.release();
            }
        })
    } else {
        sched::spawn_with_stack(thread_name, SIP_STACK_ORDER, body)
    };
    match made {
        Ok(thread) => Ok((pid, thread)),
        Err(err) => {
            // Nothing ran: release what the record holds and free its slot.
            let ending = Ending::LoadFailed(format!("no thread: {err:?}"));
            finish(pid, format_args!("SIP {pid}"), ending);
            Err(StartError::Thread(err))
        }
    }
}

fn run(pid: Pid, name: String, module: Vec<u8>, created: u64, options: StartOptions) {
    let placement = crate::boot_package()
        .config
        .isolation
        .placement(options.client);
    update(pid, |record| {
        record.placement = Some(placement);
        record.engine = Some(engine_of(options));
    });
    let (ending, reservation) = match verifier::verify(&module, &verifier::Policy::default()) {
        Err(rejection) => (Ending::Refused(format!("{rejection}")), None),
        Ok(verified) => {
            let verify = cycles::stop() - created;
            // The system manifest may lower what the SIP's own manifest asks for.
            let limits = given_limits(options, verified.manifest.limits);
            ipc::set_quota(pid, &limits);
            if let Some(slot) = live_slot(pid) {
                slot.cpu_budget
                    .store(limits.cpu_ticks.unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            let granted = check_endpoints(pid, options, &verified.manifest)
                .and_then(|()| {
                    devices::claim(pid, &verified.manifest.resources, &given_devices(options))
                })
                .and_then(|()| reserve(&limits, module.len(), placement));
            if granted.is_ok()
                && let Some(slot) = live_slot(pid)
            {
                let promised = kernel_heap_bytes(&limits, module.len(), placement);
                slot.memory.store(promised as u64, Ordering::Relaxed);
            }
            match (granted, placement) {
                (Err(why), _) => (Ending::LoadFailed(why), None),
                // The reservation lives until the SIP and everything it allocated are gone
                // (`finish` keeps what its objects still in transit need).
                (Ok(reservation), Placement::Kernel) => (
                    execute(
                        pid,
                        &name,
                        module,
                        created,
                        verify,
                        &limits,
                        options.metering,
                        engine_of(options),
                    ),
                    Some(reservation),
                ),
                (Ok(reservation), placement) => {
                    let artifact = match engine_of(options) {
                        bootpkg::Engine::Interp => Ok(None),
                        bootpkg::Engine::Compiled => compiled_artifact(&name, &module).map(Some),
                    };
                    let ending = match artifact {
                        Err(why) => Ending::LoadFailed(why),
                        Ok(artifact) => crate::hosted::execute(
                            SipKernel::new(pid, &name, created),
                            &module,
                            crate::hosted::Setup {
                                placement,
                                limits,
                                metering: options.metering,
                                created,
                                verify,
                                probe: None,
                                artifact,
                            },
                        ),
                    };
                    (ending, Some(reservation))
                }
            }
        }
    };
    finish_with(pid, format_args!("SIP {name}"), ending, reservation);
}

/// The entries of a system-manifest list (`sip` names each entry's SIP) that name the SIP
/// started with `options`; none for SIPs the system manifest does not list.
fn given<'a, T>(
    options: StartOptions,
    entries: &'a [T],
    sip: impl Fn(&T) -> u32 + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    let index = options.system_index;
    entries
        .iter()
        .filter(move |e| index.is_some_and(|i| sip(e) == i))
}

/// `own` limits with the system manifest's caps for the SIP started with `options`.
fn given_limits(options: StartOptions, own: cordon_abi::Limits) -> cordon_abi::Limits {
    given(options, &crate::boot_package().limits, |c| c.sip)
        .fold(own, |limits, cap| cap.apply(limits))
}

/// The powers (as [`Power`] bits) the system manifest gives the SIP started with `options`.
fn given_powers(options: StartOptions) -> u8 {
    given(options, &crate::boot_package().powers, |g| g.sip).fold(0, |bits, g| {
        bits | if g.start { Power::Start as u8 } else { 0 }
            | if g.kill { Power::Kill as u8 } else { 0 }
            | if g.inspect { Power::Inspect as u8 } else { 0 }
            | if g.console { Power::Console as u8 } else { 0 }
            | if g.shutdown { Power::Shutdown as u8 } else { 0 }
            | if g.bench { Power::Bench as u8 } else { 0 }
    })
}

/// The devices the system manifest gives the SIP started with `options`.
fn given_devices(options: StartOptions) -> Vec<bootpkg::DeviceSelector> {
    given(options, &crate::boot_package().devices, |g| g.sip)
        .map(|g| g.device)
        .collect()
}

/// Ends process `pid`: its endpoints and blocks go, the console and its record say how.
fn finish(pid: Pid, what: core::fmt::Arguments<'_>, ending: Ending) {
    finish_with(pid, what, ending, None)
}

/// [`finish`] for a process that had heap promised: what it sent that is still in transit
/// stays charged to it until received (or destroyed), so that much of the promise stays,
/// with its slot, until then.
fn finish_with(
    pid: Pid,
    what: core::fmt::Arguments<'_>,
    ending: Ending,
    reservation: Option<crate::mm::heap::Reservation>,
) {
    let slot = live_slot(pid).expect("a finishing process still owns its slot");
    // Its arguments were for it alone: not kept with the slot until the slot is reused.
    drop(slot.args.lock().take());
    let (entry, incarnation) = record(pid).map_or((None, 1), |r| (r.entry, r.incarnation));
    // Decided before its endpoints close: a peer woken by the closing that asks for the
    // endpoint again then waits for the new incarnation's instead of being told it is gone.
    let ran_ms =
        (time::ticks() - slot.started_tick.load(Ordering::Relaxed)) * 1_000 / time::TICK_HZ;
    // Ended on purpose — by a shutdown (the end every SIP gets) or by a SIP the system
    // manifest gave the `kill` power — not by a failure: no crash record, no restart, and
    // the run does not count it against itself.
    let killed = ending == Ending::Ran(Exit::Killed);
    let killer = slot.killed_by.load(Ordering::Relaxed);
    let failed_first =
        slot.hung.load(Ordering::Relaxed) || slot.over_budget.load(Ordering::Relaxed);
    let on_purpose = killed && !failed_first && (shutdown_status().is_some() || killer != 0);
    // A SIP that never ran (refused by the verifier, not loadable) would fail the same way
    // again: only incarnations that ran are restarted.
    let verdict = match (entry, &ending) {
        _ if on_purpose => crate::recovery::Verdict::Stay,
        (Some(e), Ending::Ran(_)) => crate::recovery::on_end(e, ran_ms, !ending.is_clean()),
        _ => crate::recovery::Verdict::Stay,
    };
    if matches!(ending, Ending::Ran(_)) && !ending.is_clean() && !on_purpose {
        SIP_CONSOLE.down();
        if slot.hung.load(Ordering::Relaxed) {
            println!(
                "[supervisor] {what} (pid {pid}, generation {incarnation}) left a message waiting and made no kernel call within its policy's answer-within-ms: killed by the watchdog"
            );
        }
        print_crash_record(pid, what, incarnation, &ending, slot);
        SIP_CONSOLE.up();
    }
    // Devices first: once quiesced they cannot DMA into the blocks freed next. (Its
    // report, like the lines below, is not cut into another SIP's output.)
    SIP_CONSOLE.down();
    devices::release(pid);
    SIP_CONSOLE.up();
    ipc::release(pid);
    let (left, peak) = ipc::usage(pid);
    let ticks = slot.cpu_ticks.load(Ordering::Relaxed);
    if let Some(mut reservation) = reservation
        && left.objects > 0
    {
        reservation.shrink_to(usize::try_from(left.bytes).unwrap_or(usize::MAX));
        *slot.lingering.lock() = Some(reservation);
    }
    SIP_CONSOLE.down();
    if left.objects > 0 {
        println!(
            "[kernel] {what} (pid {pid}) left {} object{} ({} bytes) it sent in transit: charged to it, with its process slot, until received or destroyed",
            left.objects,
            if left.objects == 1 { "" } else { "s" },
            left.bytes
        );
    }
    if slot.over_budget.load(Ordering::Relaxed) {
        println!(
            "[kernel] {what} (pid {pid}) used up its CPU budget of {} ticks",
            slot.cpu_budget.load(Ordering::Relaxed)
        );
    }
    match (killed, killer) {
        (true, 0) if on_purpose => {
            println!("[kernel] {what} (pid {pid}) ended by the shutdown")
        }
        (true, killer) if killer != 0 => println!(
            "[kernel] {what} (pid {pid}) killed by SIP {} (pid {killer})",
            record(killer).map_or_else(|| String::from("?"), |r| String::from(r.name.as_str()))
        ),
        _ => println!("[kernel] {what} (pid {pid}) {ending}"),
    }
    let name = entry.map(|e| crate::boot_package().sips[e as usize].as_str());
    match (&verdict, name) {
        (crate::recovery::Verdict::Restart { delay_ms, next }, Some(name)) => println!(
            "[supervisor] {name} (generation {incarnation}, pid {pid}) ended; restarting it in {delay_ms} ms as generation {next}"
        ),
        (
            crate::recovery::Verdict::GaveUp {
                restarts,
                window_ms,
            },
            Some(name),
        ) => println!(
            "[supervisor] {name} (generation {incarnation}, pid {pid}) ended after {restarts} restarts within {window_ms} ms: giving up, it stays ended"
        ),
        _ => {}
    }
    SIP_CONSOLE.up();
    // A failure the supervisor answers with a restart is recovered, not a failed run.
    let restarting = matches!(verdict, crate::recovery::Verdict::Restart { .. });
    if !ending.is_clean() && !restarting && !on_purpose {
        UNCLEAN.fetch_add(1, Ordering::Relaxed);
    }
    update(pid, |record| {
        record.ending = Some(ending);
        record.killed_by = on_purpose.then_some(killer);
        record.kernel_peak = (peak.objects, peak.bytes);
        // The kernel's own counts, whatever the SIP's runtime reported.
        record.abi_calls = slot.kernel_calls.load(Ordering::Relaxed);
        record.cpu_ticks = ticks;
    });
    // Done with every table: the slot may go to a new process.
    slot.free.store(true, Ordering::Release);
    // Peers waiting in `chan_initial` for an endpoint it might still have brought re-check.
    ipc::wake_waiters();
    if let (crate::recovery::Verdict::Restart { delay_ms, .. }, Some(entry)) = (verdict, entry) {
        // A restart that does not happen leaves this failure unrecovered (the supervisor
        // then calls `note_unrecovered`).
        crate::recovery::schedule(entry, delay_ms);
    }
}

/// A failure the supervisor meant to recover from was not (its restart could not be made):
/// it counts against the run like any other unclean end.
pub fn note_unrecovered() {
    UNCLEAN.fetch_add(1, Ordering::Relaxed);
}

/// The crash record of a SIP that ended other than with status 0, printed before its
/// endpoints are closed and its memory reclaimed: how it ended, the kernel's counts, each
/// endpoint it held (contract, role, state, queue, whether the peer was still there) and
/// its last console lines.
fn print_crash_record(
    pid: Pid,
    what: core::fmt::Arguments<'_>,
    incarnation: u32,
    ending: &Ending,
    slot: &SlotState,
) {
    let (now, peak) = ipc::usage(pid);
    println!(
        "[kernel] crash record of {what} (pid {pid}, generation {incarnation}): {ending}; {} kernel calls, {} ticks, {} kernel objects held ({} at most)",
        slot.kernel_calls.load(Ordering::Relaxed),
        slot.cpu_ticks.load(Ordering::Relaxed),
        now.objects,
        peak.objects
    );
    for endpoint in ipc::describe_endpoints(pid) {
        println!("[kernel]   endpoint: {endpoint}");
    }
    // Copied out first: the console is slow, and the tail's lock masks interrupts.
    let mut tail = [[0u8; ConsoleTail::WIDTH]; ConsoleTail::LINES];
    let mut lens = [0usize; ConsoleTail::LINES];
    let mut kept = 0;
    for (i, line) in slot.tail.lock().lines().enumerate() {
        tail[i][..line.len()].copy_from_slice(line.as_bytes());
        lens[i] = line.len();
        kept = i + 1;
    }
    for (line, len) in tail.iter().zip(lens).take(kept) {
        let text = core::str::from_utf8(&line[..len]).unwrap_or("(not UTF-8)");
        println!("[kernel]   last output: {text}");
    }
}

/// Heap a SIP's runtime may need at most: its declared memory twice (growing a linear
/// memory copies it into a larger block), its translated code, and its engine and store.
/// In `soft` it comes from the kernel heap; elsewhere from the SIP's own window.
pub(crate) fn worst_case_bytes(limits: &cordon_abi::Limits, module_bytes: usize) -> usize {
    (limits.max_memory_pages as usize * 65_536 * 2)
        .saturating_add(module_bytes.saturating_mul(32))
        .saturating_add(1 << 20)
}

/// Kernel heap a SIP may cause to be used: its runtime's (in the kernel's space) and, in
/// any placement, the kernel objects its quota allows.
fn kernel_heap_bytes(
    limits: &cordon_abi::Limits,
    module_bytes: usize,
    placement: Placement,
) -> usize {
    let objects = usize::try_from(limits.max_kernel_bytes).unwrap_or(usize::MAX);
    match placement {
        Placement::Kernel => worst_case_bytes(limits, module_bytes).saturating_add(objects),
        _ => objects,
    }
}

/// Promises the kernel heap a SIP's declared limits can use, or says why it cannot be.
fn reserve(
    limits: &cordon_abi::Limits,
    module_bytes: usize,
    placement: Placement,
) -> Result<crate::mm::heap::Reservation, String> {
    crate::mm::heap::Reservation::new(kernel_heap_bytes(limits, module_bytes, placement)).map_err(
        |refused| {
            format!(
                "not enough memory for its declared limits ({} pages of memory, {} KiB of kernel objects): needs up to {} KiB of kernel heap, {} KiB available",
                limits.max_memory_pages,
                limits.max_kernel_bytes >> 10,
                refused.asked >> 10,
                refused.available >> 10
            )
        },
    )
}

/// The engine a SIP started with `options` runs in.
fn engine_of(options: StartOptions) -> bootpkg::Engine {
    options
        .engine
        .unwrap_or_else(|| crate::boot_package().engine_of(options.system_index))
}

/// Whether each boot-package artifact belongs to the module file it names and is intact:
/// checked once, at its first use (the package never changes), since hashing a module and
/// its artifact costs more than the rest of a compiled SIP's start.
static ARTIFACT_CHECKS: spin::Once<Vec<spin::Once<Result<(), String>>>> = spin::Once::new();

/// Makes room for the artifact checks (at boot, before any SIP starts).
pub fn init_artifact_checks(artifacts: usize) {
    ARTIFACT_CHECKS.call_once(|| (0..artifacts).map(|_| spin::Once::new()).collect());
}

/// The compiled form of SIP `name`'s verified `module`: its artifact from the boot
/// package, checked to belong to exactly these bytes.
fn compiled_artifact(name: &str, module: &[u8]) -> Result<&'static [u8], String> {
    let package = crate::boot_package();
    let index = package.artifacts.iter().position(|a| a.module == name).ok_or_else(|| {
        format!("no compiled artifact for `{name}` in the boot package (the runner compiles every module it packs with --engine compiled or a manifest `engine = \"compiled\"`)")
    })?;
    let artifact = &package.artifacts[index];
    // The artifact is checked against the package's file once; this module must be that
    // file, byte for byte.
    let file = package
        .file(name)
        .ok_or_else(|| format!("no module file `{name}` for its compiled artifact"))?;
    if module != file {
        return Err(format!(
            "the module started as `{name}` is not the boot package's `{name}`, which its artifact was compiled from"
        ));
    }
    ARTIFACT_CHECKS
        .get()
        .and_then(|checks| checks.get(index))
        .ok_or("the artifact checks were not set up at boot")?
        .call_once(|| artifact.check(file))
        .clone()?;
    Ok(&artifact.code)
}

/// Instantiates a verified SIP in `engine` (in the kernel: `soft`).
fn instantiate(
    pid: Pid,
    name: &str,
    module: &[u8],
    kernel: SipKernel,
    limits: &cordon_abi::Limits,
    metering: Metering,
    engine: bootpkg::Engine,
) -> Result<Sip<SipKernel>, String> {
    match engine {
        bootpkg::Engine::Interp => {
            Sip::with_metering(module, limits, kernel, metering).map_err(|e| format!("{e}"))
        }
        bootpkg::Engine::Compiled => {
            let image = crate::mm::code::CodeWindow::new(compiled_artifact(name, module)?)?;
            let host = sip_runtime::compiled::Host {
                code_memory: alloc::sync::Arc::new(crate::mm::code::KernelCodeMemory),
            };
            let sip = sip_runtime::compiled::CompiledSip::load(
                alloc::boxed::Box::new(image),
                limits,
                kernel,
                metering,
                &host,
            )
            .map_err(|e| format!("{e}"))?;
            if let Some(slot) = live_slot(pid) {
                *slot.epoch.lock() = Some(sip.epoch());
            }
            Ok(Sip::Compiled(sip))
        }
    }
}

/// Instantiates and runs a verified SIP, recording its costs.
#[allow(clippy::too_many_arguments)]
fn execute(
    pid: Pid,
    name: &str,
    module: Vec<u8>,
    created: u64,
    verify: u64,
    limits: &cordon_abi::Limits,
    metering: Metering,
    engine: bootpkg::Engine,
) -> Ending {
    let kernel = SipKernel::new(pid, name, created);
    let mut sip = match instantiate(pid, name, &module, kernel, limits, metering, engine) {
        Err(err) => return Ending::LoadFailed(err),
        Ok(sip) => sip,
    };
    let instantiate = cycles::stop() - created;
    drop(module);
    let entered = cycles::start();
    let exit = sip.run();
    let run = cycles::stop() - entered;
    if let Some(slot) = live_slot(pid) {
        slot.epoch.lock().take();
    }
    let stats = sip.stats();
    let first_call = sip.kernel().first_call;
    update(pid, |record| {
        record.timings = Timings {
            verify,
            instantiate,
            first_call,
            run,
        };
        record.abi_calls = stats.abi_calls;
        record.fuel_used = stats.fuel_used;
        record.engine = Some(engine);
    });
    Ending::Ran(exit)
}

/// Asks a SIP to stop; it ends at its next kernel call or fuel slice, and a SIP blocked in
/// the kernel (receive, select, device wait) is woken and its wait ends at once, so a kill
/// takes effect within bounded time whatever the SIP is doing. Returns false for an
/// unknown pid.
pub fn kill(pid: Pid) -> bool {
    let slot = {
        let table = PROCESSES.lock();
        let slot = table.iter().position(|r| r.pid == pid);
        if let Some(slot) = slot {
            SLOTS[slot].kill.store(true, Ordering::Release);
        }
        slot
    };
    if slot.is_some() {
        wake_blocked();
    }
    slot.is_some()
}

/// Ticks since `pid` last made progress in the kernel's eyes: its latest kernel call
/// began, or its latest wait ended; 0 while it waits in the kernel on others (a receive, a
/// device) or once it has ended.
pub fn quiet_ticks(pid: Pid, now: u64) -> u64 {
    match live_slot(pid) {
        Some(s) if !s.waiting.load(Ordering::Relaxed) => {
            now.saturating_sub(s.last_call_tick.load(Ordering::Relaxed))
        }
        _ => 0,
    }
}

/// `pid` blocks in (`true`) or leaves (`false`) a kernel wait on others.
pub fn set_waiting(pid: Pid, waiting: bool) {
    if let Some(slot) = live_slot(pid) {
        slot.waiting.store(waiting, Ordering::Relaxed);
        if !waiting {
            slot.last_call_tick.store(time::ticks(), Ordering::Relaxed);
        }
    }
}

/// The supervisor's watchdog found `pid` leaving a message unanswered: kill it, and say
/// why when it ends.
pub fn kill_hung(pid: Pid) {
    if let Some(slot) = live_slot(pid)
        && !slot.hung.swap(true, Ordering::Relaxed)
    {
        kill(pid);
    }
}

/// Whether `pid` has been asked to stop (blocking waits give up when it has).
pub fn kill_requested(pid: Pid) -> bool {
    live_slot(pid).is_some_and(|slot| slot.kill.load(Ordering::Acquire))
}

/// A copy of every process record.
pub fn records() -> Vec<Record> {
    PROCESSES.lock().clone()
}

/// A copy of the record of `pid`.
pub fn record(pid: Pid) -> Option<Record> {
    PROCESSES.lock().iter().find(|r| r.pid == pid).cloned()
}

/// Prints one line per SIP: how it ended, its start-up cost and its work. Returns the
/// number that did not end cleanly.
pub fn print_summary() -> usize {
    println!("SIP accounting (the shell's `ps`):");
    crate::report::print_sips();
    let records = records();
    println!("SIP start-up and endings:");
    println!(
        "pid  sip            engine        verify   instantiate  create+start  abi calls  fuel        ticks  kernel objects (peak)  ended"
    );
    for r in &records {
        let t = r.timings;
        println!(
            "{:<4} {:<14} {:<8} {:>10} {:>12} {:>13} {:>10} {:>11} {:>6}  {:>5} {:>9} KiB  {}",
            r.pid,
            r.name.as_str(),
            r.engine.map_or("-", bootpkg::Engine::name),
            t.verify,
            t.instantiate,
            t.first_call
                .map_or_else(|| String::from("-"), |c| format!("{c}")),
            r.abi_calls,
            r.fuel_used,
            r.cpu_ticks,
            r.kernel_peak.0,
            r.kernel_peak.1.div_ceil(1024),
            match (r.killed_by, &r.ending) {
                (Some(0), _) => String::from("ended by the shutdown"),
                (Some(killer), _) => format!("killed by pid {killer}"),
                (None, Some(e)) => format!("{e}"),
                (None, None) => String::from("still running"),
            },
        );
    }
    println!(
        "(TSC cycles since the kernel began creating each SIP, including time other threads ran; \
         `cordon bench` measures one SIP alone. Emulated cost under TCG. Kernel calls and ticks \
         are counted by the kernel itself, also in ring 3; fuel is the runtime's count.)"
    );
    // Every process counts, also those whose slots were reused since (their rows are
    // gone from the table above, their endings are not).
    let still_running = records.iter().filter(|r| r.ending.is_none()).count();
    let reused = STARTED.load(Ordering::Relaxed) - records.len();
    if reused > 0 {
        println!("({reused} earlier processes' rows gave way to later ones in reused slots)");
    }
    UNCLEAN.load(Ordering::Relaxed) + still_running
}

/// Processes created since boot.
pub fn started() -> usize {
    STARTED.load(Ordering::Relaxed)
}
