//! The volume as ext4-view sees it: byte ranges read through the `BlockDevice` channel,
//! by DMA into one exchange-heap buffer that goes to the driver and comes back.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::fmt;

use cordon_sip::channel::Buffer;
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

pub struct Disk {
    /// The channel to the driver, in its `Ready` state between requests.
    ep: Option<block_device::Imp<state::Ready>>,
    buffer: Option<Buffer>,
    block_size: u64,
    blocks: u64,
    pub reads: u64,
    pub bytes: u64,
}

impl Disk {
    /// Connects to the driver on the initial endpoint `disk` and asks for its geometry.
    pub fn open() -> Result<Disk, String> {
        let ep = block_device::Imp::initial("disk").map_err(|e| format!("no `disk`: {e:?}"))?;
        let ep = ep
            .send_get_info(block_device::GetInfo {})
            .map_err(|e| format!("the driver did not answer GetInfo: {e:?}"))?;
        let (ep, info) = match ep.recv(None) {
            Ok(block_device::ImpStart1In::Info(ep, info)) => (ep, info),
            Err(e) => return Err(format!("the driver did not answer GetInfo: {e:?}")),
        };
        if info.block_size == 0 || !info.block_size.is_power_of_two() {
            return Err(format!(
                "the driver reports blocks of {} bytes",
                info.block_size
            ));
        }
        Ok(Disk {
            ep: Some(ep),
            buffer: None,
            block_size: info.block_size.into(),
            blocks: info.blocks,
            reads: 0,
            bytes: 0,
        })
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
        let buffer = match self.buffer.take() {
            Some(b) if b.len() >= need => b,
            _ => Buffer::new(need).map_err(|e| format!("no exchange heap: {e:?}"))?,
        };
        let ep = self.ep.take().ok_or("the disk channel failed earlier")?;
        let count32 = u32::try_from(count).map_err(|_| "read too large")?;
        let read = Read {
            block: first,
            count: count32,
            into: buffer,
        };
        let (ep, done) = match ep.call_read(read, None) {
            Ok(ImpReady1In::ReadDone(ep, done)) => (ep, done),
            Err(e) => return Err(format!("the driver failed: {e:?}")),
        };
        self.ep = Some(ep);
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
