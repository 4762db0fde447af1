//! SIP `echo-binder`: finds the `echo` service through the directory. Asks for an
//! unregistered name first (its channel end must come back), then binds `echo` (retrying
//! until the service has registered), and pings it over the channel it created.
#![no_std]
#![deny(unsafe_code)]

use cordon_sip::channel::AnyEndpoint;
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use directory::{Bind, ImpBindReplyIn, state};

type Dir = directory::Imp<state::Ready>;
type ServerEnd = echo::Exp<echo::state::Ready>;

/// Asks the directory to connect `server_end` to `name`: Ok(dir) if bound, Err with the
/// end given back if the name is unknown.
fn bind(
    dir: Dir,
    name: &'static str,
    server_end: ServerEnd,
) -> Result<Dir, (Dir, Option<ServerEnd>)> {
    let msg = Bind {
        // The names here are constants, well within `bytes[64]`.
        name: name.try_into().expect("a name of at most 64 bytes"),
        server_end: AnyEndpoint::from_raw(server_end.into_raw()),
    };
    match dir.call_bind(msg, None) {
        Ok(ImpBindReplyIn::Bound(dir, _)) => Ok(dir),
        Ok(ImpBindReplyIn::NotFound(dir, nf)) => {
            Err((dir, echo::Exp::downcast(nf.server_end).ok()))
        }
        Ok(ImpBindReplyIn::ServiceGone(dir, _)) => Err((dir, None)),
        Err(_) => panic!("the directory went away"),
    }
}

fn main() -> i32 {
    let Ok(mut dir) = directory::Imp::initial("directory") else {
        println!("no `directory` endpoint");
        return 1;
    };
    let Ok((mut server_end, client)) = echo::channel() else {
        return 1;
    };
    match bind(dir, "nosuch", server_end) {
        Ok(_) => {
            println!("`nosuch` was bound?");
            return 1;
        }
        Err((d, Some(end))) => {
            println!("`nosuch` is not registered; my channel end came back");
            dir = d;
            server_end = end;
        }
        Err((_, None)) => return 1,
    }
    let mut attempts = 1;
    let _dir = loop {
        match bind(dir, "echo", server_end) {
            Ok(d) => break d,
            Err((d, Some(end))) if attempts < 1000 => {
                attempts += 1;
                cordon_sip::yield_now();
                dir = d;
                server_end = end;
            }
            Err(_) => {
                println!("`echo` never appeared");
                return 1;
            }
        }
    };
    println!("bound to `echo` through the directory (attempt {attempts})");
    let mut ep = client;
    for seq in 0..3u32 {
        ep = match ep.call_ping(
            echo::Ping {
                seq,
                data: "via directory"
                    .try_into()
                    .expect("13 bytes fit in bytes[16384]"),
            },
            None,
        ) {
            Ok(echo::ImpReady1In::Pong(ep, pong)) if pong.seq == seq => ep,
            _ => {
                println!("bad reply");
                return 1;
            }
        };
    }
    println!("3 pings answered over a channel found by name");
    let _ = ep.send_bye(echo::Bye {});
    0
}
