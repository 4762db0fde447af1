//! The volume as ext4-view sees it: byte ranges read through the `BlockDevice` channel,
//! by DMA into one exchange-heap buffer that goes to the driver and comes back.
//!
//! If the driver ends mid-read and the kernel's supervisor restarts it, the read is
//! retried on the new incarnation: reconnect (`Imp::initial`, which waits while the kernel restarts it), replay the contract's
//! session (`GetInfo`, which must report the same disk), and send the read again with a
//! fresh buffer (the one in flight went down with the old driver). Reads are idempotent
//! on a read-only volume, so a retry cannot change what the file system sees.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use cordon_sip::channel::{Buffer, Error, RecvError};
use cordon_sip::println;
use ext4_view::Ext4Read;

use crate::block_device::{self, ImpReady1In, Read, state};

/// A failed disk read, for ext4-view's error chain.
#[derive(Debug)]
pub struct DiskError(pub String);

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for DiskError {}

/// Attempts at one read before giving up (each after a restart of the driver).
const MAX_ATTEMPTS: u32 = 8;

pub struct Disk {
    /// The channel to the driver, in its `Ready` state between requests.
    ep: Option<block_device::Imp<state::Ready>>,
    buffer: Option<Buffer>,
    block_size: u64,
    blocks: u64,
    pub reads: u64,
    pub bytes: u64,
}

/// Reads sent again after the driver went away, and reconnections to it (counted here:
/// the `Disk` itself belongs to ext4-view once mounted).
pub static RETRIED: AtomicU64 = AtomicU64::new(0);
pub static RECONNECTS: AtomicU64 = AtomicU64::new(0);

/// Asks the driver behind a fresh `BlockDevice` channel for its geometry: (channel ready
/// for reads, block size, blocks). `Err(None)` if the driver went away meanwhile.
fn get_info(
    ep: block_device::Imp<state::Start>,
) -> Result<(block_device::Imp<state::Ready>, u64, u64), Option<String>> {
    let gone = |e: Error| match e {
        Error::PeerClosed | Error::PeerRestarted => None,
        e => Some(format!("the driver did not answer GetInfo: {e:?}")),
    };
    let ep = ep.send_get_info(block_device::GetInfo {}).map_err(gone)?;
    let (ep, info) = match ep.recv(None) {
        Ok(block_device::ImpStart1In::Info(ep, info)) => (ep, info),
        Err(RecvError::Failed(e)) => return Err(gone(e)),
        Err(RecvError::Timeout(_)) => return Err(gone(Error::Timeout)),
    };
    if info.block_size == 0 || !info.block_size.is_power_of_two() {
        return Err(Some(format!(
            "the driver reports blocks of {} bytes",
            info.block_size
        )));
    }
    Ok((ep, info.block_size.into(), info.blocks))
}

impl Disk {
    /// Connects to the driver on the initial endpoint `disk` and asks for its geometry.
    pub fn open() -> Result<Disk, String> {
        let ep = block_device::Imp::initial("disk").map_err(|e| format!("no `disk`: {e:?}"))?;
        let (ep, block_size, blocks) = get_info(ep).map_err(|e| {
            e.unwrap_or_else(|| "the driver did not answer GetInfo: it went away".into())
        })?;
        Ok(Disk {
            ep: Some(ep),
            buffer: None,
            block_size,
            blocks,
            reads: 0,
            bytes: 0,
        })
    }

    /// A channel to the driver's next incarnation, its session replayed (`GetInfo`, the
    /// same geometry). Waits while the kernel restarts the driver.
    fn reconnect(&mut self) -> Result<(), String> {
        for _ in 0..MAX_ATTEMPTS {
            let ep = block_device::Imp::initial("disk")
                .map_err(|e| format!("the driver went away and did not come back: {e:?}"))?;
            RECONNECTS.fetch_add(1, Ordering::Relaxed);
            match get_info(ep) {
                Ok((ep, block_size, blocks))
                    if (block_size, blocks) == (self.block_size, self.blocks) =>
                {
                    self.ep = Some(ep);
                    return Ok(());
                }
                Ok((_, block_size, blocks)) => {
                    return Err(format!(
                        "the restarted driver reports another disk ({blocks} blocks of {block_size} bytes)"
                    ));
                }
                Err(Some(why)) => return Err(why),
                // Gone again before answering: wait for the next incarnation.
                Err(None) => {}
            }
        }
        Err(format!(
            "the driver went away {MAX_ATTEMPTS} times while reconnecting"
        ))
    }

    pub fn size(&self) -> u64 {
        self.blocks * self.block_size
    }

    fn read_at(&mut self, start: u64, dst: &mut [u8]) -> Result<(), String> {
        let end = start
            .checked_add(dst.len() as u64)
            .filter(|&end| end <= self.size())
            .ok_or_else(|| {
                format!(
                    "read of {} bytes at {start} is past the disk's end",
                    dst.len()
                )
            })?;
        let first = start / self.block_size;
        let count = end.div_ceil(self.block_size) - first;
        let need = (count * self.block_size) as usize;
        let count32 = u32::try_from(count).map_err(|_| "read too large")?;
        let mut attempts = 0;
        let done = loop {
            let buffer = match self.buffer.take() {
                Some(b) if b.len() >= need => b,
                _ => Buffer::new(need).map_err(|e| format!("no exchange heap: {e:?}"))?,
            };
            let ep = self.ep.take().ok_or("the disk channel failed earlier")?;
            let read = Read {
                block: first,
                count: count32,
                into: buffer,
            };
            match ep.call_read(read, None) {
                Ok(ImpReady1In::ReadDone(ep, done)) => {
                    self.ep = Some(ep);
                    break done;
                }
                // `Read` is not idempotent (it moves a buffer and needs the session): the
                // bindings give it back as `PeerRestarted`, and it is retried here.
                Err(RecvError::Failed(Error::PeerClosed | Error::PeerRestarted))
                    if attempts < MAX_ATTEMPTS =>
                {
                    attempts += 1;
                    RETRIED.fetch_add(1, Ordering::Relaxed);
                    println!(
                        "fs: the driver went away reading {count} blocks at {first}; reconnecting to read them again"
                    );
                    self.reconnect()?;
                }
                Err(e) => return Err(format!("the driver failed: {e:?}")),
            }
        };
        if done.status != 0 {
            return Err(format!(
                "the driver answered status {} reading {count} blocks at {first}",
                done.status
            ));
        }
        let skip = (start - first * self.block_size) as usize;
        done.into
            .read(skip, dst)
            .map_err(|e| format!("reading the buffer back: {e:?}"))?;
        self.buffer = Some(done.into);
        self.reads += 1;
        self.bytes += dst.len() as u64;
        Ok(())
    }
}

impl Ext4Read for Disk {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        self.read_at(start_byte, dst)
            .map_err(|e| Box::new(DiskError(e)) as Box<dyn core::error::Error + Send + Sync>)
    }
}
