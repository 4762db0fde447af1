//! Channels governed by contracts: the kernel's channel manager without the blocking.
//!
//! A channel has two endpoints, exporter and importer. Each endpoint has exactly one holder
//! at a time (a process, or "in transit" inside a message), knows its contract state, and
//! owns the queue of messages travelling *to* it. The queue is allocated when the channel
//! is created, with as many slots as the contract lets pile up in that direction and each
//! slot as large as the contract's largest message, so [`Channels::send`] never allocates
//! and never blocks.
//!
//! Every send is checked: the sender must hold the endpoint, the bytes must be one
//! well-formed message, the contract must allow that message from the sender's side in
//! the endpoint's state, and every endpoint or exchange-heap block named in it must be
//! held by the sender (typed endpoint fields: of the declared contract and role, in its
//! initial state). Anything else is the sender's fault ([`Fault`]); the caller terminates
//! that SIP. Endpoints and blocks in a message change holder with it; the sender loses
//! them on send, the receiver gets them on receive. Closing an endpoint (or a process
//! ending) frees what is queued for it, recursively.
//!
//! Ownership is by process id; handles are global ids that are useless to anyone who does
//! not hold them. The kernel wraps this with wait queues for blocking receive and select.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use contracts::protocol::{FieldType, Protocol, Role};
use contracts::wire;

/// A process id.
pub type Owner = usize;
/// An endpoint handle (never 0).
pub type EndpointId = u32;
/// An exchange-heap block handle (never 0).
pub type BufferId = u32;

/// Who holds an endpoint or a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Process(Owner),
    /// Inside a queued message.
    InTransit,
}

/// Something the calling SIP did wrong: the kernel terminates it with this report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault(pub String);

/// Outcomes of a send that are not faults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    Fault(Fault),
    /// The peer has closed; the message was not sent.
    PeerClosed,
}

/// Outcomes of a receive other than a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecvError {
    Fault(Fault),
    /// Nothing queued (the caller may block).
    Empty,
    /// Nothing queued and the peer has closed.
    PeerClosed,
    /// The next message needs this many bytes; nothing was received.
    TooSmall(usize),
}

struct Slot {
    data: Vec<u8>,
    len: usize,
}

struct Endpoint {
    contract: u16,
    role: Role,
    state: u16,
    peer: Option<EndpointId>,
    holder: Holder,
    /// Messages to this endpoint: a ring of preallocated slots.
    slots: Vec<Slot>,
    head: usize,
    queued: usize,
    /// A receive posted by the blocked holder: its buffer's capacity and where it is
    /// (opaque to this module: the kernel's address space and address).
    posted: Option<(usize, Landing)>,
    /// A message a sender delivered straight into the posted buffer: its length.
    delivered: Option<usize>,
}

/// Where a posted receive's buffer is, as the kernel describes it (opaque here).
pub type Landing = [u64; 2];

struct Block {
    data: Vec<u8>,
    holder: Holder,
}

/// Counts, for tests and reclaim checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub endpoints: usize,
    pub blocks: usize,
    pub block_bytes: usize,
}

/// The channel manager's state.
#[derive(Default)]
pub struct Channels {
    protocols: Vec<Protocol>,
    endpoints: Vec<Option<Endpoint>>,
    blocks: Vec<Option<Block>>,
}

/// Puts `item` in the first free slot of `table` (or a new one) and returns its handle:
/// the slot index plus one, so that 0 is never a handle.
fn insert<T>(table: &mut Vec<Option<T>>, item: T) -> u32 {
    let index = match table.iter().position(Option::is_none) {
        Some(free) => free,
        None => {
            table.push(None);
            table.len() - 1
        }
    };
    table[index] = Some(item);
    index as u32 + 1
}

fn fault<T>(message: String) -> Result<T, Fault> {
    Err(Fault(message))
}

impl Channels {
    pub fn new(protocols: Vec<Protocol>) -> Channels {
        Channels {
            protocols,
            endpoints: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// The contracts this manager knows.
    pub fn protocols(&self) -> &[Protocol] {
        &self.protocols
    }

    pub fn contract_index(&self, name: &str) -> Option<u16> {
        self.protocols
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }

    pub fn counts(&self) -> Counts {
        let blocks = self.blocks.iter().flatten();
        Counts {
            endpoints: self.endpoints.iter().flatten().count(),
            blocks: blocks.clone().count(),
            block_bytes: blocks.map(|b| b.data.len()).sum(),
        }
    }

    fn new_endpoint(&mut self, contract: u16, role: Role, holder: Holder) -> EndpointId {
        let p = &self.protocols[contract as usize];
        // Messages *to* this endpoint travel in the direction its peer sends.
        let depth = p.max_in_flight[role.peer().sends().index()] as usize;
        let size = p.max_message_bytes() as usize;
        let slots = (0..depth)
            .map(|_| Slot {
                data: vec![0; size],
                len: 0,
            })
            .collect();
        let endpoint = Endpoint {
            contract,
            role,
            state: p.initial,
            peer: None,
            holder,
            slots,
            head: 0,
            queued: 0,
            posted: None,
            delivered: None,
        };
        insert(&mut self.endpoints, endpoint)
    }

    /// Creates a channel of contract `contract`: (exporter end, importer end).
    pub fn create(
        &mut self,
        contract: u16,
        exporter: Owner,
        importer: Owner,
    ) -> (EndpointId, EndpointId) {
        let exp = self.new_endpoint(contract, Role::Exporter, Holder::Process(exporter));
        let imp = self.new_endpoint(contract, Role::Importer, Holder::Process(importer));
        self.ep_mut(exp).peer = Some(imp);
        self.ep_mut(imp).peer = Some(exp);
        (exp, imp)
    }

    fn ep(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get((id as usize).wrapping_sub(1))?.as_ref()
    }

    fn ep_mut(&mut self, id: EndpointId) -> &mut Endpoint {
        self.endpoints[id as usize - 1]
            .as_mut()
            .expect("live endpoint")
    }

    /// The endpoint `id` if `owner` holds it.
    fn held(&self, owner: Owner, id: EndpointId) -> Result<&Endpoint, Fault> {
        match self.ep(id) {
            Some(ep) if ep.holder == Holder::Process(owner) => Ok(ep),
            _ => fault(format!("endpoint handle {id} is not held by this SIP")),
        }
    }

    /// Describes an endpoint for error reports: `Echo/importer in state Ready`.
    fn describe(&self, ep: &Endpoint) -> String {
        let p = &self.protocols[ep.contract as usize];
        format!(
            "contract {}, {} in state {}",
            p.name,
            ep.role.name(),
            p.states[ep.state as usize].name
        )
    }

    /// Whether `owner`'s endpoint `id` is of `contract`/`role` and in its initial state.
    pub fn is(
        &self,
        owner: Owner,
        id: EndpointId,
        contract: &str,
        role: Role,
    ) -> Result<bool, Fault> {
        let ep = self.held(owner, id)?;
        let p = &self.protocols[ep.contract as usize];
        Ok(p.name == contract && ep.role == role && ep.state == p.initial)
    }

    /// Sends `bytes` on `owner`'s endpoint `id`. Returns the peer endpoint (to wake).
    pub fn send(
        &mut self,
        owner: Owner,
        id: EndpointId,
        bytes: &[u8],
    ) -> Result<EndpointId, SendError> {
        self.send_direct(owner, id, bytes, &mut |_, _| false)
    }

    /// [`Channels::send`], delivering straight into the receiver's buffer when it has
    /// posted a receive ([`Channels::post`]) that the message fits and nothing is queued
    /// before it: `deliver(landing, bytes)` copies the message there (the one copy of a
    /// rendezvous) and returns true, and the receiver's side of the exchange (its state,
    /// the handles it now holds) happens at once. If `deliver` returns false the message
    /// is queued as usual.
    pub fn send_direct(
        &mut self,
        owner: Owner,
        id: EndpointId,
        bytes: &[u8],
        deliver: &mut dyn FnMut(Landing, &[u8]) -> bool,
    ) -> Result<EndpointId, SendError> {
        let ep = self.held(owner, id).map_err(SendError::Fault)?;
        let p = &self.protocols[ep.contract as usize];
        let checked = wire::check(p, bytes).map_err(|why| {
            SendError::Fault(Fault(format!(
                "malformed message on {}: {why}",
                self.describe(ep)
            )))
        })?;
        let message = &p.messages[checked.message as usize];
        let Some(next) = p.step(ep.state, checked.message, ep.role.sends()) else {
            return Err(SendError::Fault(Fault(format!(
                "contract violation: {} may not send {}",
                self.describe(ep),
                message.name
            ))));
        };
        // Every endpoint and block the message carries must be the sender's to give.
        for h in &checked.handles {
            let field = &message.fields[h.field];
            if h.endpoint {
                let carried = match self.ep(h.handle) {
                    Some(c) if c.holder == Holder::Process(owner) => c,
                    _ => {
                        return Err(SendError::Fault(Fault(format!(
                            "{}.{}: endpoint handle {} is not held by this SIP",
                            message.name, field.name, h.handle
                        ))));
                    }
                };
                if h.handle == id || Some(h.handle) == ep.peer {
                    return Err(SendError::Fault(Fault(format!(
                        "{}.{}: an endpoint cannot travel over its own channel",
                        message.name, field.name
                    ))));
                }
                if let FieldType::Endpoint {
                    contract: Some(want),
                    role: Some(role),
                } = &field.ty
                {
                    let cp = &self.protocols[carried.contract as usize];
                    if &cp.name != want || carried.role != *role || carried.state != cp.initial {
                        return Err(SendError::Fault(Fault(format!(
                            "{}.{} must be a {} end of {want} in its initial state, not {}",
                            message.name,
                            field.name,
                            role.name(),
                            self.describe(carried)
                        ))));
                    }
                }
            } else if !matches!(self.block(h.handle), Some(b) if b.holder == Holder::Process(owner))
            {
                return Err(SendError::Fault(Fault(format!(
                    "{}.{}: buffer handle {} is not held by this SIP",
                    message.name, field.name, h.handle
                ))));
            }
        }
        if checked.handles.iter().enumerate().any(|(i, a)| {
            checked.handles[..i]
                .iter()
                .any(|b| b.endpoint == a.endpoint && b.handle == a.handle)
        }) {
            return Err(SendError::Fault(Fault(format!(
                "{}: the same handle twice in one message",
                message.name
            ))));
        }
        let Some(peer) = ep.peer else {
            return Err(SendError::PeerClosed);
        };
        let target = self.ep(peer).expect("peer of a live endpoint is live");
        if target.queued == target.slots.len() {
            // The contract's bound makes this impossible; refuse rather than allocate.
            return Err(SendError::Fault(Fault(format!(
                "queue of {} is full ({} messages): the contract bound was exceeded",
                self.describe(target),
                target.slots.len()
            ))));
        }
        // A receiver waiting with room: one copy, straight into its buffer.
        if let (Holder::Process(receiver), Some((capacity, landing)), 0, None) = (
            target.holder,
            target.posted,
            target.queued,
            target.delivered,
        ) && capacity >= bytes.len()
            && deliver(landing, bytes)
        {
            let received = p
                .step(target.state, checked.message, target.role.peer().sends())
                .expect("both ends follow the same state machine");
            self.ep_mut(id).state = next;
            let target = self.ep_mut(peer);
            target.state = received;
            target.posted = None;
            target.delivered = Some(bytes.len());
            self.move_handles(&checked.handles, Holder::Process(receiver));
            return Ok(peer);
        }
        // Commit: state, holders, copy into the peer's preallocated slot.
        self.ep_mut(id).state = next;
        self.move_handles(&checked.handles, Holder::InTransit);
        let target = self.ep_mut(peer);
        let at = (target.head + target.queued) % target.slots.len();
        target.slots[at].data[..bytes.len()].copy_from_slice(bytes);
        target.slots[at].len = bytes.len();
        target.queued += 1;
        Ok(peer)
    }

    /// Gives every endpoint and block in `handles` to `holder`.
    fn move_handles(&mut self, handles: &[wire::HandleField], holder: Holder) {
        for h in handles {
            if h.endpoint {
                self.ep_mut(h.handle).holder = holder;
            } else {
                self.block_mut(h.handle).holder = holder;
            }
        }
    }

    /// True if a receive on `owner`'s endpoint `id` would not block.
    pub fn ready(&self, owner: Owner, id: EndpointId) -> Result<bool, Fault> {
        let ep = self.held(owner, id)?;
        Ok(ep.queued > 0 || ep.delivered.is_some() || ep.peer.is_none())
    }

    /// Posts a receive of up to `capacity` bytes at `landing` on `owner`'s endpoint `id`,
    /// whose holder is about to block: the next sender may deliver into it directly.
    pub fn post(
        &mut self,
        owner: Owner,
        id: EndpointId,
        capacity: usize,
        landing: Landing,
    ) -> Result<(), Fault> {
        self.held(owner, id)?;
        self.ep_mut(id).posted = Some((capacity, landing));
        Ok(())
    }

    /// Withdraws a posted receive and takes a message delivered into it meanwhile (its
    /// length), which counts as received.
    pub fn take_delivered(&mut self, owner: Owner, id: EndpointId) -> Option<usize> {
        self.held(owner, id).ok()?;
        let ep = self.ep_mut(id);
        ep.posted = None;
        ep.delivered.take()
    }

    /// Receives the next message for `owner`'s endpoint `id` into `out`; returns its length.
    pub fn recv(
        &mut self,
        owner: Owner,
        id: EndpointId,
        out: &mut [u8],
    ) -> Result<usize, RecvError> {
        let ep = self.held(owner, id).map_err(RecvError::Fault)?;
        if ep.queued == 0 {
            return Err(if ep.peer.is_none() {
                RecvError::PeerClosed
            } else {
                RecvError::Empty
            });
        }
        let slot = &ep.slots[ep.head];
        if slot.len > out.len() {
            return Err(RecvError::TooSmall(slot.len));
        }
        let p = &self.protocols[ep.contract as usize];
        let bytes = &slot.data[..slot.len];
        let checked = wire::check(p, bytes).expect("queued messages were checked on send");
        let next = p
            .step(ep.state, checked.message, ep.role.peer().sends())
            .expect("both ends follow the same state machine");
        out[..bytes.len()].copy_from_slice(bytes);
        let len = bytes.len();
        let ep = self.ep_mut(id);
        ep.state = next;
        ep.head = (ep.head + 1) % ep.slots.len();
        ep.queued -= 1;
        self.move_handles(&checked.handles, Holder::Process(owner));
        Ok(len)
    }

    /// Closes `owner`'s endpoint `id`. Returns the peer (to wake), if it was still open.
    pub fn close(&mut self, owner: Owner, id: EndpointId) -> Result<Option<EndpointId>, Fault> {
        self.held(owner, id)?;
        let mut woken = Vec::new();
        self.destroy(id, &mut woken);
        Ok(woken.first().copied())
    }

    /// Frees an endpoint, what is queued for it, and tells its peer.
    fn destroy(&mut self, id: EndpointId, woken: &mut Vec<EndpointId>) {
        let Some(ep) = self.endpoints[id as usize - 1].take() else {
            return;
        };
        if let Some(peer) = ep.peer
            && let Some(Some(peer_ep)) = self.endpoints.get_mut(peer as usize - 1)
        {
            peer_ep.peer = None;
            woken.push(peer);
        }
        // Whatever was travelling to this endpoint dies with it.
        let p = &self.protocols[ep.contract as usize];
        let mut carried = Vec::new();
        for k in 0..ep.queued {
            let slot = &ep.slots[(ep.head + k) % ep.slots.len()];
            if let Ok(checked) = wire::check(p, &slot.data[..slot.len]) {
                carried.extend(checked.handles);
            }
        }
        for h in carried {
            if h.endpoint {
                self.destroy(h.handle, woken);
            } else if let Some(slot) = self.blocks.get_mut(h.handle as usize - 1) {
                *slot = None;
            }
        }
    }

    /// Frees everything `owner` holds (the process has ended). Returns peers to wake.
    pub fn release_owner(&mut self, owner: Owner) -> Vec<EndpointId> {
        let mut woken = Vec::new();
        for i in 0..self.endpoints.len() {
            if matches!(&self.endpoints[i], Some(ep) if ep.holder == Holder::Process(owner)) {
                self.destroy(i as EndpointId + 1, &mut woken);
            }
        }
        for slot in &mut self.blocks {
            if matches!(slot, Some(b) if b.holder == Holder::Process(owner)) {
                *slot = None;
            }
        }
        woken
    }

    /// Moves endpoint `id` from `from` to `to` (the system manifest handing initial ends).
    pub fn give(&mut self, from: Owner, id: EndpointId, to: Owner) -> Result<(), Fault> {
        self.held(from, id)?;
        self.ep_mut(id).holder = Holder::Process(to);
        Ok(())
    }

    // --- exchange heap -------------------------------------------------------------

    fn block(&self, id: BufferId) -> Option<&Block> {
        self.blocks.get((id as usize).wrapping_sub(1))?.as_ref()
    }

    fn block_mut(&mut self, id: BufferId) -> &mut Block {
        self.blocks[id as usize - 1].as_mut().expect("live block")
    }

    fn held_block(&mut self, owner: Owner, id: BufferId) -> Result<&mut Block, Fault> {
        match self.blocks.get_mut((id as usize).wrapping_sub(1)) {
            Some(Some(b)) if b.holder == Holder::Process(owner) => Ok(b),
            _ => fault(format!("buffer handle {id} is not held by this SIP")),
        }
    }

    /// Adds a zeroed block of `size` bytes held by `owner`; the caller allocated `data`.
    pub fn add_block(&mut self, owner: Owner, data: Vec<u8>) -> BufferId {
        let block = Block {
            data,
            holder: Holder::Process(owner),
        };
        insert(&mut self.blocks, block)
    }

    /// The bytes of `owner`'s block, for reading or writing.
    pub fn block_data(&mut self, owner: Owner, id: BufferId) -> Result<&mut [u8], Fault> {
        Ok(&mut self.held_block(owner, id)?.data)
    }

    /// Frees `owner`'s block; returns its memory so the caller can drop it outside locks.
    pub fn free_block(&mut self, owner: Owner, id: BufferId) -> Result<Vec<u8>, Fault> {
        self.held_block(owner, id)?;
        Ok(self.blocks[id as usize - 1]
            .take()
            .expect("held block")
            .data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = "contract Echo {
        message Ping(seq: u32, data: bytes[8]);
        message Pong(seq: u32, data: bytes[8]);
        message Carry(block: buffer, peer: imp<Echo>);
        message Carried;
        message Bye;
        initial state Ready {
            Ping? -> Pong! -> Ready;
            Carry? -> Carried! -> Ready;
            Bye? -> Done;
        }
        state Done;
    }";

    fn channels() -> Channels {
        Channels::new(contracts::compile(ECHO).unwrap())
    }

    fn msg(id: u16, seq: u32, data: &[u8]) -> Vec<u8> {
        let mut m = id.to_le_bytes().to_vec();
        m.extend(seq.to_le_bytes());
        m.extend((data.len() as u32).to_le_bytes());
        m.extend(data);
        m
    }

    const SERVER: Owner = 1;
    const CLIENT: Owner = 2;
    const OTHER: Owner = 3;

    #[test]
    fn request_reply_follows_the_contract() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        assert_eq!(ch.send(CLIENT, imp, &msg(0, 7, b"hi")), Ok(exp));
        let mut buf = [0u8; 64];
        assert_eq!(ch.ready(SERVER, exp), Ok(true));
        let len = ch.recv(SERVER, exp, &mut buf).unwrap();
        assert_eq!(&buf[..len], &msg(0, 7, b"hi")[..]);
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Err(RecvError::Empty));
        assert_eq!(ch.send(SERVER, exp, &msg(1, 7, b"hi")), Ok(imp));
        assert_eq!(ch.recv(CLIENT, imp, &mut buf).unwrap(), len);
    }

    #[test]
    fn violations_blame_the_sender_with_contract_state_and_message() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        // The server may not send Pong before a Ping.
        let SendError::Fault(Fault(why)) = ch.send(SERVER, exp, &msg(1, 1, b"")).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            why,
            "contract violation: contract Echo, exporter in state Ready may not send Pong"
        );
        // Two Pings in a row: the second is out of turn.
        ch.send(CLIENT, imp, &msg(0, 1, b"")).unwrap();
        let SendError::Fault(Fault(why)) = ch.send(CLIENT, imp, &msg(0, 2, b"")).unwrap_err()
        else {
            panic!()
        };
        assert!(
            why.contains("importer in state Ready_1 may not send Ping"),
            "{why}"
        );
        // Payload limits and garbage are faults too.
        assert!(matches!(
            ch.send(CLIENT, imp, &msg(0, 1, b"123456789")),
            Err(SendError::Fault(_))
        ));
        assert!(matches!(
            ch.send(CLIENT, imp, &[9, 9]),
            Err(SendError::Fault(_))
        ));
        // Someone else's endpoint.
        let SendError::Fault(Fault(why)) = ch.send(OTHER, imp, &msg(0, 1, b"")).unwrap_err() else {
            panic!()
        };
        assert!(why.contains("not held by this SIP"));
    }

    #[test]
    fn queues_are_allocated_at_creation_to_the_contract_bound() {
        let mut ch = channels();
        let (exp, _imp) = ch.create(0, SERVER, CLIENT);
        let ep = ch.ep(exp).unwrap();
        assert_eq!(ep.slots.len(), 1);
        assert_eq!(
            ep.slots[0].data.len(),
            ch.protocols()[0].max_message_bytes() as usize
        );
    }

    #[test]
    fn receive_buffer_too_small_keeps_the_message() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        ch.send(CLIENT, imp, &msg(0, 7, b"12345678")).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(
            ch.recv(SERVER, exp, &mut small),
            Err(RecvError::TooSmall(18))
        );
        let mut buf = [0u8; 64];
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Ok(18));
    }

    #[test]
    fn close_is_seen_by_the_peer_after_queued_messages() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        ch.send(CLIENT, imp, &msg(4, 0, b"")[..2]).unwrap(); // Bye
        assert_eq!(ch.close(CLIENT, imp), Ok(Some(exp)));
        let mut buf = [0u8; 64];
        assert_eq!(
            ch.recv(SERVER, exp, &mut buf),
            Ok(2),
            "the Bye still arrives"
        );
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Err(RecvError::PeerClosed));
        assert_eq!(ch.ready(SERVER, exp), Ok(true));
        assert_eq!(
            ch.send(SERVER, exp, &msg(1, 0, b"")),
            Err(SendError::Fault(Fault(
                "contract violation: contract Echo, exporter in state Done may not send Pong"
                    .into()
            )))
        );
        ch.close(SERVER, exp).unwrap();
        assert_eq!(ch.counts(), Counts::default());
    }

    fn carry(block: BufferId, peer: EndpointId) -> Vec<u8> {
        let mut m = 2u16.to_le_bytes().to_vec();
        m.extend(block.to_le_bytes());
        m.extend(peer.to_le_bytes());
        m
    }

    #[test]
    fn endpoints_and_blocks_move_with_messages() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        let (_exp2, imp2) = ch.create(0, OTHER, CLIENT);
        let block = ch.add_block(CLIENT, vec![0; 16384]);
        ch.block_data(CLIENT, block).unwrap()[0] = 42;
        ch.send(CLIENT, imp, &carry(block, imp2)).unwrap();
        // The sender lost both at once.
        assert!(ch.block_data(CLIENT, block).is_err());
        assert!(ch.send(CLIENT, imp2, &msg(0, 1, b"")).is_err());
        // In transit nobody holds them.
        assert!(ch.block_data(SERVER, block).is_err());
        let mut buf = [0u8; 64];
        ch.recv(SERVER, exp, &mut buf).unwrap();
        assert_eq!(
            ch.block_data(SERVER, block).unwrap()[0],
            42,
            "moved, not copied"
        );
        assert!(
            ch.send(SERVER, imp2, &msg(0, 1, b"")).is_ok(),
            "the server now holds imp2"
        );
    }

    #[test]
    fn carrying_what_you_do_not_hold_is_a_fault() {
        let mut ch = channels();
        let (_exp, imp) = ch.create(0, SERVER, CLIENT);
        let (_exp2, imp2) = ch.create(0, OTHER, OTHER);
        let mine = ch.add_block(CLIENT, vec![0; 8]);
        let theirs = ch.add_block(OTHER, vec![0; 8]);
        let (_e3, my_imp) = ch.create(0, CLIENT, CLIENT);
        for (block, peer, needle) in [
            (theirs, my_imp, "buffer handle"),
            (mine, imp2, "endpoint handle"),
            (mine, imp, "cannot travel over its own channel"),
        ] {
            let SendError::Fault(Fault(why)) =
                ch.send(CLIENT, imp, &carry(block, peer)).unwrap_err()
            else {
                panic!()
            };
            assert!(why.contains(needle), "{why}");
        }
        // A typed endpoint field needs an endpoint of that contract, role and initial state.
        let (exp4, _imp4) = ch.create(0, CLIENT, CLIENT);
        let SendError::Fault(Fault(why)) = ch.send(CLIENT, imp, &carry(mine, exp4)).unwrap_err()
        else {
            panic!()
        };
        assert!(why.contains("must be a importer end of Echo"), "{why}");
    }

    #[test]
    fn ending_a_process_frees_everything_it_held_and_everything_in_flight_to_it() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        let (_exp2, imp2) = ch.create(0, CLIENT, CLIENT);
        let block = ch.add_block(CLIENT, vec![0; 100]);
        ch.send(CLIENT, imp, &carry(block, imp2)).unwrap();
        let _spare = ch.add_block(SERVER, vec![0; 10]);
        // The server dies with the message (and what it carries) still queued.
        let woken = ch.release_owner(SERVER);
        assert!(woken.contains(&imp));
        assert!(ch.ep(exp).is_none());
        assert_eq!(
            ch.counts().blocks,
            0,
            "the carried and the spare block are gone"
        );
        let mut buf = [0u8; 8];
        assert_eq!(ch.recv(CLIENT, imp, &mut buf), Err(RecvError::PeerClosed));
        ch.release_owner(CLIENT);
        assert_eq!(ch.counts(), Counts::default());
    }

    #[test]
    fn a_posted_receive_takes_the_message_in_one_copy() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        let mut landed = Vec::new();
        ch.post(SERVER, exp, 64, [7, 0x1000]).unwrap();
        let sent = ch.send_direct(CLIENT, imp, &msg(0, 7, b"hi"), &mut |landing, bytes| {
            assert_eq!(landing, [7, 0x1000]);
            landed.extend_from_slice(bytes);
            true
        });
        assert_eq!(sent, Ok(exp));
        assert_eq!(landed, msg(0, 7, b"hi"));
        // Nothing queued; the receive is complete and the receiver's state has moved on.
        assert_eq!(ch.ready(SERVER, exp), Ok(true));
        assert_eq!(ch.take_delivered(SERVER, exp), Some(landed.len()));
        let mut buf = [0u8; 64];
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Err(RecvError::Empty));
        assert_eq!(ch.send(SERVER, exp, &msg(1, 7, b"hi")), Ok(imp));
    }

    #[test]
    fn direct_delivery_needs_a_posted_receive_with_room() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        let mut calls = 0;
        // Not posted: queued as usual.
        ch.send_direct(CLIENT, imp, &msg(0, 1, b""), &mut |_, _| {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!(calls, 0);
        let mut buf = [0u8; 64];
        ch.recv(SERVER, exp, &mut buf).unwrap();
        ch.send(SERVER, exp, &msg(1, 1, b"")).unwrap();
        ch.recv(CLIENT, imp, &mut buf).unwrap();
        // Posted, but too small: queued, and the receive reports the size needed.
        ch.post(SERVER, exp, 4, [0, 0]).unwrap();
        ch.send_direct(CLIENT, imp, &msg(0, 2, b"12345678"), &mut |_, _| {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!(calls, 0);
        assert_eq!(ch.take_delivered(SERVER, exp), None);
        assert_eq!(
            ch.recv(SERVER, exp, &mut [0u8; 4]),
            Err(RecvError::TooSmall(18))
        );
        // A withdrawn post is not delivered into.
        ch.recv(SERVER, exp, &mut buf).unwrap();
        ch.send(SERVER, exp, &msg(1, 2, b"")).unwrap();
        ch.recv(CLIENT, imp, &mut buf).unwrap();
        ch.post(SERVER, exp, 64, [0, 0]).unwrap();
        assert_eq!(ch.take_delivered(SERVER, exp), None);
        ch.send_direct(CLIENT, imp, &msg(0, 3, b""), &mut |_, _| {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!(calls, 0);
        // A deliver that fails falls back to the queue.
        ch.recv(SERVER, exp, &mut buf).unwrap();
        ch.send(SERVER, exp, &msg(1, 3, b"")).unwrap();
        ch.recv(CLIENT, imp, &mut buf).unwrap();
        ch.post(SERVER, exp, 64, [0, 0]).unwrap();
        ch.send_direct(CLIENT, imp, &msg(0, 4, b""), &mut |_, _| false)
            .unwrap();
        assert_eq!(ch.take_delivered(SERVER, exp), None);
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Ok(msg(0, 4, b"").len()));
    }

    #[test]
    fn handles_delivered_directly_belong_to_the_receiver() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, SERVER, CLIENT);
        let (_other_exp, other_imp) = ch.create(0, CLIENT, CLIENT);
        let block = ch.add_block(CLIENT, vec![1, 2, 3]);
        let mut carry = 2u16.to_le_bytes().to_vec();
        carry.extend(block.to_le_bytes());
        carry.extend(other_imp.to_le_bytes());
        ch.post(SERVER, exp, 64, [0, 0]).unwrap();
        ch.send_direct(CLIENT, imp, &carry, &mut |_, _| true)
            .unwrap();
        assert!(ch.take_delivered(SERVER, exp).is_some());
        assert_eq!(ch.block_data(SERVER, block).unwrap(), &[1, 2, 3]);
        assert!(ch.block_data(CLIENT, block).is_err());
        assert_eq!(ch.ready(SERVER, other_imp), Ok(false));
    }
}
