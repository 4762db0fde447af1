//! The wire format of a message, shared by the generated bindings (which encode) and the
//! kernel (which checks and decodes): a little-endian `u16` message index, then each field
//! in declaration order: integers little-endian at their size, `bool` as one byte 0 or 1,
//! `bytes[N]` as a `u32` length (at most N) and the bytes, endpoints and buffers as a `u32`
//! handle.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::protocol::{FieldType, Protocol};

/// Bytes of the message header.
pub const HEADER: usize = 2;

/// A handle field found while checking a message: its byte offset and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleField {
    pub offset: usize,
    pub handle: u32,
    /// True for an endpoint, false for an exchange-heap buffer.
    pub endpoint: bool,
    /// Field index in the message.
    pub field: usize,
}

/// The message index and handle fields of a well-formed encoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub message: u16,
    pub handles: Vec<HandleField>,
}

/// Checks that `bytes` is exactly one well-formed message of `protocol`.
pub fn check(protocol: &Protocol, bytes: &[u8]) -> Result<Checked, String> {
    if bytes.len() < HEADER {
        return Err(format!(
            "{} bytes is shorter than a message header",
            bytes.len()
        ));
    }
    let index = u16::from_le_bytes([bytes[0], bytes[1]]);
    let Some(message) = protocol.messages.get(index as usize) else {
        return Err(format!(
            "message number {index} does not exist in contract {}",
            protocol.name
        ));
    };
    let mut at = HEADER;
    let mut handles = Vec::new();
    for (i, field) in message.fields.iter().enumerate() {
        let take = |at: &mut usize, n: usize| -> Result<usize, String> {
            let start = *at;
            if start + n > bytes.len() {
                return Err(format!("{}.{} is cut short", message.name, field.name));
            }
            *at += n;
            Ok(start)
        };
        match &field.ty {
            FieldType::Bool => {
                let p = take(&mut at, 1)?;
                if bytes[p] > 1 {
                    return Err(format!(
                        "{}.{} is {} (a bool is 0 or 1)",
                        message.name, field.name, bytes[p]
                    ));
                }
            }
            FieldType::Bytes { max } => {
                let p = take(&mut at, 4)?;
                let len = u32::from_le_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]);
                if len > *max {
                    return Err(format!(
                        "{}.{} has {len} bytes, the contract allows {max}",
                        message.name, field.name
                    ));
                }
                take(&mut at, len as usize)?;
            }
            FieldType::Buffer | FieldType::Endpoint { .. } => {
                let p = take(&mut at, 4)?;
                handles.push(HandleField {
                    offset: p,
                    handle: u32::from_le_bytes([
                        bytes[p],
                        bytes[p + 1],
                        bytes[p + 2],
                        bytes[p + 3],
                    ]),
                    endpoint: matches!(field.ty, FieldType::Endpoint { .. }),
                    field: i,
                });
            }
            other => {
                take(&mut at, other.max_encoded() as usize)?;
            }
        }
    }
    if at != bytes.len() {
        return Err(format!(
            "{} trailing bytes after {}",
            bytes.len() - at,
            message.name
        ));
    }
    Ok(Checked {
        message: index,
        handles,
    })
}
