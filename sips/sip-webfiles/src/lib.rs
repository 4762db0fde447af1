//! SIP `webfiles`: the WebFiles client. It reads the run's description and the file set's
//! checksums from `/webfiles.conf` on the volume, then makes the run's reads: each picks a
//! file by SPECweb99's class mix and Zipf-distributed directory and file, opens it, reads
//! it in 16 KiB blocks through one exchange-heap buffer that travels to the file system and
//! back, and closes it. The first `warmup` reads are not measured. Every file read is
//! checked against its CRC-32 after the file is closed (outside the measured time), and
//! any mismatch fails the run.
//!
//! If the file system ends mid-file and the kernel's supervisor restarts it, the client
//! reconnects (`Imp::initial`, which waits while the kernel restarts it), replays the file's session on the new incarnation (a
//! fresh `Open`, reads from the start into a fresh buffer: the one in flight went down
//! with the old file system) and carries on; the file is still checked byte for byte.
//!
//! Several clients may share one file system (each its own instance of this SIP, on its
//! own channel): the first argument, if given, is this client's number K (1 when absent),
//! and client K draws its requests from the workload's request seed + K - 1, so clients
//! do not read the same files in lock step.
//!
//! Output (parsed by `cordon bench`):
//! `webfiles: result reads=R bytes=B io_cycles=C verify_cycles=V total_cycles=T verified=R
//! client=K all_reads=N began=S ended=E began_tick=A ended_tick=B`: N reads in all (warm-up
//! included) between the time stamp counter's S and E, the kernel's 100 Hz clock's A and B
//! (from the first warm-up read to the last measured one: several clients' throughput is
//! read from the window of them all, and one client's warm-up may overlap another's
//! measured reads, so every read in the window counts)
//! and `webfiles: recovery: retried=N reconnects=M resent=K` (files read again by the
//! client; idempotent requests, `Open`, the bindings sent again by themselves).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use cordon_sip::channel::{Buffer, Error, RecvError};
use cordon_sip::{cycles, println};
use webfiles::{FileId, READ_BLOCK, Requests, Workload};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use file_system::{CloseFile, Imp, ImpOpenReplyIn, ImpReadReplyIn, ImpReady1In, Open, Read, state};

type Fs = Imp<state::Ready>;

/// Attempts at one file before giving up (each after a restart of the file system).
const MAX_ATTEMPTS: u32 = 8;

/// Why a file could not be read: the file system went away (retry on a new incarnation),
/// or anything else (the run fails).
enum ReadError {
    Gone(String),
    Failed(String),
}

impl From<String> for ReadError {
    fn from(why: String) -> Self {
        ReadError::Failed(why)
    }
}

impl From<&str> for ReadError {
    fn from(why: &str) -> Self {
        ReadError::Failed(why.into())
    }
}

/// The channel to the file system, reconnected when its server is restarted.
struct Client {
    fs: Option<Fs>,
    buffer: Option<Buffer>,
    /// File reads started again after the file system went away, and reconnections.
    retried: u64,
    reconnects: u64,
}

impl Client {
    /// Reads `path` whole into `data`, starting over on a restarted file system.
    fn read(&mut self, path: &str, data: &mut Vec<u8>) -> Result<u64, String> {
        for _ in 0..MAX_ATTEMPTS {
            let fs = self
                .fs
                .take()
                .ok_or("the file system channel failed earlier")?;
            if self.buffer.is_none() {
                // The one in flight went down with the previous file system.
                self.buffer = Some(
                    Buffer::new(READ_BLOCK as usize)
                        .map_err(|e| format!("no exchange heap: {e:?}"))?,
                );
            }
            match read_file(fs, path, &mut self.buffer, data) {
                Ok((fs, size)) => {
                    self.fs = Some(fs);
                    return Ok(size);
                }
                Err(ReadError::Gone(why)) => {
                    let fs = Imp::initial("fs")
                        .map_err(|e| format!("{why}, and did not come back ({e:?})"))?;
                    println!(
                        "webfiles: {why}; reconnected to its next incarnation to read it again"
                    );
                    self.fs = Some(fs);
                    self.retried += 1;
                    self.reconnects += 1;
                }
                Err(ReadError::Failed(why)) => return Err(why),
            }
        }
        Err(format!(
            "{path}: the file system went away {MAX_ATTEMPTS} times"
        ))
    }
}

fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(why) => {
            println!("webfiles: FAILED: {why}");
            1
        }
    }
}

/// Counts of one phase.
#[derive(Default)]
struct Tally {
    reads: u64,
    bytes: u64,
    io_cycles: u64,
    verify_cycles: u64,
    by_class: [u64; 4],
}

/// This client's number: the first argument, 1 without one.
fn client_number() -> Result<u64, String> {
    match cordon_sip::args().first() {
        None => Ok(1),
        Some(arg) => arg
            .parse::<u64>()
            .ok()
            .filter(|&k| (1..=1024).contains(&k))
            .ok_or_else(|| format!("argument `{arg}`: the client's number, from 1 to 1024")),
    }
}

fn run() -> Result<(), String> {
    let number = client_number()?;
    let fs: Fs = Imp::initial("fs").map_err(|e| format!("no `fs` endpoint: {e:?}"))?;
    let buffer =
        Some(Buffer::new(READ_BLOCK as usize).map_err(|e| format!("no exchange heap: {e:?}"))?);
    let mut client = Client {
        fs: Some(fs),
        buffer,
        retried: 0,
        reconnects: 0,
    };
    let mut data = Vec::new();
    client.read(Workload::PATH, &mut data)?;
    let text =
        core::str::from_utf8(&data).map_err(|_| format!("{} is not text", Workload::PATH))?;
    let workload = Workload::parse(text)?;
    println!(
        "webfiles: {} directories ({} files, {} bytes), {} warm-up + {} measured reads, request seed {}",
        workload.set.dirs,
        workload.checksums.len(),
        workload.set.total_bytes(),
        workload.warmup,
        workload.reads,
        workload.request_seed
    );
    let mut requests = Requests::new(
        &workload.set,
        workload.request_seed.wrapping_add(number - 1),
    );
    let run_began_tick = cordon_sip::ticks();
    let run_began = cycles();
    phase(
        &mut client,
        &workload,
        &mut requests,
        workload.warmup,
        &mut data,
    )?;
    let started = cycles();
    let tally = phase(
        &mut client,
        &workload,
        &mut requests,
        workload.reads,
        &mut data,
    )?;
    let ended = cycles();
    let ended_tick = cordon_sip::ticks();
    let total = ended - started;
    drop(client.fs.take());
    println!(
        "webfiles: classes read {:?}; {} cycles per read in I/O",
        tally.by_class,
        tally.io_cycles / tally.reads.max(1)
    );
    println!(
        "webfiles: result reads={} bytes={} io_cycles={} verify_cycles={} total_cycles={} verified={} client={number} all_reads={} began={run_began} ended={ended} began_tick={run_began_tick} ended_tick={ended_tick}",
        tally.reads,
        tally.bytes,
        tally.io_cycles,
        tally.verify_cycles,
        total,
        tally.reads,
        u64::from(workload.warmup) + tally.reads
    );
    println!(
        "webfiles: recovery: retried={} reconnects={} resent={}",
        client.retried,
        client.reconnects,
        cordon_sip::channel::retried()
    );
    Ok(())
}

/// Makes `count` reads of the request stream; fails on the first wrong byte.
fn phase(
    client: &mut Client,
    workload: &Workload,
    requests: &mut Requests,
    count: u32,
    data: &mut Vec<u8>,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for _ in 0..count {
        let file: FileId = requests.next_file();
        let path = file.path();
        let start = cycles();
        let size = client.read(&path, data)?;
        let read = cycles();
        let crc = crc32fast::hash(data);
        tally.verify_cycles += cycles() - read;
        tally.io_cycles += read - start;
        let want = workload.checksum(file).ok_or("file outside the set")?;
        if size != file.size() || data.len() as u64 != size || crc != want {
            return Err(format!(
                "{path}: read {} bytes (file size {size}, set says {}) with CRC-32 {crc:08x}, expected {want:08x}",
                data.len(),
                file.size()
            ));
        }
        tally.reads += 1;
        tally.bytes += size;
        tally.by_class[file.class as usize] += 1;
    }
    Ok(tally)
}

/// Opens `path`, reads all of it into `data` 16 KiB at a time, closes it.
fn read_file(
    fs: Fs,
    path: &str,
    buffer: &mut Option<Buffer>,
    data: &mut Vec<u8>,
) -> Result<(Fs, u64), ReadError> {
    let open = Open {
        path: path
            .try_into()
            .map_err(|_| format!("{path}: longer than the contract's bytes[256]"))?,
    };
    let (mut fs, opened) = match fs.call_open(open, None) {
        Ok(ImpOpenReplyIn::Opened(fs, opened)) => (fs, opened),
        Ok(ImpOpenReplyIn::NotFound(_, _)) => return Err(format!("{path}: not found").into()),
        Ok(ImpOpenReplyIn::Failed(_, refused)) => {
            return Err(format!("opening {path}: {}", text(&refused.why)).into());
        }
        Err(e) => return Err(failed("opening", path, e)),
    };
    data.clear();
    let mut block = buffer.take().ok_or("the read buffer was lost")?;
    let mut offset = 0u64;
    while offset < opened.size {
        let read = Read {
            file: opened.file,
            offset,
            into: block,
        };
        let (next, done) = match fs.call_read(read, None) {
            Ok(ImpReadReplyIn::ReadDone(fs, done)) => (fs, done),
            Ok(ImpReadReplyIn::ReadFailed(_, refused)) => {
                *buffer = Some(refused.into);
                return Err(format!("reading {path}: {}", text(&refused.why)).into());
            }
            Err(e) => return Err(failed("reading", path, e)),
        };
        fs = next;
        block = done.into;
        if done.bytes == 0 {
            break;
        }
        let start = data.len();
        data.resize(start + done.bytes as usize, 0);
        block
            .read(0, &mut data[start..])
            .map_err(|e| format!("{path}: buffer: {e:?}"))?;
        offset += u64::from(done.bytes);
    }
    *buffer = Some(block);
    let fs = match fs.call_close_file(CloseFile { file: opened.file }, None) {
        Ok(ImpReady1In::FileClosed(fs, _)) => fs,
        Err(e) => return Err(failed("closing", path, e)),
    };
    Ok((fs, opened.size))
}

/// A `why` field as text.
fn text(why: &[u8]) -> &str {
    core::str::from_utf8(why).unwrap_or("(not UTF-8)")
}

fn failed<S>(what: &str, path: &str, e: RecvError<S>) -> ReadError {
    match e {
        RecvError::Failed(Error::PeerClosed) => {
            ReadError::Gone(format!("{what} {path}: the file system went away"))
        }
        // The typed error for a request that is not `idempotent` (Read, CloseFile): the
        // bindings did not send it again; the client replays the file's session.
        RecvError::Failed(Error::PeerRestarted) => ReadError::Gone(format!(
            "{what} {path}: the file system was restarted before answering (PeerRestarted)"
        )),
        RecvError::Failed(e) => ReadError::Failed(format!("{what} {path}: {e:?}")),
        RecvError::Timeout(_) => ReadError::Failed(format!("{what} {path}: timed out")),
    }
}
