//! SIP `flood`: attacks the kernel's resources the way a hostile SIP author would, and
//! checks that each attack ends in a status for this SIP alone:
//!
//! 1. creates Echo channels until the kernel refuses (`OUT_OF_MEMORY` at its quota), then
//!    frees them and shows creation works again;
//! 2. allocates 1-byte exchange-heap blocks until refused;
//! 3. nests Directory exporters inside one another's queues, [`CHAIN`] deep, and closes
//!    the outermost: the kernel destroys the chain in bounded steps;
//! 4. closes a cycle of endpoints in transit (each inside the other's queue, so nobody
//!    could ever receive them): the kernel frees it and the senders see `PeerClosed`;
//! 5. leaves another deep chain in transit when it exits, for the kernel to reclaim.
//!
//! The kernel's end-of-run check (0 endpoints and 0 blocks left, free frames back to
//! their baseline) is what proves nothing leaked.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use cordon_sip::channel::{AnyEndpoint, Buffer, Error};
use cordon_sip::println;

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

/// How deep the chains of endpoints in transit go.
const CHAIN: usize = 1500;

type DirExp = directory::Exp<directory::state::Ready>;
type DirImp = directory::Imp<directory::state::Ready>;

fn bind(
    imp: DirImp,
    server_end: AnyEndpoint,
) -> Result<directory::Imp<directory::state::BindReply>, Error> {
    imp.send_bind(directory::Bind {
        name: "x".try_into()?,
        server_end,
    })
}

/// Builds `n` + 1 Directory channels with each exporter sent into the next one's queue.
/// Returns the outermost exporter, the importers that sent (each waiting for a reply),
/// and the innermost channel's importer, which has sent nothing.
#[allow(clippy::type_complexity)]
fn chain(
    n: usize,
) -> Result<
    (
        DirExp,
        Vec<directory::Imp<directory::state::BindReply>>,
        DirImp,
    ),
    Error,
> {
    let (mut outer, bottom) = directory::channel()?;
    let mut senders = Vec::new();
    for _ in 0..n {
        let (exp, imp) = directory::channel()?;
        senders.push(bind(imp, AnyEndpoint::from_raw(outer.into_raw()))?);
        outer = exp;
    }
    Ok((outer, senders, bottom))
}

/// Whether a sender waiting for its reply finds its peer closed.
fn saw_close(sender: directory::Imp<directory::state::BindReply>) -> bool {
    matches!(
        sender.recv(Some(0)),
        Err(cordon_sip::channel::RecvError::Failed(Error::PeerClosed))
    )
}

/// Makes objects with `make` until the kernel refuses, which must be `OutOfMemory` at
/// the quota; then frees them all and checks that one can be made again.
fn flood<T>(what: &str, mut make: impl FnMut() -> Result<T, Error>) -> Result<(), Error> {
    let mut held = Vec::new();
    let refused = loop {
        match make() {
            Ok(object) => held.push(object),
            Err(e) => break e,
        }
        if held.len() > 100_000 {
            println!("{what} was never refused");
            return Err(Error::Status(0));
        }
    };
    println!("{what}: {} made, then {:?}", held.len(), refused);
    if refused != Error::OutOfMemory {
        return Err(refused);
    }
    drop(held);
    let again = make().map(|_| ());
    println!("after freeing them, {what}: {again:?}");
    again
}

fn main() -> i32 {
    if flood("chan_create", echo::channel).is_err()
        || flood("buf_alloc(1)", || Buffer::new(1)).is_err()
    {
        return 1;
    }
    // A chain closed from the top: every sender sees its peer gone.
    let Ok((outer, senders, _bottom)) = chain(CHAIN) else {
        println!("could not build the chain");
        return 1;
    };
    drop(outer);
    let closed = senders
        .into_iter()
        .map(saw_close)
        .filter(|closed| *closed)
        .count();
    println!(
        "a chain {CHAIN} endpoints deep in transit, closed from the top: {closed} senders saw PeerClosed"
    );
    if closed != CHAIN {
        return 1;
    }
    // A cycle: the innermost importer sends the outermost exporter into the innermost
    // exporter's queue, which is inside the outermost's.
    let Ok((outer, senders, bottom)) = chain(8) else {
        return 1;
    };
    let Ok(closer) = bind(bottom, AnyEndpoint::from_raw(outer.into_raw())) else {
        return 1;
    };
    let closed = senders
        .into_iter()
        .chain(core::iter::once(closer))
        .map(saw_close)
        .filter(|closed| *closed)
        .count();
    println!("a cycle of 9 endpoints in transit: {closed} of 9 senders saw PeerClosed");
    if closed != 9 {
        return 1;
    }
    // Left for the kernel: a chain in transit and its senders, at exit.
    let Ok(left) = chain(CHAIN) else {
        return 1;
    };
    core::mem::forget(left);
    println!("exiting with a chain {CHAIN} deep in transit");
    0
}
