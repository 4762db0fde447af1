//! Channels and exchange-heap buffers, as the generated contract bindings use them.
//!
//! SIP code normally uses the typed endpoints generated from contracts
//! (`cordon_sip::contracts!()`); this module is what they are built on: owned handles
//! that close or free themselves when dropped, the message encoder and decoder matching
//! `contracts::wire`, and the raw kernel calls.

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use cordon_abi::status::*;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// Why a channel operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Nothing arrived in time.
    Timeout,
    /// The peer closed its end.
    PeerClosed,
    /// The peer ended and the kernel's supervisor is restarting it: this endpoint is dead,
    /// and a request in flight may or may not have been carried out. Take the new
    /// incarnation's endpoint under the same name ([`RawEndpoint::reopen`], or the typed
    /// `initial`), replay the contract's session and retry if that is safe. The generated
    /// bindings do it themselves for `idempotent` messages.
    PeerRestarted,
    /// A message was larger than the receive buffer.
    BufferTooSmall,
    /// No such contract, or no initial endpoint by that name.
    NotFound,
    /// The kernel is out of memory.
    OutOfMemory,
    /// It is running already (starting a system-manifest entry that has not ended).
    Busy,
    /// A received message did not decode (cannot happen with kernel-checked messages).
    Decode,
    /// A message number the receiving state does not expect.
    Unexpected(u16),
    /// A `bytes[N]` field was given more than N bytes (found by the bindings, before the
    /// kernel saw anything).
    TooLong { len: usize, max: usize },
    /// Any other negative status.
    Status(i32),
}

/// The value of a `bytes[N]` field: at most `N` bytes, checked when it is made, so a
/// message the bindings send never carries an over-long field (the kernel would end the
/// sender for it). Reads as a `&[u8]`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes<const N: usize>(Vec<u8>);

impl<const N: usize> Bytes<N> {
    /// The most bytes the field holds (the contract's `N`).
    pub const MAX: usize = N;

    /// `bytes` as the field's value, or [`Error::TooLong`] if there are more than `N`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        if bytes.len() > N {
            return Err(Error::TooLong {
                len: bytes.len(),
                max: N,
            });
        }
        Ok(Bytes(bytes))
    }

    /// The first `N` bytes of `bytes` (all of them if they fit): for text such as a
    /// reason, where a cut is better than no message.
    pub fn truncating(bytes: &[u8]) -> Self {
        Bytes(bytes[..bytes.len().min(N)].to_vec())
    }

    /// The value as a vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// A field decoded from a received message (the kernel checked its length).
    #[doc(hidden)]
    pub fn decoded(bytes: Vec<u8>) -> Result<Self, Error> {
        Self::new(bytes).map_err(|_| Error::Decode)
    }
}

impl<const N: usize> core::ops::Deref for Bytes<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> AsRef<[u8]> for Bytes<N> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> core::fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match core::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

impl<const N: usize> PartialEq<[u8]> for Bytes<N> {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

impl<const N: usize> PartialEq<&[u8]> for Bytes<N> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.0 == *other
    }
}

impl<const N: usize, const M: usize> PartialEq<[u8; M]> for Bytes<N> {
    fn eq(&self, other: &[u8; M]) -> bool {
        self.0 == other
    }
}

impl<const N: usize> PartialEq<Vec<u8>> for Bytes<N> {
    fn eq(&self, other: &Vec<u8>) -> bool {
        &self.0 == other
    }
}

impl<const N: usize> PartialEq<Bytes<N>> for Vec<u8> {
    fn eq(&self, other: &Bytes<N>) -> bool {
        *self == other.0
    }
}

impl<const N: usize> TryFrom<&[u8]> for Bytes<N> {
    type Error = Error;
    fn try_from(bytes: &[u8]) -> Result<Self, Error> {
        Self::new(bytes)
    }
}

impl<const N: usize> core::str::FromStr for Bytes<N> {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        Self::new(text.as_bytes())
    }
}

#[allow(
    clippy::try_from_instead_of_from_str,
    reason = "`\"name\".try_into()?` in a message literal, beside the `&[u8]` and `Vec<u8>` forms; FromStr is implemented too"
)]
impl<const N: usize> TryFrom<&str> for Bytes<N> {
    type Error = Error;
    fn try_from(text: &str) -> Result<Self, Error> {
        Self::new(text.as_bytes())
    }
}

impl<const N: usize> TryFrom<Vec<u8>> for Bytes<N> {
    type Error = Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Error> {
        Self::new(bytes)
    }
}

pub(crate) fn status(code: i32) -> Result<i32, Error> {
    match code {
        c if c >= 0 => Ok(c),
        TIMEOUT => Err(Error::Timeout),
        PEER_CLOSED => Err(Error::PeerClosed),
        PEER_RESTARTED => Err(Error::PeerRestarted),
        BUFFER_TOO_SMALL => Err(Error::BufferTooSmall),
        NOT_FOUND => Err(Error::NotFound),
        OUT_OF_MEMORY => Err(Error::OutOfMemory),
        BUSY => Err(Error::Busy),
        other => Err(Error::Status(other)),
    }
}

/// A receive that did not produce a message: on a timeout the endpoint comes back.
#[derive(Debug)]
pub enum RecvError<E> {
    Timeout(E),
    Failed(Error),
}

impl<E> RecvError<E> {
    /// For receives made without a timeout (servers' reply-and-wait loops), where the
    /// timeout variant cannot happen: folds it into `Failed(Timeout)` so results of
    /// different endpoint states share one type.
    pub fn without_timeout<F>(self) -> RecvError<F> {
        match self {
            RecvError::Failed(e) => RecvError::Failed(e),
            RecvError::Timeout(_) => RecvError::Failed(Error::Timeout),
        }
    }
}

/// Which end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Exporter,
    Importer,
}

/// An endpoint handle this SIP holds; closing it when dropped. It keeps one receive
/// buffer, allocated at the first receive and reused, so receiving does not allocate and
/// zero a maximum-size buffer per message.
#[derive(Debug)]
pub struct RawEndpoint(u32, Vec<u8>, Option<String>);

/// Requests the generated bindings sent again to a restarted server.
static RETRIED: AtomicU64 = AtomicU64::new(0);

/// How many `idempotent` requests the generated bindings have sent again, each to a
/// restarted server, since this SIP started.
pub fn retried() -> u64 {
    RETRIED.load(Ordering::Relaxed)
}

impl RawEndpoint {
    /// Wraps a handle received in a message.
    #[doc(hidden)]
    pub fn from_handle(handle: u32) -> RawEndpoint {
        RawEndpoint(handle, Vec::new(), None)
    }

    /// Gives the handle up (it is about to travel in a message).
    #[doc(hidden)]
    pub fn into_handle(mut self) -> u32 {
        let handle = self.0;
        drop(core::mem::take(&mut self.1));
        drop(self.2.take());
        core::mem::forget(self);
        handle
    }

    fn scratch(&mut self, max: usize) -> &mut [u8] {
        if self.1.len() < max {
            self.1 = vec![0u8; max];
        }
        &mut self.1[..max]
    }

    pub fn handle(&self) -> u32 {
        self.0
    }

    /// A new channel of `contract`: (exporter, importer).
    pub fn create(contract: &str) -> Result<(RawEndpoint, RawEndpoint), Error> {
        let mut out = [0u32; 2];
        status(sys::chan_create(contract, &mut out))?;
        Ok((
            RawEndpoint::from_handle(out[0]),
            RawEndpoint::from_handle(out[1]),
        ))
    }

    /// The endpoint the system manifest gave this SIP as `name`. If the SIP at its other
    /// end ended and the kernel's supervisor is restarting it, waits for the new
    /// incarnation's channel (which starts in the contract's initial state: the caller
    /// replays its session, e.g. `GetInfo` or `Open`, before retrying a request);
    /// `NotFound` if none will come.
    pub fn initial(name: &str, contract: &str, role: Role) -> Result<RawEndpoint, Error> {
        Self::take_initial(name, contract, role, 0)
    }

    /// [`RawEndpoint::initial`], also waiting until the kernel hands the end over at all:
    /// for a SIP whose peer is an `on-request` entry, started later (by the shell, or a
    /// SIP with the `start` power).
    pub fn wait_initial(name: &str, contract: &str, role: Role) -> Result<RawEndpoint, Error> {
        Self::take_initial(name, contract, role, cordon_abi::INITIAL_WAIT)
    }

    fn take_initial(
        name: &str,
        contract: &str,
        role: Role,
        flags: i32,
    ) -> Result<RawEndpoint, Error> {
        let role = i32::from(role == Role::Importer) | flags;
        status(sys::chan_initial(name, contract, role))
            .map(|h| RawEndpoint(h as u32, Vec::new(), Some(String::from(name))))
    }

    /// The endpoint of the same name again, after `PeerRestarted`: the new incarnation's
    /// channel, in the contract's initial state (waits until the kernel has restarted the
    /// peer). `PeerRestarted` again for an endpoint that did not come from
    /// [`RawEndpoint::initial`] (the kernel only restarts what the system manifest wires).
    pub fn reopen(&self, contract: &str, role: Role) -> Result<RawEndpoint, Error> {
        let name = self.2.as_deref().ok_or(Error::PeerRestarted)?;
        let fresh = RawEndpoint::initial(name, contract, role)?;
        RETRIED.fetch_add(1, Ordering::Relaxed);
        Ok(fresh)
    }

    pub fn send(&self, message: &[u8]) -> Result<(), Error> {
        status(sys::chan_send(self.0, message)).map(|_| ())
    }

    /// Receives one message of at most `max` bytes.
    pub fn recv(&mut self, max: usize, timeout: Option<u64>) -> Result<Vec<u8>, Error> {
        let handle = self.0;
        let buf = self.scratch(max);
        let len = status(sys::chan_recv(handle, buf, timeout))? as usize;
        Ok(buf[..len].to_vec())
    }

    /// Sends `message`, then receives the next message (at most `max` bytes).
    pub fn call(
        &mut self,
        message: &[u8],
        max: usize,
        timeout: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        let handle = self.0;
        let buf = self.scratch(max);
        let len = status(sys::chan_call(handle, message, buf, timeout))? as usize;
        Ok(buf[..len].to_vec())
    }
}

impl Drop for RawEndpoint {
    fn drop(&mut self) {
        sys::chan_close(self.0);
    }
}

/// Waits until one of `endpoints` has a message (or a closed peer); returns its index.
pub fn select(endpoints: &[&RawEndpoint], timeout: Option<u64>) -> Result<usize, Error> {
    let mut handles = [0u32; 64];
    let count = endpoints.len().min(64);
    for (slot, ep) in handles.iter_mut().zip(endpoints) {
        *slot = ep.handle();
    }
    status(sys::chan_select(&handles[..count], timeout)).map(|i| i as usize)
}

/// An endpoint of a contract not known statically (an `endpoint` field).
#[derive(Debug)]
pub struct AnyEndpoint(RawEndpoint);

impl AnyEndpoint {
    #[doc(hidden)]
    pub fn from_handle(handle: u32) -> AnyEndpoint {
        AnyEndpoint(RawEndpoint::from_handle(handle))
    }

    #[doc(hidden)]
    pub fn into_handle(self) -> u32 {
        self.0.into_handle()
    }

    /// Wraps any typed endpoint's raw end (to send it in an `endpoint` field).
    pub fn from_raw(raw: RawEndpoint) -> AnyEndpoint {
        AnyEndpoint(raw)
    }

    /// The raw endpoint if the kernel confirms it is `contract`'s `role` end in its
    /// initial state; otherwise gives it back.
    pub fn downcast(self, contract: &str, role: Role) -> Result<RawEndpoint, AnyEndpoint> {
        if sys::chan_check(self.0.handle(), contract, role == Role::Importer) == 1 {
            Ok(self.0)
        } else {
            Err(self)
        }
    }
}

/// An exchange-heap block this SIP holds. It moves, without copying, with the message it
/// is sent in; the sender can no longer touch it. Freed when dropped.
#[derive(Debug)]
pub struct Buffer(u32);

impl Buffer {
    /// A zeroed block of `size` bytes.
    pub fn new(size: usize) -> Result<Buffer, Error> {
        status(sys::buf_alloc(size)).map(|h| Buffer(h as u32))
    }

    #[doc(hidden)]
    pub fn from_handle(handle: u32) -> Buffer {
        Buffer(handle)
    }

    /// The kernel's handle of the block (it stays this SIP's).
    pub fn handle(&self) -> u32 {
        self.0
    }

    #[doc(hidden)]
    pub fn into_handle(self) -> u32 {
        let handle = self.0;
        core::mem::forget(self);
        handle
    }

    pub fn len(&self) -> usize {
        sys::buf_size(self.0).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `data` into the block at `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        status(sys::buf_write(self.0, offset, data)).map(|_| ())
    }

    /// Copies block bytes at `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        status(sys::buf_read(self.0, offset, out)).map(|_| ())
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        sys::buf_free(self.0);
    }
}

/// Builds one encoded message (`contracts::wire`).
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { bytes: Vec::new() }
    }
    /// An encoder with room for `max` bytes (the message's largest encoding).
    pub fn with_capacity(max: usize) -> Encoder {
        Encoder {
            bytes: Vec::with_capacity(max),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.bytes.extend_from_slice(v);
    }
    pub fn handle(&mut self, h: u32) {
        self.u32(h);
    }
    /// The encoded message so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads one encoded message.
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < n {
            return Err(Error::Decode);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bytes_field_holds_at_most_its_bound() {
        let fits = Bytes::<4>::new(alloc::vec![1, 2, 3, 4]).unwrap();
        assert_eq!(fits, [1u8, 2, 3, 4]);
        assert_eq!(
            Bytes::<4>::new(alloc::vec![0; 5]),
            Err(Error::TooLong { len: 5, max: 4 })
        );
        assert_eq!(
            Bytes::<4>::try_from("hello"),
            Err(Error::TooLong { len: 5, max: 4 })
        );
        assert_eq!(&*Bytes::<4>::truncating(b"hello"), b"hell");
        assert_eq!(Bytes::<4>::decoded(alloc::vec![0; 9]), Err(Error::Decode));
    }
}
