//! The system-call table: the closed kernel ABI as seen from a hosted SIP runtime.
//!
//! One entry per `cordon_abi` operation, indexed by its number, nothing else: a number past
//! the table is a violation that ends the caller. Each entry turns registers into the
//! arguments of the same `sip_runtime::Kernel` method the soft kernel runs, so both modes
//! share one implementation of every operation. Pointers and lengths become slices only
//! through [`UserAccess`]; one it refuses answers `BAD_ADDRESS` and changes nothing
//! (Linux's `EFAULT`). Argument conventions: `cordon_abi::hosted`.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;

use cordon_abi::hosted::{ExitReport, exit_kind};
use cordon_abi::{self as abi, status};
use sip_runtime::{Exit, Kernel};

use crate::arch::user::UserAccess;
use crate::process::{Ending, SipKernel};

/// What a system call does to its caller.
pub enum Outcome {
    /// Resume it with these rax, rdx.
    Return(u64, u64),
    /// End it: how, and its own accounting if it reported any.
    End(Ending, Option<ExitReport>),
}

type Entry = fn(&mut SipKernel, &UserAccess, [u64; 6]) -> Outcome;

/// The table, in operation-number order (checked by [`check_table`]).
const TABLE: [(&abi::Op, Entry); 31] = [
    (&abi::EXIT, exit),
    (&abi::CONSOLE_WRITE, console_write),
    (&abi::YIELD, yield_now),
    (&abi::TICKS, ticks),
    (&abi::CYCLES, cycles),
    (&abi::ABI_VERSION, abi_version),
    (&abi::CHAN_CREATE, chan_create),
    (&abi::CHAN_SEND, chan_send),
    (&abi::CHAN_RECV, chan_recv),
    (&abi::CHAN_CALL, chan_call),
    (&abi::CHAN_SELECT, chan_select),
    (&abi::CHAN_CLOSE, chan_close),
    (&abi::CHAN_INITIAL, chan_initial),
    (&abi::CHAN_CHECK, chan_check),
    (&abi::BUF_ALLOC, buf_alloc),
    (&abi::BUF_WRITE, buf_write),
    (&abi::BUF_READ, buf_read),
    (&abi::BUF_FREE, buf_free),
    (&abi::BUF_SIZE, buf_size),
    (&abi::DEV_READ, dev_read),
    (&abi::DEV_WRITE, dev_write),
    (&abi::DEV_WAIT, dev_wait),
    (&abi::BUF_DMA, buf_dma),
    (&abi::SIP_START, sip_start),
    (&abi::SIP_KILL, sip_kill),
    (&abi::SIP_INFO, sip_info),
    (&abi::ARGS, args),
    (&abi::CONSOLE_READ, console_read),
    (&abi::REPORT, report),
    (&abi::SHUTDOWN, shutdown),
    (&abi::BENCH, bench),
];

/// Panics at boot if the table and the ABI disagree (a kernel bug, not a SIP's).
pub fn check_table() {
    assert_eq!(TABLE.len(), abi::OPS.len(), "system-call table size");
    for (i, (op, _)) in TABLE.iter().enumerate() {
        assert_eq!(
            op.number as usize, i,
            "system call {} out of place",
            op.name
        );
        assert_eq!(abi::OPS[i], **op, "system call {i} is not the ABI's");
    }
}

/// The operation a system-call number names, if any.
pub fn op(number: u64) -> Option<&'static abi::Op> {
    TABLE.get(usize::try_from(number).ok()?).map(|(op, _)| *op)
}

/// Runs system call `number` for the SIP behind `kernel`.
pub fn dispatch(
    kernel: &mut SipKernel,
    access: &UserAccess,
    number: u64,
    args: [u64; 6],
) -> Outcome {
    match usize::try_from(number).ok().and_then(|n| TABLE.get(n)) {
        Some((_, entry)) => entry(kernel, access, args),
        None => violation(format!(
            "system call {number} does not exist (the ABI has {} operations)",
            TABLE.len()
        )),
    }
}

fn ok(value: u64) -> Outcome {
    Outcome::Return(value, 0)
}

fn status(result: Result<i32, String>) -> Outcome {
    match result {
        Ok(value) => ok(value as i64 as u64),
        Err(report) => violation(report),
    }
}

fn violation(report: String) -> Outcome {
    Outcome::End(
        Ending::Ran(Exit::Fault(sip_runtime::Fault::BadAbiCall(report))),
        None,
    )
}

fn bad_address() -> Outcome {
    ok(status::BAD_ADDRESS as i64 as u64)
}

fn timeout(raw: u64) -> Option<u64> {
    (raw as i64 >= 0).then_some(raw)
}

fn handle(raw: u64) -> u32 {
    // Handles are 32 bits; higher bits make an unknown handle, refused by the kernel.
    u32::try_from(raw).unwrap_or(u32::MAX)
}

/// Reads a string argument; `None` if it is not the caller's memory.
fn text(access: &UserAccess, ptr: u64, len: u64) -> Option<Result<&str, String>> {
    let bytes = access.bytes(ptr, len)?;
    Some(core::str::from_utf8(bytes).map_err(|_| String::from("a name that is not UTF-8")))
}

/// Whether two user ranges overlap (a call may not receive into its own message).
fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 > 0 && b.1 > 0 && a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

fn exit(_: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let words = access
        .bytes(a[0], (ExitReport::WORDS * 8) as u64)
        .map(|bytes| {
            let mut words = [0u64; ExitReport::WORDS];
            for (word, chunk) in words.iter_mut().zip(bytes.as_chunks::<8>().0) {
                *word = u64::from_le_bytes(*chunk);
            }
            words
        });
    let Some(words) = words else {
        return violation(String::from("exit with an unreadable report"));
    };
    let report = ExitReport::from_words(&words);
    let message = access
        .bytes(report.message, report.message_len.min(4096))
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let ending = match report.kind {
        exit_kind::RAN => match Exit::from_report(report.value, report.detail, &message) {
            Some(exit) => Ending::Ran(exit),
            None => return violation(format!("exit with a malformed report {report:?}")),
        },
        exit_kind::LOAD_FAILED => Ending::LoadFailed(message.into_owned()),
        other => return violation(format!("exit with unknown kind {other}")),
    };
    Outcome::End(ending, Some(report))
}

fn console_write(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(bytes) = access.bytes(a[0], a[1]) else {
        return bad_address();
    };
    k.console_write(bytes);
    ok(a[1])
}

fn yield_now(k: &mut SipKernel, _: &UserAccess, _: [u64; 6]) -> Outcome {
    k.yield_now();
    ok(0)
}

fn ticks(k: &mut SipKernel, _: &UserAccess, _: [u64; 6]) -> Outcome {
    ok(k.ticks())
}

fn cycles(k: &mut SipKernel, _: &UserAccess, _: [u64; 6]) -> Outcome {
    ok(k.cycles())
}

fn abi_version(k: &mut SipKernel, _: &UserAccess, _: [u64; 6]) -> Outcome {
    ok(k.abi_version() as u64)
}

fn chan_create(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let contract = match text(access, a[0], a[1]) {
        None => return bad_address(),
        Some(Err(why)) => return violation(why),
        Some(Ok(contract)) => contract,
    };
    match k.chan_create(contract) {
        Err(report) => violation(report),
        Ok(Err(code)) => ok(code as i64 as u64),
        Ok(Ok((exporter, importer))) => {
            Outcome::Return(0, u64::from(exporter) | u64::from(importer) << 32)
        }
    }
}

fn chan_send(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(message) = access.bytes(a[1], a[2]) else {
        return bad_address();
    };
    status(k.chan_send(handle(a[0]), message))
}

fn chan_recv(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(out) = access.bytes_mut(a[1], a[2]) else {
        return bad_address();
    };
    status(k.chan_recv(handle(a[0]), out, timeout(a[3])))
}

fn chan_call(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    if overlap((a[1], a[2]), (a[3], a[4])) {
        return bad_address();
    }
    let (Some(message), Some(out)) = (access.bytes(a[1], a[2]), access.bytes_mut(a[3], a[4]))
    else {
        return bad_address();
    };
    status(k.chan_call(handle(a[0]), message, out, timeout(a[5])))
}

fn chan_select(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    // The ring-3 runtime is not trusted to have bounded the list: the kernel does, and
    // copies it onto its stack (no allocation sized by the caller).
    let count = a[1];
    if count > abi::MAX_SELECT as u64 {
        return violation(format!(
            "chan_select over {count} endpoints (1 to {})",
            abi::MAX_SELECT
        ));
    }
    let Some(bytes) = access.bytes(a[0], count * 4) else {
        return bad_address();
    };
    let mut eps = [0u32; abi::MAX_SELECT];
    for (ep, chunk) in eps.iter_mut().zip(bytes.as_chunks::<4>().0) {
        *ep = u32::from_le_bytes(*chunk);
    }
    status(k.chan_select(&eps[..count as usize], timeout(a[2])))
}

fn chan_close(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.chan_close(handle(a[0])))
}

fn chan_initial(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let (Some(name), Some(contract)) = (text(access, a[0], a[1]), text(access, a[2], a[3])) else {
        return bad_address();
    };
    match (name, contract) {
        (Ok(name), Ok(contract)) if a[4] & !(1 | abi::INITIAL_WAIT as u64) == 0 => {
            status(k.chan_initial(
                name,
                contract,
                a[4] & 1 != 0,
                a[4] & abi::INITIAL_WAIT as u64 != 0,
            ))
        }
        (Ok(_), Ok(_)) => violation(format!(
            "chan_initial: role {} (0 exporter, 1 importer, plus 2 to wait)",
            a[4]
        )),
        (Err(why), _) | (_, Err(why)) => violation(why),
    }
}

fn chan_check(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    match text(access, a[1], a[2]) {
        None => bad_address(),
        Some(Err(why)) => violation(why),
        Some(Ok(contract)) => status(k.chan_check(handle(a[0]), contract, a[3] != 0)),
    }
}

fn buf_alloc(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.buf_alloc(u32::try_from(a[0]).unwrap_or(u32::MAX)))
}

fn buf_write(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(data) = access.bytes(a[2], a[3]) else {
        return bad_address();
    };
    status(k.buf_write(handle(a[0]), handle(a[1]), data))
}

fn buf_read(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(out) = access.bytes_mut(a[2], a[3]) else {
        return bad_address();
    };
    status(k.buf_read(handle(a[0]), handle(a[1]), out))
}

fn buf_free(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.buf_free(handle(a[0])))
}

fn buf_size(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.buf_size(handle(a[0])))
}

/// A value result (a register, an address): negative never happens, misuse ends the caller.
fn value(result: Result<i64, String>) -> Outcome {
    match result {
        Ok(value) => ok(value as u64),
        Err(report) => violation(report),
    }
}

fn dev_read(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    value(k.dev_read(handle(a[0]), handle(a[1]), handle(a[2])))
}

fn dev_write(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.dev_write(handle(a[0]), handle(a[1]), handle(a[2]), a[3] as u32))
}

fn dev_wait(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.dev_wait(handle(a[0]), timeout(a[1])))
}

fn buf_dma(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    value(k.buf_dma(handle(a[0])))
}

fn sip_start(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    match text(access, a[0], a[1]) {
        None => bad_address(),
        Some(Err(why)) => violation(why),
        // Refused before the range is looked at (in ring 3 that faults its pages in).
        Some(Ok(_)) if a[3] > bootpkg::MAX_ARGS_BYTES as u64 => violation(format!(
            "sip_start: {} bytes of arguments; at most {} are allowed",
            a[3],
            bootpkg::MAX_ARGS_BYTES
        )),
        Some(Ok(name)) => match access.bytes(a[2], a[3]) {
            None => bad_address(),
            Some(args) => status(k.sip_start(name, args)),
        },
    }
}

fn console_read(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    // No more than one read can move: only that much of the buffer is looked at.
    let Some(out) = access.bytes_mut(a[0], a[1].min(crate::console::MAX_READ as u64)) else {
        return bad_address();
    };
    status(k.console_read(out, timeout(a[2])))
}

fn report(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(out) = access.bytes_mut(a[1], a[2]) else {
        return bad_address();
    };
    status(k.report(handle(a[0]), out))
}

fn bench(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    match text(access, a[0], a[1]) {
        None => bad_address(),
        Some(Err(why)) => violation(why),
        Some(Ok(suite)) => status(k.bench(suite)),
    }
}

fn shutdown(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    match k.shutdown(a[0] as u32 as i32) {
        // The caller is ended with every other SIP, on its way back to ring 3.
        Ok(()) => ok(0),
        Err(report) => violation(report),
    }
}

fn sip_kill(k: &mut SipKernel, _: &UserAccess, a: [u64; 6]) -> Outcome {
    status(k.sip_kill(handle(a[0])))
}

fn args(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(out) = access.bytes_mut(a[0], a[1]) else {
        return bad_address();
    };
    status(k.args(out))
}

fn sip_info(k: &mut SipKernel, access: &UserAccess, a: [u64; 6]) -> Outcome {
    let Some(out) = access.bytes_mut(a[1], a[2]) else {
        return bad_address();
    };
    status(k.sip_info(handle(a[0]), out))
}
