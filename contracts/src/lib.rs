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
//! [`compile`] parses and checks a file (and [`compile_all`] reports every error and
//! warning rather than the first error) (unknown names, duplicates, ambiguous or
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

/// What compiling a contract file found: the protocols of the contracts that passed, every
/// error (sorted by position; a syntax error ends the file's parse, so it is alone) and
/// every warning.
#[derive(Debug, Default)]
pub struct Report {
    pub protocols: Vec<Protocol>,
    pub errors: Vec<Error>,
    pub warnings: Vec<Error>,
    /// Where each contract's name is declared (for errors about the whole contract).
    pub names: Vec<(alloc::string::String, diag::Span)>,
}

/// Compiles every contract in `source` and gives the first error, if any (the kernel's
/// use: it runs every check, as [`compile_all`] does).
pub fn compile(source: &str) -> Result<Vec<Protocol>, Error> {
    let mut report = compile_all(source);
    if report.errors.is_empty() {
        Ok(report.protocols)
    } else {
        Err(report.errors.swap_remove(0))
    }
}

/// Compiles every contract in `source`, reporting every error and warning it finds.
pub fn compile_all(source: &str) -> Report {
    let mut report = Report::default();
    let contracts = match lexer::lex(source).and_then(|tokens| parser::parse(&tokens)) {
        Ok(contracts) => contracts,
        Err(err) => {
            report.errors.push(err);
            return report;
        }
    };
    let mut names: Vec<&str> = Vec::new();
    for contract in &contracts {
        if names.contains(&contract.name.text.as_str()) {
            report.errors.push(Error::new(
                contract.name.span,
                alloc::format!("contract `{}` is declared twice", contract.name.text),
            ));
            continue;
        }
        names.push(&contract.name.text);
        report
            .names
            .push((contract.name.text.clone(), contract.name.span));
        if let Some(protocol) = check::check(contract, &mut report.errors, &mut report.warnings) {
            report.protocols.push(protocol);
        }
    }
    check::resolve_endpoint_types(&contracts, &names, &mut report.errors);
    report.errors.sort_by_key(|e| e.span.start);
    report.warnings.sort_by_key(|e| e.span.start);
    if !report.errors.is_empty() {
        report.protocols.clear();
    }
    report
}
