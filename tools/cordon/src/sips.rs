//! SIP modules: the ones this runner was built with (every Rust SIP of the workspace and
//! the hand-written probes in `sips/wat`, assembled when booted), and modules given by the
//! path of a `.wasm` or `.wat` file or of a SIP crate's directory (read, assembled or
//! built by `cordon_cli::files`).

use std::path::Path;

use anyhow::bail;

pub use cordon_cli::files::{manifest_name, module_file, read};

include!(concat!(env!("OUT_DIR"), "/sips.rs"));

/// Names of every built-in SIP module.
pub fn names() -> Vec<&'static str> {
    SIPS.iter().map(|(name, _)| *name).collect()
}

/// The bytes of the built-in module called `name`.
pub fn module(name: &str) -> anyhow::Result<Vec<u8>> {
    let Some((_, path)) = SIPS.iter().find(|(n, _)| *n == name) else {
        bail!(
            "no SIP called `{name}` (built-in SIPs: {}; or give the path of a .wasm or .wat file)",
            names().join(", ")
        );
    };
    read(Path::new(path))
}

/// Whether a SIP named in a manifest or on the command line (relative to `base`) is a
/// file or crate rather than a built-in name: it has a path separator, ends in `.wasm`
/// or `.wat`, or is no built-in name but a directory with a `Cargo.toml`.
pub fn is_path(entry: &str, base: &Path) -> bool {
    entry.contains(std::path::is_separator)
        || entry.ends_with(".wasm")
        || entry.ends_with(".wat")
        || (!names().contains(&entry) && base.join(entry).join("Cargo.toml").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_told_apart() {
        let here = Path::new("");
        assert!(is_path("./kv.wasm", here));
        assert!(is_path("kv.wat", here));
        assert!(is_path("/tmp/kv", here));
        assert!(!is_path("echo-server", here));
        assert!(!is_path("kv-server", here), "no such crate directory here");
    }

    #[test]
    fn every_built_in_module_loads() {
        for name in names() {
            let bytes = module(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(bytes.starts_with(b"\0asm"), "{name}");
        }
    }
}
