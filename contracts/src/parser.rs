//! Parser: tokens to the syntax tree of contracts.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::diag::{Error, Span};
use crate::lexer::{Kind, Token};
use crate::protocol::Dir;

/// A name with where it was written.
#[derive(Clone, Debug)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum TypeExpr {
    Int(&'static str),
    Bool,
    Buffer,
    Bytes(u64),
    /// `imp<C>` (`importer: true`) or `exp<C>`.
    Endpoint {
        contract: Name,
        importer: bool,
    },
    /// An endpoint of any contract (`endpoint`).
    AnyEndpoint,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: Name,
    pub ty: TypeExpr,
    pub ty_span: Span,
}

#[derive(Clone, Debug)]
pub struct MessageDecl {
    pub name: Name,
    pub fields: Vec<Field>,
    /// Where `idempotent` was written before `message`, if it was.
    pub idempotent: Option<Span>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub message: Name,
    pub dir: Dir,
}

#[derive(Clone, Debug)]
pub struct Sequence {
    pub steps: Vec<Step>,
    pub target: Name,
}

#[derive(Clone, Debug)]
pub struct StateDecl {
    pub name: Name,
    pub initial: bool,
    pub sequences: Vec<Sequence>,
}

#[derive(Clone, Debug)]
pub struct ContractDecl {
    pub name: Name,
    pub messages: Vec<MessageDecl>,
    pub states: Vec<StateDecl>,
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
}

const INT_TYPES: &[&str] = &["u8", "u16", "u32", "u64", "i32", "i64"];

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn end_span(&self) -> Span {
        self.tokens
            .last()
            .map_or(Span::default(), |t| Span::new(t.span.end, t.span.end))
    }

    fn next(&mut self, what: &str) -> Result<Token<'a>, Error> {
        match self.tokens.get(self.pos) {
            Some(token) => {
                self.pos += 1;
                Ok(*token)
            }
            None => Err(Error::new(
                self.end_span(),
                format!("expected {what}, found end of file"),
            )),
        }
    }

    fn is_punct(&self, p: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == Kind::Punct && t.text == p)
    }

    fn is_word(&self, w: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == Kind::Ident && t.text == w)
    }

    fn expect_punct(&mut self, p: &str) -> Result<Token<'a>, Error> {
        let token = self.next(&format!("`{p}`"))?;
        if token.kind == Kind::Punct && token.text == p {
            Ok(token)
        } else {
            Err(Error::new(
                token.span,
                format!("expected `{p}`, found `{}`", token.text),
            ))
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<Token<'a>, Error> {
        let token = self.next(&format!("`{w}`"))?;
        if token.kind == Kind::Ident && token.text == w {
            Ok(token)
        } else {
            Err(Error::new(
                token.span,
                format!("expected `{w}`, found `{}`", token.text),
            ))
        }
    }

    fn name(&mut self, what: &str) -> Result<Name, Error> {
        let token = self.next(what)?;
        if token.kind == Kind::Ident {
            Ok(Name {
                text: token.text.into(),
                span: token.span,
            })
        } else {
            Err(Error::new(
                token.span,
                format!("expected {what}, found `{}`", token.text),
            ))
        }
    }

    fn contract(&mut self) -> Result<ContractDecl, Error> {
        self.expect_word("contract")?;
        let name = self.name("a contract name")?;
        self.expect_punct("{")?;
        let mut messages = Vec::new();
        let mut states = Vec::new();
        while !self.is_punct("}") {
            if self.is_word("message") || self.is_word("idempotent") {
                messages.push(self.message()?);
            } else if self.is_word("state") || self.is_word("initial") {
                states.push(self.state()?);
            } else {
                let token = self.next("`message`, `state` or `}`")?;
                return Err(Error::new(
                    token.span,
                    format!(
                        "expected `message`, `idempotent message`, `state`, `initial state` or `}}`, found `{}`",
                        token.text
                    ),
                ));
            }
        }
        self.expect_punct("}")?;
        Ok(ContractDecl {
            name,
            messages,
            states,
        })
    }

    fn message(&mut self) -> Result<MessageDecl, Error> {
        let idempotent = if self.is_word("idempotent") {
            Some(self.expect_word("idempotent")?.span)
        } else {
            None
        };
        self.expect_word("message")?;
        let name = self.name("a message name")?;
        let mut fields = Vec::new();
        if self.is_punct("(") {
            self.expect_punct("(")?;
            while !self.is_punct(")") {
                let field = self.name("a field name")?;
                self.expect_punct(":")?;
                let (ty, ty_span) = self.type_expr()?;
                fields.push(Field {
                    name: field,
                    ty,
                    ty_span,
                });
                if !self.is_punct(")") {
                    self.expect_punct(",")?;
                }
            }
            self.expect_punct(")")?;
        }
        self.expect_punct(";")?;
        Ok(MessageDecl {
            name,
            fields,
            idempotent,
        })
    }

    fn type_expr(&mut self) -> Result<(TypeExpr, Span), Error> {
        let token = self.next("a type")?;
        let start = token.span.start;
        let ty = match token.text {
            t if token.kind == Kind::Ident && INT_TYPES.contains(&t) => TypeExpr::Int(
                INT_TYPES
                    .iter()
                    .find(|i| **i == t)
                    .copied()
                    .unwrap_or("u32"),
            ),
            "bool" => TypeExpr::Bool,
            "buffer" => TypeExpr::Buffer,
            "endpoint" => TypeExpr::AnyEndpoint,
            "bytes" => {
                self.expect_punct("[")?;
                let size = self.next("a maximum length")?;
                let value: u64 = size.text.replace('_', "").parse().map_err(|_| {
                    Error::new(
                        size.span,
                        format!("expected a maximum length, found `{}`", size.text),
                    )
                })?;
                self.expect_punct("]")?;
                TypeExpr::Bytes(value)
            }
            "imp" | "exp" => {
                self.expect_punct("<")?;
                let contract = self.name("a contract name")?;
                self.expect_punct(">")?;
                TypeExpr::Endpoint {
                    contract,
                    importer: token.text == "imp",
                }
            }
            other => {
                return Err(Error::new(
                    token.span,
                    format!(
                        "unknown type `{other}` (types: u8 u16 u32 u64 i32 i64 bool bytes[N] buffer imp<C> exp<C> endpoint)"
                    ),
                ));
            }
        };
        let end = self.tokens[self.pos - 1].span.end;
        Ok((ty, Span::new(start, end)))
    }

    fn state(&mut self) -> Result<StateDecl, Error> {
        let initial = if self.is_word("initial") {
            self.expect_word("initial")?;
            true
        } else {
            false
        };
        self.expect_word("state")?;
        let name = self.name("a state name")?;
        let mut sequences = Vec::new();
        if self.is_punct(";") {
            self.expect_punct(";")?;
            return Ok(StateDecl {
                name,
                initial,
                sequences,
            });
        }
        self.expect_punct("{")?;
        while !self.is_punct("}") {
            sequences.push(self.sequence()?);
        }
        self.expect_punct("}")?;
        Ok(StateDecl {
            name,
            initial,
            sequences,
        })
    }

    /// `Msg? -> Msg! -> ... -> State;`
    fn sequence(&mut self) -> Result<Sequence, Error> {
        let mut steps = Vec::new();
        loop {
            let name = self.name("a message name or `}`")?;
            if self.is_punct("?") || self.is_punct("!") {
                let mark = self.next("`?` or `!`")?;
                let dir = if mark.text == "?" {
                    Dir::ToExporter
                } else {
                    Dir::ToImporter
                };
                steps.push(Step { message: name, dir });
                self.expect_punct("->")?;
            } else {
                if steps.is_empty() {
                    return Err(Error::new(
                        name.span,
                        format!(
                            "`{}` needs a direction: `{0}?` (exporter receives) or `{0}!` (exporter sends)",
                            name.text
                        ),
                    ));
                }
                self.expect_punct(";")?;
                return Ok(Sequence {
                    steps,
                    target: name,
                });
            }
        }
    }
}

/// Parses every contract in the token stream.
pub fn parse(tokens: &[Token<'_>]) -> Result<Vec<ContractDecl>, Error> {
    let mut parser = Parser { tokens, pos: 0 };
    let mut contracts = Vec::new();
    while parser.peek().is_some() {
        contracts.push(parser.contract()?);
    }
    Ok(contracts)
}
