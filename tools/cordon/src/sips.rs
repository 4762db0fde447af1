//! SIP modules: the ones this runner was built with (every Rust SIP of the workspace and
//! the hand-written probes in `sips/wat`), and modules given by the path of a `.wasm` or
//! `.wat` file.
//!
//! A `.wat` file is assembled here, when it is booted, and gets its manifest from its
//! `;;@` header lines (`sip_build::manifest_from_wat`; default limits and no endpoints
//! without one), named after the file unless the header names it. A mistake in it is an
//! error naming the file, line and column, before anything boots.

use std::path::Path;

use anyhow::{Context, bail};

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

/// Whether a SIP named in a manifest or on the command line is a file rather than a
/// built-in name: it has a path separator or ends in `.wasm` or `.wat`.
pub fn is_path(entry: &str) -> bool {
    entry.contains(std::path::is_separator) || entry.ends_with(".wasm") || entry.ends_with(".wat")
}

/// The bytes of the module in `path`: a `.wat` file assembled with its header's manifest,
/// anything else read as a binary module.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    if !path.is_file() {
        bail!("no SIP module at `{shown}`");
    }
    if path.extension().is_some_and(|e| e == "wat") {
        let source = std::fs::read_to_string(path).with_context(|| format!("reading `{shown}`"))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("`{shown}`: the file name is not UTF-8"))?;
        return assemble(&source, stem).map_err(|err| anyhow::anyhow!("{shown}:{err}"));
    }
    std::fs::read(path).with_context(|| format!("reading SIP module `{shown}`"))
}

/// A `.wat` text assembled, with the manifest its header declares appended as the
/// `cordon.manifest` section. Errors start with `LINE:COLUMN: `.
pub fn assemble(source: &str, name: &str) -> Result<Vec<u8>, String> {
    let manifest = sip_build::manifest_from_wat(source, name)?;
    let mut module = wat::parse_str(source).map_err(|err| {
        // `wat` shows `MESSAGE\n --> <anon>:LINE:COL\n  | snippet`; lead with the position.
        let text = err.to_string();
        let mut lines = text.lines();
        let message = lines.next().unwrap_or_default();
        let rest: Vec<&str> = lines.collect();
        let position = rest
            .iter()
            .find_map(|l| l.trim_start().strip_prefix("--> <anon>:"))
            .map(str::trim);
        match position {
            Some(position) => {
                let snippet: Vec<&str> = rest
                    .iter()
                    .filter(|l| !l.trim_start().starts_with("-->"))
                    .copied()
                    .collect();
                format!("{position}: {message}\n{}", snippet.join("\n"))
            }
            None => format!("1:1: {text}"),
        }
    })?;
    module.extend(manifest.custom_section());
    Ok(module)
}

/// The name a module goes by: the name in its manifest, read by the kernel's verifier.
/// A module the verifier refuses is refused here, before anything is built.
pub fn manifest_name(bytes: &[u8], shown: &str) -> anyhow::Result<String> {
    match verifier::verify(bytes, &verifier::Policy::default()) {
        Ok(verified) => Ok(verified.manifest.name),
        Err(rejection) => bail!("`{shown}`: the verifier refuses it: {rejection}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_told_apart() {
        assert!(is_path("./kv.wasm"));
        assert!(is_path("kv.wat"));
        assert!(is_path("/tmp/kv"));
        assert!(!is_path("echo-server"));
    }

    #[test]
    fn a_wat_module_gets_its_header_manifest() {
        let source = ";;@ memory-pages = 2\n\
                      ;;@ endpoints = [{ name = \"server\", contract = \"Echo\", role = \"importer\" }]\n\
                      (module (memory (export \"memory\") 1) (func (export \"cordon_main\")))";
        let module = assemble(source, "probe").unwrap();
        let verified = verifier::verify(&module, &verifier::Policy::default()).unwrap();
        assert_eq!(verified.manifest.name, "probe");
        assert_eq!(verified.manifest.limits.max_memory_pages, 2);
        assert_eq!(verified.manifest.endpoints[0].name, "server");
    }

    #[test]
    fn a_wat_error_names_file_line_and_column() {
        let dir = std::env::temp_dir().join(format!("cordon-wat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.wat");
        std::fs::write(
            &path,
            ";; probe\n(module\n  (func (export \"cordon_main\") (nop)))\n  )))\n",
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.starts_with(&format!("{}:4:", path.display())), "{err}");
        std::fs::write(&path, ";;@ memory-pages = lots\n(module)\n").unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.starts_with(&format!("{}:1:", path.display())), "{err}");
        assert!(err.contains("header"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("no SIP module at"), "{err}");
    }

    #[test]
    fn every_built_in_module_loads() {
        for name in names() {
            let bytes = module(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(bytes.starts_with(b"\0asm"), "{name}");
        }
    }
}
