//! The channel manager driven by arbitrary sequences of operations from several owners:
//! creating and connecting channels, sending well-formed and garbage messages (carrying
//! endpoints and blocks, forged and foreign handles included), receiving, posting,
//! closing, allocating and freeing blocks, pinning, changing quotas, releasing owners and
//! reaping in small steps. Two managers take each sequence: one sends and receives as
//! the kernel does (`send_shared`/`recv_shared` first, the exclusive calls for messages
//! that carry handles), one always with the manager alone; every answer must be the
//! same. After every step the ownership and accounting invariants must hold in both
//! (`Channels::check_invariants`); when every owner has been released, nothing may be
//! left.
#![no_main]

use arbitrary::Arbitrary;
use kernel_core::channel::{Channels, Quota};
use libfuzzer_sys::fuzz_target;

const OWNERS: [usize; 4] = [1, 2, 3, 4];

/// Echo (contract 0) carries blocks; Pass (contract 1) carries any endpoint.
const CONTRACTS: &str = "contract Echo {
    message Ping(seq: u32, data: bytes[8]);
    message Pong(seq: u32, data: bytes[8]);
    message PingBuf(seq: u32, block: buffer);
    message PongBuf(seq: u32, block: buffer);
    message Bye;
    initial state Ready {
        Ping? -> Pong! -> Ready;
        PingBuf? -> PongBuf! -> Ready;
        Bye? -> Done;
    }
    state Done;
}
contract Pass {
    message Give(e: endpoint);
    message Took;
    initial state S { Give? -> Took! -> S; }
}";

#[derive(Arbitrary, Debug)]
enum Message {
    Ping(u32),
    Pong(u32),
    PingBuf(u32, u8),
    PongBuf(u32, u8),
    Bye,
    Give(u8),
    Took,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Create {
        owner: u8,
        pass: bool,
    },
    Connect {
        exporter: u8,
        importer: u8,
        pass: bool,
    },
    Send {
        owner: u8,
        ep: u8,
        message: Message,
    },
    Recv {
        owner: u8,
        ep: u8,
        small: bool,
    },
    Post {
        owner: u8,
        ep: u8,
    },
    TakeDelivered {
        owner: u8,
        ep: u8,
    },
    Close {
        owner: u8,
        ep: u8,
    },
    Alloc {
        owner: u8,
        size: u16,
    },
    Free {
        owner: u8,
        block: u8,
    },
    Pin {
        owner: u8,
        block: u8,
    },
    Quota {
        owner: u8,
        objects: u8,
        bytes: u16,
    },
    Release {
        owner: u8,
    },
    Reap {
        budget: u8,
    },
}

fn owner(i: u8) -> usize {
    OWNERS[i as usize % OWNERS.len()]
}

/// A handle from those seen so far, or a forged one.
fn pick(seen: &[u32], i: u8) -> u32 {
    match seen.get(i as usize % (seen.len() + 1)) {
        Some(&h) => h,
        None => 0x0f0f_0000 | u32::from(i),
    }
}

fn encode(m: &Message, endpoints: &[u32], blocks: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut head = |id: u16| out.extend(id.to_le_bytes());
    match m {
        Message::Ping(seq) | Message::Pong(seq) => {
            head(if matches!(m, Message::Ping(_)) { 0 } else { 1 });
            out.extend(seq.to_le_bytes());
            out.extend(3u32.to_le_bytes());
            out.extend(b"abc");
        }
        Message::PingBuf(seq, b) | Message::PongBuf(seq, b) => {
            head(if matches!(m, Message::PingBuf(..)) {
                2
            } else {
                3
            });
            out.extend(seq.to_le_bytes());
            out.extend(pick(blocks, *b).to_le_bytes());
        }
        Message::Bye => head(4),
        Message::Give(e) => {
            head(0);
            out.extend(pick(endpoints, *e).to_le_bytes());
        }
        Message::Took => head(1),
        Message::Raw(bytes) => out.extend(bytes),
    }
    out
}

/// One manager of the pair and the handles it has handed out.
struct Run {
    ch: Channels,
    endpoints: Vec<u32>,
    blocks: Vec<u32>,
    /// Sends and receives as the kernel makes them: shared first, alone if the message
    /// carries handles; otherwise always with the manager alone.
    shared: bool,
}

impl Run {
    fn new(shared: bool) -> Run {
        let protocols = contracts::compile(CONTRACTS).expect("the fuzz contracts compile");
        let mut ch = Channels::new(protocols);
        let quota = Quota {
            objects: 64,
            bytes: 1 << 20,
        };
        for o in OWNERS {
            ch.open_account(o, quota).unwrap();
        }
        Run {
            ch,
            endpoints: Vec::new(),
            blocks: Vec::new(),
            shared,
        }
    }

    /// Applies `op`; returns what it answered, for comparing the two runs.
    fn step(&mut self, op: &Op) -> String {
        let Run {
            ch,
            endpoints,
            blocks,
            shared,
        } = self;
        match op {
            Op::Create { owner: o, pass } => {
                let made = ch.create(u16::from(*pass), owner(*o));
                if let Ok((e, i)) = made {
                    endpoints.extend([e, i]);
                }
                format!("{made:?}")
            }
            Op::Connect {
                exporter,
                importer,
                pass,
            } => {
                let made = ch.connect(u16::from(*pass), owner(*exporter), owner(*importer));
                if let Ok((e, i)) = made {
                    endpoints.extend([e, i]);
                }
                format!("{made:?}")
            }
            Op::Send {
                owner: o,
                ep,
                message,
            } => {
                let bytes = encode(message, endpoints, blocks);
                let (o, ep) = (owner(*o), pick(endpoints, *ep));
                let mut deliver = |_: [u64; 2], _: &[u8]| true;
                let sent = match shared.then(|| ch.send_shared(o, ep, &bytes, &mut deliver)) {
                    Some(Ok(Some(peer))) => Ok(peer),
                    Some(Err(e)) => Err(e),
                    Some(Ok(None)) | None => ch.send_direct(o, ep, &bytes, &mut deliver),
                };
                format!("{sent:?}")
            }
            Op::Recv {
                owner: o,
                ep,
                small,
            } => {
                let mut buf = vec![0u8; if *small { 4 } else { 64 }];
                let (o, ep) = (owner(*o), pick(endpoints, *ep));
                let got = match shared.then(|| ch.recv_shared(o, ep, &mut buf)) {
                    Some(Ok(Some(len))) => Ok(len),
                    Some(Err(e)) => Err(e),
                    Some(Ok(None)) | None => ch.recv(o, ep, &mut buf),
                };
                format!("{got:?} {buf:?}")
            }
            Op::Post { owner: o, ep } => {
                format!("{:?}", ch.post(owner(*o), pick(endpoints, *ep), 64, [0, 0]))
            }
            Op::TakeDelivered { owner: o, ep } => {
                format!("{:?}", ch.take_delivered(owner(*o), pick(endpoints, *ep)))
            }
            Op::Close { owner: o, ep } => {
                format!("{:?}", ch.close(owner(*o), pick(endpoints, *ep)))
            }
            Op::Alloc { owner: o, size } => {
                let size = usize::from(*size);
                if ch.charge_block(owner(*o), size).is_ok()
                    && let Ok(b) = ch.add_block(owner(*o), vec![0; size])
                {
                    blocks.push(b);
                }
                String::new()
            }
            Op::Free { owner: o, block } => {
                format!("{:?}", ch.free_block(owner(*o), pick(blocks, *block)))
            }
            Op::Pin { owner: o, block } => {
                let (o, b) = (owner(*o), pick(blocks, *block));
                // The shared read of a block's bytes agrees with the exclusive one.
                let shared_view = ch.block_data_shared(o, b, |data| data.to_vec());
                let pinned = ch.pin_block(o, b).map(|data| data.to_vec());
                assert_eq!(shared_view, pinned, "a block's bytes read shared and alone");
                format!("{pinned:?}")
            }
            Op::Quota {
                owner: o,
                objects,
                bytes,
            } => {
                ch.set_quota(
                    owner(*o),
                    Quota {
                        objects: u32::from(*objects),
                        bytes: u64::from(*bytes) * 16,
                    },
                );
                String::new()
            }
            Op::Release { owner: o } => {
                while ch.release_step(owner(*o), 3) {}
                String::new()
            }
            Op::Reap { budget } => format!("{}", ch.reap(usize::from(*budget % 4) + 1)),
        }
    }
}

// Two managers take the same operations, one sending and receiving as the kernel does
// (shared first) and one always alone: every answer must be the same.
fuzz_target!(|ops: Vec<Op>| {
    let mut alone = Run::new(false);
    let mut shared = Run::new(true);
    for op in ops.iter().take(256) {
        let (a, b) = (alone.step(op), shared.step(op));
        assert_eq!(a, b, "{op:?}: the shared path answered otherwise");
        for run in [&alone, &shared] {
            if let Err(why) = run.ch.check_invariants(&OWNERS) {
                panic!("after {op:?} (shared: {}): {why}", run.shared);
            }
        }
    }
    for run in [&mut alone, &mut shared] {
        for o in OWNERS {
            run.ch.release_owner(o);
        }
        run.ch
            .check_invariants(&OWNERS)
            .expect("invariants after every owner ended");
        let left = run.ch.counts();
        assert_eq!(
            left.endpoints + left.blocks,
            0,
            "left after every owner ended: {left:?}"
        );
    }
});
