//! SIP `fs`: a read-only file system. It mounts the ext4 volume its driver serves on
//! `disk` (the `BlockDevice` contract) with `ext4-view`, and serves the `FileSystem`
//! contract on `clients`: open, read into the client's exchange-heap buffer, stat, list,
//! close. A volume that does not mount (not ext4, corrupt) ends this SIP with a message and
//! status 2, and its client sees the channel closed; nothing else is affected. Damage found
//! later (a corrupt inode, a failed disk read) fails only the request that met it: the
//! client gets `Failed`/`ReadFailed` with ext4-view's reason, and the console says it too.
//!
//! Recovery: a driver restarted by the kernel's supervisor is reconnected to and the read
//! that was in flight is sent again (`disk`); a client that went away while its own restart
//! is pending is waited for and served again from a fresh session (`Imp::initial` on
//! `clients`, which waits while the kernel restarts it); a client that is gone for good ends this SIP with status 0 as before.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod disk;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use cordon_sip::channel::{Error, RecvError};
use cordon_sip::println;
use ext4_view::{Ext4, Ext4Error, File};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use file_system::{
    EndOfList, Entry, ExpReadyIn, Failed, FileClosed, NotFound, Opened, ReadDone, ReadFailed,
    StatReply,
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
    let mut clients = match file_system::Exp::initial("clients") {
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
    loop {
        let mut next = clients.recv(None).map_err(RecvError::without_timeout);
        loop {
            next = match next {
                Ok(request) => {
                    server.served += 1;
                    server.serve(request)
                }
                Err(RecvError::Failed(Error::PeerClosed | Error::PeerRestarted)) => break,
                Err(e) => {
                    println!("fs: channel failed: {e:?}");
                    return 1;
                }
            };
        }
        // A new session: the previous client's files are closed.
        server.open.clear();
        clients = match file_system::Exp::initial("clients") {
            Ok(ep) => {
                println!(
                    "fs: the client went away and was restarted; serving its next incarnation"
                );
                ep
            }
            Err(Error::NotFound) => {
                println!(
                    "fs: served {} requests; the client went away",
                    server.served
                );
                println!(
                    "fs: recovery: retried={} reconnects={}",
                    disk::RETRIED.load(core::sync::atomic::Ordering::Relaxed),
                    disk::RECONNECTS.load(core::sync::atomic::Ordering::Relaxed)
                );
                return 0;
            }
            Err(e) => {
                println!("fs: the client went away and did not come back: {e:?}");
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

/// Why a request got no data: no such file, or a reason in words (the `Failed` messages).
enum Refusal {
    NotFound,
    Failed(String),
}

impl Refusal {
    /// Classifies an `ext4-view` error about `path` (the reason leaves the path to the
    /// client, who sent it); errors that say the volume itself is damaged or unreadable
    /// are also logged, since they concern more than this request.
    fn of(path: &str, e: Ext4Error) -> Self {
        match e {
            Ext4Error::NotFound => Self::NotFound,
            Ext4Error::Corrupt(_) | Ext4Error::Io(_) | Ext4Error::Incompatible(_) => {
                println!("fs: {path}: {e}");
                Self::Failed(format!("{e}"))
            }
            e => Self::Failed(format!("{e}")),
        }
    }
}

/// A reason as a `why` field: at most the contract's 160 bytes, cut at a character.
fn why(text: String) -> file_system::Bytes<160> {
    let mut end = text.len().min(160);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    file_system::Bytes::truncating(&text.as_bytes()[..end])
}

impl Server {
    /// Answers one request and waits for the next (reply-and-wait: one kernel entry).
    fn serve(&mut self, request: ExpReadyIn) -> Next {
        match request {
            ExpReadyIn::Open(ep, open) => match self.open_file(&open.path) {
                Ok((file, size)) => ep.reply_opened(Opened { file, size }, None),
                Err(Refusal::NotFound) => ep.reply_not_found(NotFound {}, None),
                Err(Refusal::Failed(reason)) => ep.reply_failed(Failed { why: why(reason) }, None),
            }
            .map_err(RecvError::without_timeout),
            ExpReadyIn::Read(ep, read) => {
                let mut into = read.into;
                let done = self
                    .read_file(read.file, read.offset, into.len())
                    .and_then(|bytes| match into.write(0, &self.scratch[..bytes]) {
                        Ok(()) => Ok(bytes as u32),
                        Err(e) => Err(format!("writing the client's buffer: {e:?}")),
                    });
                match done {
                    Ok(bytes) => ep.reply_read_done(ReadDone { into, bytes }, None),
                    Err(reason) => ep.reply_read_failed(
                        ReadFailed {
                            into,
                            why: why(reason),
                        },
                        None,
                    ),
                }
                .map_err(RecvError::without_timeout)
            }
            ExpReadyIn::Stat(ep, stat) => match self.stat(&stat.path) {
                Ok(reply) => ep.reply_stat_reply(reply, None),
                Err(reason) => ep.reply_failed(Failed { why: why(reason) }, None),
            }
            .map_err(RecvError::without_timeout),
            ExpReadyIn::List(ep, list) => match self.entry(&list.path, list.cursor) {
                Ok(Some(entry)) => ep.reply_entry(entry, None),
                Ok(None) => ep.reply_end_of_list(EndOfList {}, None),
                Err(reason) => ep.reply_failed(Failed { why: why(reason) }, None),
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

    fn open_file(&mut self, raw: &[u8]) -> Result<(u32, u64), Refusal> {
        let path = path(raw).map_err(Refusal::Failed)?;
        let file = self.fs.open(path).map_err(|e| Refusal::of(path, e))?;
        let size = file.metadata().len();
        let slot = match self.open.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.open.len() < MAX_OPEN => {
                self.open.push(None);
                self.open.len() - 1
            }
            None => {
                return Err(Refusal::Failed(format!(
                    "{MAX_OPEN} files are open already"
                )));
            }
        };
        self.open[slot] = Some(file);
        Ok((slot as u32 + 1, size))
    }

    /// Reads up to `max` bytes of open file `id` at `offset` into `scratch` (0 at the end
    /// of the file).
    fn read_file(&mut self, id: u32, offset: u64, max: usize) -> Result<usize, String> {
        let Some(Some(file)) = self.open.get_mut((id as usize).wrapping_sub(1)) else {
            return Err(format!("no open file has id {id}"));
        };
        if file.position() != offset {
            file.seek_to(offset)
                .map_err(|e| format!("file {id}: seeking to {offset}: {e}"))?;
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
                    let at = offset + done as u64;
                    println!("fs: reading file {id} at {at}: {e}");
                    return Err(format!("file {id} at byte {at}: {e}"));
                }
            }
        }
        Ok(done)
    }

    fn stat(&self, raw: &[u8]) -> Result<StatReply, String> {
        let path = path(raw)?;
        match self.fs.metadata(path).map_err(|e| Refusal::of(path, e)) {
            Ok(meta) => Ok(StatReply {
                found: true,
                size: meta.len(),
                is_dir: meta.is_dir(),
            }),
            Err(Refusal::NotFound) => Ok(StatReply {
                found: false,
                size: 0,
                is_dir: false,
            }),
            Err(Refusal::Failed(reason)) => Err(reason),
        }
    }

    /// Entry number `cursor` of a directory (`.` and `..` not counted); `None` past the
    /// last.
    fn entry(&self, raw: &[u8], cursor: u32) -> Result<Option<Entry>, String> {
        let path = path(raw)?;
        let failed = |e: Ext4Error| match Refusal::of(path, e) {
            Refusal::NotFound => String::from("no such directory"),
            Refusal::Failed(reason) => reason,
        };
        let mut listed = 0;
        for entry in self.fs.read_dir(path).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let name = entry.file_name();
            if name.as_ref() == b"." || name.as_ref() == b".." {
                continue;
            }
            if listed < cursor {
                listed += 1;
                continue;
            }
            let meta = entry.metadata().map_err(failed)?;
            return Ok(Some(Entry {
                name: name
                    .as_ref()
                    .try_into()
                    .map_err(|_| String::from("a file name longer than 255 bytes"))?,
                is_dir: meta.is_dir(),
                size: meta.len(),
                next: cursor + 1,
            }));
        }
        Ok(None)
    }
}

/// A request's path as text (ext4-view checks the rest: absolute, no NUL, length).
fn path(raw: &[u8]) -> Result<&str, String> {
    core::str::from_utf8(raw).map_err(|_| String::from("the path is not UTF-8"))
}
