//! SIP `echo-provider`: registers `echo` with the directory, waits (in 5-tick timeouts)
//! for the directory to hand it a client's channel end, checks it is an Echo exporter
//! end, accepts, and serves Echo on it until the client says Bye.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::RecvError;
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use directory::{ImpRegisterReplyIn, Register};
use echo::ExpReadyIn;
use service_provider::{Accepted, ExpReadyIn as Provider, Refused};

fn serve(mut ep: echo::Exp<echo::state::Ready>) -> u32 {
    let mut served = 0;
    loop {
        ep = match ep.recv(None) {
            Ok(ExpReadyIn::Ping(ep, ping)) => {
                served += 1;
                match ep.send_pong(echo::Pong {
                    seq: ping.seq,
                    data: ping.data,
                }) {
                    Ok(ep) => ep,
                    Err(_) => return served,
                }
            }
            Ok(ExpReadyIn::PingBuf(ep, ping)) => match ep.send_pong_buf(echo::PongBuf {
                seq: ping.seq,
                block: ping.block,
            }) {
                Ok(ep) => ep,
                Err(_) => return served,
            },
            Ok(ExpReadyIn::Bye(..)) | Err(_) => return served,
        }
    }
}

fn main() -> i32 {
    let Ok(dir) = directory::Imp::initial("directory") else {
        println!("no `directory` endpoint");
        return 1;
    };
    let Ok((mut requests, provider)) = service_provider::channel() else {
        println!("cannot create a channel");
        return 1;
    };
    // Nobody knows this channel yet, so a receive must time out: check that it does, and
    // that it waited as long as asked.
    let before = cordon_sip::ticks();
    requests = match requests.recv(Some(3)) {
        Err(RecvError::Timeout(requests)) => {
            println!(
                "receive timed out after {} ticks (asked for 3)",
                cordon_sip::ticks() - before
            );
            requests
        }
        _ => {
            println!("a receive on an unknown channel did not time out");
            return 1;
        }
    };
    let dir = match dir.call_register(
        Register {
            name: "echo".try_into().expect("4 bytes fit in bytes[64]"),
            provider,
        },
        None,
    ) {
        Ok(ImpRegisterReplyIn::Registered(dir, _)) => dir,
        Ok(ImpRegisterReplyIn::NameTaken(..)) => {
            println!("`echo` is taken");
            return 1;
        }
        Err(_) => return 1,
    };
    let mut timeouts = 0;
    loop {
        requests = match requests.recv(Some(5)) {
            Err(RecvError::Timeout(requests)) => {
                timeouts += 1;
                requests
            }
            Ok(Provider::Connect(reply, connect)) => {
                match echo::Exp::downcast(connect.server_end) {
                    Ok(client) => {
                        let Ok(_requests) = reply.send_accepted(Accepted {}) else {
                            return 1;
                        };
                        println!(
                            "a client connected through the directory ({timeouts} receive timeouts while waiting)"
                        );
                        let served = serve(client);
                        println!("served {served} pings; closing");
                        drop(dir);
                        return 0;
                    }
                    Err(other) => match reply.send_refused(Refused { server_end: other }) {
                        Ok(requests) => requests,
                        Err(_) => return 1,
                    },
                }
            }
            Err(RecvError::Failed(e)) => {
                println!("the directory went away: {e:?}");
                return 1;
            }
        }
    }
}
