//! SIP `virtio-blk`: the disk driver. It drives a legacy (transitional) virtio-blk PCI
//! device through the registers, interrupt and DMA addresses the kernel granted it
//! (manifest `resources`), and serves the `BlockDevice` contract on its endpoint
//! `clients`: 512-byte sectors, read and written by DMA straight into the exchange-heap
//! buffer the client sends, which travels back with the reply (no copy by the driver).
//!
//! One request is in flight at a time (the contract allows one per channel); completion is
//! signalled by the device's interrupt, with a poll of the used ring as the fallback.
//!
//! Restarted by the kernel's supervisor, a new incarnation starts the device afresh (the
//! kernel quiesced and reset it when the previous one ended). When its client (the file
//! system) is restarted instead, it serves the client's next incarnation from `GetInfo`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod virtio;

use cordon_sip::channel::{Error, RecvError};
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use block_device::{ExpReadyIn, ExpStartIn, Info, ReadDone, WriteDone};
use virtio::{Direction, Disk};

fn main() -> i32 {
    let mut disk = match Disk::start(cordon_sip::device::Device::resource(0)) {
        Ok(disk) => disk,
        Err(why) => {
            println!("virtio-blk: {why}");
            return 1;
        }
    };
    println!(
        "virtio-blk: {} sectors ({} MiB){}, queue of {}",
        disk.sectors(),
        disk.sectors() >> 11,
        if disk.read_only() { ", read-only" } else { "" },
        disk.queue_size()
    );
    let mut clients = match block_device::Exp::initial("clients") {
        Ok(ep) => ep,
        Err(e) => {
            println!("virtio-blk: no `clients` endpoint: {e:?}");
            return 1;
        }
    };
    loop {
        match serve(&mut disk, clients) {
            Served::Closed => {
                println!("virtio-blk: {}", disk.stats());
                return 0;
            }
            Served::Failed(e) => {
                println!("virtio-blk: channel failed: {e:?}");
                return 1;
            }
            Served::Gone => {}
        }
        // The client went away: if the kernel is restarting it, serve its next incarnation
        // (a fresh session, from GetInfo); if it is gone for good, so is this driver.
        clients = match block_device::Exp::initial("clients") {
            Ok(ep) => {
                println!(
                    "virtio-blk: the client went away and was restarted; serving its next incarnation"
                );
                ep
            }
            Err(Error::NotFound) => {
                println!("virtio-blk: {}; the client went away", disk.stats());
                return 0;
            }
            Err(e) => {
                println!("virtio-blk: the client went away and did not come back: {e:?}");
                return 1;
            }
        };
    }
}

/// How serving one client's session ended.
enum Served {
    /// It said `Close`.
    Closed,
    /// Its end closed (it ended).
    Gone,
    Failed(RecvError<()>),
}

/// Serves one session on `clients`: `GetInfo`, then reads and writes until it ends.
fn serve(disk: &mut Disk, clients: block_device::Exp<block_device::state::Start>) -> Served {
    let mut next: Result<ExpReadyIn, RecvError<()>> = match clients.recv(None) {
        Ok(ExpStartIn::GetInfo(ep, _)) => ep
            .reply_info(
                Info {
                    block_size: virtio::SECTOR as u32,
                    blocks: disk.sectors(),
                },
                None,
            )
            .map_err(RecvError::without_timeout),
        Err(RecvError::Failed(Error::PeerClosed | Error::PeerRestarted)) => return Served::Gone,
        Err(e) => return Served::Failed(e.without_timeout()),
    };
    // Each reply goes out with reply-and-wait: one kernel entry answers and takes the next.
    loop {
        next = match next {
            Ok(ExpReadyIn::Read(ep, read)) => {
                let status = disk.transfer(Direction::Read, read.block, read.count, &read.into);
                let done = ReadDone {
                    into: read.into,
                    status,
                };
                ep.reply_read_done(done, None)
                    .map_err(RecvError::without_timeout)
            }
            Ok(ExpReadyIn::Write(ep, write)) => {
                let status = disk.transfer(Direction::Write, write.block, write.count, &write.from);
                let done = WriteDone {
                    from: write.from,
                    status,
                };
                ep.reply_write_done(done, None)
                    .map_err(RecvError::without_timeout)
            }
            Ok(ExpReadyIn::Close(_, _)) => return Served::Closed,
            Err(RecvError::Failed(Error::PeerClosed | Error::PeerRestarted)) => {
                return Served::Gone;
            }
            Err(e) => return Served::Failed(e),
        };
    }
}
