//! The shipped contracts compile with the expected bounds; every kind of error is reported
//! with line:column and the offending line.

use contracts::{Dir, Protocol, compile};

fn shipped(name: &str) -> Vec<Protocol> {
    let path = format!("{}/files/{name}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    compile(&source).unwrap_or_else(|e| panic!("{}", e.render(&path, &source)))
}

#[test]
fn shipped_contracts_compile_with_bounded_queues() {
    let echo = &shipped("echo.contract")[0];
    assert_eq!(echo.max_in_flight, [1, 1]);
    assert_eq!(echo.max_message_bytes(), 2 + 4 + 4 + 16384);
    let ready = echo.state_index("Ready").unwrap();
    let ping = echo.message_index("Ping").unwrap();
    let pong = echo.message_index("Pong").unwrap();
    let waiting = echo.step(ready, ping, Dir::ToExporter).unwrap();
    assert!(echo.states[waiting as usize].anonymous);
    assert_eq!(echo.step(waiting, pong, Dir::ToImporter), Some(ready));
    assert_eq!(
        echo.step(ready, pong, Dir::ToImporter),
        None,
        "Pong before Ping"
    );

    for (file, count) in [
        ("block.contract", 1),
        ("fs.contract", 1),
        ("directory.contract", 2),
    ] {
        let protocols = shipped(file);
        assert_eq!(protocols.len(), count, "{file}");
        for p in &protocols {
            assert_eq!(p.max_in_flight, [1, 1], "{}", p.name);
        }
    }
}

#[test]
fn bounds_count_consecutive_sends() {
    let source = r#"contract Stream {
        message Start;
        message Chunk(n: u32);
        message End;
        message Ack;
        initial state Idle { Start? -> Chunk! -> Chunk! -> Chunk! -> End! -> Waiting; }
        state Waiting { Ack? -> Idle; }
    }"#;
    let p = &compile(source).unwrap()[0];
    assert_eq!(p.max_in_flight[Dir::ToImporter.index()], 4);
    assert_eq!(
        p.max_in_flight[Dir::ToExporter.index()],
        2,
        "Ack then Start"
    );
}

/// Compiles `source` expecting an error at `line:col` whose message contains `needle`.
#[track_caller]
fn error(source: &str, line: usize, col: usize, needle: &str) {
    let err = compile(source).expect_err("must be rejected");
    let rendered = err.render("t.contract", source);
    assert_eq!(err.line_col(source), (line, col), "{rendered}");
    assert!(err.message.contains(needle), "{rendered}");
    let text = source.lines().nth(line - 1).unwrap();
    assert!(rendered.contains(text), "shows the line: {rendered}");
    assert!(
        rendered.starts_with(&format!("t.contract:{line}:{col}: error: ")),
        "{rendered}"
    );
}

#[test]
fn unbounded_queue_is_rejected() {
    error(
        "contract Ticker {\n  message Tick;\n  initial state S { Tick! -> S; }\n}",
        3,
        21,
        "unbounded queue: the exporter can send `Tick!` forever",
    );
}

#[test]
fn unknown_message_is_rejected() {
    error(
        "contract A {\n  message Ping;\n  initial state S { Pnig? -> S; }\n}",
        3,
        21,
        "unknown message `Pnig` (messages: Ping)",
    );
}

#[test]
fn unknown_state_is_rejected() {
    error(
        "contract A {\n  message Ping;\n  message Pong;\n  initial state S { Ping? -> Pong! -> T; }\n}",
        4,
        39,
        "unknown state `T` (states: S)",
    );
}

#[test]
fn unreachable_state_is_rejected() {
    error(
        "contract A {\n  message Ping;\n  message Pong;\n  initial state S { Ping? -> Pong! -> S; }\n  state Lost;\n}",
        5,
        9,
        "state `Lost` is unreachable",
    );
}

#[test]
fn ambiguous_transition_is_rejected() {
    error(
        "contract A {\n  message Ping;\n  message Pong;\n  message Pang;\n  initial state S {\n    Ping? -> Pong! -> S;\n    Ping? -> Pang! -> S;\n  }\n}",
        7,
        5,
        "ambiguous: `Ping?` already leads out of state `S`",
    );
}

#[test]
fn state_where_both_sides_send_is_rejected() {
    error(
        "contract A {\n  message Up;\n  message Down;\n  initial state S {\n    Up? -> S;\n    Down! -> S;\n  }\n}",
        6,
        5,
        "would let both sides send",
    );
}

#[test]
fn oversized_payload_is_rejected() {
    error(
        "contract A {\n  message Big(data: bytes[100000]);\n  initial state S { Big? -> S; }\n}",
        2,
        21,
        "bytes[100000]: the maximum length must be 1 to 65536",
    );
}

#[test]
fn duplicate_names_are_rejected() {
    error(
        "contract A {\n  message M;\n  message M;\n  initial state S;\n}",
        3,
        11,
        "message `M` is declared twice",
    );
    error(
        "contract A {\n  message M(x: u8, x: u16);\n  initial state S;\n}",
        2,
        20,
        "field `x` is declared twice",
    );
}

#[test]
fn unknown_endpoint_contract_is_rejected() {
    error(
        "contract A {\n  message M(peer: imp<Nowhere>);\n  message R;\n  initial state S { M? -> R! -> S; }\n}",
        2,
        23,
        "unknown contract `Nowhere` (contracts: A)",
    );
}

#[test]
fn syntax_errors_point_at_the_token() {
    error(
        "contract A {\n  mesage M;\n}",
        2,
        3,
        "expected `message`, `idempotent message`, `state`",
    );
    error(
        "contract A {\n  message M(x: float);\n  initial state S;\n}",
        2,
        16,
        "unknown type `float`",
    );
    error(
        "contract A {\n  message M;\n  initial state S { M -> S; }\n}",
        3,
        21,
        "needs a direction",
    );
    error(
        "contract A {\n  message M;\n  initial state S { M? -> S }\n}",
        3,
        29,
        "expected `;`, found `}`",
    );
    error(
        "contract A {\n  message M @;\n}",
        2,
        13,
        "unexpected character `@`",
    );
}

#[test]
fn idempotent_requests_are_marked_and_the_rules_refuse_what_a_retry_cannot_redo() {
    let fs = &shipped("fs.contract")[0];
    let marked: Vec<&str> = fs
        .messages
        .iter()
        .filter(|m| m.idempotent)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(marked, ["Open", "Stat", "List"]);
    let block = &shipped("block.contract")[0];
    assert!(block.messages[block.message_index("GetInfo").unwrap() as usize].idempotent);
    assert!(!block.messages[block.message_index("Read").unwrap() as usize].idempotent);

    let moves = "contract C {\n    idempotent message Take(into: buffer);\n    message Done;\n    initial state Start { Take? -> Done! -> Start; }\n}";
    let rendered = compile(moves).unwrap_err().render("c.contract", moves);
    assert!(
        rendered.contains("`idempotent` message `Take` carries `into`, which moves to the server"),
        "{rendered}"
    );
    let late = "contract C {\n    message Hello;\n    idempotent message Go(n: u32);\n    message Done;\n    initial state Start { Hello? -> Done! -> Ready; }\n    state Ready { Go? -> Done! -> Ready; }\n}";
    let rendered = compile(late).unwrap_err().render("c.contract", late);
    assert!(
        rendered.contains("`idempotent` message `Go` is sent in state `Ready`")
            && rendered
                .contains("starts in `Start`, so a retry would have to replay that session first")
            && rendered.contains("c.contract:3:5"),
        "{rendered}"
    );
    let reply = "contract C {\n    message Ask;\n    idempotent message Answer;\n    initial state Start { Ask? -> Answer! -> Start; }\n}";
    let rendered = compile(reply).unwrap_err().render("c.contract", reply);
    assert!(
        rendered.contains("`idempotent` message `Answer` is sent by the exporter"),
        "{rendered}"
    );
    let ok = "contract C {\n    idempotent message Ask(n: u32, name: bytes[8]);\n    message Answer;\n    initial state Start { Ask? -> Answer! -> Start; }\n}";
    assert!(compile(ok).unwrap()[0].messages[0].idempotent);
}

#[test]
fn every_error_in_a_file_is_reported_in_order() {
    let source = "contract A {\n\
                  \x20 message Ping(n: u32, n: u32);\n\
                  \x20 message Big(b: bytes[0]);\n\
                  \x20 initial state S { Pnig? -> Pong! -> S; Ping? -> Nowhere; }\n\
                  }\n\
                  contract B {\n\
                  \x20 message M(e: imp<Missing>);\n\
                  \x20 initial state S { M? -> S; }\n\
                  }\n";
    let report = contracts::compile_all(source);
    let found: Vec<((usize, usize), &str)> = report
        .errors
        .iter()
        .map(|e| (e.line_col(source), e.message.as_str()))
        .collect();
    let expected = [
        (2, "field `n` is declared twice"),
        (3, "bytes[0]"),
        (4, "unknown message `Pnig`"),
        (4, "unknown message `Pong`"),
        (4, "unknown state `Nowhere`"),
        (7, "unknown contract `Missing`"),
        (8, "unbounded queue"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (((line, _), message), (want_line, want)) in found.iter().zip(expected) {
        assert_eq!(*line, want_line, "{message}");
        assert!(message.contains(want), "{message} lacks {want}");
    }
    assert!(report.protocols.is_empty());
    // The first error is what `compile` (the kernel's entry) reports.
    assert_eq!(compile(source).unwrap_err(), report.errors[0]);
}

#[test]
fn an_unused_message_is_a_warning_not_an_error() {
    let source = "contract A {\n  message Ping;\n  message Pong;\n  message Draft;\n  initial state S { Ping? -> Pong! -> S; }\n}";
    let report = contracts::compile_all(source);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.protocols.len(), 1);
    assert_eq!(report.warnings.len(), 1);
    let warning = &report.warnings[0];
    assert_eq!(warning.line_col(source), (4, 11));
    assert!(
        warning
            .message
            .contains("message `Draft` is declared but no state sends or receives it")
    );
    assert!(
        warning
            .render_as("warning", "a.contract", source)
            .starts_with("a.contract:4:11: warning: ")
    );
}

#[test]
fn names_the_bindings_need_are_refused() {
    let source = "contract A {\n  message Bytes;\n  message Ok;\n  initial state S { Bytes? -> Ok! -> S; }\n  state S_1;\n}";
    let report = contracts::compile_all(source);
    let found: Vec<(usize, &str)> = report
        .errors
        .iter()
        .map(|e| (e.line_col(source).0, e.message.as_str()))
        .collect();
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 2 && m.starts_with("message `Bytes`: the generated bindings use")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 3 && m.starts_with("message `Ok`")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 5 && m.starts_with("state `S_1`: a state's name may not")),
        "{found:?}"
    );
}
