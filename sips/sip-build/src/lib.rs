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
//! ```
//!
//! `sip_build::emit_bindings(&["echo"])` compiles `contracts/files/echo.contract` and
//! writes typed bindings to `$OUT_DIR/contracts.rs` (`cordon_sip::contracts!()` includes
//! them); a contract error fails the build with file:line:column.
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

fn endpoints(meta: &toml::Table) -> Result<Vec<cordon_abi::EndpointDecl>, String> {
    let Some(value) = meta.get("endpoints") else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| format!("[package.metadata.cordon]: endpoints: {why}");
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
            let name = get("name")?.into();
            let contract = get("contract")?.into();
            let role = match get("role")? {
                "exporter" => cordon_abi::Role::Exporter,
                "importer" => cordon_abi::Role::Importer,
                other => return Err(bad(&format!("role `{other}` (exporter or importer)"))),
            };
            Ok(cordon_abi::EndpointDecl {
                name,
                contract,
                role,
            })
        })
        .collect()
}

/// `resources = ["pci:1af4:1001"]`: the devices a driver SIP asks the kernel for.
fn resources(meta: &toml::Table) -> Result<Vec<cordon_abi::Resource>, String> {
    let bad = |why: &str| format!("[package.metadata.cordon]: resources: {why}");
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
    if let Some(unknown) = meta.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "[package.metadata.cordon]: unknown key `{unknown}` (known: {})",
            KEYS.join(", ")
        ));
    }
    let int = |key: &str, default: u64| -> Result<u64, String> {
        match meta.get(key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if *n >= 0 => Ok(*n as u64),
            Some(other) => Err(format!(
                "[package.metadata.cordon]: `{key}` must be a non-negative integer, found {other}"
            )),
        }
    };
    let small = |key: &str, default: u32| -> Result<u32, String> {
        u32::try_from(int(key, default.into())?)
            .map_err(|_| format!("[package.metadata.cordon]: `{key}` does not fit in 32 bits"))
    };
    let defaults = Limits::default();
    let name = match meta.get("name") {
        None => package.strip_prefix("sip-").unwrap_or(package).to_string(),
        Some(toml::Value::String(name)) if !name.is_empty() => name.clone(),
        Some(other) => {
            return Err(format!(
                "[package.metadata.cordon]: `name` must be a non-empty string, found {other}"
            ));
        }
    };
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

/// For a SIP's build script: compiles `contracts/files/<name>.contract` for each name and
/// writes their typed bindings to `$OUT_DIR/contracts.rs`.
pub fn emit_bindings(names: &[&str]) {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script");
    let files = Path::new(&dir).join("../../contracts/files");
    let mut protocols = Vec::new();
    for name in names {
        let path = files.join(format!("{name}.contract"));
        println!("cargo:rerun-if-changed={}", path.display());
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        match contracts::compile(&source) {
            Ok(compiled) => protocols.extend(compiled),
            Err(err) => {
                eprintln!("{}", err.render(&path.display().to_string(), &source));
                std::process::exit(1);
            }
        }
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
    fn source_embeds_the_encoded_manifest() {
        let manifest = manifest_from_cargo_toml("", "sip-hello").unwrap();
        let source = manifest_source(&manifest);
        assert!(source.contains("link_section = \"cordon.manifest\""));
        assert!(source.contains(&format!("[u8; {}]", manifest.encode().len())));
    }
}
