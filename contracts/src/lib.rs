//! Cordon's channel contract language.
//!
//! A contract declares the messages that may cross a channel and a state machine saying
//! when each may be sent, in Singularity's style. Directions are written from the
//! **exporting** side (the server): `?` means the exporter receives, `!` that it sends.
//!
//! ```text
//! contract Echo {
//!     message Ping(seq: u32, data: bytes[64]);
//!     message Pong(seq: u32, data: bytes[64]);
//!     message Bye;
//!
//!     initial state Ready {
//!         Ping? -> Pong! -> Ready;
//!         Bye? -> Done;
//!     }
//!     state Done;
//! }
//! ```
//!
//! [`compile`] parses and checks a file (unknown names, duplicates, ambiguous or
//! unreachable states, payload limits) and computes for each direction the most messages
//! that can be in flight; a contract with an unbounded queue is rejected. The result,
//! [`Protocol`], is the kernel's checking table; [`bindings::rust`] turns protocols
//! into typestate Rust bindings for SIPs. `no_std` + `alloc`: the kernel compiles contract
//! sources itself at boot, so the tables and the bindings come from the same text.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod bindings;
mod check;
pub mod diag;
mod lexer;
mod parser;
pub mod protocol;
pub mod wire;

pub use diag::Error;
pub use protocol::{Dir, FieldType, Message, Protocol, Role, State, Transition};

use alloc::vec::Vec;

/// Compiles every contract in `source`.
pub fn compile(source: &str) -> Result<Vec<Protocol>, Error> {
    let tokens = lexer::lex(source)?;
    let contracts = parser::parse(&tokens)?;
    let mut protocols = Vec::new();
    for contract in &contracts {
        if let Some(earlier) = protocols
            .iter()
            .find(|p: &&Protocol| p.name == contract.name.text)
        {
            let _ = earlier;
            return Err(Error::new(
                contract.name.span,
                alloc::format!("contract `{}` is declared twice", contract.name.text),
            ));
        }
        protocols.push(check::check(contract)?);
    }
    check::resolve_endpoint_types(&contracts, &protocols)?;
    Ok(protocols)
}
