//! Channels governed by contracts: the kernel's channel manager without the blocking.
//!
//! A channel has two endpoints, exporter and importer. Each endpoint has exactly one holder
//! at a time (a process, or the message it travels in), knows its contract state, and owns
//! the queue of messages travelling *to* it. The queue is allocated when the channel is
//! created, with as many slots as the contract lets pile up in that direction and each
//! slot as large as the contract's largest message, so [`Channels::send`] never allocates
//! and never blocks.
//!
//! Every send is checked: the sender must hold the endpoint, the bytes must be one
//! well-formed message, the contract must allow that message from the sender's side in
//! the endpoint's state, and every endpoint or exchange-heap block named in it must be
//! held by the sender (typed endpoint fields: of the declared contract and role, in its
//! initial state). Anything else is the sender's fault ([`Fault`]); the caller terminates
//! that SIP. Endpoints and blocks in a message change holder with it; the sender loses
//! them on send, the receiver gets them on receive.
//!
//! **Resources.** Every endpoint and block is charged to an account ([`quota`]): its
//! holder's, and while it travels, its sender's until a receiver takes it (the receive is
//! refused with [`RecvError::OverQuota`] if the receiver's quota cannot take it). Handles
//! come from generation-checked tables ([`table`]), so a closed handle stays dead.
//!
//! **Destruction in bounded steps.** Closing an endpoint (or a process ending) only marks
//! it doomed and detaches its peer; [`Channels::reap`] then frees doomed endpoints a few
//! at a time, dooming what their queues carried, so destroying a chain of any length is a
//! loop of constant-size steps with no recursion, and the kernel can let interrupts in
//! between steps. A send that would close a cycle of endpoints in transit (each inside
//! another's queue, so nobody can ever receive them) dooms the cycle at once; a send into
//! an endpoint buried deeper than [`MAX_NESTING`] messages is refused.
//!
//! **Two ways in.** With the manager borrowed exclusively (`&mut self`) everything can
//! change. With it borrowed shared (`&self`), a message that carries no endpoint or block
//! can still be sent ([`Channels::send_shared`]) and received ([`Channels::recv_shared`]),
//! receives posted and blocks read and written: those change only an endpoint's `Flow`
//! (its contract state, queue and posted receive) or a block's bytes, each behind its own
//! spin lock (a send takes its channel's two flows, the lower handle's first). Holders,
//! peers, accounts and lists change only under the exclusive borrow, so a shared caller
//! sees them fixed. The kernel puts the manager behind a readers-writer lock accordingly.
//!
//! Ownership is by process id; handles are useless to anyone who does not hold them. The
//! kernel wraps this with wait queues for blocking receive and select.

pub mod held;
pub mod quota;
pub mod table;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use contracts::protocol::{FieldType, Protocol, Role};
use contracts::wire;

use held::{Heads, Link};
use quota::Accounts;
pub use quota::{OverQuota, Quota, Usage};
use table::Table;

/// A process id.
pub type Owner = usize;
/// An endpoint handle (never 0).
pub type EndpointId = u32;
/// An exchange-heap block handle (never 0).
pub type BufferId = u32;

/// Most endpoints a chain of messages may nest: sending into an endpoint that sits inside
/// a message inside a message ... this deep is refused (as Linux refuses to nest file
/// descriptors in transit), which bounds the kernel's cycle check.
pub const MAX_NESTING: usize = 32;
/// Bytes charged for an endpoint's or block's record beside its queue or contents.
pub const OBJECT_OVERHEAD: u64 = 128;

/// Who holds an endpoint or a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Process(Owner),
    /// Inside a message queued for this endpoint.
    InTransit(EndpointId),
    /// Closed; freed by [`Channels::reap`].
    Doomed,
    /// A block freed while this driver's device may still DMA into it: kept until the
    /// driver ends and its devices are quiesced.
    Pinned(Owner),
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
    /// The endpoints and blocks the next message carries do not fit the receiver's quota;
    /// nothing was received.
    OverQuota,
}

/// Why a channel or block could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// No such contract.
    NoContract,
    /// The caller's quota or the kernel heap cannot take it.
    OutOfMemory,
    /// An owner it would go to has ended (or never had an account).
    OwnerEnded,
}

struct Endpoint {
    contract: u16,
    role: Role,
    peer: Option<EndpointId>,
    holder: Holder,
    /// The account this endpoint is charged to, and how much.
    charged: Owner,
    cost: u64,
    /// The next doomed endpoint (an intrusive list, so dooming never allocates).
    next_doomed: Option<EndpointId>,
    /// Its place in its holder's list ([`held`]).
    held: Link,
    /// What messages change, behind this endpoint's own lock: a message without handles
    /// changes only its channel's two flows ([`Channels::send_shared`]). Everything above
    /// changes only with the whole manager borrowed exclusively.
    flow: spin::Mutex<Flow>,
}

/// The part of an endpoint a message changes: its contract state, the messages queued
/// for it, and a receive its holder posted.
struct Flow {
    state: u16,
    /// Messages to this endpoint: a ring of preallocated slots of `slot_size` bytes.
    slots: Vec<u8>,
    lens: Vec<u32>,
    slot_size: usize,
    head: usize,
    queued: usize,
    /// A receive posted by the blocked holder: its buffer's capacity and where it is
    /// (opaque to this module: the kernel's address space and address).
    posted: Option<(usize, Landing)>,
    /// A message a sender delivered straight into the posted buffer: its length.
    delivered: Option<usize>,
}

impl Flow {
    fn message(&self, k: usize) -> &[u8] {
        let at = (self.head + k) % self.lens.len();
        &self.slots[at * self.slot_size..][..self.lens[at] as usize]
    }

    /// Queues `bytes` (room and size already checked).
    fn push(&mut self, bytes: &[u8]) {
        let at = (self.head + self.queued) % self.lens.len();
        self.slots[at * self.slot_size..][..bytes.len()].copy_from_slice(bytes);
        self.lens[at] = bytes.len() as u32;
        self.queued += 1;
    }

    /// Where a message of `len` bytes can be delivered straight away: the buffer its
    /// holder posted, if it takes `len` bytes and nothing is queued or delivered before it.
    fn landing_for(&self, len: usize) -> Option<Landing> {
        match (self.posted, self.queued, self.delivered) {
            (Some((capacity, landing)), 0, None) if capacity >= len => Some(landing),
            _ => None,
        }
    }

    /// Records a message of `len` bytes delivered into the posted buffer, received in
    /// contract state `state`.
    fn delivered_directly(&mut self, state: u16, len: usize) {
        self.state = state;
        self.posted = None;
        self.delivered = Some(len);
    }

    /// Drops the first queued message.
    fn pop(&mut self) {
        self.head = (self.head + 1) % self.lens.len();
        self.queued -= 1;
    }
}

impl Endpoint {
    /// The flow, with the manager borrowed exclusively (no lock needed).
    fn flow(&mut self) -> &mut Flow {
        self.flow.get_mut()
    }
}

/// Where a posted receive's buffer is, as the kernel describes it (opaque here).
pub type Landing = [u64; 2];

struct Block {
    /// Its bytes, behind the block's own lock: reading and writing them needs only the
    /// manager shared ([`Channels::block_data_shared`]).
    data: spin::Mutex<Vec<u8>>,
    /// Their number (fixed at creation).
    size: usize,
    holder: Holder,
    charged: Owner,
    /// The driver that learnt this block's physical address (`buf_dma`): its device may
    /// write here until the driver ends.
    pinned_by: Option<Owner>,
    /// Its place in its holder's list, and in its driver's pin list ([`held`]).
    held: Link,
    pin: Link,
}

fn pin_link(b: &mut Block) -> &mut Link {
    &mut b.pin
}

/// An object that sits in its holder's list ([`held`]): endpoints and blocks.
trait Held {
    fn holder(&self) -> Holder;
    fn holder_mut(&mut self) -> &mut Holder;
    fn link(&mut self) -> &mut Link;
    fn link_ref(&self) -> &Link;
    /// Which of an owner's lists holds this kind of object.
    fn head(heads: &mut Heads) -> &mut Option<u32>;
}

impl Held for Endpoint {
    fn holder(&self) -> Holder {
        self.holder
    }
    fn holder_mut(&mut self) -> &mut Holder {
        &mut self.holder
    }
    fn link(&mut self) -> &mut Link {
        &mut self.held
    }
    fn link_ref(&self) -> &Link {
        &self.held
    }
    fn head(heads: &mut Heads) -> &mut Option<u32> {
        &mut heads.endpoints
    }
}

impl Held for Block {
    fn holder(&self) -> Holder {
        self.holder
    }
    fn holder_mut(&mut self) -> &mut Holder {
        &mut self.holder
    }
    fn link(&mut self) -> &mut Link {
        &mut self.held
    }
    fn link_ref(&self) -> &Link {
        &self.held
    }
    fn head(heads: &mut Heads) -> &mut Option<u32> {
        &mut heads.blocks
    }
}

/// Puts object `id` of `table` (new, or just given a new holder) in its holder's list.
fn list<T: Held>(table: &mut Table<T>, accounts: &mut Accounts, id: u32) {
    if let Some(owner) = table.get(id).and_then(|o| listed_owner(o.holder()))
        && let Some(heads) = accounts.heads_mut(owner)
    {
        held::push(table, T::head(heads), id, T::link);
    }
}

/// Changes object `id`'s holder, moving it between owners' lists.
fn set_holder<T: Held>(table: &mut Table<T>, accounts: &mut Accounts, id: u32, holder: Holder) {
    let Some(old) = table.get(id).map(T::holder) else {
        return;
    };
    if old == holder {
        return;
    }
    if let Some(owner) = listed_owner(old) {
        let head = accounts.heads_mut(owner).map(T::head);
        held::remove(table, head, id, T::link);
    }
    if let Some(object) = table.get_mut(id) {
        *object.holder_mut() = holder;
    }
    list(table, accounts, id);
}

/// Checks that the list starting at `head` names exactly the objects of `table` that
/// `belongs` picks (for [`Channels::check_invariants`]).
fn check_list<T>(
    table: &Table<T>,
    head: Option<u32>,
    link: fn(&T) -> &Link,
    belongs: impl Fn(&T) -> bool,
    what: &str,
) -> Result<(), String> {
    let listed = held::walk(table, head, table.len() + 1, link);
    let expected = table.iter().filter(|o| belongs(o)).count();
    if listed.len() != expected
        || listed
            .iter()
            .any(|&id| !table.get(id).is_some_and(&belongs))
    {
        return Err(format!(
            "its {what} list names {} objects, it has {expected}",
            listed.len()
        ));
    }
    Ok(())
}

/// The owner in whose list an object with this holder sits.
fn listed_owner(holder: Holder) -> Option<Owner> {
    match holder {
        Holder::Process(owner) | Holder::Pinned(owner) => Some(owner),
        Holder::InTransit(_) | Holder::Doomed => None,
    }
}

impl Block {
    fn cost(&self) -> u64 {
        block_cost(self.size)
    }
}

/// What a block of `size` bytes is charged.
pub fn block_cost(size: usize) -> u64 {
    size as u64 + OBJECT_OVERHEAD
}

/// One endpoint as a crash record shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointView<'a> {
    pub contract: &'a str,
    pub role: Role,
    /// The contract state it is in.
    pub state: &'a str,
    /// Messages waiting in it.
    pub queued: usize,
    /// Whether its peer still holds the other end.
    pub peer_open: bool,
    /// A serving end in a state where the contract says it must send next: it owes its
    /// client a reply.
    pub owes_reply: bool,
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
    endpoints: Table<Endpoint>,
    blocks: Table<Block>,
    accounts: Accounts,
    /// Doomed endpoints waiting for [`Channels::reap`].
    doomed: Option<EndpointId>,
}

fn fault<T>(message: String) -> Result<T, Fault> {
    Err(Fault(message))
}

/// How big one endpoint's queue is: `depth` slots of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueShape {
    pub depth: usize,
    pub size: usize,
}

/// One endpoint's preallocated, zeroed queue.
pub struct Queue {
    slots: Vec<u8>,
    lens: Vec<u32>,
    slot_size: usize,
}

impl Queue {
    /// Allocates and zeroes a queue of `shape`; `None` if the heap cannot give it.
    pub fn alloc(shape: QueueShape) -> Option<Queue> {
        Some(Queue {
            slots: shape.depth.checked_mul(shape.size).and_then(zeroed)?,
            lens: zeroed(shape.depth)?,
            slot_size: shape.size,
        })
    }

    /// Both queues of a channel.
    pub fn pair(shapes: [QueueShape; 2]) -> Option<[Queue; 2]> {
        Some([Queue::alloc(shapes[0])?, Queue::alloc(shapes[1])?])
    }
}

/// A zeroed vector, or `None` if the heap cannot give it.
fn zeroed<T: Clone + Default>(len: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, T::default());
    Some(v)
}

impl Channels {
    pub fn new(protocols: Vec<Protocol>) -> Channels {
        Channels {
            protocols,
            ..Channels::default()
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
        Counts {
            endpoints: self.endpoints.len(),
            blocks: self.blocks.len(),
            block_bytes: self.blocks.iter().map(|b| b.size).sum(),
        }
    }

    // --- accounts ------------------------------------------------------------------

    /// Makes room for the accounts of owners `0..owners` (done once, at boot).
    pub fn reserve_accounts(&mut self, owners: usize) -> Result<(), OverQuota> {
        self.accounts.reserve(owners)
    }

    /// Opens `owner`'s account (a new process) with `quota`, emptied.
    pub fn open_account(&mut self, owner: Owner, quota: Quota) -> Result<(), OverQuota> {
        self.accounts.open(owner, quota)
    }

    /// Marks `owner` ended before its holdings are released: [`Channels::connect_with`]
    /// refuses it from now on.
    pub fn close_account(&mut self, owner: Owner) {
        self.accounts.close(owner)
    }

    /// Sets `owner`'s quota (from its manifest, once verified).
    pub fn set_quota(&mut self, owner: Owner, quota: Quota) {
        self.accounts.set_quota(owner, quota)
    }

    /// What `owner` is charged for now.
    pub fn usage(&self, owner: Owner) -> Usage {
        self.accounts.usage(owner)
    }

    /// The endpoints `owner` holds, described for a crash record or the supervisor's
    /// watchdog: a walk of `owner`'s own list (what it holds, bounded by its quota, never
    /// what others hold), allocating nothing.
    pub fn held_endpoints(&self, owner: Owner) -> impl Iterator<Item = EndpointView<'_>> {
        let mut at = self.accounts.heads(owner).and_then(|h| h.endpoints);
        core::iter::from_fn(move || {
            let e = self.endpoints.get(at?)?;
            at = e.held.next();
            Some(e)
        })
        .map(|e| {
            let protocol = &self.protocols[e.contract as usize];
            let (state, queued) = {
                let flow = e.flow.lock();
                (flow.state, flow.queued)
            };
            EndpointView {
                contract: &protocol.name,
                role: e.role,
                state: protocol
                    .states
                    .get(state as usize)
                    .map_or("?", |s| s.name.as_str()),
                queued,
                peer_open: e.peer.is_some(),
                owes_reply: e.role == Role::Exporter
                    && protocol
                        .outgoing(state)
                        .any(|t| t.dir == Role::Exporter.sends()),
            }
        })
    }

    /// The most `owner` was ever charged for at once.
    pub fn peak(&self, owner: Owner) -> Usage {
        self.accounts.peak(owner)
    }

    /// Bytes an endpoint of `contract` receiving from `role`'s peer is charged.
    fn endpoint_shape(&self, contract: u16, role: Role) -> (usize, usize) {
        let p = &self.protocols[contract as usize];
        // Messages *to* this endpoint travel in the direction its peer sends.
        let depth = p.max_in_flight[role.peer().sends().index()].max(1) as usize;
        (depth, p.max_message_bytes() as usize)
    }

    fn endpoint_cost(&self, contract: u16, role: Role) -> u64 {
        let (depth, size) = self.endpoint_shape(contract, role);
        (depth * size + depth * 4) as u64 + OBJECT_OVERHEAD
    }

    /// The queues a channel of `contract` needs, (exporter's, importer's), for the caller
    /// to allocate with [`Queue::alloc`] outside any lock; `None` for no such contract.
    pub fn queue_shapes(&self, contract: u16) -> Option<[QueueShape; 2]> {
        if contract as usize >= self.protocols.len() {
            return None;
        }
        let shape = |role| {
            let (depth, size) = self.endpoint_shape(contract, role);
            QueueShape { depth, size }
        };
        Some([shape(Role::Exporter), shape(Role::Importer)])
    }

    fn new_endpoint(
        &mut self,
        contract: u16,
        role: Role,
        holder: Owner,
        queue: Queue,
    ) -> Result<EndpointId, CreateError> {
        let (depth, size) = self.endpoint_shape(contract, role);
        if queue.lens.len() != depth || queue.slot_size != size {
            return Err(CreateError::OutOfMemory);
        }
        let Queue {
            slots,
            lens,
            slot_size: _,
        } = queue;
        let endpoint = Endpoint {
            contract,
            role,
            peer: None,
            holder: Holder::Process(holder),
            charged: holder,
            cost: self.endpoint_cost(contract, role),
            next_doomed: None,
            held: Link::default(),
            flow: spin::Mutex::new(Flow {
                state: self.protocols[contract as usize].initial,
                slots,
                lens,
                slot_size: size,
                head: 0,
                queued: 0,
                posted: None,
                delivered: None,
            }),
        };
        let id = self
            .endpoints
            .insert(endpoint)
            .map_err(|_| CreateError::OutOfMemory)?;
        list(&mut self.endpoints, &mut self.accounts, id);
        Ok(id)
    }

    /// Makes both ends of a channel with `queues` (exporter's, importer's); charges each
    /// to its holder (already checked).
    fn make_channel(
        &mut self,
        contract: u16,
        exporter: Owner,
        importer: Owner,
        queues: [Queue; 2],
    ) -> Result<(EndpointId, EndpointId), CreateError> {
        let [exp_queue, imp_queue] = queues;
        let exp = self.new_endpoint(contract, Role::Exporter, exporter, exp_queue)?;
        let imp = match self.new_endpoint(contract, Role::Importer, importer, imp_queue) {
            Ok(imp) => imp,
            Err(e) => {
                self.endpoints.remove(exp);
                return Err(e);
            }
        };
        self.ep_mut(exp).peer = Some(imp);
        self.ep_mut(imp).peer = Some(exp);
        for id in [exp, imp] {
            let ep = self.ep(id).expect("just made");
            let (owner, cost) = (ep.charged, ep.cost);
            self.accounts.force(owner, 1, cost);
        }
        Ok((exp, imp))
    }

    /// Whether `owner`'s quota can take a channel of `contract` (checked again by
    /// [`Channels::create_with`]; lets the caller skip allocating queues for nothing).
    pub fn can_create(&self, contract: u16, owner: Owner) -> bool {
        (contract as usize) < self.protocols.len()
            && self.accounts.fits(
                owner,
                2,
                self.endpoint_cost(contract, Role::Exporter)
                    + self.endpoint_cost(contract, Role::Importer),
            )
    }

    /// A SIP creates a channel of `contract` holding both ends, within its quota, with
    /// queues the caller allocated (outside any lock: zeroing a contract's queues is the
    /// longest part of making a channel): (exporter end, importer end).
    pub fn create_with(
        &mut self,
        contract: u16,
        owner: Owner,
        queues: [Queue; 2],
    ) -> Result<(EndpointId, EndpointId), CreateError> {
        if contract as usize >= self.protocols.len() {
            return Err(CreateError::NoContract);
        }
        if !self.can_create(contract, owner) {
            return Err(CreateError::OutOfMemory);
        }
        self.make_channel(contract, owner, owner, queues)
    }

    /// [`Channels::create_with`], allocating the queues itself.
    pub fn create(
        &mut self,
        contract: u16,
        owner: Owner,
    ) -> Result<(EndpointId, EndpointId), CreateError> {
        let shapes = self.queue_shapes(contract).ok_or(CreateError::NoContract)?;
        if !self.can_create(contract, owner) {
            return Err(CreateError::OutOfMemory);
        }
        let queues = Queue::pair(shapes).ok_or(CreateError::OutOfMemory)?;
        self.create_with(contract, owner, queues)
    }

    /// The kernel connects two processes on the system manifest's word: each end is
    /// charged to its holder whatever its quota.
    pub fn connect(
        &mut self,
        contract: u16,
        exporter: Owner,
        importer: Owner,
    ) -> Result<(EndpointId, EndpointId), CreateError> {
        let shapes = self.queue_shapes(contract).ok_or(CreateError::NoContract)?;
        let queues = Queue::pair(shapes).ok_or(CreateError::OutOfMemory)?;
        self.connect_with(contract, exporter, importer, queues)
    }

    /// [`Channels::connect`] with queues the caller allocated (outside any lock). Refused
    /// if either owner has ended ([`Channels::close_account`]), so a channel made while a
    /// SIP is being released can never be left behind with it.
    pub fn connect_with(
        &mut self,
        contract: u16,
        exporter: Owner,
        importer: Owner,
        queues: [Queue; 2],
    ) -> Result<(EndpointId, EndpointId), CreateError> {
        if contract as usize >= self.protocols.len() {
            return Err(CreateError::NoContract);
        }
        if !self.accounts.is_open(exporter) || !self.accounts.is_open(importer) {
            return Err(CreateError::OwnerEnded);
        }
        self.make_channel(contract, exporter, importer, queues)
    }

    /// The process holding endpoint `id`, if a process holds it (not in transit,
    /// closed or unknown): whom a message queued on it concerns.
    pub fn holder_of(&self, id: EndpointId) -> Option<Owner> {
        match self.ep(id)?.holder {
            Holder::Process(owner) => Some(owner),
            _ => None,
        }
    }

    fn ep(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get(id)
    }

    fn ep_mut(&mut self, id: EndpointId) -> &mut Endpoint {
        self.endpoints.get_mut(id).expect("live endpoint")
    }

    /// The endpoint `id` if `owner` holds it.
    /// The role of endpoint `id`, which `owner` must hold.
    pub fn role_of(&self, owner: Owner, id: EndpointId) -> Result<Role, Fault> {
        self.held(owner, id).map(|e| e.role)
    }

    fn held(&self, owner: Owner, id: EndpointId) -> Result<&Endpoint, Fault> {
        match self.ep(id) {
            Some(ep) if ep.holder == Holder::Process(owner) => Ok(ep),
            _ => fault(format!("endpoint handle {id} is not held by this SIP")),
        }
    }

    /// Describes an endpoint in `state` (read from its flow) for error reports:
    /// `contract Echo, importer in state Ready`.
    fn describe(&self, ep: &Endpoint, state: u16) -> String {
        let p = &self.protocols[ep.contract as usize];
        format!(
            "contract {}, {} in state {}",
            p.name,
            ep.role.name(),
            p.states[state as usize].name
        )
    }

    /// The fault of sending `message` on `ep` in `state`, which the contract forbids.
    fn violation(&self, ep: &Endpoint, state: u16, message: &str) -> Fault {
        Fault(format!(
            "contract violation: {} may not send {message}",
            self.describe(ep, state)
        ))
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
        Ok(p.name == contract && ep.role == role && ep.flow.lock().state == p.initial)
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
    /// posted a receive ([`Channels::post`]) that the message fits, nothing is queued
    /// before it and its quota can take what the message carries: `deliver(landing,
    /// bytes)` copies the message there (the one copy of a rendezvous) and returns true,
    /// and the receiver's side of the exchange (its state, the handles it now holds)
    /// happens at once. If `deliver` returns false the message is queued as usual.
    pub fn send_direct(
        &mut self,
        owner: Owner,
        id: EndpointId,
        bytes: &[u8],
        deliver: &mut dyn FnMut(Landing, &[u8]) -> bool,
    ) -> Result<EndpointId, SendError> {
        let ep = self.held(owner, id).map_err(SendError::Fault)?;
        let p = &self.protocols[ep.contract as usize];
        let state = ep.flow.lock().state;
        let checked = wire::check(p, bytes).map_err(|why| {
            SendError::Fault(Fault(format!(
                "malformed message on {}: {why}",
                self.describe(ep, state)
            )))
        })?;
        let message = &p.messages[checked.message as usize];
        let Some(next) = p.step(state, checked.message, ep.role.sends()) else {
            return Err(SendError::Fault(self.violation(ep, state, &message.name)));
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
                    let carried_state = carried.flow.lock().state;
                    if &cp.name != want || carried.role != *role || carried_state != cp.initial {
                        return Err(SendError::Fault(Fault(format!(
                            "{}.{} must be a {} end of {want} in its initial state, not {}",
                            message.name,
                            field.name,
                            role.name(),
                            self.describe(carried, carried_state)
                        ))));
                    }
                }
            } else if !matches!(self.blocks.get(h.handle), Some(b) if b.holder == Holder::Process(owner))
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
        let flow = target.flow.lock();
        self.room_for(target, &flow, &message.name, bytes.len())
            .map_err(SendError::Fault)?;
        let (landing, target_state) = (flow.landing_for(bytes.len()), flow.state);
        drop(flow);
        // Where the target sits: held by a process, or inside messages. Carrying an
        // endpoint into a queue inside that endpoint's own queue closes a cycle.
        let cycle = if checked.handles.iter().any(|h| h.endpoint) {
            self.closes_cycle(peer, &checked.handles)
                .map_err(SendError::Fault)?
        } else {
            None
        };
        // A receiver waiting with room: one copy, straight into its buffer.
        if let (Holder::Process(receiver), Some(landing)) = (target.holder, landing)
            && self.carried_fits(receiver, &checked.handles)
            && deliver(landing, bytes)
        {
            let received = p
                .step(target_state, checked.message, target.role.peer().sends())
                .expect("both ends follow the same state machine");
            self.ep_mut(id).flow().state = next;
            self.ep_mut(peer)
                .flow()
                .delivered_directly(received, bytes.len());
            self.take_handles(&checked.handles, receiver);
            return Ok(peer);
        }
        // Commit: state, holders, copy into the peer's preallocated slot.
        self.ep_mut(id).flow().state = next;
        for h in &checked.handles {
            let holder = Holder::InTransit(peer);
            if h.endpoint {
                self.set_ep_holder(h.handle, holder);
            } else {
                self.set_block_holder(h.handle, holder);
            }
        }
        self.ep_mut(peer).flow().push(bytes);
        if let Some(member) = cycle {
            // Nobody can ever receive from the cycle: free it now (the peers see it closed).
            self.doom(member);
        }
        Ok(peer)
    }

    /// Whether `target`'s queue (its `flow`, locked) has room for a message `name` of
    /// `len` bytes. The contract bounds both, so a sender that finds no room broke it.
    fn room_for(
        &self,
        target: &Endpoint,
        flow: &Flow,
        name: &str,
        len: usize,
    ) -> Result<(), Fault> {
        if flow.queued == flow.lens.len() {
            // The contract's bound makes this impossible; refuse rather than allocate.
            return fault(format!(
                "queue of {} is full ({} messages): the contract bound was exceeded",
                self.describe(target, flow.state),
                flow.lens.len()
            ));
        }
        if len > flow.slot_size {
            return fault(format!(
                "{name}: {len} bytes exceed the contract's largest message"
            ));
        }
        Ok(())
    }

    /// If carrying `handles` into `target`'s queue closes a cycle of endpoints in transit,
    /// an endpoint of the cycle. Faults the sender if `target` is nested too deep.
    fn closes_cycle(
        &self,
        target: EndpointId,
        handles: &[wire::HandleField],
    ) -> Result<Option<EndpointId>, Fault> {
        let mut at = target;
        for _ in 0..MAX_NESTING {
            match self.ep(at).map(|e| e.holder) {
                Some(Holder::InTransit(container)) => {
                    if handles.iter().any(|h| h.endpoint && h.handle == container) {
                        return Ok(Some(container));
                    }
                    at = container;
                }
                _ => return Ok(None),
            }
        }
        fault(format!(
            "the receiving endpoint is nested more than {MAX_NESTING} messages deep in transit"
        ))
    }

    /// Cost of the carried objects not already charged to `receiver`: (objects, bytes).
    fn carried_cost(&self, receiver: Owner, handles: &[wire::HandleField]) -> (u32, u64) {
        let mut total = (0, 0);
        for h in handles {
            let (charged, cost) = if h.endpoint {
                self.ep(h.handle)
                    .map_or((receiver, 0), |e| (e.charged, e.cost))
            } else {
                self.blocks
                    .get(h.handle)
                    .map_or((receiver, 0), |b| (b.charged, b.cost()))
            };
            if charged != receiver {
                total.0 += 1;
                total.1 += cost;
            }
        }
        total
    }

    fn carried_fits(&self, receiver: Owner, handles: &[wire::HandleField]) -> bool {
        let (objects, bytes) = self.carried_cost(receiver, handles);
        objects == 0 || self.accounts.fits(receiver, objects, bytes)
    }

    /// Gives every endpoint and block in `handles` to `receiver`, moving their charges.
    fn take_handles(&mut self, handles: &[wire::HandleField], receiver: Owner) {
        for h in handles {
            let (from, cost) = if h.endpoint {
                self.set_ep_holder(h.handle, Holder::Process(receiver));
                let ep = self.ep_mut(h.handle);
                let from = core::mem::replace(&mut ep.charged, receiver);
                (from, ep.cost)
            } else {
                self.set_block_holder(h.handle, Holder::Process(receiver));
                let Some(b) = self.blocks.get_mut(h.handle) else {
                    continue;
                };
                let from = core::mem::replace(&mut b.charged, receiver);
                (from, b.cost())
            };
            if from != receiver {
                self.accounts.uncharge(from, 1, cost);
                self.accounts.force(receiver, 1, cost);
            }
        }
    }

    /// True if a receive on `owner`'s endpoint `id` would not block.
    pub fn ready(&self, owner: Owner, id: EndpointId) -> Result<bool, Fault> {
        let ep = self.held(owner, id)?;
        let flow = ep.flow.lock();
        Ok(flow.queued > 0 || flow.delivered.is_some() || ep.peer.is_none())
    }

    /// Posts a receive of up to `capacity` bytes at `landing` on `owner`'s endpoint `id`,
    /// whose holder is about to block: the next sender may deliver into it directly.
    pub fn post(
        &self,
        owner: Owner,
        id: EndpointId,
        capacity: usize,
        landing: Landing,
    ) -> Result<(), Fault> {
        self.held(owner, id)?.flow.lock().posted = Some((capacity, landing));
        Ok(())
    }

    /// Withdraws a posted receive and takes a message delivered into it meanwhile (its
    /// length), which counts as received.
    pub fn take_delivered(&self, owner: Owner, id: EndpointId) -> Option<usize> {
        let mut flow = self.held(owner, id).ok()?.flow.lock();
        flow.posted = None;
        flow.delivered.take()
    }

    /// Receives the next message for `owner`'s endpoint `id` into `out`; returns its length.
    pub fn recv(
        &mut self,
        owner: Owner,
        id: EndpointId,
        out: &mut [u8],
    ) -> Result<usize, RecvError> {
        let (len, next, checked) = {
            let ep = self.held(owner, id).map_err(RecvError::Fault)?;
            let flow = ep.flow.lock();
            let (len, next, checked) = self.peek(ep, &flow, out)?;
            if !self.carried_fits(owner, &checked.handles) {
                return Err(RecvError::OverQuota);
            }
            out[..len].copy_from_slice(flow.message(0));
            (len, next, checked)
        };
        let flow = self.ep_mut(id).flow();
        flow.state = next;
        flow.pop();
        self.take_handles(&checked.handles, owner);
        Ok(len)
    }

    /// The next message of endpoint `ep` (its `flow`, locked) if `out` can take it: its
    /// length, the state receiving it leads to, and what it carries.
    fn peek(
        &self,
        ep: &Endpoint,
        flow: &Flow,
        out: &[u8],
    ) -> Result<(usize, u16, wire::Checked), RecvError> {
        if flow.queued == 0 {
            return Err(if ep.peer.is_none() {
                RecvError::PeerClosed
            } else {
                RecvError::Empty
            });
        }
        let bytes = flow.message(0);
        if bytes.len() > out.len() {
            return Err(RecvError::TooSmall(bytes.len()));
        }
        let p = &self.protocols[ep.contract as usize];
        let checked = wire::check(p, bytes).expect("queued messages were checked on send");
        let next = p
            .step(flow.state, checked.message, ep.role.peer().sends())
            .expect("both ends follow the same state machine");
        Ok((bytes.len(), next, checked))
    }

    // --- the message path under a shared borrow -------------------------------------

    /// [`Channels::send_direct`] for a message that carries no endpoint or block, with the
    /// manager borrowed shared: only the sender's and the peer's flows change, each under
    /// its own lock (taken in the order of their handles), so messages on different
    /// channels go at once. `Ok(None)` for a message that carries handles (nothing was
    /// done: send it with [`Channels::send_direct`], which moves holders and charges).
    /// Faults and `PeerClosed` are as `send_direct` reports them.
    pub fn send_shared(
        &self,
        owner: Owner,
        id: EndpointId,
        bytes: &[u8],
        deliver: &mut dyn FnMut(Landing, &[u8]) -> bool,
    ) -> Result<Option<EndpointId>, SendError> {
        let ep = self.held(owner, id).map_err(SendError::Fault)?;
        let p = &self.protocols[ep.contract as usize];
        let checked = match wire::check(p, bytes) {
            Ok(checked) if checked.handles.is_empty() => checked,
            // Faults are reported (with the state) by the exclusive path.
            _ => return Ok(None),
        };
        let message = &p.messages[checked.message as usize];
        let violation = |state: u16| SendError::Fault(self.violation(ep, state, &message.name));
        let Some(peer) = ep.peer else {
            // As `send_direct`: a message the contract forbids is the sender's fault even
            // when nobody would receive it.
            let state = ep.flow.lock().state;
            p.step(state, checked.message, ep.role.sends())
                .ok_or_else(|| violation(state))?;
            return Err(SendError::PeerClosed);
        };
        let target = self.ep(peer).expect("peer of a live endpoint is live");
        // Lock order: the lower handle first (two ends sending to each other at once).
        let (mut own, mut theirs) = if id < peer {
            let own = ep.flow.lock();
            (own, target.flow.lock())
        } else {
            let theirs = target.flow.lock();
            (ep.flow.lock(), theirs)
        };
        let Some(next) = p.step(own.state, checked.message, ep.role.sends()) else {
            return Err(violation(own.state));
        };
        self.room_for(target, &theirs, &message.name, bytes.len())
            .map_err(SendError::Fault)?;
        // A receiver waiting with room: one copy, straight into its buffer.
        if let (Holder::Process(_), Some(landing)) =
            (target.holder, theirs.landing_for(bytes.len()))
            && deliver(landing, bytes)
        {
            let received = p
                .step(theirs.state, checked.message, target.role.peer().sends())
                .expect("both ends follow the same state machine");
            theirs.delivered_directly(received, bytes.len());
        } else {
            theirs.push(bytes);
        }
        own.state = next;
        Ok(Some(peer))
    }

    /// [`Channels::recv`] with the manager borrowed shared, for a message that carries no
    /// endpoint or block (only this endpoint's flow changes, under its lock). `Ok(None)`
    /// when the next message carries handles (nothing was received: receive it with
    /// [`Channels::recv`], which moves holders and charges).
    pub fn recv_shared(
        &self,
        owner: Owner,
        id: EndpointId,
        out: &mut [u8],
    ) -> Result<Option<usize>, RecvError> {
        let ep = self.held(owner, id).map_err(RecvError::Fault)?;
        let mut flow = ep.flow.lock();
        let (len, next, checked) = self.peek(ep, &flow, out)?;
        if !checked.handles.is_empty() {
            return Ok(None);
        }
        out[..len].copy_from_slice(flow.message(0));
        flow.state = next;
        flow.pop();
        Ok(Some(len))
    }

    /// Closes `owner`'s endpoint `id`: the peer sees it closed at once; the endpoint and
    /// what is queued for it are freed by [`Channels::reap`]. Returns the peer, if any.
    pub fn close(&mut self, owner: Owner, id: EndpointId) -> Result<Option<EndpointId>, Fault> {
        self.held(owner, id)?;
        Ok(self.doom(id))
    }

    /// Marks an endpoint doomed and detaches its peer. Constant time, no allocation.
    fn doom(&mut self, id: EndpointId) -> Option<EndpointId> {
        let next = self.doomed;
        if self.ep(id)?.holder == Holder::Doomed {
            return None;
        }
        self.set_ep_holder(id, Holder::Doomed);
        let ep = self.ep_mut(id);
        ep.flow().posted = None;
        ep.next_doomed = next;
        let peer = ep.peer.take();
        self.doomed = Some(id);
        if let Some(peer) = peer
            && let Some(peer_ep) = self.endpoints.get_mut(peer)
        {
            peer_ep.peer = None;
        }
        peer
    }

    /// Frees up to `budget` doomed endpoints, dooming the endpoints and freeing the blocks
    /// their queued messages carried. Returns true while doomed endpoints remain.
    pub fn reap(&mut self, budget: usize) -> bool {
        for _ in 0..budget {
            let Some(id) = self.doomed else {
                return false;
            };
            let ep = self
                .endpoints
                .remove(id)
                .expect("doomed endpoints are live");
            self.doomed = ep.next_doomed;
            self.accounts.uncharge(ep.charged, 1, ep.cost);
            let flow = ep.flow.into_inner();
            for k in 0..flow.queued {
                let p = &self.protocols[ep.contract as usize];
                let Ok(checked) = wire::check(p, flow.message(k)) else {
                    continue;
                };
                for h in checked.handles {
                    if h.endpoint {
                        if matches!(self.ep(h.handle), Some(c) if c.holder == Holder::InTransit(id))
                        {
                            self.doom(h.handle);
                        }
                    } else if matches!(self.blocks.get(h.handle), Some(b) if b.holder == Holder::InTransit(id))
                    {
                        self.remove_block(h.handle);
                    }
                }
            }
        }
        self.doomed.is_some()
    }

    /// Whether closed endpoints wait for [`Channels::reap`].
    pub fn has_doomed(&self) -> bool {
        self.doomed.is_some()
    }

    /// Frees every doomed endpoint (for tests and callers with nothing to interleave).
    pub fn reap_all(&mut self) {
        while self.reap(usize::MAX) {}
    }

    /// Part of ending a process: unpins, dooms and frees up to `budget` of the objects
    /// `owner` holds (first the pins of its blocks, then its endpoints, then its blocks),
    /// following its own lists, never the shared tables. Returns true while more remain.
    /// Follow with [`Channels::reap`].
    pub fn release_step(&mut self, owner: Owner, budget: usize) -> bool {
        for _ in 0..budget {
            let Some(heads) = self.accounts.heads(owner) else {
                return false;
            };
            if let Some(id) = heads.pins {
                // The owner's devices are quiesced before this runs: its pins are over.
                self.set_pin(id, None);
            } else if let Some(id) = heads.endpoints {
                self.doom(id);
            } else if let Some(id) = heads.blocks {
                self.remove_block(id);
            } else {
                return false;
            }
        }
        true
    }

    /// Frees everything `owner` holds (the process has ended), all at once.
    pub fn release_owner(&mut self, owner: Owner) {
        while self.release_step(owner, usize::MAX) {}
        self.reap_all();
    }

    // --- who holds what ------------------------------------------------------------

    /// Changes endpoint `id`'s holder, moving it between owners' lists.
    fn set_ep_holder(&mut self, id: EndpointId, holder: Holder) {
        set_holder(&mut self.endpoints, &mut self.accounts, id, holder);
    }

    /// Changes block `id`'s holder, moving it between owners' lists.
    fn set_block_holder(&mut self, id: BufferId, holder: Holder) {
        set_holder(&mut self.blocks, &mut self.accounts, id, holder);
    }

    /// Sets which driver block `id` is pinned by, moving it between pin lists.
    fn set_pin(&mut self, id: BufferId, driver: Option<Owner>) {
        let Some(old) = self.blocks.get(id).map(|b| b.pinned_by) else {
            return;
        };
        if old == driver {
            return;
        }
        if let Some(owner) = old {
            let head = self.accounts.heads_mut(owner).map(|h| &mut h.pins);
            held::remove(&mut self.blocks, head, id, pin_link);
        }
        if let Some(b) = self.blocks.get_mut(id) {
            b.pinned_by = driver;
        }
        if let Some(owner) = driver
            && let Some(heads) = self.accounts.heads_mut(owner)
        {
            held::push(&mut self.blocks, &mut heads.pins, id, pin_link);
        }
    }

    /// Moves endpoint `id` from `from` to `to` (the system manifest handing initial ends).
    pub fn give(&mut self, from: Owner, id: EndpointId, to: Owner) -> Result<(), Fault> {
        self.held(from, id)?;
        self.set_ep_holder(id, Holder::Process(to));
        let ep = self.ep_mut(id);
        let was = core::mem::replace(&mut ep.charged, to);
        let cost = ep.cost;
        self.accounts.uncharge(was, 1, cost);
        self.accounts.force(to, 1, cost);
        Ok(())
    }

    /// Checks the manager's ownership and accounting invariants (for tests and fuzzing;
    /// linear in everything it holds): peers point at each other; whatever is in transit
    /// is carried by a message in the queue it names; doomed endpoints are exactly those
    /// on the doomed list; each of `owners` is charged exactly for the objects charged to
    /// it. Returns the first violation found.
    pub fn check_invariants(&self, owners: &[Owner]) -> Result<(), String> {
        let carried_by = |container: EndpointId, handle: u32, endpoint: bool| {
            let Some(c) = self.ep(container) else {
                return false;
            };
            let p = &self.protocols[c.contract as usize];
            let flow = c.flow.lock();
            (0..flow.queued).any(|k| {
                wire::check(p, flow.message(k)).is_ok_and(|m| {
                    m.handles
                        .iter()
                        .any(|h| h.endpoint == endpoint && h.handle == handle)
                })
            })
        };
        let mut charged: Vec<(Owner, u32, u64)> = Vec::new();
        let mut charge = |owner: Owner, cost: u64| match charged.iter_mut().find(|c| c.0 == owner) {
            Some(c) => {
                c.1 += 1;
                c.2 += cost;
            }
            None => charged.push((owner, 1, cost)),
        };
        let mut doomed = 0;
        for i in 0..self.endpoints.capacity() {
            let Some((id, ep)) = self.endpoints.at(i) else {
                continue;
            };
            charge(ep.charged, ep.cost);
            let (queued, slots) = {
                let flow = ep.flow.lock();
                (flow.queued, flow.lens.len())
            };
            if queued > slots {
                return Err(format!("endpoint {id}: {queued} queued in {slots} slots"));
            }
            if let Some(peer) = ep.peer {
                match self.ep(peer) {
                    Some(p) if p.peer == Some(id) && p.holder != Holder::Doomed => {}
                    _ => return Err(format!("endpoint {id}: peer {peer} does not point back")),
                }
            }
            match ep.holder {
                Holder::InTransit(c) if !carried_by(c, id, true) => {
                    return Err(format!(
                        "endpoint {id}: in transit in {c}, whose queue does not carry it"
                    ));
                }
                Holder::Doomed => {
                    doomed += 1;
                    if ep.peer.is_some() {
                        return Err(format!("doomed endpoint {id} still has a peer"));
                    }
                }
                Holder::Pinned(_) => return Err(format!("endpoint {id} is pinned")),
                _ => {}
            }
        }
        let mut listed = 0;
        let mut next = self.doomed;
        while let Some(id) = next {
            match self.ep(id) {
                Some(ep) if ep.holder == Holder::Doomed => next = ep.next_doomed,
                _ => return Err(format!("doomed list names {id}, which is not doomed")),
            }
            listed += 1;
            if listed > doomed {
                return Err("the doomed list loops or names endpoints twice".into());
            }
        }
        if listed != doomed {
            return Err(format!(
                "{doomed} doomed endpoints, {listed} on the doomed list"
            ));
        }
        for i in 0..self.blocks.capacity() {
            let Some((id, b)) = self.blocks.at(i) else {
                continue;
            };
            charge(b.charged, b.cost());
            match b.holder {
                Holder::InTransit(c) if !carried_by(c, id, false) => {
                    return Err(format!(
                        "block {id}: in transit in {c}, whose queue does not carry it"
                    ));
                }
                Holder::Pinned(d) if b.pinned_by != Some(d) => {
                    return Err(format!(
                        "block {id}: kept for driver {d}, pinned by {:?}",
                        b.pinned_by
                    ));
                }
                Holder::Doomed => return Err(format!("block {id} is doomed")),
                _ => {}
            }
        }
        for &owner in owners {
            self.check_lists(owner)?;
            let (objects, bytes) = charged
                .iter()
                .find(|c| c.0 == owner)
                .map_or((0, 0), |c| (c.1, c.2));
            let usage = self.accounts.usage(owner);
            if (usage.objects, usage.bytes) != (objects, bytes) {
                return Err(format!(
                    "owner {owner} is charged {usage:?}, holds {objects} objects of {bytes} bytes"
                ));
            }
        }
        Ok(())
    }

    /// Checks that `owner`'s lists hold exactly the objects it holds and the blocks it
    /// pinned (part of [`Channels::check_invariants`]).
    fn check_lists(&self, owner: Owner) -> Result<(), String> {
        let heads = self.accounts.heads(owner).unwrap_or_default();
        let holds = |h: Holder| listed_owner(h) == Some(owner);
        check_list(
            &self.endpoints,
            heads.endpoints,
            Endpoint::link_ref,
            |e| holds(e.holder),
            "endpoint",
        )
        .and_then(|()| {
            check_list(
                &self.blocks,
                heads.blocks,
                Block::link_ref,
                |b| holds(b.holder),
                "block",
            )
        })
        .and_then(|()| {
            check_list(
                &self.blocks,
                heads.pins,
                |b| &b.pin,
                |b| b.pinned_by == Some(owner),
                "pin",
            )
        })
        .map_err(|why| format!("owner {owner}: {why}"))
    }

    // --- exchange heap -------------------------------------------------------------

    fn held_block(&mut self, owner: Owner, id: BufferId) -> Result<&mut Block, Fault> {
        self.held_block_ref(owner, id)?;
        Ok(self.blocks.get_mut(id).expect("just found"))
    }

    /// `owner`'s block `id`, with the manager borrowed shared.
    fn held_block_ref(&self, owner: Owner, id: BufferId) -> Result<&Block, Fault> {
        match self.blocks.get(id) {
            Some(b) if b.holder == Holder::Process(owner) => Ok(b),
            _ => fault(format!("buffer handle {id} is not held by this SIP")),
        }
    }

    /// Frees a block, or, if a live driver's device may still DMA into it, keeps it
    /// (charged to that driver, reachable by nobody) until the driver ends. Returns the
    /// memory to drop, if it was freed.
    fn remove_block(&mut self, id: BufferId) -> Option<Vec<u8>> {
        let b = self.blocks.get(id)?;
        if let Some(driver) = b.pinned_by
            && b.holder != Holder::Pinned(driver)
        {
            self.set_block_holder(id, Holder::Pinned(driver));
            let b = self.blocks.get_mut(id)?;
            let (was, cost) = (core::mem::replace(&mut b.charged, driver), b.cost());
            self.accounts.uncharge(was, 1, cost);
            self.accounts.force(driver, 1, cost);
            return None;
        }
        // Out of every list first (a kept block's pin ends with it).
        self.set_pin(id, None);
        self.set_block_holder(id, Holder::Doomed);
        let block = self.blocks.remove(id)?;
        self.accounts.uncharge(block.charged, 1, block.cost());
        Some(block.data.into_inner())
    }

    /// `owner`'s block, whose physical address it is about to learn for its device: the
    /// block is pinned to `owner` until `owner` ends (a free before then only hides it).
    pub fn pin_block(&mut self, owner: Owner, id: BufferId) -> Result<&mut [u8], Fault> {
        self.held_block(owner, id)?;
        self.set_pin(id, Some(owner));
        Ok(self.held_block(owner, id)?.data.get_mut())
    }

    /// Charges `owner` for a block of `size` bytes before the caller allocates it (outside
    /// any lock); [`Channels::add_block`] or [`Channels::cancel_block`] follows.
    pub fn charge_block(&mut self, owner: Owner, size: usize) -> Result<(), OverQuota> {
        self.accounts.charge(owner, 1, block_cost(size))
    }

    /// Gives back a [`Channels::charge_block`] charge whose allocation failed.
    pub fn cancel_block(&mut self, owner: Owner, size: usize) {
        self.accounts.uncharge(owner, 1, block_cost(size));
    }

    /// Adds the zeroed block `data` held by `owner`, already charged with
    /// [`Channels::charge_block`]. If the table cannot grow, the charge is given back.
    pub fn add_block(&mut self, owner: Owner, data: Vec<u8>) -> Result<BufferId, OverQuota> {
        let size = data.len();
        let block = Block {
            data: spin::Mutex::new(data),
            size,
            holder: Holder::Process(owner),
            charged: owner,
            pinned_by: None,
            held: Link::default(),
            pin: Link::default(),
        };
        let id = self.blocks.insert(block).map_err(|_| {
            self.cancel_block(owner, size);
            OverQuota
        })?;
        list(&mut self.blocks, &mut self.accounts, id);
        Ok(id)
    }

    /// The bytes of `owner`'s block, for reading or writing.
    pub fn block_data(&mut self, owner: Owner, id: BufferId) -> Result<&mut [u8], Fault> {
        Ok(self.held_block(owner, id)?.data.get_mut())
    }

    /// The size of `owner`'s block (fixed at creation; its bytes' lock is not taken).
    pub fn block_len(&self, owner: Owner, id: BufferId) -> Result<usize, Fault> {
        Ok(self.held_block_ref(owner, id)?.size)
    }

    /// Runs `f` on the bytes of `owner`'s block with the manager borrowed shared (the
    /// block's own lock held): reads and writes of different blocks go at once.
    pub fn block_data_shared<R>(
        &self,
        owner: Owner,
        id: BufferId,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Fault> {
        Ok(f(&mut self.held_block_ref(owner, id)?.data.lock()))
    }

    /// Frees `owner`'s block; returns its memory (if it was not pinned by a driver) so the
    /// caller can drop it outside locks.
    pub fn free_block(&mut self, owner: Owner, id: BufferId) -> Result<Option<Vec<u8>>, Fault> {
        self.held_block(owner, id)?;
        Ok(self.remove_block(id))
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

    const QUOTA: Quota = Quota {
        objects: 64,
        bytes: 1 << 20,
    };

    fn channels() -> Channels {
        let mut ch = Channels::new(contracts::compile(ECHO).unwrap());
        for owner in [SERVER, CLIENT, OTHER] {
            ch.open_account(owner, QUOTA).unwrap();
        }
        ch
    }

    fn block(ch: &mut Channels, owner: Owner, data: Vec<u8>) -> BufferId {
        ch.charge_block(owner, data.len()).unwrap();
        ch.add_block(owner, data).unwrap()
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
    fn no_channel_goes_to_an_ended_owner() {
        let mut ch = channels();
        ch.close_account(SERVER);
        assert_eq!(
            ch.connect(0, SERVER, CLIENT).err(),
            Some(CreateError::OwnerEnded)
        );
        assert_eq!(
            ch.connect(0, CLIENT, 99).err(),
            Some(CreateError::OwnerEnded)
        );
        assert_eq!(ch.counts(), Counts::default());
        ch.open_account(SERVER, QUOTA).unwrap();
        assert!(ch.connect(0, SERVER, CLIENT).is_ok());
    }

    #[test]
    fn a_crash_record_sees_each_held_endpoint_with_its_state_queue_and_peer() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        ch.send(CLIENT, imp, &msg(0, 7, b"hi")).unwrap();
        let server: Vec<_> = ch.held_endpoints(SERVER).collect();
        assert_eq!(server.len(), 1);
        assert_eq!(
            (server[0].contract, server[0].role, server[0].queued),
            ("Echo", Role::Exporter, 1)
        );
        assert!(server[0].peer_open);
        assert!(!server[0].owes_reply, "the Ping is not received yet");
        let mut buf = [0u8; 64];
        ch.recv(SERVER, exp, &mut buf).unwrap();
        let server: Vec<_> = ch.held_endpoints(SERVER).collect();
        assert!(server[0].owes_reply, "a Ping received, its Pong not sent");
        assert!(!ch.held_endpoints(CLIENT).next().unwrap().owes_reply);
        assert_eq!(ch.held_endpoints(OTHER).count(), 0);
        ch.close(CLIENT, imp).unwrap();
        let server: Vec<_> = ch.held_endpoints(SERVER).collect();
        assert!(!server[0].peer_open, "the client closed its end");
        let _ = exp;
    }

    #[test]
    fn request_reply_follows_the_contract() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
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
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
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
        let (exp, _imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let flow = ch.ep(exp).unwrap().flow.lock();
        assert_eq!(flow.lens.len(), 1);
        assert_eq!(
            flow.slots.len(),
            ch.protocols()[0].max_message_bytes() as usize
        );
    }

    #[test]
    fn receive_buffer_too_small_keeps_the_message() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
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
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
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
        ch.reap_all();
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
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let (_exp2, imp2) = ch.connect(0, OTHER, CLIENT).unwrap();
        let block = block(&mut ch, CLIENT, vec![0; 16384]);
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
        let (_exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let (_exp2, imp2) = ch.connect(0, OTHER, OTHER).unwrap();
        let mine = block(&mut ch, CLIENT, vec![0; 8]);
        let theirs = block(&mut ch, OTHER, vec![0; 8]);
        let (_e3, my_imp) = ch.connect(0, CLIENT, CLIENT).unwrap();
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
        let (exp4, _imp4) = ch.connect(0, CLIENT, CLIENT).unwrap();
        let SendError::Fault(Fault(why)) = ch.send(CLIENT, imp, &carry(mine, exp4)).unwrap_err()
        else {
            panic!()
        };
        assert!(why.contains("must be a importer end of Echo"), "{why}");
    }

    #[test]
    fn ending_a_process_frees_everything_it_held_and_everything_in_flight_to_it() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let (_exp2, imp2) = ch.connect(0, CLIENT, CLIENT).unwrap();
        let carried = block(&mut ch, CLIENT, vec![0; 100]);
        ch.send(CLIENT, imp, &carry(carried, imp2)).unwrap();
        let _spare = block(&mut ch, SERVER, vec![0; 10]);
        // The server dies with the message (and what it carries) still queued.
        ch.release_owner(SERVER);
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
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
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
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
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
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let (_other_exp, other_imp) = ch.connect(0, CLIENT, CLIENT).unwrap();
        let block = block(&mut ch, CLIENT, vec![1, 2, 3]);
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

    const PASS: &str = "contract Pass {
        message Give(e: endpoint);
        message Took;
        initial state S { Give? -> Took! -> S; }
    }";

    /// Echo is contract 0, Pass contract 1.
    fn with_pass() -> Channels {
        let mut protocols = contracts::compile(ECHO).unwrap();
        protocols.extend(contracts::compile(PASS).unwrap());
        let mut ch = Channels::new(protocols);
        for owner in [SERVER, CLIENT, OTHER] {
            ch.open_account(owner, QUOTA).unwrap();
        }
        ch
    }

    fn give(e: EndpointId) -> Vec<u8> {
        let mut m = 0u16.to_le_bytes().to_vec();
        m.extend(e.to_le_bytes());
        m
    }

    /// Pass channels (e_k, i_k) for k = 0..=n with e_{k-1} sent into e_k's queue: e_0
    /// sits n messages deep. Returns every channel.
    fn chain(ch: &mut Channels, owner: Owner, n: usize) -> Vec<(EndpointId, EndpointId)> {
        let mut ends = vec![ch.create(1, owner).unwrap()];
        for k in 1..=n {
            let (e, i) = ch.create(1, owner).unwrap();
            ch.send(owner, i, &give(ends[k - 1].0)).unwrap();
            ends.push((e, i));
        }
        ends
    }

    #[test]
    fn creating_channels_and_blocks_stops_at_the_quota() {
        let mut ch = channels();
        ch.set_quota(
            CLIENT,
            Quota {
                objects: 5,
                bytes: 1 << 20,
            },
        );
        ch.create(0, CLIENT).unwrap();
        ch.create(0, CLIENT).unwrap();
        assert_eq!(ch.create(0, CLIENT), Err(CreateError::OutOfMemory));
        assert!(ch.charge_block(CLIENT, 10).is_ok());
        assert_eq!(ch.charge_block(CLIENT, 10), Err(OverQuota));
        ch.cancel_block(CLIENT, 10);
        // Bytes too.
        assert_eq!(ch.charge_block(CLIENT, 2 << 20), Err(OverQuota));
        assert_eq!(ch.create(9, CLIENT), Err(CreateError::NoContract));
        // Another SIP is unaffected.
        assert!(ch.create(0, SERVER).is_ok());
        ch.release_owner(CLIENT);
        assert_eq!(ch.usage(CLIENT), Usage::default());
    }

    #[test]
    fn objects_in_transit_stay_charged_to_the_sender_until_received() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let server_before = ch.usage(SERVER);
        let (_e, carried) = ch.create(0, CLIENT).unwrap();
        let b = block(&mut ch, CLIENT, vec![0; 1000]);
        let client_with = ch.usage(CLIENT);
        ch.send(CLIENT, imp, &carry(b, carried)).unwrap();
        assert_eq!(ch.usage(CLIENT), client_with, "still the sender's");
        ch.check_invariants(&[SERVER, CLIENT]).unwrap();
        assert_eq!(ch.usage(SERVER), server_before);
        ch.recv(SERVER, exp, &mut [0u8; 64]).unwrap();
        assert_eq!(ch.usage(SERVER).objects, server_before.objects + 2);
        assert_eq!(
            ch.usage(SERVER).bytes,
            server_before.bytes + block_cost(1000) + ch.ep(carried).unwrap().cost
        );
        assert_eq!(ch.usage(CLIENT).objects, client_with.objects - 2);
    }

    #[test]
    fn a_receiver_whose_quota_cannot_take_the_message_keeps_it_queued() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let b = block(&mut ch, CLIENT, vec![0; 1000]);
        let (_e, carried) = ch.create(0, CLIENT).unwrap();
        let m = carry(b, carried);
        // The server is full: a direct delivery is not attempted, the receive is refused.
        ch.set_quota(
            SERVER,
            Quota {
                objects: 1,
                bytes: 1 << 20,
            },
        );
        ch.post(SERVER, exp, 64, [0, 0]).unwrap();
        let mut delivered = false;
        ch.send_direct(CLIENT, imp, &m, &mut |_, _| {
            delivered = true;
            true
        })
        .unwrap();
        assert!(!delivered);
        assert_eq!(ch.take_delivered(SERVER, exp), None);
        let mut buf = [0u8; 64];
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Err(RecvError::OverQuota));
        ch.set_quota(SERVER, QUOTA);
        assert_eq!(ch.recv(SERVER, exp, &mut buf), Ok(m.len()));
        assert!(ch.block_data(SERVER, b).is_ok());
    }

    #[test]
    fn closed_handles_stay_dead_when_their_slot_is_reused() {
        let mut ch = channels();
        let (exp, imp) = ch.create(0, CLIENT).unwrap();
        ch.close(CLIENT, imp).unwrap();
        ch.close(CLIENT, exp).unwrap();
        ch.reap_all();
        let (exp2, imp2) = ch.create(0, CLIENT).unwrap();
        assert!(exp2 != exp && exp2 != imp && imp2 != exp && imp2 != imp);
        assert!(ch.ready(CLIENT, exp).is_err());
        assert!(ch.send(CLIENT, imp, &msg(0, 1, b"")).is_err());
    }

    #[test]
    fn a_long_chain_in_transit_is_destroyed_in_constant_size_steps() {
        let mut ch = with_pass();
        ch.set_quota(
            CLIENT,
            Quota {
                objects: 100_000,
                bytes: 1 << 30,
            },
        );
        let ends = chain(&mut ch, CLIENT, 10_000);
        assert_eq!(ch.counts().endpoints, 2 * 10_001);
        ch.check_invariants(&[CLIENT]).unwrap();
        let (top_e, _) = ends[10_000];
        ch.close(CLIENT, top_e).unwrap();
        // Every step frees at most 4 endpoints, however long the chain.
        let mut steps = 0;
        while ch.reap(4) {
            steps += 1;
        }
        assert_eq!(steps, 10_001 / 4, "one endpoint per link");
        // The importers are still held, and every one sees its peer closed.
        assert_eq!(ch.counts().endpoints, 10_001);
        for (_, i) in &ends {
            assert!(ch.ready(CLIENT, *i).unwrap());
        }
        ch.release_owner(CLIENT);
        assert_eq!(ch.counts(), Counts::default());
        assert_eq!(ch.usage(CLIENT), Usage::default());
    }

    #[test]
    fn sending_into_an_endpoint_buried_too_deep_is_refused() {
        let mut ch = with_pass();
        ch.set_quota(
            CLIENT,
            Quota {
                objects: 1000,
                bytes: 1 << 20,
            },
        );
        let ends = chain(&mut ch, CLIENT, MAX_NESTING + 1);
        let (_, bottom_i) = ends[0];
        let (spare, _) = ch.create(1, CLIENT).unwrap();
        let SendError::Fault(Fault(why)) = ch.send(CLIENT, bottom_i, &give(spare)).unwrap_err()
        else {
            panic!()
        };
        assert!(why.contains("nested more than"), "{why}");
        ch.release_owner(CLIENT);
        assert_eq!(ch.counts(), Counts::default());
    }

    #[test]
    fn a_cycle_in_transit_is_freed_as_soon_as_it_closes() {
        let mut ch = with_pass();
        let ends = chain(&mut ch, CLIENT, 5);
        // e_0 is inside e_1 ... inside e_5; sending e_5 into e_0's queue closes the loop.
        let (top_e, _) = ends[5];
        let (_, bottom_i) = ends[0];
        let before = ch.counts().endpoints;
        ch.send(CLIENT, bottom_i, &give(top_e)).unwrap();
        ch.check_invariants(&[CLIENT]).unwrap();
        ch.reap_all();
        ch.check_invariants(&[CLIENT]).unwrap();
        assert_eq!(
            ch.counts().endpoints,
            before - 6,
            "the six exporters are gone"
        );
        for (_, i) in &ends {
            let mut buf = [0u8; 8];
            assert_eq!(ch.recv(CLIENT, *i, &mut buf), Err(RecvError::PeerClosed));
        }
        ch.release_owner(CLIENT);
        assert_eq!(ch.counts(), Counts::default());
        assert_eq!(ch.usage(CLIENT), Usage::default());
    }

    #[test]
    fn a_process_ending_frees_what_it_holds_but_not_what_it_sent_until_received() {
        let mut ch = with_pass();
        let (e, i) = ch.connect(1, SERVER, CLIENT).unwrap();
        let (ce, _ci) = ch.create(1, CLIENT).unwrap();
        ch.send(CLIENT, i, &give(ce)).unwrap();
        ch.release_owner(CLIENT);
        // ce waits in the server's queue, still charged to its sender.
        assert_eq!(ch.usage(CLIENT).objects, 1);
        ch.recv(SERVER, e, &mut [0u8; 8]).unwrap();
        assert_eq!(ch.usage(CLIENT), Usage::default());
        ch.release_owner(SERVER);
        assert_eq!(ch.counts(), Counts::default());
        assert_eq!(ch.usage(SERVER), Usage::default());
    }

    #[test]
    fn a_block_a_device_may_write_is_kept_until_its_driver_ends() {
        let mut ch = channels();
        const DRIVER: Owner = SERVER;
        let (exp, imp) = ch.connect(0, CLIENT, DRIVER).unwrap();
        let own = block(&mut ch, DRIVER, vec![0; 512]);
        let lent = block(&mut ch, DRIVER, vec![0; 512]);
        ch.pin_block(DRIVER, own).unwrap();
        ch.pin_block(DRIVER, lent).unwrap();
        // The driver frees one: its handle dies, the memory stays, charged to the driver.
        assert_eq!(ch.free_block(DRIVER, own), Ok(None));
        assert!(ch.block_data(DRIVER, own).is_err());
        assert_eq!(ch.counts().blocks, 2);
        // The other travels to a client, which frees it: kept too, charged to the driver.
        let (_e2, carried) = ch.create(0, DRIVER).unwrap();
        ch.send(DRIVER, imp, &carry(lent, carried)).unwrap();
        ch.recv(CLIENT, exp, &mut [0u8; 64]).unwrap();
        assert_eq!(ch.free_block(CLIENT, lent), Ok(None));
        assert_eq!(
            ch.usage(CLIENT).objects,
            2,
            "the carried endpoint and its own end"
        );
        ch.check_invariants(&[CLIENT, DRIVER]).unwrap();
        // The driver ends (its devices quiesced first): both go.
        ch.release_owner(DRIVER);
        assert_eq!(ch.counts().blocks, 0);
        assert_eq!(ch.usage(DRIVER), Usage::default());
        ch.release_owner(CLIENT);
        assert_eq!(ch.counts(), Counts::default());
    }

    #[test]
    fn ending_a_process_visits_only_what_it_holds() {
        let mut ch = channels();
        // Another process holds many objects; the one ending holds three.
        for _ in 0..20 {
            ch.create(0, SERVER).unwrap();
            block(&mut ch, SERVER, vec![0; 8]);
        }
        let (_e, _i) = ch.create(0, CLIENT).unwrap();
        block(&mut ch, CLIENT, vec![0; 8]);
        ch.check_invariants(&[SERVER, CLIENT]).unwrap();
        // One object per step: three steps do it, whatever SERVER holds.
        let mut steps = 0;
        while ch.release_step(CLIENT, 1) {
            steps += 1;
            ch.check_invariants(&[SERVER, CLIENT]).unwrap();
        }
        assert_eq!(steps, 3);
        ch.reap_all();
        assert_eq!(ch.usage(CLIENT), Usage::default());
        assert_eq!(ch.counts().endpoints, 40);
        assert_eq!(ch.counts().blocks, 20);
        ch.check_invariants(&[SERVER, CLIENT]).unwrap();
    }

    #[test]
    fn an_unpinned_block_is_freed_at_once() {
        let mut ch = channels();
        let b = block(&mut ch, CLIENT, vec![7; 10]);
        assert_eq!(ch.free_block(CLIENT, b), Ok(Some(vec![7; 10])));
        assert_eq!(ch.counts().blocks, 0);
    }

    #[test]
    fn messages_without_handles_go_through_the_shared_path() {
        let mut ch = channels();
        let (exp, imp) = ch.connect(0, SERVER, CLIENT).unwrap();
        let shared = &ch;
        let no_delivery = &mut |_: Landing, _: &[u8]| false;
        // A Ping and its Pong, each end's state following the contract.
        assert_eq!(
            shared.send_shared(CLIENT, imp, &msg(0, 7, b"hi"), no_delivery),
            Ok(Some(exp))
        );
        let mut buf = [0u8; 64];
        let len = shared.recv_shared(SERVER, exp, &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..len], &msg(0, 7, b"hi")[..]);
        assert_eq!(
            shared.recv_shared(SERVER, exp, &mut buf),
            Err(RecvError::Empty)
        );
        // Out of turn: the client may not Ping again before its Pong.
        let Err(SendError::Fault(Fault(why))) =
            shared.send_shared(CLIENT, imp, &msg(0, 8, b""), no_delivery)
        else {
            panic!()
        };
        assert!(why.contains("contract violation"), "{why}");
        // A receiver waiting with its buffer posted gets the Pong delivered straight in.
        shared.post(CLIENT, imp, 64, [1, 2]).unwrap();
        let mut landed = Vec::new();
        let mut deliver = |landing: Landing, bytes: &[u8]| {
            assert_eq!(landing, [1, 2]);
            landed.extend_from_slice(bytes);
            true
        };
        assert_eq!(
            shared.send_shared(SERVER, exp, &msg(1, 7, b"hi"), &mut deliver),
            Ok(Some(imp))
        );
        assert_eq!(landed, msg(1, 7, b"hi"));
        assert_eq!(shared.take_delivered(CLIENT, imp), Some(landed.len()));
        assert!(!shared.ready(CLIENT, imp).unwrap());
        // Malformed, or carrying a block and an endpoint: left to the exclusive path,
        // nothing changed.
        assert_eq!(
            shared.send_shared(CLIENT, imp, &[9, 9], no_delivery),
            Ok(None)
        );
        let b = block(&mut ch, CLIENT, vec![5; 8]);
        let (_exp2, imp2) = ch.connect(0, OTHER, CLIENT).unwrap();
        let shared = &ch;
        assert_eq!(
            shared.send_shared(CLIENT, imp, &carry(b, imp2), no_delivery),
            Ok(None)
        );
        assert_eq!(
            shared.recv_shared(SERVER, exp, &mut buf),
            Err(RecvError::Empty)
        );
        ch.send(CLIENT, imp, &carry(b, imp2)).unwrap();
        assert_eq!(ch.recv_shared(SERVER, exp, &mut buf), Ok(None));
        assert!(ch.ready(SERVER, exp).unwrap(), "still queued");
        ch.recv(SERVER, exp, &mut buf).unwrap();
        assert_eq!(ch.block_data(SERVER, b).unwrap(), &[5; 8]);
        // Its bytes, shared: the holder's only.
        assert!(ch.block_data_shared(CLIENT, b, |_| ()).is_err());
        ch.block_data_shared(SERVER, b, |data| data[0] = 6).unwrap();
        assert_eq!(
            ch.block_data_shared(SERVER, b, |data| data.to_vec()),
            Ok(vec![6, 5, 5, 5, 5, 5, 5, 5])
        );
        // Someone else's endpoint, and a closed peer.
        let Err(SendError::Fault(Fault(why))) =
            ch.send_shared(OTHER, imp, &msg(0, 1, b""), no_delivery)
        else {
            panic!()
        };
        assert!(why.contains("not held by this SIP"));
        ch.close(SERVER, exp).unwrap();
        assert_eq!(
            ch.recv_shared(CLIENT, imp, &mut buf),
            Err(RecvError::PeerClosed)
        );
        let (exp3, imp3) = ch.connect(0, SERVER, CLIENT).unwrap();
        ch.close(SERVER, exp3).unwrap();
        assert_eq!(
            ch.send_shared(CLIENT, imp3, &msg(0, 1, b""), no_delivery),
            Err(SendError::PeerClosed)
        );
        // Out of turn with the peer gone: still the sender's fault, as on the exclusive path.
        let Err(SendError::Fault(Fault(why))) =
            ch.send_shared(CLIENT, imp3, &msg(1, 1, b""), no_delivery)
        else {
            panic!()
        };
        assert!(why.contains("contract violation"), "{why}");
        assert_eq!(
            ch.send(CLIENT, imp3, &msg(1, 1, b"")),
            Err(SendError::Fault(Fault(why)))
        );
        ch.check_invariants(&[SERVER, CLIENT, OTHER]).unwrap();
    }

    /// Four channels, each with its client and its server on threads of their own, all
    /// sending through one shared borrow (both ends of a channel locking its two flows at
    /// once, in either order), while another thread keeps making and closing channels
    /// with the manager alone: every payload arrives in order and the books balance.
    #[test]
    fn pairs_on_many_threads_share_the_manager() {
        use std::sync::Arc;
        const PAIRS: usize = 4;
        const ROUNDS: u32 = 2000;
        let mut ch = Channels::new(contracts::compile(ECHO).unwrap());
        let owners: Vec<Owner> = (1..=2 * PAIRS + 1).collect();
        for &owner in &owners {
            ch.open_account(owner, QUOTA).unwrap();
        }
        let ends: Vec<(EndpointId, EndpointId)> = (0..PAIRS)
            .map(|i| ch.connect(0, 2 * i + 1, 2 * i + 2).unwrap())
            .collect();
        let ch = Arc::new(spin::RwLock::new(ch));
        let mut threads = Vec::new();
        for (i, &(exp, imp)) in ends.iter().enumerate() {
            let (server, client) = (2 * i + 1, 2 * i + 2);
            let c = Arc::clone(&ch);
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                for seq in 0..ROUNDS {
                    let ping = loop {
                        match c.read().recv_shared(server, exp, &mut buf) {
                            Ok(Some(len)) => break buf[..len].to_vec(),
                            Err(RecvError::Empty) => std::thread::yield_now(),
                            other => panic!("server: {other:?}"),
                        }
                    };
                    assert_eq!(ping, msg(0, seq, &seq.to_le_bytes()));
                    let pong = msg(1, seq, &seq.to_le_bytes());
                    let sent = c.read().send_shared(server, exp, &pong, &mut |_, _| false);
                    assert_eq!(sent, Ok(Some(imp)));
                }
            }));
            let c = Arc::clone(&ch);
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                for seq in 0..ROUNDS {
                    let ping = msg(0, seq, &seq.to_le_bytes());
                    let sent = c.read().send_shared(client, imp, &ping, &mut |_, _| false);
                    assert_eq!(sent, Ok(Some(exp)));
                    let pong = loop {
                        match c.read().recv_shared(client, imp, &mut buf) {
                            Ok(Some(len)) => break buf[..len].to_vec(),
                            Err(RecvError::Empty) => std::thread::yield_now(),
                            other => panic!("client: {other:?}"),
                        }
                    };
                    assert_eq!(pong, msg(1, seq, &seq.to_le_bytes()));
                }
            }));
        }
        let c = Arc::clone(&ch);
        let loner = 2 * PAIRS + 1;
        let churn = std::thread::spawn(move || {
            for _ in 0..500 {
                let mut ch = c.write();
                let (exp, imp) = ch.create(0, loner).unwrap();
                ch.close(loner, exp).unwrap();
                ch.close(loner, imp).unwrap();
                ch.reap_all();
            }
        });
        for thread in threads {
            thread.join().unwrap();
        }
        churn.join().unwrap();
        let ch = ch.read();
        ch.check_invariants(&owners).unwrap();
        assert_eq!(ch.counts().endpoints, 2 * PAIRS);
    }
}
