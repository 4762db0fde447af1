//! Controlling other SIPs: start, kill, inspect. Each needs a power that only the system
//! manifest gives (`[[powers]]`); a SIP without it that calls these is ended by the kernel.

use crate::channel::{Error, status};
use crate::sys;
pub use cordon_abi::{SipInfo, sip_state};

/// A SIP's process id.
pub type Pid = u32;

/// Starts a SIP from module `name` of the boot package (`NotFound` if there is none,
/// `OutOfMemory` if no process slot is free). An `on-request` entry of the system
/// manifest gets exactly what its entry names (`Busy` while it runs, `PeerClosed` if a SIP
/// its channels lead to is not running); any other module gets no endpoints, devices or
/// powers.
pub fn start(name: &str) -> Result<Pid, Error> {
    status(sys::sip_start(name)).map(|pid| pid as Pid)
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
