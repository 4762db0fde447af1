//! SIP `virtio-blk`: the disk driver. It drives a legacy (transitional) virtio-blk PCI
//! device through the registers, interrupt and DMA addresses the kernel granted it
//! (manifest `resources`), and serves the `BlockDevice` contract on its endpoint
//! `clients`: 512-byte sectors, read and written by DMA straight into the exchange-heap
//! buffer the client sends, which travels back with the reply (no copy by the driver).
//!
//! One request is in flight at a time (the contract allows one per channel); completion is
//! signalled by the device's interrupt, with a poll of the used ring as the fallback.
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
    let clients = match block_device::Exp::initial("clients") {
        Ok(ep) => ep,
        Err(e) => {
            println!("virtio-blk: no `clients` endpoint: {e:?}");
            return 1;
        }
    };
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
        Err(_) => {
            println!("virtio-blk: the client went away before asking for the disk's size");
            return 0;
        }
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
            Ok(ExpReadyIn::Close(_, _)) => {
                println!("virtio-blk: {}", disk.stats());
                return 0;
            }
            Err(RecvError::Failed(Error::PeerClosed)) => {
                println!("virtio-blk: {}; the client went away", disk.stats());
                return 0;
            }
            Err(e) => {
                println!("virtio-blk: channel failed: {e:?}");
                return 1;
            }
        };
    }
}
