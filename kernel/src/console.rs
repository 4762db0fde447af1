//! Console input: what is typed on COM1, kept for the one SIP allowed to read it.
//!
//! The kernel owns the UART: its log, panic reports and every SIP's output go out through
//! it, and none of that may depend on a SIP being alive (a console driver SIP that crashed
//! would silence the panic that explains why). So the receive interrupt is the kernel's
//! too; it moves bytes into a fixed buffer here, and `console_read` hands them to the SIP
//! the system manifest gives the `console` power — the console SIP, which edits lines and
//! serves them to other SIPs over the `Console` contract. Line editing is policy and lives
//! in that SIP; the kernel keeps only bytes.
//!
//! Nothing here allocates: typing faster than the reader reads fills the buffer, and what
//! does not fit is dropped and counted ([`dropped`]), like a UART overrun.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use cordon_abi::status;

use crate::arch::{irq::IrqMutex, lines, serial};
use crate::process::{self, Pid};
use crate::sched::sync::WaitQueue;

/// Bytes kept until read: several lines of typing ahead.
const CAPACITY: usize = 1024;
/// Most bytes one `console_read` moves.
pub const MAX_READ: usize = CAPACITY;

/// A byte ring of fixed size.
struct Ring {
    bytes: [u8; CAPACITY],
    start: usize,
    len: usize,
}

impl Ring {
    /// Appends `byte`; false if the ring is full.
    fn push(&mut self, byte: u8) -> bool {
        if self.len == CAPACITY {
            return false;
        }
        self.bytes[(self.start + self.len) % CAPACITY] = byte;
        self.len += 1;
        true
    }

    /// Moves the oldest bytes into `out`; how many.
    fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = self.len.min(out.len());
        for slot in &mut out[..n] {
            *slot = self.bytes[self.start];
            self.start = (self.start + 1) % CAPACITY;
        }
        self.len -= n;
        n
    }
}

static INPUT: IrqMutex<Ring> = IrqMutex::new(Ring {
    bytes: [0; CAPACITY],
    start: 0,
    len: 0,
});
static READERS: WaitQueue = WaitQueue::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// The pid reading the console (0: none yet). The power may be given to one entry only;
/// this holds also against a package built without the runner's check.
static READER: AtomicUsize = AtomicUsize::new(0);

/// Lets the receive interrupt in (after `serial::init`).
pub fn init() {
    lines::set_masked(serial::IRQ, false);
}

/// The receive interrupt: keep what arrived, wake the reader.
pub fn on_interrupt() {
    let mut kept = 0u64;
    let mut lost = 0u64;
    {
        let mut input = INPUT.lock();
        serial::receive(|byte| {
            if input.push(byte) {
                kept += 1;
            } else {
                lost += 1;
            }
        });
    }
    RECEIVED.fetch_add(kept, Ordering::Relaxed);
    DROPPED.fetch_add(lost, Ordering::Relaxed);
    lines::set_masked(serial::IRQ, false);
    if kept > 0 {
        READERS.notify_all();
    }
}

/// Bytes received since boot, and bytes dropped because nobody read them in time.
pub fn received() -> u64 {
    RECEIVED.load(Ordering::Relaxed)
}

pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// `console_read` for `pid` (which holds the `console` power): waits until input is there
/// (or the timeout passes, or `pid` is asked to stop) and moves it into `out`.
pub fn read(pid: Pid, out: &mut [u8], timeout: Option<u64>) -> Result<i32, String> {
    let reader = READER.load(Ordering::Acquire);
    if reader != pid
        && (process::is_running(reader)
            || READER
                .compare_exchange(reader, pid, Ordering::AcqRel, Ordering::Acquire)
                .is_err())
    {
        return Err(format!(
            "console_read: the console is read by pid {}, and has one reader",
            READER.load(Ordering::Acquire)
        ));
    }
    if out.is_empty() {
        return Ok(0);
    }
    // Bounded by `out` and by the ring: moved in one piece under the lock.
    let mut chunk = [0u8; CAPACITY];
    let want = out.len().min(CAPACITY);
    let mut got = 0;
    let mut attempt = || {
        got = INPUT.lock().pop_into(&mut chunk[..want]);
        got > 0 || process::kill_requested(pid)
    };
    if timeout == Some(0) {
        attempt();
    } else {
        // Waiting for a person is not hanging (the supervisor's watchdog skips it).
        process::set_waiting(pid, true);
        match timeout {
            None => READERS.wait_until(&mut attempt),
            Some(ticks) => {
                READERS.wait_until_timeout(&mut attempt, ticks);
            }
        }
        process::set_waiting(pid, false);
    }
    out[..got].copy_from_slice(&chunk[..got]);
    Ok(if got > 0 { got as i32 } else { status::TIMEOUT })
}

/// Wakes the reader to re-check (a kill was requested).
pub fn wake_reader() {
    READERS.notify_all();
}
