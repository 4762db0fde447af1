//! SIP `directory`: the name service. Serves the Directory contract on its initial
//! endpoints `a` and `b` at once (select). A service registers a name with the importing
//! end of a ServiceProvider channel; a client binds to a name by sending the exporting end
//! of a fresh channel, which the directory forwards to the service (Connect). The
//! directory never looks inside what it forwards. Exits 0 when every client has gone; with
//! the argument `--wait-for-clients` it serves until ended instead, taking each new end
//! the kernel hands it under `a` or `b` (clients started later, e.g. from the shell).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use cordon_sip::channel::{self, Error, RecvError};
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use directory::{
    Bind, Bound, ExpReadyIn, NameTaken, NotFound, Register, Registered, ServiceGone, state,
};
use service_provider::{Connect, ImpConnectReplyIn};

type Client = directory::Exp<state::Ready>;
type Provider = service_provider::Imp<service_provider::state::Ready>;

struct Registry {
    services: Vec<(Vec<u8>, Provider)>,
}

impl Registry {
    fn register(
        &mut self,
        ep: directory::Exp<state::RegisterReply>,
        msg: Register,
    ) -> Result<Client, Error> {
        if self.services.iter().any(|(name, _)| *name == msg.name) {
            return ep.send_name_taken(NameTaken {
                provider: msg.provider,
            });
        }
        println!(
            "registered `{}`",
            core::str::from_utf8(&msg.name).unwrap_or("?")
        );
        self.services.push((msg.name.into_vec(), msg.provider));
        ep.send_registered(Registered {})
    }

    fn bind(&mut self, ep: directory::Exp<state::BindReply>, msg: Bind) -> Result<Client, Error> {
        let Some(at) = self.services.iter().position(|(name, _)| *name == msg.name) else {
            return ep.send_not_found(NotFound {
                server_end: msg.server_end,
            });
        };
        let (name, provider) = self.services.swap_remove(at);
        match provider.call_connect(
            Connect {
                server_end: msg.server_end,
            },
            None,
        ) {
            Ok(ImpConnectReplyIn::Accepted(provider, _)) => {
                self.services.push((name, provider));
                ep.send_bound(Bound {})
            }
            Ok(ImpConnectReplyIn::Refused(provider, refused)) => {
                self.services.push((name, provider));
                ep.send_not_found(NotFound {
                    server_end: refused.server_end,
                })
            }
            // The service is gone: forget it; the client's end went down with the attempt.
            Err(_) => {
                println!(
                    "service `{}` went away",
                    core::str::from_utf8(&name).unwrap_or("?")
                );
                ep.send_service_gone(ServiceGone {})
            }
        }
    }
}

/// How often (in ticks) a directory that waits for clients looks for new ones.
const POLL_TICKS: u64 = 10;

fn main() -> i32 {
    // `--wait-for-clients`: clients may be SIPs started later (on request, e.g. from the
    // shell), each time with a fresh channel: serve until ended, looking for new ends.
    let stay = cordon_sip::args().iter().any(|a| a == "--wait-for-clients");
    let names = ["a", "b"];
    let mut clients: Vec<Option<Client>> = Vec::new();
    for name in names {
        match directory::Exp::initial(name) {
            Ok(ep) => clients.push(Some(ep)),
            Err(Error::NotFound) if stay => clients.push(None),
            Err(e) => {
                println!("no `{name}` endpoint: {e:?}");
                return 1;
            }
        }
    }
    // Never ready: selecting on it too makes a wait for new clients a timed sleep.
    let Ok((alarm, _alarm_peer)) = directory::channel() else {
        println!("cannot create a channel");
        return 1;
    };
    let mut registry = Registry {
        services: Vec::new(),
    };
    let mut served = 0;
    while stay || clients.iter().any(Option::is_some) {
        if stay {
            for (name, client) in names.iter().zip(clients.iter_mut()) {
                if client.is_none() {
                    *client = directory::Exp::initial(name).ok();
                }
            }
        }
        let live: Vec<usize> = (0..clients.len())
            .filter(|&i| clients[i].is_some())
            .collect();
        let mut raws: Vec<&channel::RawEndpoint> = live
            .iter()
            .map(|&i| clients[i].as_ref().unwrap().raw())
            .collect();
        if stay {
            raws.push(alarm.raw());
        }
        let timeout = stay.then_some(POLL_TICKS);
        let ready = match channel::select(&raws, timeout) {
            Ok(index) if index < live.len() => live[index],
            Ok(_) | Err(Error::Timeout) => continue,
            Err(e) => {
                println!("select failed: {e:?}");
                return 1;
            }
        };
        let ep = clients[ready].take().unwrap();
        let next = match ep.recv(Some(0)) {
            Ok(ExpReadyIn::Register(ep, msg)) => registry.register(ep, msg),
            Ok(ExpReadyIn::Bind(ep, msg)) => registry.bind(ep, msg),
            Err(RecvError::Failed(Error::PeerClosed)) => continue,
            Err(RecvError::Timeout(ep)) => Ok(ep),
            Err(RecvError::Failed(e)) => {
                println!("receive failed: {e:?}");
                return 1;
            }
        };
        served += 1;
        clients[ready] = next.ok();
    }
    println!("answered {served} requests; every client has gone");
    0
}
