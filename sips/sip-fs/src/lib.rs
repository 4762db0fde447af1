//! SIP `fs`: a read-only file system. It mounts the ext4 volume its driver serves on
//! `disk` (the `BlockDevice` contract) with `ext4-view`, and serves the `FileSystem`
//! contract on `clients`: open, read into the client's exchange-heap buffer, stat, list,
//! close. A volume that does not mount (not ext4, corrupt) ends this SIP with a message and
//! status 2, and its client sees the channel closed; nothing else is affected.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod disk;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use cordon_sip::channel::{Error, RecvError};
use cordon_sip::println;
use ext4_view::{Ext4, File};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use file_system::{
    EndOfList, Entry, ExpReadyIn, FileClosed, NotFound, Opened, ReadDone, StatReply,
};

/// Most files open at once (per client; there is one).
const MAX_OPEN: usize = 64;

fn main() -> i32 {
    let disk = match disk::Disk::open() {
        Ok(disk) => disk,
        Err(why) => {
            println!("fs: {why}");
            return 1;
        }
    };
    let size = disk.size();
    let fs = match Ext4::load(Box::new(disk)) {
        Ok(fs) => fs,
        Err(e) => {
            println!("fs: the volume ({size} bytes) does not mount as ext4: {e}");
            return 2;
        }
    };
    println!(
        "fs: mounted ext4 volume {:?} ({} MiB)",
        fs.label().to_str().unwrap_or("?"),
        size >> 20
    );
    let clients = match file_system::Exp::initial("clients") {
        Ok(ep) => ep,
        Err(e) => {
            println!("fs: no `clients` endpoint: {e:?}");
            return 1;
        }
    };
    let mut server = Server {
        fs,
        open: Vec::new(),
        scratch: Vec::new(),
        served: 0,
    };
    let mut next = clients.recv(None).map_err(RecvError::without_timeout);
    loop {
        next = match next {
            Ok(request) => {
                server.served += 1;
                server.serve(request)
            }
            Err(RecvError::Failed(Error::PeerClosed)) => {
                println!(
                    "fs: served {} requests; the client went away",
                    server.served
                );
                return 0;
            }
            Err(e) => {
                println!("fs: channel failed: {e:?}");
                return 1;
            }
        };
    }
}

type Next = Result<ExpReadyIn, RecvError<()>>;

struct Server {
    fs: Ext4,
    /// Open files; a file's id is its index + 1.
    open: Vec<Option<File>>,
    /// Where file data is read before it is copied into the client's buffer.
    scratch: Vec<u8>,
    served: u64,
}

impl Server {
    /// Answers one request and waits for the next (reply-and-wait: one kernel entry).
    fn serve(&mut self, request: ExpReadyIn) -> Next {
        match request {
            ExpReadyIn::Open(ep, open) => match self.open_file(&open.path) {
                Some((file, size)) => ep.reply_opened(Opened { file, size }, None),
                None => ep.reply_not_found(NotFound {}, None),
            }
            .map_err(RecvError::without_timeout),
            ExpReadyIn::Read(ep, read) => {
                let mut into = read.into;
                let bytes = self.read_file(read.file, read.offset, into.len());
                let bytes = match into.write(0, &self.scratch[..bytes]) {
                    Ok(()) => bytes as u32,
                    Err(_) => 0,
                };
                ep.reply_read_done(ReadDone { into, bytes }, None)
                    .map_err(RecvError::without_timeout)
            }
            ExpReadyIn::Stat(ep, stat) => {
                let reply = match path(&stat.path).and_then(|p| self.fs.metadata(p).ok()) {
                    Some(meta) => StatReply {
                        found: true,
                        size: meta.len(),
                        is_dir: meta.is_dir(),
                    },
                    None => StatReply {
                        found: false,
                        size: 0,
                        is_dir: false,
                    },
                };
                ep.reply_stat_reply(reply, None)
                    .map_err(RecvError::without_timeout)
            }
            ExpReadyIn::List(ep, list) => match self.entry(&list.path, list.cursor) {
                Some(entry) => ep.reply_entry(entry, None),
                None => ep.reply_end_of_list(EndOfList {}, None),
            }
            .map_err(RecvError::without_timeout),
            ExpReadyIn::CloseFile(ep, close) => {
                if let Some(slot) = self.open.get_mut((close.file as usize).wrapping_sub(1)) {
                    *slot = None;
                }
                ep.reply_file_closed(FileClosed {}, None)
                    .map_err(RecvError::without_timeout)
            }
        }
    }

    fn open_file(&mut self, raw: &[u8]) -> Option<(u32, u64)> {
        let file = self.fs.open(path(raw)?).ok()?;
        let size = file.metadata().len();
        let slot = match self.open.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.open.len() < MAX_OPEN => {
                self.open.push(None);
                self.open.len() - 1
            }
            None => return None,
        };
        self.open[slot] = Some(file);
        Some((slot as u32 + 1, size))
    }

    /// Reads up to `max` bytes of open file `id` at `offset` into `scratch`; 0 at the end
    /// of the file or for an unknown id or a failed read.
    fn read_file(&mut self, id: u32, offset: u64, max: usize) -> usize {
        let Some(Some(file)) = self.open.get_mut((id as usize).wrapping_sub(1)) else {
            return 0;
        };
        if file.position() != offset && file.seek_to(offset).is_err() {
            return 0;
        }
        if self.scratch.len() < max {
            self.scratch = vec![0; max];
        }
        let mut done = 0;
        while done < max {
            match file.read_bytes(&mut self.scratch[done..max]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    println!("fs: reading file {id} at {}: {e}", offset + done as u64);
                    break;
                }
            }
        }
        done
    }

    /// Entry number `cursor` of a directory (`.` and `..` not counted).
    fn entry(&self, raw: &[u8], cursor: u32) -> Option<Entry> {
        let entries = self.fs.read_dir(path(raw)?).ok()?;
        let entry = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                name.as_ref() != b"." && name.as_ref() != b".."
            })
            .nth(cursor as usize)?;
        let meta = entry.metadata().ok()?;
        Some(Entry {
            name: entry.file_name().as_ref().to_vec(),
            is_dir: meta.is_dir(),
            size: meta.len(),
            next: cursor + 1,
        })
    }
}

/// A request's path as text (ext4-view checks the rest: absolute, no NUL, length).
fn path(raw: &[u8]) -> Option<&str> {
    core::str::from_utf8(raw).ok()
}
