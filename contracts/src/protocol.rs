//! A compiled contract: the tables the kernel checks every message against, and what the
//! binding generator reads.

use alloc::string::String;
use alloc::vec::Vec;

/// Which way a message travels. Contract text writes `?` for [`Dir::ToExporter`] and `!`
/// for [`Dir::ToImporter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    ToExporter,
    ToImporter,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::ToExporter => 0,
            Dir::ToImporter => 1,
        }
    }

    /// The contract-text mark, from the exporter's view.
    pub fn mark(self) -> char {
        match self {
            Dir::ToExporter => '?',
            Dir::ToImporter => '!',
        }
    }
}

/// Which end of a channel an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Exporter,
    Importer,
}

impl Role {
    /// The direction of the messages this end sends.
    pub fn sends(self) -> Dir {
        match self {
            Role::Exporter => Dir::ToImporter,
            Role::Importer => Dir::ToExporter,
        }
    }

    pub fn peer(self) -> Role {
        match self {
            Role::Exporter => Role::Importer,
            Role::Importer => Role::Exporter,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Exporter => "exporter",
            Role::Importer => "importer",
        }
    }
}

/// The type of a message field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    U8,
    U16,
    U32,
    U64,
    I32,
    I64,
    Bool,
    /// At most `max` bytes, copied.
    Bytes {
        max: u32,
    },
    /// An exchange-heap block; ownership moves with the message.
    Buffer,
    /// An endpoint; ownership moves with the message. `None` contract: any contract.
    Endpoint {
        contract: Option<String>,
        role: Option<Role>,
    },
}

impl FieldType {
    /// Most bytes the field takes on the wire (see [`crate::wire`]).
    pub fn max_encoded(&self) -> u32 {
        match self {
            FieldType::U8 | FieldType::Bool => 1,
            FieldType::U16 => 2,
            FieldType::U32 | FieldType::I32 | FieldType::Buffer | FieldType::Endpoint { .. } => 4,
            FieldType::U64 | FieldType::I64 => 8,
            FieldType::Bytes { max } => 4 + max,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub name: String,
    pub fields: Vec<Field>,
    /// Marked `idempotent`: a request the importer's bindings send again, on the new
    /// channel, when the server restarted before answering (the checker's rules make
    /// that safe: see `check::idempotent`).
    pub idempotent: bool,
    /// Most bytes an encoded message takes, header included.
    pub max_encoded: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Declared name, or `Declared_n` for the states inside a `A? -> B! -> S` sequence.
    pub name: String,
    pub anonymous: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: u16,
    pub message: u16,
    pub dir: Dir,
    pub to: u16,
}

/// A checked contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub messages: Vec<Message>,
    pub states: Vec<State>,
    pub transitions: Vec<Transition>,
    pub initial: u16,
    /// Most messages that can be queued in each direction (index [`Dir::index`]).
    pub max_in_flight: [u32; 2],
}

impl Protocol {
    /// The state after `message` travels `dir` from `state`, if the contract allows it.
    pub fn step(&self, state: u16, message: u16, dir: Dir) -> Option<u16> {
        self.transitions
            .iter()
            .find(|t| t.from == state && t.message == message && t.dir == dir)
            .map(|t| t.to)
    }

    /// Transitions leaving `state`.
    pub fn outgoing(&self, state: u16) -> impl Iterator<Item = &Transition> {
        self.transitions.iter().filter(move |t| t.from == state)
    }

    pub fn message_index(&self, name: &str) -> Option<u16> {
        self.messages
            .iter()
            .position(|m| m.name == name)
            .map(|i| i as u16)
    }

    pub fn state_index(&self, name: &str) -> Option<u16> {
        self.states
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u16)
    }

    /// The largest encoded message, which sizes a queue slot.
    pub fn max_message_bytes(&self) -> u32 {
        self.messages
            .iter()
            .map(|m| m.max_encoded)
            .max()
            .unwrap_or(crate::wire::HEADER as u32)
    }
}
