//! The generated bindings make protocol violations compile errors: a crate that follows
//! the Echo contract type-checks; crates that send out of turn or on the wrong side do
//! not, and the compiler names the missing method. Runs `cargo check` on small crates
//! built from the real generated code and the real guest library.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bindings() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/files/echo.contract");
    let source = std::fs::read_to_string(path).unwrap();
    contracts::bindings::rust(&contracts::compile(&source).unwrap())
}

/// `cargo check`s a crate whose lib.rs is the Echo bindings plus `body`; returns
/// (success, compiler output).
fn check(name: &str, body: &str) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("cordon-typestate-{}-{name}", std::process::id()));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"typestate-{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[dependencies]\ncordon-sip = {{ path = \"{}\" }}\n\n[workspace]\n",
            root.join("sips/cordon-sip").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        format!("#![no_std]\n#![allow(dead_code)]\n{}\n{body}\n", bindings()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--offline"])
        .current_dir(&dir)
        // Share one target directory so the guest library is checked once.
        .env("CARGO_TARGET_DIR", root.join("target/typestate-check"))
        .output()
        .expect("cargo runs");
    std::fs::remove_dir_all(&dir).ok();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn following_the_contract_compiles_and_breaking_it_does_not() {
    let (ok, err) = check(
        "follows",
        "pub fn client(ep: echo::Imp<echo::state::Ready>) -> Result<(), cordon_sip::channel::Error> {
            let ep = ep.send_ping(echo::Ping { seq: 1, data: echo::Bytes::default() })?;
            match ep.recv(None) {
                Ok(echo::ImpReady1In::Pong(ep, _)) => { ep.send_bye(echo::Bye {})?; }
                Err(_) => {}
            }
            Ok(())
        }
        extern crate alloc;",
    );
    assert!(ok, "correct use must compile:\n{err}");

    // The client may not send Ping twice in a row: after send_ping it holds Imp<Ready_1>.
    let (ok, err) = check(
        "twice",
        "pub fn client(ep: echo::Imp<echo::state::Ready>) {
            let ep = ep.send_ping(echo::Ping { seq: 1, data: echo::Bytes::default() }).unwrap();
            let _ = ep.send_ping(echo::Ping { seq: 2, data: echo::Bytes::default() });
        }
        extern crate alloc;",
    );
    assert!(!ok, "a second Ping before the Pong must not compile");
    assert!(
        err.contains("no method named `send_ping` found for struct `Imp"),
        "{err}"
    );

    // A `bytes[N]` field takes only a checked `Bytes<N>`, never a raw vector of any length.
    let (ok, err) = check(
        "unchecked-bytes",
        "pub fn client(ep: echo::Imp<echo::state::Ready>) {
            let _ = ep.send_ping(echo::Ping { seq: 1, data: alloc::vec![0u8; 20000] });
        }
        extern crate alloc;",
    );
    assert!(!ok, "a raw vector as a bytes[N] field must not compile");
    assert!(err.contains("expected `Bytes<16384>`"), "{err}");

    // The client never sends Pong.
    let (ok, err) = check(
        "wrong-side",
        "pub fn client(ep: echo::Imp<echo::state::Ready>) {
            let _ = ep.send_pong(echo::Pong { seq: 1, data: echo::Bytes::default() });
        }
        extern crate alloc;",
    );
    assert!(!ok, "the importer sending Pong must not compile");
    assert!(
        err.contains("no method named `send_pong` found for struct `Imp"),
        "{err}"
    );
}
