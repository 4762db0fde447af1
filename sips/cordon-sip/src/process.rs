//! Controlling other SIPs and the system: start, kill, inspect, report, shut down. Each needs a power that only the system
//! manifest gives (`[[powers]]`); a SIP without it that calls these is ended by the kernel.

use crate::channel::{Error, status};
use crate::sys;
pub use cordon_abi::report as tables;
pub use cordon_abi::{SipInfo, sip_state};

/// A SIP's process id.
pub type Pid = u32;

/// Starts a SIP from module `name` of the boot package (`NotFound` if there is none,
/// `OutOfMemory` if no process slot is free). An `on-request` entry of the system
/// manifest gets exactly what its entry names (`Busy` while it runs, `PeerClosed` if a SIP
/// its channels lead to is not running); any other module gets no endpoints, devices or
/// powers.
pub fn start(name: &str) -> Result<Pid, Error> {
    status(sys::sip_start(name, &[])).map(|pid| pid as Pid)
}

/// Like [`start`], with arguments (what the new SIP's [`crate::args`] returns) instead of
/// its system-manifest entry's. Together they take at most 4096 bytes (one byte more per
/// argument), and none may contain a NUL byte, or the kernel faults the caller.
pub fn start_with_args<S: AsRef<str>>(name: &str, args: &[S]) -> Result<Pid, Error> {
    let mut encoded = alloc::vec::Vec::new();
    for arg in args {
        encoded.extend_from_slice(arg.as_ref().as_bytes());
        encoded.push(0);
    }
    status(sys::sip_start(name, &encoded)).map(|pid| pid as Pid)
}

/// One of the kernel's tables as text ([`cordon_abi::report`]: `SIPS`, `CHANNELS`,
/// `CONTRACTS`, `COUNTERS`). Needs the `inspect` power.
pub fn report(table: u32) -> Result<alloc::string::String, Error> {
    let mut buf = alloc::vec![0u8; 4096];
    loop {
        let len = status(sys::report(table, &mut buf))? as usize;
        if len <= buf.len() {
            buf.truncate(len);
            return Ok(alloc::string::String::from_utf8_lossy(&buf).into_owned());
        }
        // The table grew past the buffer: ask again with room for it (and a little more,
        // in case it grows again meanwhile).
        buf.resize(len + len / 4, 0);
    }
}

/// Runs the kernel's benchmark suite `suite` (`micro`) now and waits for it; its figures go
/// to the console. `NotFound`: no such suite, or the boot package lacks its SIP modules;
/// `Busy`: a suite runs; `Timeout`: it failed (the console says why). Needs the `bench`
/// power.
pub fn bench(suite: &str) -> Result<(), Error> {
    status(sys::bench(suite)).map(|_| ())
}

/// Ends every SIP, this one included, and powers the machine off once they are gone,
/// reporting success for `status` 0. Needs the `shutdown` power.
pub fn shutdown(status: i32) -> ! {
    sys::shutdown(status)
}

/// Ends SIP `pid` (`NotFound` if there is no such SIP).
pub fn kill(pid: Pid) -> Result<(), Error> {
    status(sys::sip_kill(pid)).map(|_| ())
}

/// The kernel's account of SIP `pid`.
pub fn info(pid: Pid) -> Result<SipInfo, Error> {
    let mut out = [0u8; SipInfo::BYTES];
    status(sys::sip_info(pid, &mut out))?;
    Ok(SipInfo::from_bytes(&out))
}

/// Waits (yielding) until SIP `pid` has ended; its final account.
pub fn wait(pid: Pid) -> Result<SipInfo, Error> {
    loop {
        let info = info(pid)?;
        if info.state == sip_state::ENDED {
            return Ok(info);
        }
        crate::yield_now();
    }
}
