//! `cordon new`: a contract file, or a SIP crate outside this workspace, to start from.
//!
//! `new contract kv` writes `kv.contract` (a request/reply contract named `Kv`). `new sip
//! DIR` makes a SIP crate in `DIR` (package `sip-NAME`, SIP `NAME` after the directory's
//! name) that depends on this checkout's `cordon-sip` and `sip-build` by path, pinned to
//! their version; with `--contract FILE --role exporter|importer` it declares one
//! endpoint of that contract (`clients` for an exporter, `server` for an importer) and
//! its `src/lib.rs` is a working server or client written against the generated
//! bindings: a server that answers every request with default values, a client that
//! makes one call and prints the answer. The runner builds such a crate when a system
//! names its directory (see `sips::read`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use contracts::bindings::{in_enum, receives, snake};
use contracts::{FieldType, Message, Protocol, Role};

/// The contract's name for a file name: `key-value` -> `KeyValue`.
fn camel(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

/// Writes a new contract file at `path` (`.contract` added if missing); what to say.
pub fn new_contract(path: &Path) -> anyhow::Result<String> {
    let path = if path.extension().is_some_and(|e| e == "contract") {
        path.to_path_buf()
    } else {
        path.with_extension("contract")
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the contract file needs a UTF-8 name")?;
    let name = camel(stem);
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        bail!("`{stem}`: a contract's name starts with a letter (e.g. `kv`, `key-value`)");
    }
    if path.exists() {
        bail!("`{}` exists already; nothing was written", path.display());
    }
    let text = format!(
        "// {name}: what crosses a {name} channel, and when. Directions are the exporter's\n\
         // (the server's): `?` it receives, `!` it sends. Check it with\n\
         // `cargo run -- contract {file}`; see the README's \"Writing a contract\".\n\
         contract {name} {{\n\
         \x20   message Request(id: u32, data: bytes[256]);\n\
         \x20   message Reply(id: u32, data: bytes[256]);\n\
         \x20   message Bye;\n\
         \n\
         \x20   initial state Ready {{\n\
         \x20       Request? -> Reply! -> Ready;\n\
         \x20       Bye? -> Done;\n\
         \x20   }}\n\
         \x20   state Done;\n\
         }}\n",
        file = path.display()
    );
    contracts::compile(&text).map_err(|e| anyhow::anyhow!("template: {}", e.message))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(format!(
        "wrote {} (contract `{name}`); its bindings: `cargo run -- contract --rust {}`",
        path.display(),
        path.display()
    ))
}

/// This checkout's root (where `sips/cordon-sip` lives).
fn repository() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `to` relative to directory `from` (both absolute), for paths written into the crate.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to_parts: Vec<_> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to_parts[common..] {
        out.push(part);
    }
    out
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// Makes a SIP crate in `dir`; with `contract`, one endpoint of its (first) contract in
/// `role`. What to say.
pub fn new_sip(dir: &Path, contract: Option<&Path>, role: Option<Role>) -> anyhow::Result<String> {
    let folder = dir.file_name().and_then(|s| s.to_str()).with_context(|| {
        format!(
            "`{}`: name the SIP's new directory, e.g. `../kv-server`",
            dir.display()
        )
    })?;
    let sip = folder.strip_prefix("sip-").unwrap_or(folder);
    if !cordon_abi::is_sip_name(sip) {
        bail!("`{folder}`: {}", cordon_abi::SIP_NAME_RULE);
    }
    // The workspace claims every `sips/sip-*` directory as a member; a crate with a
    // workspace of its own there would break every cargo command in the checkout.
    let parent = absolute(dir)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if parent.canonicalize().ok() == repository().join("sips").canonicalize().ok() {
        bail!(
            "`{}`: the workspace's own SIPs live in sips/ (see the README's \"Writing a SIP\"); make this one outside the checkout, e.g. `../{folder}`",
            dir.display()
        );
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "`{}` exists and is not empty; nothing was written",
            dir.display()
        );
    }
    let endpoint = match (contract, role) {
        (None, None) => None,
        (Some(_), None) => {
            bail!("--contract needs --role exporter (a server) or --role importer (a client)")
        }
        (None, Some(_)) => bail!("--role needs --contract FILE"),
        (Some(file), Some(role)) => {
            let source = std::fs::read_to_string(file)
                .with_context(|| format!("no contract file at `{}`", file.display()))?;
            let report = contracts::compile_all(&source);
            if !report.errors.is_empty() {
                bail!(
                    "{}",
                    crate::report::render(&report, &file.display().to_string(), &source)
                );
            }
            let protocol = report
                .protocols
                .into_iter()
                .next()
                .with_context(|| format!("`{}` declares no contract", file.display()))?;
            let file = file
                .canonicalize()
                .with_context(|| format!("resolving `{}`", file.display()))?;
            Some((file, protocol, role))
        }
    };
    // Made first, so that both paths are canonical when build.rs gets one relative to
    // the other (`..` in either would otherwise count wrong).
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let crate_dir = dir
        .canonicalize()
        .with_context(|| format!("resolving `{}`", dir.display()))?;
    let repo = repository();
    let version = env!("CARGO_PKG_VERSION");
    let package = format!("sip-{sip}");
    let mut cargo = format!(
        "[package]\n\
         name = \"{package}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2024\"\n\
         publish = false\n\
         \n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\
         test = false\n\
         \n\
         # The SIP's manifest: limits, and the endpoints the system manifest hands it.\n\
         # Keys: the README's \"Writing a SIP\".\n\
         [package.metadata.cordon]\n\
         memory-pages = 16\n"
    );
    if let Some((_, protocol, role)) = &endpoint {
        let (name, role) = endpoint_of(*role);
        let _ = writeln!(
            cargo,
            "endpoints = [{{ name = \"{name}\", contract = \"{}\", role = \"{role}\" }}]",
            protocol.name
        );
    }
    let _ = write!(
        cargo,
        "\n\
         # Cordon's guest library and build helper, from the checkout this crate was made\n\
         # with, pinned to its version: a SIP built against another ABI is refused.\n\
         [dependencies]\n\
         cordon-sip = {{ version = \"={version}\", path = \"{}\" }}\n\
         \n\
         [build-dependencies]\n\
         sip-build = {{ version = \"={version}\", path = \"{}\" }}\n\
         \n\
         # A workspace of its own, wherever the crate lives.\n\
         [workspace]\n",
        repo.join("sips/cordon-sip").display(),
        repo.join("sips/sip-build").display()
    );
    let build_rs = match &endpoint {
        None => "fn main() {\n    sip_build::emit_manifest();\n}\n".to_string(),
        Some((file, _, _)) => format!(
            "fn main() {{\n    sip_build::emit_manifest();\n    // Typed bindings for the contract (a path relative to this crate).\n    sip_build::emit_bindings(&[{:?}]);\n}}\n",
            relative(&crate_dir, file).display().to_string()
        ),
    };
    let lib_rs = match &endpoint {
        None => plain_sip(sip),
        Some((_, protocol, Role::Exporter)) => server(sip, protocol),
        Some((_, protocol, Role::Importer)) => client(sip, protocol),
    };
    let config = "# SIPs are WebAssembly modules; a 64 KiB shadow stack so the manifest's memory\n\
                  # limit means what it says (as in the Cordon workspace).\n\
                  [build]\n\
                  target = \"wasm32-unknown-unknown\"\n\
                  \n\
                  [target.wasm32-unknown-unknown]\n\
                  rustflags = [\"-C\", \"link-arg=-zstack-size=65536\", \"-C\", \"debuginfo=0\", \"-C\", \"strip=symbols\"]\n";
    // The checkout's toolchain and locked versions, so the crate builds as the
    // workspace's SIPs do (and offline).
    let toolchain = std::fs::read_to_string(repo.join("rust-toolchain.toml"))
        .context("reading the checkout's rust-toolchain.toml")?;
    let lock = std::fs::read_to_string(repo.join("Cargo.lock"))
        .context("reading the checkout's Cargo.lock")?;
    let files: [(&str, String); 7] = [
        ("Cargo.toml", cargo),
        ("build.rs", build_rs),
        ("src/lib.rs", lib_rs),
        (".cargo/config.toml", config.to_string()),
        ("rust-toolchain.toml", toolchain),
        ("Cargo.lock", lock),
        (".gitignore", "/target\n".to_string()),
    ];
    for (name, text) in &files {
        let path = crate_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut said = format!(
        "made SIP `{sip}` in {} (package {package}); boot it with `cargo run -- --sip {}`",
        dir.display(),
        dir.display()
    );
    if let (Some((_, protocol, role)), Some(file)) = (&endpoint, contract) {
        let (name, role_name) = endpoint_of(*role);
        let other = if *role == Role::Exporter {
            "importer"
        } else {
            "exporter"
        };
        let _ = write!(
            said,
            "\nits `{name}` end ({role_name} of {}) needs a channel in a system manifest (paths there are\n\
             relative to the manifest's directory; these are as given here):\n\n\
             sips = [\"{}\", \"PEER\"]\ncontracts = [\"{}\"]\n\n[[channels]]\ncontract = \"{}\"\n\
             {role_name} = \"{sip}.{name}\"\n{other} = \"PEER.ENDPOINT\"",
            protocol.name,
            dir.display(),
            file.display(),
            protocol.name
        );
    }
    Ok(said)
}

/// The endpoint name and role word a scaffold uses for `role`.
fn endpoint_of(role: Role) -> (&'static str, &'static str) {
    match role {
        Role::Exporter => ("clients", "exporter"),
        Role::Importer => ("server", "importer"),
    }
}

const PRELUDE: &str = "#![no_std]\n#![deny(unsafe_code)]\n\ncordon_sip::sip_main!(main);\n";

fn plain_sip(sip: &str) -> String {
    format!(
        "//! SIP `{sip}`. Made by `cordon new sip`; the README's \"Writing a SIP\" says what a\n\
         //! SIP may do.\n\
         {PRELUDE}\n\
         fn main() -> i32 {{\n\
         \x20   let args = cordon_sip::args();\n\
         \x20   cordon_sip::println!(\"hello from {sip}, with arguments {{args:?}}\");\n\
         \x20   0\n\
         }}\n"
    )
}

/// A Rust expression for a field's default value, if it has one (a `buffer` or an
/// endpoint has to be made or received).
fn default_value(module: &str, ty: &FieldType) -> Option<String> {
    Some(match ty {
        FieldType::U8
        | FieldType::U16
        | FieldType::U32
        | FieldType::U64
        | FieldType::I32
        | FieldType::I64 => "0".into(),
        FieldType::Bool => "false".into(),
        FieldType::Bytes { .. } => format!("{module}::Bytes::default()"),
        FieldType::Buffer | FieldType::Endpoint { .. } => return None,
    })
}

/// `module::Msg { a: 0, b: … }` with default values, if every field has one.
fn literal(module: &str, message: &Message) -> Option<String> {
    if message.fields.is_empty() {
        return Some(format!("{module}::{} {{}}", message.name));
    }
    let fields: Option<Vec<String>> = message
        .fields
        .iter()
        .map(|f| default_value(module, &f.ty).map(|v| format!("{}: {v}", f.name)))
        .collect();
    Some(format!(
        "{module}::{} {{ {} }}",
        message.name,
        fields?.join(", ")
    ))
}

/// Whether a message's fields all print with `{:?}` in a useful way.
fn printable(message: &Message) -> bool {
    message
        .fields
        .iter()
        .all(|f| default_value("m", &f.ty).is_some())
}

fn shown(message: &Message, var: &str) -> String {
    if printable(message) {
        format!("{{{var}:?}}")
    } else {
        message.name.clone()
    }
}

/// A server of `p`: answers each request with the first reply the contract allows,
/// default values in every field, until the client closes the channel.
fn server(sip: &str, p: &Protocol) -> String {
    let m = snake(&p.name);
    let s = p.initial;
    let mut out = format!(
        "//! SIP `{sip}`: serves contract `{c}` on its `clients` end. Made by `cordon new sip`:\n\
         //! it answers every request with default values; put the service in `answer`'s\n\
         //! place. The bindings: `cargo run -- contract --rust FILE`, or `cargo doc`.\n\
         {PRELUDE}cordon_sip::contracts!();\n\n\
         use cordon_sip::println;\n\n\
         /// Serves one client after another: a client started later (an `on-request` SIP)\n\
         /// brings a fresh channel each time. Ends when no more can come.\n\
         fn main() -> i32 {{\n\
         \x20   let mut clients = 0;\n\
         \x20   while let Ok(ep) = {m}::Exp::wait_initial(\"clients\") {{\n\
         \x20       clients += 1;\n\
         \x20       let status = serve(ep);\n\
         \x20       if status != 0 {{\n\
         \x20           return status;\n\
         \x20       }}\n\
         \x20   }}\n\
         \x20   if clients == 0 {{\n\
         \x20       println!(\"no `clients` end: the system manifest must connect it\");\n\
         \x20       return 1;\n\
         \x20   }}\n\
         \x20   0\n\
         }}\n\n\
         /// One client's session.\n\
         fn serve(mut ep: {m}::Exp<{m}::state::Initial>) -> i32 {{\n",
        c = p.name
    );
    if !receives(p, Role::Exporter, s) {
        let _ = write!(
            out,
            "    // In `{}` the contract lets the server send first: use `ep.send_…`.\n    ep.close();\n    0\n}}\n",
            p.states[s as usize].name
        );
        return out;
    }
    let _ = writeln!(out, "    loop {{\n        ep = match ep.recv(None) {{");
    let incoming = in_enum(p, Role::Exporter, s);
    for t in p.outgoing(s).filter(|t| t.dir == Role::Importer.sends()) {
        let request = &p.messages[t.message as usize];
        let _ = writeln!(
            out,
            "            Ok({m}::{incoming}::{}(ep, request)) => {{\n                println!(\"{sip}: got {}\");",
            request.name,
            shown(request, "request")
        );
        let answer = p
            .outgoing(t.to)
            .filter(|a| a.dir == Role::Exporter.sends())
            .find_map(|a| literal(&m, &p.messages[a.message as usize]).map(|lit| (a, lit)));
        match answer {
            _ if t.to == s => {
                let _ = writeln!(out, "                ep\n            }}");
            }
            Some((a, lit)) => {
                let reply = &p.messages[a.message as usize];
                let _ = writeln!(
                    out,
                    "                // answer: what the service replies.\n                let reply = {lit};"
                );
                if a.to == s {
                    let _ = writeln!(
                        out,
                        "                match ep.send_{}(reply) {{\n                    Ok(ep) => ep,\n                    Err(_) => return 1,\n                }}\n            }}",
                        snake(&reply.name)
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "                let _ = ep.send_{}(reply);\n                return 0;\n            }}",
                        snake(&reply.name)
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "                // Now in `{}`, where the server sends nothing: the session ends.\n                ep.close();\n                return 0;\n            }}",
                    p.states[t.to as usize].name
                );
            }
        }
    }
    let _ = write!(
        out,
        "            Err(_) => {{\n                println!(\"{sip}: the client closed the channel\");\n                return 0;\n            }}\n        }};\n    }}\n}}\n"
    );
    out
}

/// A client of `p`: sends the first request the contract allows (default values) and
/// prints the answer.
fn client(sip: &str, p: &Protocol) -> String {
    let m = snake(&p.name);
    let s = p.initial;
    let mut out = format!(
        "//! SIP `{sip}`: a client of contract `{c}` on its `server` end. Made by\n\
         //! `cordon new sip`: it makes one call with default values and prints the answer.\n\
         //! The bindings: `cargo run -- contract --rust FILE`, or `cargo doc`.\n\
         {PRELUDE}cordon_sip::contracts!();\n\n\
         use cordon_sip::println;\n\n\
         fn main() -> i32 {{\n\
         \x20   let Ok(server) = {m}::Imp::initial(\"server\") else {{\n\
         \x20       println!(\"no `server` end: the system manifest must connect it\");\n\
         \x20       return 1;\n\
         \x20   }};\n",
        c = p.name
    );
    let first = p
        .outgoing(s)
        .filter(|t| t.dir == Role::Importer.sends())
        .find_map(|t| literal(&m, &p.messages[t.message as usize]).map(|lit| (t, lit)));
    let Some((t, lit)) = first else {
        let _ = write!(
            out,
            "    // Send with `server.send_…`: each method exists only where the contract allows it.\n    server.close();\n    0\n}}\n"
        );
        return out;
    };
    let request = &p.messages[t.message as usize];
    let _ = writeln!(out, "    let request = {lit};");
    if !receives(p, Role::Importer, t.to) {
        let _ = write!(
            out,
            "    match server.send_{}(request) {{\n        Ok(server) => {{\n            println!(\"{sip}: sent {}\");\n            server.close();\n            0\n        }}\n        Err(_) => 1,\n    }}\n}}\n",
            snake(&request.name),
            request.name
        );
        return out;
    }
    let incoming = in_enum(p, Role::Importer, t.to);
    let _ = writeln!(
        out,
        "    match server.call_{}(request, None) {{",
        snake(&request.name)
    );
    for r in p.outgoing(t.to).filter(|r| r.dir == Role::Exporter.sends()) {
        let reply = &p.messages[r.message as usize];
        let _ = writeln!(
            out,
            "        Ok({m}::{incoming}::{}(server, reply)) => {{\n            println!(\"{sip}: {} answered {}\");\n            server.close();\n            0\n        }}",
            reply.name,
            p.name,
            shown(reply, "reply")
        );
    }
    let _ = write!(
        out,
        "        Err(_) => {{\n            println!(\"{sip}: the call failed\");\n            1\n        }}\n    }}\n}}\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_contract_names() {
        assert_eq!(camel("kv"), "Kv");
        assert_eq!(camel("key-value"), "KeyValue");
        assert_eq!(camel("block_device"), "BlockDevice");
    }

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(
            relative(Path::new("/a/b/crate"), Path::new("/a/kv.contract")),
            Path::new("../../kv.contract")
        );
        assert_eq!(
            relative(Path::new("/a/crate"), Path::new("/a/crate/x.contract")),
            Path::new("x.contract")
        );
    }

    #[test]
    fn scaffolds_refuse_bad_names_and_existing_files() {
        let dir = std::env::temp_dir().join(format!("cordon-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let contract = dir.join("kv.contract");
        new_contract(&dir.join("kv")).unwrap();
        let err = new_contract(&contract).unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        let err = new_sip(&dir.join("Bad_Name"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lower-case letters"), "{err}");
        let err = new_sip(&dir.join("kv-server"), Some(&contract), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--role"), "{err}");
        let said = new_sip(
            &dir.join("kv-server"),
            Some(&contract),
            Some(Role::Exporter),
        )
        .unwrap();
        assert!(said.contains("exporter = \"kv-server.clients\""), "{said}");
        let err = new_sip(&dir.join("kv-server"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not empty"), "{err}");
        let build = std::fs::read_to_string(dir.join("kv-server/build.rs")).unwrap();
        assert!(
            build.contains("emit_bindings(&[\"../kv.contract\"])"),
            "{build}"
        );
        let lib = std::fs::read_to_string(dir.join("kv-server/src/lib.rs")).unwrap();
        assert!(lib.contains("ep.send_reply(reply)"), "{lib}");
        // `..` in the crate's path: build.rs still finds the contract.
        new_sip(
            &dir.join("sub/../kv-client"),
            Some(&contract),
            Some(Role::Importer),
        )
        .unwrap();
        let build = std::fs::read_to_string(dir.join("kv-client/build.rs")).unwrap();
        assert!(
            build.contains("emit_bindings(&[\"../kv.contract\"])"),
            "{build}"
        );
        // The workspace's own sips/ directory is refused (it would break the workspace).
        let inside = repository().join("sips/sip-scaffold-test");
        let err = new_sip(&inside, None, None).unwrap_err().to_string();
        assert!(err.contains("outside the checkout"), "{err}");
        assert!(!inside.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
