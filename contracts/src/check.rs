//! The checker: names, duplicates, payload limits, sequence expansion, determinism,
//! reachability and queue bounds.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use crate::diag::{Error, Span};
use crate::parser::{ContractDecl, Name, TypeExpr};
use crate::protocol::{Dir, Field, FieldType, Message, Protocol, Role, State, Transition};

/// Largest `bytes[N]` field.
pub const MAX_BYTES_FIELD: u64 = 65_536;
/// Most fields in one message.
pub const MAX_FIELDS: usize = 16;
/// Most messages in a direction that a contract may let queue up.
pub const MAX_IN_FLIGHT: u32 = 64;

/// Every name declared a second time, as an error each.
fn duplicate<'a>(names: impl Iterator<Item = &'a Name>, what: &str, errors: &mut Vec<Error>) {
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for name in names {
        if seen.insert(&name.text, name.span).is_some() {
            errors.push(Error::new(
                name.span,
                format!("{what} `{}` is declared twice", name.text),
            ));
        }
    }
}

fn field_type(ty: &TypeExpr, span: Span) -> Result<FieldType, Error> {
    Ok(match ty {
        TypeExpr::Int("u8") => FieldType::U8,
        TypeExpr::Int("u16") => FieldType::U16,
        TypeExpr::Int("u32") => FieldType::U32,
        TypeExpr::Int("u64") => FieldType::U64,
        TypeExpr::Int("i32") => FieldType::I32,
        TypeExpr::Int(_) => FieldType::I64,
        TypeExpr::Bool => FieldType::Bool,
        TypeExpr::Buffer => FieldType::Buffer,
        TypeExpr::AnyEndpoint => FieldType::Endpoint {
            contract: None,
            role: None,
        },
        TypeExpr::Endpoint { contract, importer } => FieldType::Endpoint {
            contract: Some(contract.text.clone()),
            role: Some(if *importer {
                Role::Importer
            } else {
                Role::Exporter
            }),
        },
        TypeExpr::Bytes(max) => {
            if *max == 0 || *max > MAX_BYTES_FIELD {
                return Err(Error::new(
                    span,
                    format!(
                        "bytes[{max}]: the maximum length must be 1 to {MAX_BYTES_FIELD} (use a buffer for more)"
                    ),
                ));
            }
            FieldType::Bytes { max: *max as u32 }
        }
    })
}

/// Checks one contract and builds its tables. Every error found goes to `errors` (the
/// checks that need a sound state machine run only when the earlier ones found none), and
/// every warning (a message no state uses) to `warnings`; `None` if there was an error.
pub fn check(
    contract: &ContractDecl,
    errors: &mut Vec<Error>,
    warnings: &mut Vec<Error>,
) -> Option<Protocol> {
    let before = errors.len();
    duplicate(contract.messages.iter().map(|m| &m.name), "message", errors);
    duplicate(contract.states.iter().map(|s| &s.name), "state", errors);
    reserved(contract, errors);

    let mut messages = Vec::new();
    for decl in &contract.messages {
        duplicate(decl.fields.iter().map(|f| &f.name), "field", errors);
        if decl.fields.len() > MAX_FIELDS {
            errors.push(Error::new(
                decl.name.span,
                format!(
                    "message `{}` has {} fields; at most {MAX_FIELDS}",
                    decl.name.text,
                    decl.fields.len()
                ),
            ));
        }
        let mut fields = Vec::new();
        for f in &decl.fields {
            match field_type(&f.ty, f.ty_span) {
                Ok(ty) => fields.push(Field {
                    name: f.name.text.clone(),
                    ty,
                }),
                Err(err) => errors.push(err),
            }
        }
        let max_encoded =
            crate::wire::HEADER as u32 + fields.iter().map(|f| f.ty.max_encoded()).sum::<u32>();
        messages.push(Message {
            name: decl.name.text.clone(),
            fields,
            max_encoded,
            idempotent: decl.idempotent.is_some(),
        });
    }

    let Some(first) = contract.states.first() else {
        errors.push(Error::new(
            contract.name.span,
            format!("contract `{}` declares no states", contract.name.text),
        ));
        return None;
    };
    let initials: Vec<_> = contract.states.iter().filter(|s| s.initial).collect();
    for extra in initials.iter().skip(1) {
        errors.push(Error::new(
            extra.name.span,
            "a second `initial` state: a contract has one".into(),
        ));
    }
    let initial_name = initials.first().map_or(&first.name, |s| &s.name);

    // Named states first, so their indices follow declaration order.
    let mut states: Vec<State> = contract
        .states
        .iter()
        .map(|s| State {
            name: s.name.text.clone(),
            anonymous: false,
        })
        .collect();
    let state_of = |name: &Name, states: &[State]| -> Result<u16, Error> {
        states
            .iter()
            .position(|s| !s.anonymous && s.name == name.text)
            .map(|i| i as u16)
            .ok_or_else(|| {
                let known: Vec<&str> = states
                    .iter()
                    .filter(|s| !s.anonymous)
                    .map(|s| s.name.as_str())
                    .collect();
                Error::new(
                    name.span,
                    format!(
                        "unknown state `{}` (states: {})",
                        name.text,
                        known.join(", ")
                    ),
                )
            })
    };
    let message_of = |name: &Name| -> Result<u16, Error> {
        messages
            .iter()
            .position(|m| m.name == name.text)
            .map(|i| i as u16)
            .ok_or_else(|| {
                let known: Vec<&str> = messages.iter().map(|m| m.name.as_str()).collect();
                Error::new(
                    name.span,
                    format!(
                        "unknown message `{}` (messages: {})",
                        name.text,
                        known.join(", ")
                    ),
                )
            })
    };

    let mut transitions: Vec<Transition> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    for decl in &contract.states {
        // Declared names always resolve (duplicates aside, reported above).
        let Ok(from_named) = state_of(&decl.name, &states) else {
            continue;
        };
        let mut anon = 0;
        'sequence: for seq in &decl.sequences {
            let target = match state_of(&seq.target, &states) {
                Ok(target) => target,
                Err(err) => {
                    errors.push(err);
                    // The steps' messages are still checked.
                    for step in &seq.steps {
                        if let Err(err) = message_of(&step.message) {
                            errors.push(err);
                        }
                    }
                    continue;
                }
            };
            let mut from = from_named;
            for (i, step) in seq.steps.iter().enumerate() {
                let message = match message_of(&step.message) {
                    Ok(message) => message,
                    Err(err) => {
                        errors.push(err);
                        for step in &seq.steps[i + 1..] {
                            if let Err(err) = message_of(&step.message) {
                                errors.push(err);
                            }
                        }
                        continue 'sequence;
                    }
                };
                let to = if i + 1 == seq.steps.len() {
                    target
                } else {
                    anon += 1;
                    states.push(State {
                        name: format!("{}_{anon}", decl.name.text),
                        anonymous: true,
                    });
                    (states.len() - 1) as u16
                };
                let span = step.message.span;
                if let Some(clash) = transitions
                    .iter()
                    .position(|t| t.from == from && t.message == message && t.dir == step.dir)
                {
                    let _ = clash;
                    errors.push(Error::new(
                        span,
                        format!(
                            "ambiguous: `{}{}` already leads out of state `{}`; merge the two sequences",
                            step.message.text,
                            step.dir.mark(),
                            states[from as usize].name
                        ),
                    ));
                    continue 'sequence;
                }
                if let Some(other) = transitions
                    .iter()
                    .find(|t| t.from == from && t.dir != step.dir)
                {
                    errors.push(Error::new(
                        span,
                        format!(
                            "state `{}` would let both sides send (`{}{}` and `{}{}`): in each state only one side may send",
                            states[from as usize].name,
                            messages[other.message as usize].name,
                            other.dir.mark(),
                            step.message.text,
                            step.dir.mark()
                        ),
                    ));
                    continue 'sequence;
                }
                transitions.push(Transition {
                    from,
                    message,
                    dir: step.dir,
                    to,
                });
                spans.push(span);
                from = to;
            }
        }
    }

    // The rest needs a sound state machine: names resolved, no ambiguity.
    if errors.len() > before {
        return None;
    }
    let initial = state_of(initial_name, &states).ok()?;
    // Reachability from the initial state.
    let mut reached = vec![false; states.len()];
    let mut work = vec![initial];
    reached[initial as usize] = true;
    while let Some(s) = work.pop() {
        for t in transitions.iter().filter(|t| t.from == s) {
            if !reached[t.to as usize] {
                reached[t.to as usize] = true;
                work.push(t.to);
            }
        }
    }
    for decl in &contract.states {
        let index = state_of(&decl.name, &states).ok()?;
        if !reached[index as usize] {
            errors.push(Error::new(
                decl.name.span,
                format!(
                    "state `{}` is unreachable from the initial state `{}`",
                    decl.name.text, initial_name.text
                ),
            ));
        }
    }

    idempotent(contract, &states, &transitions, initial, errors);

    let mut max_in_flight = [0u32; 2];
    for dir in [Dir::ToExporter, Dir::ToImporter] {
        match bound(&states, &transitions, &spans, &messages, dir) {
            Ok(bound) => max_in_flight[dir.index()] = bound,
            Err(err) => errors.push(err),
        }
    }
    if errors.len() > before {
        return None;
    }
    for (index, decl) in contract.messages.iter().enumerate() {
        if !transitions.iter().any(|t| t.message as usize == index) {
            warnings.push(Error::new(
                decl.name.span,
                format!(
                    "message `{}` is declared but no state sends or receives it",
                    decl.name.text
                ),
            ));
        }
    }
    Some(Protocol {
        name: contract.name.text.clone(),
        messages,
        states,
        transitions,
        initial,
        max_in_flight,
    })
}

/// Names the generated bindings use themselves, which a message (a struct in the same
/// module) may not take.
const RESERVED_MESSAGES: &[&str] = &[
    "AnyEndpoint",
    "Buffer",
    "Bytes",
    "CONTRACT",
    "Decoder",
    "Encoder",
    "Err",
    "Error",
    "Exp",
    "Imp",
    "MAX_MESSAGE",
    "None",
    "Ok",
    "Option",
    "PhantomData",
    "RawEndpoint",
    "RecvError",
    "Result",
    "Role",
    "Self",
    "Some",
    "Vec",
];

/// Refuses names the bindings could not generate: a message named like something the
/// generated module uses, and a state named `Initial` (the alias of the initial state) or
/// with a `_` (the states inside sequences are named `State_N`, and the receive enums drop
/// the `_`: `Ready_1` and `Ready1` would both be `ImpReady1In`).
fn reserved(contract: &ContractDecl, errors: &mut Vec<Error>) {
    for m in &contract.messages {
        if RESERVED_MESSAGES.contains(&m.name.text.as_str()) {
            errors.push(Error::new(
                m.name.span,
                format!(
                    "message `{}`: the generated bindings use that name themselves; call it something else",
                    m.name.text
                ),
            ));
        }
    }
    for s in &contract.states {
        if s.name.text == "Initial" || s.name.text.contains('_') {
            errors.push(Error::new(
                s.name.span,
                format!(
                    "state `{}`: a state's name may not be `Initial` or contain `_` (the bindings name the states inside sequences `State_1`, `State_2`, …)",
                    s.name.text
                ),
            ));
        }
    }
}

/// The rules for `idempotent`: the importer's bindings send such a message again, on the
/// channel of a restarted server, when the server ended before answering. That is only
/// sound for a request (sent by the importer) that carries nothing that moves (a `buffer`
/// or an endpoint went down with the old server and cannot be sent twice), sent only in
/// the initial state (a restarted server's channel starts there: a message sent later
/// would need the session before it replayed, which the bindings cannot do for the
/// caller).
fn idempotent(
    contract: &ContractDecl,
    states: &[State],
    transitions: &[Transition],
    initial: u16,
    errors: &mut Vec<Error>,
) {
    for (index, decl) in contract.messages.iter().enumerate() {
        let Some(span) = decl.idempotent else {
            continue;
        };
        let name = &decl.name.text;
        if let Some(field) = decl.fields.iter().find(|f| {
            matches!(
                f.ty,
                TypeExpr::Buffer | TypeExpr::AnyEndpoint | TypeExpr::Endpoint { .. }
            )
        }) {
            errors.push(Error::new(
                span,
                format!(
                    "`idempotent` message `{name}` carries `{}`, which moves to the server and is lost with it: a retry could not send it again (drop `idempotent`, or let the caller retry)",
                    field.name.text
                ),
            ));
            continue;
        }
        let sent: Vec<&Transition> = transitions
            .iter()
            .filter(|t| t.message as usize == index)
            .collect();
        if let Some(t) = sent.iter().find(|t| t.dir != Dir::ToExporter) {
            errors.push(Error::new(
                span,
                format!(
                    "`idempotent` message `{name}` is sent by the exporter (in state `{}`): only requests, which the importer sends, are retried",
                    states[t.from as usize].name
                ),
            ));
            continue;
        }
        if let Some(t) = sent.iter().find(|t| t.from != initial) {
            errors.push(Error::new(
                span,
                format!(
                    "`idempotent` message `{name}` is sent in state `{}`, which a channel reaches only after other messages; a restarted server's channel starts in `{}`, so a retry would have to replay that session first (drop `idempotent`, or let the caller replay the session and retry)",
                    states[t.from as usize].name, states[initial as usize].name
                ),
            ));
        }
    }
}

/// The most messages one side can send in direction `dir` before it must receive one:
/// the longest path made only of `dir` transitions. A cycle of them means the queue is
/// unbounded.
fn bound(
    states: &[State],
    transitions: &[Transition],
    spans: &[Span],
    messages: &[Message],
    dir: Dir,
) -> Result<u32, Error> {
    let n = states.len();
    // Depth-first search with colours, computing the longest path from each state.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done(u32),
    }
    fn visit(
        s: usize,
        marks: &mut [Mark],
        transitions: &[Transition],
        dir: Dir,
        stack: &mut Vec<usize>,
    ) -> Result<u32, usize> {
        match marks[s] {
            Mark::Done(len) => return Ok(len),
            Mark::Open => return Err(s),
            Mark::New => {}
        }
        marks[s] = Mark::Open;
        let mut best = 0;
        for (i, t) in transitions.iter().enumerate() {
            if t.from as usize == s && t.dir == dir {
                stack.push(i);
                let len = visit(t.to as usize, marks, transitions, dir, stack)?;
                stack.pop();
                best = best.max(len + 1);
            }
        }
        marks[s] = Mark::Done(best);
        Ok(best)
    }
    let mut marks = vec![Mark::New; n];
    let mut longest = 0;
    for s in 0..n {
        let mut stack = Vec::new();
        match visit(s, &mut marks, transitions, dir, &mut stack) {
            Ok(len) => longest = longest.max(len),
            Err(_) => {
                let last = *stack.last().expect("a cycle has an edge");
                let t = transitions[last];
                let who = if dir == Dir::ToImporter {
                    "exporter"
                } else {
                    "importer"
                };
                return Err(Error::new(
                    spans[last],
                    format!(
                        "unbounded queue: the {who} can send `{}{}` forever without receiving anything (loop through state `{}`); \
                         put a message in the other direction into the loop",
                        messages[t.message as usize].name,
                        dir.mark(),
                        states[t.to as usize].name
                    ),
                ));
            }
        }
    }
    if longest > MAX_IN_FLIGHT {
        let first = transitions.iter().position(|t| t.dir == dir).unwrap_or(0);
        return Err(Error::new(
            spans[first],
            format!("up to {longest} messages can queue in one direction; at most {MAX_IN_FLIGHT}"),
        ));
    }
    Ok(longest)
}

/// Checks that `imp<C>`/`exp<C>` fields name contracts of the same compilation (`known`).
pub fn resolve_endpoint_types(contracts: &[ContractDecl], known: &[&str], errors: &mut Vec<Error>) {
    for contract in contracts {
        for message in &contract.messages {
            for field in &message.fields {
                if let TypeExpr::Endpoint {
                    contract: target, ..
                } = &field.ty
                    && !known.contains(&target.text.as_str())
                {
                    errors.push(Error::new(
                        target.span,
                        format!(
                            "unknown contract `{}` (contracts: {})",
                            target.text,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
    }
}
