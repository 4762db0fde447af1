//! Build-script helper for SIPs: turns the SIP's `[package.metadata.cordon]` table into
//! the `cordon.manifest` custom section, so no manifest is ever written by hand.
//!
//! In a SIP's `build.rs`: `fn main() { sip_build::emit_manifest() }`, and in its source
//! `cordon_sip::sip_main!(main);`. Recognised keys (all optional):
//!
//! ```toml
//! [package.metadata.cordon]
//! name = "hello"            # default: the package name without a `sip-` prefix
//! memory-pages = 32         # maximum linear memory, 64 KiB pages
//! table-elements = 1024
//! call-depth = 1024
//! fuel = 50_000_000         # total fuel budget; omit for none
//! cpu-ticks = 500           # processor time in 100 Hz timer ticks, enforced by the kernel
//! kernel-objects = 128      # endpoints and exchange-heap blocks held at once
//! kernel-bytes = 2_097_152  # kernel memory those may take (queues, blocks)
//! # channel ends the system manifest hands this SIP at start
//! endpoints = [{ name = "server", contract = "Echo", role = "importer" }]
//! # a server of several clients, each on its own channel: `clients` must be connected,
//! # `clients#2` ... `clients#8` may be
//! # endpoints = [{ name = "clients", contract = "FileSystem", role = "exporter", connections = 8 }]
//! ```
//!
//! `sip_build::emit_bindings(&["echo"])` compiles `contracts/files/echo.contract` (or
//! `&["../kv.contract"]`, a file beside the crate) and writes typed bindings to
//! `$OUT_DIR/contracts.rs` (`cordon_sip::contracts!()` includes them); every contract
//! error fails the build with file:line:column.
#![deny(unsafe_code)]

use std::path::Path;

use cordon_abi::{Limits, Manifest};

const KEYS: &[&str] = &[
    "name",
    "memory-pages",
    "table-elements",
    "call-depth",
    "fuel",
    "cpu-ticks",
    "kernel-objects",
    "kernel-bytes",
    "endpoints",
    "resources",
];

/// The keys of one `endpoints` entry.
const ENDPOINT_KEYS: &[&str] = &["name", "contract", "role", "connections"];

/// The first key of `table` that is not one of `known`.
fn unknown_key<'a>(table: &'a toml::Table, known: &[&str]) -> Option<&'a String> {
    table.keys().find(|k| !known.contains(&k.as_str()))
}

/// A bad declaration: the key it is about (when one is) and what is wrong.
struct Fault {
    key: Option<String>,
    why: String,
}

impl Fault {
    fn at(key: &str, why: impl Into<String>) -> Fault {
        Fault {
            key: Some(key.into()),
            why: format!("{key}: {}", why.into()),
        }
    }
}

fn endpoints(meta: &toml::Table) -> Result<Vec<cordon_abi::EndpointDecl>, Fault> {
    let Some(value) = meta.get("endpoints") else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| Fault::at("endpoints", why);
    let list = value
        .as_array()
        .ok_or_else(|| bad("must be an array of { name, contract, role }"))?;
    list.iter()
        .map(|item| {
            let table = item
                .as_table()
                .ok_or_else(|| bad("each entry is { name, contract, role }"))?;
            let get = |key: &str| {
                table
                    .get(key)
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| bad(&format!("entry lacks a string `{key}`")))
            };
            let name: String = get("name")?.into();
            if name.is_empty() || name.contains(['#', '.']) {
                return Err(bad(&format!(
                    "endpoint name `{name}`: a name is not empty and has no `#` or `.` (`#` numbers a connection, `.` separates SIP and endpoint)"
                )));
            }
            let contract = get("contract")?.into();
            let role = match get("role")? {
                "exporter" => cordon_abi::Role::Exporter,
                "importer" => cordon_abi::Role::Importer,
                other => return Err(bad(&format!("role `{other}` (exporter or importer)"))),
            };
            if let Some(key) = unknown_key(table, ENDPOINT_KEYS) {
                return Err(bad(&format!(
                    "entry has an unknown key `{key}` ({})",
                    ENDPOINT_KEYS.join(", ")
                )));
            }
            let connections = match table.get("connections") {
                None => 1,
                Some(value) => value
                    .as_integer()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|&n| (1..=64).contains(&n))
                    .ok_or_else(|| {
                        bad(&format!(
                            "`connections` of `{name}` must be a number from 1 to 64, not {value}"
                        ))
                    })?,
            };
            Ok(cordon_abi::EndpointDecl {
                name,
                contract,
                role,
                connections,
            })
        })
        .collect::<Result<Vec<_>, Fault>>()
        .and_then(|list| {
            match list
                .iter()
                .enumerate()
                .find(|(i, d)| list[..*i].iter().any(|e| e.name == d.name))
            {
                Some((_, twice)) => Err(bad(&format!(
                    "endpoint `{}` is declared twice",
                    twice.name
                ))),
                None => Ok(list),
            }
        })
}

/// `resources = ["pci:1af4:1001"]`: the devices a driver SIP asks the kernel for.
fn resources(meta: &toml::Table) -> Result<Vec<cordon_abi::Resource>, Fault> {
    let bad = |why: &str| Fault::at("resources", why);
    let Some(value) = meta.get("resources") else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(list) = value else {
        return Err(bad("must be an array of strings such as \"pci:1af4:1001\""));
    };
    list.iter()
        .map(|item| match item {
            toml::Value::String(text) => text.parse().map_err(|e: String| bad(&e)),
            other => Err(bad(&format!("{other} is not a string"))),
        })
        .collect()
}

/// The manifest a declaration table describes; `name` unless the table names the SIP.
fn from_table(meta: &toml::Table, name: &str) -> Result<Manifest, Fault> {
    if let Some(unknown) = unknown_key(meta, KEYS) {
        return Err(Fault {
            key: Some(unknown.clone()),
            why: format!("unknown key `{unknown}` (known: {})", KEYS.join(", ")),
        });
    }
    let int = |name: &str, default: u64| -> Result<u64, Fault> {
        match meta.get(name) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if *n >= 0 => Ok(*n as u64),
            Some(other) => Err(Fault {
                key: Some(name.into()),
                why: format!("`{name}` must be a non-negative integer, found {other}"),
            }),
        }
    };
    let small = |name: &str, default: u32| -> Result<u32, Fault> {
        u32::try_from(int(name, default.into())?).map_err(|_| Fault {
            key: Some(name.into()),
            why: format!("`{name}` does not fit in 32 bits"),
        })
    };
    let defaults = Limits::default();
    let name = match meta.get("name") {
        None => name.to_string(),
        Some(toml::Value::String(name)) if !name.is_empty() => name.clone(),
        Some(other) => {
            return Err(Fault {
                key: Some("name".into()),
                why: format!("`name` must be a non-empty string, found {other}"),
            });
        }
    };
    if !cordon_abi::is_sip_name(&name) {
        return Err(Fault {
            key: Some("name".into()),
            why: format!(
                "the SIP would be called `{name}`: {} (set `name`)",
                cordon_abi::SIP_NAME_RULE
            ),
        });
    }
    Ok(Manifest {
        name,
        limits: Limits {
            max_memory_pages: small("memory-pages", defaults.max_memory_pages)?,
            max_table_elements: small("table-elements", defaults.max_table_elements)?,
            max_call_depth: small("call-depth", defaults.max_call_depth)?,
            fuel: meta.get("fuel").map(|_| int("fuel", 0)).transpose()?,
            max_kernel_objects: small("kernel-objects", defaults.max_kernel_objects)?,
            max_kernel_bytes: int("kernel-bytes", defaults.max_kernel_bytes)?,
            cpu_ticks: meta
                .get("cpu-ticks")
                .map(|_| int("cpu-ticks", 0))
                .transpose()?,
        },
        endpoints: endpoints(meta)?,
        resources: resources(meta)?,
    })
}

/// Reads the manifest declaration from a Cargo.toml text.
pub fn manifest_from_cargo_toml(text: &str, package: &str) -> Result<Manifest, String> {
    let doc: toml::Table = text.parse().map_err(|e| format!("Cargo.toml: {e}"))?;
    let meta = doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("cordon"));
    let empty = toml::Table::new();
    let meta = match meta {
        None => &empty,
        Some(toml::Value::Table(table)) => table,
        Some(_) => return Err("[package.metadata.cordon] must be a table".into()),
    };
    let name = package.strip_prefix("sip-").unwrap_or(package);
    from_table(meta, name).map_err(|fault| format!("[package.metadata.cordon]: {}", fault.why))
}

/// The marker of a `.wat` module's manifest header lines.
pub const WAT_HEADER: &str = ";;@";

/// Reads the manifest of a hand-written `.wat` module from its header: every line that
/// starts with `;;@` holds TOML with the keys of `[package.metadata.cordon]`, e.g.
///
/// ```text
/// ;;@ memory-pages = 4
/// ;;@ endpoints = [{ name = "clients", contract = "KeyValue", role = "exporter" }]
/// (module ...)
/// ```
///
/// `name` is the SIP's name unless the header gives one (the runner passes the file
/// stem). Errors start with `LINE:COLUMN: ` in the `.wat` file (1-based).
pub fn manifest_from_wat(source: &str, name: &str) -> Result<Manifest, String> {
    // The header's TOML with every other line blanked, so TOML's positions are the file's.
    let mut toml_text = String::new();
    for line in source.lines() {
        if let Some(rest) = line.trim_start().strip_prefix(WAT_HEADER) {
            let indent = line.len() - rest.len();
            toml_text.push_str(&" ".repeat(indent));
            toml_text.push_str(rest);
        }
        toml_text.push('\n');
    }
    let meta: toml::Table = toml_text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, column) = contracts::diag::line_col(&toml_text, at);
        format!("{line}:{column}: `{WAT_HEADER}` header: {}", e.message())
    })?;
    from_table(&meta, name).map_err(|fault| {
        // The line that sets the key the fault is about, else the first header line.
        let line = source
            .lines()
            .position(|l| {
                l.trim_start().strip_prefix(WAT_HEADER).is_some_and(|rest| {
                    fault
                        .key
                        .as_deref()
                        .is_none_or(|k| rest.trim_start().starts_with(k))
                })
            })
            .map_or(1, |i| i + 1);
        format!("{line}:1: `{WAT_HEADER}` header: {}", fault.why)
    })
}

/// For a SIP's build script: compiles each contract and writes their typed bindings to
/// `$OUT_DIR/contracts.rs`. A name such as `"echo"` is a shipped contract
/// (`contracts/files/echo.contract` of the Cordon checkout this crate comes from); a name
/// ending in `.contract` is a file, relative to the SIP's crate (`"../kv.contract"`).
/// Every error fails the build with file:line:column; warnings show as cargo warnings.
pub fn emit_bindings(names: &[&str]) {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/files");
    let mut protocols = Vec::new();
    let mut failed = false;
    for name in names {
        let path = if name.ends_with(".contract") {
            Path::new(&dir).join(name)
        } else {
            shipped.join(format!("{name}.contract"))
        };
        println!("cargo:rerun-if-changed={}", path.display());
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read contract {}: {e}", path.display()));
        let report = contracts::compile_all(&source);
        let shown = path.display().to_string();
        for warning in &report.warnings {
            let text = warning.render_as("warning", &shown, &source);
            println!("cargo:warning={}", text.lines().next().unwrap_or_default());
        }
        for err in &report.errors {
            eprint!("{}", err.render(&shown, &source));
            failed = true;
        }
        protocols.extend(report.protocols);
    }
    if failed {
        std::process::exit(1);
    }
    let out = std::env::var("OUT_DIR").expect("run from a build script");
    std::fs::write(
        Path::new(&out).join("contracts.rs"),
        contracts::bindings::rust(&protocols),
    )
    .expect("OUT_DIR is writable");
}

/// Rust source declaring the manifest as a `cordon.manifest` custom section.
pub fn manifest_source(manifest: &Manifest) -> String {
    let bytes = manifest.encode();
    let list: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    format!(
        "/// Generated by sip-build from [package.metadata.cordon]; do not edit.\n\
         #[allow(unsafe_code)]\n\
         #[unsafe(link_section = \"{section}\")]\n\
         #[used]\n\
         static CORDON_MANIFEST: [u8; {len}] = [{list}];\n",
        section = cordon_abi::MANIFEST_SECTION,
        len = bytes.len(),
        list = list.join(", ")
    )
}

/// For a SIP's build script: writes `$OUT_DIR/manifest.rs`. Fails the build with a
/// message naming the bad key if the declaration is malformed.
pub fn emit_manifest() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script");
    let package = std::env::var("CARGO_PKG_NAME").expect("run from a build script");
    let cargo_toml = Path::new(&dir).join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", cargo_toml.display());
    let text = std::fs::read_to_string(&cargo_toml).expect("Cargo.toml is readable");
    let manifest = match manifest_from_cargo_toml(&text, &package) {
        Ok(manifest) => manifest,
        Err(err) => {
            eprintln!("error: {}: {err}", cargo_toml.display());
            std::process::exit(1);
        }
    };
    let out = std::env::var("OUT_DIR").expect("run from a build script");
    std::fs::write(
        Path::new(&out).join("manifest.rs"),
        manifest_source(&manifest),
    )
    .expect("OUT_DIR is writable");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_declaration() {
        let text = r#"
            [package]
            name = "sip-spin"
            [package.metadata.cordon]
            memory-pages = 4
            fuel = 5_000_000
        "#;
        let manifest = manifest_from_cargo_toml(text, "sip-spin").unwrap();
        assert_eq!(manifest.name, "spin");
        assert_eq!(manifest.limits.max_memory_pages, 4);
        assert_eq!(manifest.limits.fuel, Some(5_000_000));
        assert_eq!(
            manifest.limits.max_call_depth,
            Limits::default().max_call_depth
        );
    }

    #[test]
    fn defaults_without_a_table() {
        let manifest = manifest_from_cargo_toml("[package]\nname = \"x\"", "x").unwrap();
        assert_eq!(manifest.name, "x");
        assert_eq!(manifest.limits, Limits::default());
    }

    #[test]
    fn rejects_bad_declarations() {
        let bad = |meta: &str| {
            manifest_from_cargo_toml(&format!("[package.metadata.cordon]\n{meta}"), "x")
                .unwrap_err()
        };
        assert!(bad("memroy-pages = 3").contains("unknown key `memroy-pages`"));
        assert!(bad("fuel = -1").contains("`fuel` must be a non-negative integer"));
        assert!(bad("memory-pages = 9999999999").contains("does not fit"));
        assert!(bad("name = \"\"").contains("non-empty string"));
        assert!(
            bad("endpoints = [{ name = \"x\", contract = \"Echo\", role = \"boss\" }]")
                .contains("role `boss`")
        );
        assert!(bad("endpoints = [{ name = \"x\" }]").contains("lacks a string `contract`"));
        let connections = |n: &str| {
            format!(
                "endpoints = [{{ name = \"c\", contract = \"Echo\", role = \"exporter\", connections = {n} }}]"
            )
        };
        for n in ["0", "65", "-1", "\"4\""] {
            assert!(
                bad(&connections(n)).contains("`connections` of `c` must be a number from 1 to 64"),
                "{n}"
            );
        }
        assert!(
            bad("endpoints = [{ name = \"c#2\", contract = \"Echo\", role = \"exporter\" }]")
                .contains("has no `#` or `.`")
        );
        assert!(
            bad("endpoints = [{ name = \"c\", contract = \"Echo\", role = \"exporter\" }, { name = \"c\", contract = \"Echo\", role = \"importer\" }]")
                .contains("endpoint `c` is declared twice")
        );
        assert!(
            bad("endpoints = [{ name = \"c\", contract = \"Echo\", role = \"exporter\", conections = 2 }]")
                .contains("unknown key `conections`")
        );
        let many = manifest_from_cargo_toml(
            &format!("[package.metadata.cordon]\n{}", connections("8")),
            "x",
        )
        .unwrap();
        assert_eq!(many.endpoints[0].connections, 8);
        assert!(bad("resources = \"pci:1af4:1001\"").contains("must be an array"));
        assert!(bad("resources = [\"pci:1af4\"]").contains("`pci:1af4` is not a resource"));
    }

    #[test]
    fn reads_resources() {
        let manifest = manifest_from_cargo_toml(
            "[package.metadata.cordon]\nresources = [\"pci:1af4:1001\"]",
            "x",
        )
        .unwrap();
        assert_eq!(
            manifest.resources,
            vec![cordon_abi::Resource::PciDevice {
                vendor: 0x1af4,
                device: 0x1001
            }]
        );
    }

    #[test]
    fn reads_a_wat_header() {
        let source = ";; A key-value server.\n\
                      ;;@ memory-pages = 4\n\
                      ;;@ endpoints = [{ name = \"clients\", contract = \"KeyValue\", role = \"exporter\" }]\n\
                      (module)\n";
        let manifest = manifest_from_wat(source, "kv").unwrap();
        assert_eq!(manifest.name, "kv");
        assert_eq!(manifest.limits.max_memory_pages, 4);
        assert_eq!(manifest.endpoints[0].contract, "KeyValue");
        assert_eq!(manifest.endpoints[0].role, cordon_abi::Role::Exporter);
        // No header: the defaults, named after the file.
        let plain = manifest_from_wat("(module)", "probe").unwrap();
        assert_eq!(plain.limits, Limits::default());
        assert!(plain.endpoints.is_empty());
    }

    #[test]
    fn wat_header_errors_name_line_and_column() {
        let err = manifest_from_wat(";; probe\n;;@ memory-pages = \n(module)", "x").unwrap_err();
        assert!(err.starts_with("2:"), "{err}");
        let err =
            manifest_from_wat("(module\n;;@ fuel = 1\n;;@ memroy-pages = 3\n)", "x").unwrap_err();
        assert!(
            err.starts_with("3:1: "),
            "the line of the unknown key: {err}"
        );
        assert!(err.contains("unknown key `memroy-pages`"), "{err}");
        let err = manifest_from_wat("(module)", "client.v2").unwrap_err();
        assert!(err.contains("lower-case letters, digits and `-`"), "{err}");
        let err = manifest_from_wat(";;@ fuel = 1\n;;@ cpu-ticks = -3\n(module)", "x").unwrap_err();
        assert!(err.starts_with("2:1: "), "{err}");
        assert!(
            err.contains("`cpu-ticks` must be a non-negative integer"),
            "{err}"
        );
    }

    #[test]
    fn source_embeds_the_encoded_manifest() {
        let manifest = manifest_from_cargo_toml("", "sip-hello").unwrap();
        let source = manifest_source(&manifest);
        assert!(source.contains("link_section = \"cordon.manifest\""));
        assert!(source.contains(&format!("[u8; {}]", manifest.encode().len())));
    }
}
