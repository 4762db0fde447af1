//! Tokens of the contract language.

use alloc::format;
use alloc::vec::Vec;

use crate::diag::{Error, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ident,
    Int,
    /// One of `{ } ( ) [ ] < > ; , : ? ! .` or the arrow `->`.
    Punct,
}

#[derive(Clone, Copy, Debug)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub span: Span,
}

/// Splits `source` into tokens; `//` comments and whitespace are skipped.
pub fn lex(source: &str) -> Result<Vec<Token<'_>>, Error> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Ident,
                text: &source[start..i],
                span: Span::new(start, i),
            });
        } else if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Int,
                text: &source[start..i],
                span: Span::new(start, i),
            });
        } else if c == b'-' && bytes.get(i + 1) == Some(&b'>') {
            i += 2;
            tokens.push(Token {
                kind: Kind::Punct,
                text: "->",
                span: Span::new(start, i),
            });
        } else if b"{}()[]<>;,:?!.".contains(&c) {
            i += 1;
            tokens.push(Token {
                kind: Kind::Punct,
                text: &source[start..i],
                span: Span::new(start, i),
            });
        } else {
            let ch = source[start..].chars().next().unwrap_or('?');
            return Err(Error::new(
                Span::new(start, start + ch.len_utf8()),
                format!("unexpected character `{ch}`"),
            ));
        }
    }
    Ok(tokens)
}
