//! The channel manager driven by arbitrary sequences of operations from several owners:
//! creating and connecting channels, sending well-formed and garbage messages (carrying
//! endpoints and blocks, forged and foreign handles included), receiving, posting,
//! closing, allocating and freeing blocks, pinning, changing quotas, releasing owners and
//! reaping in small steps. After every step the ownership and accounting invariants
//! must hold (`Channels::check_invariants`); when every owner has been released,
//! nothing may be left.
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

fuzz_target!(|ops: Vec<Op>| {
    let protocols = contracts::compile(CONTRACTS).expect("the fuzz contracts compile");
    let mut ch = Channels::new(protocols);
    let quota = Quota {
        objects: 64,
        bytes: 1 << 20,
    };
    for o in OWNERS {
        ch.open_account(o, quota).unwrap();
    }
    let mut endpoints: Vec<u32> = Vec::new();
    let mut blocks: Vec<u32> = Vec::new();
    for op in ops.iter().take(256) {
        match op {
            Op::Create { owner: o, pass } => {
                if let Ok((e, i)) = ch.create(u16::from(*pass), owner(*o)) {
                    endpoints.extend([e, i]);
                }
            }
            Op::Connect {
                exporter,
                importer,
                pass,
            } => {
                if let Ok((e, i)) = ch.connect(u16::from(*pass), owner(*exporter), owner(*importer))
                {
                    endpoints.extend([e, i]);
                }
            }
            Op::Send {
                owner: o,
                ep,
                message,
            } => {
                let bytes = encode(message, &endpoints, &blocks);
                let _ = ch.send_direct(owner(*o), pick(&endpoints, *ep), &bytes, &mut |_, _| true);
            }
            Op::Recv {
                owner: o,
                ep,
                small,
            } => {
                let mut buf = vec![0u8; if *small { 4 } else { 64 }];
                let _ = ch.recv(owner(*o), pick(&endpoints, *ep), &mut buf);
            }
            Op::Post { owner: o, ep } => {
                let _ = ch.post(owner(*o), pick(&endpoints, *ep), 64, [0, 0]);
            }
            Op::TakeDelivered { owner: o, ep } => {
                let _ = ch.take_delivered(owner(*o), pick(&endpoints, *ep));
            }
            Op::Close { owner: o, ep } => {
                let _ = ch.close(owner(*o), pick(&endpoints, *ep));
            }
            Op::Alloc { owner: o, size } => {
                let size = usize::from(*size);
                if ch.charge_block(owner(*o), size).is_ok()
                    && let Ok(b) = ch.add_block(owner(*o), vec![0; size])
                {
                    blocks.push(b);
                }
            }
            Op::Free { owner: o, block } => {
                let _ = ch.free_block(owner(*o), pick(&blocks, *block));
            }
            Op::Pin { owner: o, block } => {
                let _ = ch.pin_block(owner(*o), pick(&blocks, *block));
            }
            Op::Quota {
                owner: o,
                objects,
                bytes,
            } => ch.set_quota(
                owner(*o),
                Quota {
                    objects: u32::from(*objects),
                    bytes: u64::from(*bytes) * 16,
                },
            ),
            Op::Release { owner: o } => while ch.release_step(owner(*o), 3) {},
            Op::Reap { budget } => {
                ch.reap(usize::from(*budget % 4) + 1);
            }
        }
        if let Err(why) = ch.check_invariants(&OWNERS) {
            panic!("after {op:?}: {why}");
        }
    }
    for o in OWNERS {
        ch.release_owner(o);
    }
    ch.check_invariants(&OWNERS)
        .expect("invariants after every owner ended");
    let left = ch.counts();
    assert_eq!(
        left.endpoints + left.blocks,
        0,
        "left after every owner ended: {left:?}"
    );
});
