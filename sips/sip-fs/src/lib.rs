//! SIP `fs`: a read-only file system. It mounts the ext4 volume its driver serves on
//! `disk` (the `BlockDevice` contract) with `ext4-view`, and serves the `FileSystem`
//! contract on `clients`: open, read into the client's exchange-heap buffer, stat, list,
//! close. A volume that does not mount (not ext4, corrupt) ends this SIP with a message and
//! status 2, and its client sees the channel closed; nothing else is affected. Damage found
//! later (a corrupt inode, a failed disk read) fails only the request that met it: the
//! client gets `Failed`/`ReadFailed` with ext4-view's reason, and the console says it too.
//!
//! Several clients: the manifest's `clients` endpoint takes up to [`MAX_CLIENTS`]
//! channels (`clients`, then `clients#2` ... as the system manifest connects them), each
//! client with its own open-file table. With one client the server answers and waits for
//! the next request in one kernel entry (reply-and-wait); with several it answers without
//! waiting and then waits on all of them at once (`select`): two more kernel entries per
//! request, and the requests are still served one at a time, in the order `select` finds
//! them (the volume and its block cache are this SIP's alone: no request runs in parallel
//! with another, whatever the number of processors).
//!
//! Recovery: a driver restarted by the kernel's supervisor is reconnected to and the read
//! that was in flight is sent again (`disk`); a client that went away while its own restart
//! is pending is waited for and served again from a fresh session (`Exp::initial` of its
//! endpoint's name, which waits while the kernel restarts it; the other clients wait
//! meanwhile, for as long as the supervisor's backoff); a client that is gone for good is
//! dropped, and once every client is gone this SIP ends with status 0. The connections
//! are taken once, at start: a client must start at boot, not on request.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod disk;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use cordon_sip::channel::{Error, RawEndpoint, RecvError, select};
use cordon_sip::println;
use ext4_view::{Ext4, Ext4Error, File};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use file_system::{
    EndOfList, Entry, Exp, ExpReadyIn, Failed, FileClosed, NotFound, Opened, ReadDone, ReadFailed,
    StatReply, state,
};

/// Most files open at once, per client.
const MAX_OPEN: usize = 64;
/// Most clients (the manifest's `connections` of `clients`).
const MAX_CLIENTS: usize = 8;

/// The server's end of a client's channel, waiting for a request.
type Ready = Exp<state::Ready>;

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
    let mut sessions = Vec::new();
    for k in 1..=MAX_CLIENTS {
        let name = match k {
            1 => String::from("clients"),
            k => format!("clients#{k}"),
        };
        match Exp::initial(&name) {
            Ok(ep) => sessions.push(Session {
                name,
                ep: Some(ep),
                open: Vec::new(),
            }),
            // Only the first must be connected.
            Err(Error::NotFound) if k > 1 => {}
            Err(e) => {
                println!("fs: no `{name}` endpoint: {e:?}");
                return 1;
            }
        }
    }
    if sessions.len() > 1 {
        println!("fs: serving {} clients", sessions.len());
    }
    let mut server = Server {
        fs,
        scratch: Vec::new(),
        served: 0,
    };
    match server.run(&mut sessions) {
        Ok(()) => {
            let gone = match sessions.len() {
                1 => String::from("the client went away"),
                n => format!("all {n} clients went away"),
            };
            println!("fs: served {} requests; {gone}", server.served);
            println!(
                "fs: recovery: retried={} reconnects={}",
                disk::RETRIED.load(core::sync::atomic::Ordering::Relaxed),
                disk::RECONNECTS.load(core::sync::atomic::Ordering::Relaxed)
            );
            0
        }
        Err(why) => {
            println!("fs: {why}");
            1
        }
    }
}

/// One client: its channel (taken while a request is being served; `None` once the client
/// is gone for good) and its open files (a file's id is its index + 1).
struct Session {
    name: String,
    ep: Option<Ready>,
    open: Vec<Option<File>>,
}

impl Session {
    /// The client went away: its files are closed, and its next incarnation (if the kernel
    /// restarts it) is served from a fresh session.
    fn reconnect(&mut self) -> Result<(), String> {
        self.open.clear();
        self.ep = match Exp::initial(&self.name) {
            Ok(ep) => {
                println!(
                    "fs: the client on `{}` went away and was restarted; serving its next incarnation",
                    self.name
                );
                Some(ep)
            }
            Err(Error::NotFound) => None,
            Err(e) => {
                return Err(format!(
                    "the client on `{}` went away and did not come back: {e:?}",
                    self.name
                ));
            }
        };
        Ok(())
    }
}

type Next = Result<ExpReadyIn, RecvError<()>>;

/// What follows an answer: the client's next request (reply-and-wait), or its endpoint
/// back, ready for the next (answered without waiting).
enum After {
    Next(Next),
    Ready(Result<Ready, Error>),
}

/// Answers with `$msg` through `$reply` (reply-and-wait) when `$wait`, else `$send`.
macro_rules! answer {
    ($wait:expr, $ep:expr, $reply:ident, $send:ident, $msg:expr) => {
        if $wait {
            After::Next($ep.$reply($msg, None).map_err(RecvError::without_timeout))
        } else {
            After::Ready($ep.$send($msg))
        }
    };
}

struct Server {
    fs: Ext4,
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

/// The `Failed` answer giving `reason`.
fn failed(reason: String) -> Failed {
    Failed { why: why(reason) }
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
    /// Serves every client until all are gone for good.
    fn run(&mut self, sessions: &mut [Session]) -> Result<(), String> {
        let mut last = 0;
        loop {
            // From the one after the client served last: `select` reports the first ready
            // endpoint of its list, so a client that always has a request waiting cannot
            // keep the others waiting.
            let live: Vec<usize> = (last + 1..sessions.len())
                .chain(0..=last.min(sessions.len() - 1))
                .filter(|&i| sessions[i].ep.is_some())
                .collect();
            let s = match live[..] {
                [] => return Ok(()),
                [only] => only,
                _ => {
                    let raws: Vec<&RawEndpoint> = live
                        .iter()
                        .filter_map(|&i| sessions[i].ep.as_ref().map(|ep| ep.raw()))
                        .collect();
                    let ready = select(&raws, None)
                        .map_err(|e| format!("waiting for the clients: {e:?}"))?;
                    live[ready]
                }
            };
            last = s;
            // Reply-and-wait only while this is the one client left.
            let wait = live.len() == 1;
            let session = &mut sessions[s];
            let ep = session.ep.take().expect("a live session has its endpoint");
            let mut next = ep.recv(None).map_err(RecvError::without_timeout);
            loop {
                let request = match next {
                    Ok(request) => request,
                    Err(RecvError::Failed(Error::PeerClosed | Error::PeerRestarted)) => {
                        session.reconnect()?;
                        break;
                    }
                    Err(e) => return Err(format!("channel `{}` failed: {e:?}", session.name)),
                };
                self.served += 1;
                next = match self.serve(&mut session.open, request, wait) {
                    After::Next(next) => next,
                    After::Ready(Ok(ep)) => {
                        session.ep = Some(ep);
                        break;
                    }
                    After::Ready(Err(e)) => Err(RecvError::Failed(e)),
                };
            }
        }
    }

    /// Answers one request of the client whose files are `open`; with `wait`, waits for
    /// its next request in the same kernel entry.
    fn serve(&mut self, open: &mut Vec<Option<File>>, request: ExpReadyIn, wait: bool) -> After {
        match request {
            ExpReadyIn::Open(ep, request) => match self.open_file(open, &request.path) {
                Ok((file, size)) => {
                    answer!(wait, ep, reply_opened, send_opened, Opened { file, size })
                }
                Err(Refusal::NotFound) => {
                    answer!(wait, ep, reply_not_found, send_not_found, NotFound {})
                }
                Err(Refusal::Failed(reason)) => {
                    answer!(wait, ep, reply_failed, send_failed, failed(reason))
                }
            },
            ExpReadyIn::Read(ep, read) => {
                let mut into = read.into;
                let done = self
                    .read_file(open, read.file, read.offset, into.len())
                    .and_then(|bytes| match into.write(0, &self.scratch[..bytes]) {
                        Ok(()) => Ok(bytes as u32),
                        Err(e) => Err(format!("writing the client's buffer: {e:?}")),
                    });
                match done {
                    Ok(bytes) => answer!(
                        wait,
                        ep,
                        reply_read_done,
                        send_read_done,
                        ReadDone { into, bytes }
                    ),
                    Err(reason) => answer!(
                        wait,
                        ep,
                        reply_read_failed,
                        send_read_failed,
                        ReadFailed {
                            into,
                            why: why(reason),
                        }
                    ),
                }
            }
            ExpReadyIn::Stat(ep, stat) => match self.stat(&stat.path).map_err(failed) {
                Ok(reply) => answer!(wait, ep, reply_stat_reply, send_stat_reply, reply),
                Err(refusal) => answer!(wait, ep, reply_failed, send_failed, refusal),
            },
            ExpReadyIn::List(ep, list) => match self.entry(&list.path, list.cursor).map_err(failed)
            {
                Ok(Some(entry)) => answer!(wait, ep, reply_entry, send_entry, entry),
                Ok(None) => answer!(wait, ep, reply_end_of_list, send_end_of_list, EndOfList {}),
                Err(refusal) => answer!(wait, ep, reply_failed, send_failed, refusal),
            },
            ExpReadyIn::CloseFile(ep, close) => {
                if let Some(slot) = open.get_mut((close.file as usize).wrapping_sub(1)) {
                    *slot = None;
                }
                answer!(wait, ep, reply_file_closed, send_file_closed, FileClosed {})
            }
        }
    }

    fn open_file(
        &mut self,
        open: &mut Vec<Option<File>>,
        raw: &[u8],
    ) -> Result<(u32, u64), Refusal> {
        let path = path(raw).map_err(Refusal::Failed)?;
        let file = self.fs.open(path).map_err(|e| Refusal::of(path, e))?;
        let size = file.metadata().len();
        let slot = match open.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if open.len() < MAX_OPEN => {
                open.push(None);
                open.len() - 1
            }
            None => {
                return Err(Refusal::Failed(format!(
                    "{MAX_OPEN} files are open already"
                )));
            }
        };
        open[slot] = Some(file);
        Ok((slot as u32 + 1, size))
    }

    /// Reads up to `max` bytes of open file `id` at `offset` into `scratch` (0 at the end
    /// of the file).
    fn read_file(
        &mut self,
        open: &mut [Option<File>],
        id: u32,
        offset: u64,
        max: usize,
    ) -> Result<usize, String> {
        let Some(Some(file)) = open.get_mut((id as usize).wrapping_sub(1)) else {
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
