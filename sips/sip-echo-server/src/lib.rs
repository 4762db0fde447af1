//! SIP `echo-server`: serves the Echo contract on its initial endpoint `clients`. Each
//! reply is sent with reply-and-wait (one kernel entry answers and waits for the next
//! request). Exits 0 when the client says Bye or goes away.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::{Error, RecvError};
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use echo::{ExpReadyIn, Pong, PongBuf};

fn main() -> i32 {
    let clients = match echo::Exp::initial("clients") {
        Ok(ep) => ep,
        Err(e) => {
            println!("no `clients` endpoint: {e:?}");
            return 1;
        }
    };
    let mut served = 0u64;
    let mut next = clients.recv(None);
    loop {
        next = match next {
            Ok(ExpReadyIn::Ping(ep, ping)) => {
                served += 1;
                ep.reply_pong(
                    Pong {
                        seq: ping.seq,
                        data: ping.data,
                    },
                    None,
                )
                .map_err(RecvError::without_timeout)
            }
            Ok(ExpReadyIn::PingBuf(ep, ping)) => {
                served += 1;
                ep.reply_pong_buf(
                    PongBuf {
                        seq: ping.seq,
                        block: ping.block,
                    },
                    None,
                )
                .map_err(RecvError::without_timeout)
            }
            Ok(ExpReadyIn::Bye(_, _)) => {
                println!("served {served} requests; the client said Bye");
                return 0;
            }
            Err(RecvError::Failed(Error::PeerClosed)) => {
                println!("served {served} requests; the client went away");
                return 0;
            }
            Err(RecvError::Timeout(_)) | Err(RecvError::Failed(_)) => {
                println!("receive failed after {served} requests");
                return 1;
            }
        };
    }
}
