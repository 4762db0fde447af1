//! SIP modules given as files: a `.wasm` read, a `.wat` assembled with the manifest its
//! `;;@` header declares (`sip_build::manifest_from_wat`; default limits and no
//! endpoints without one, named after the file unless the header names it), or a SIP
//! crate's directory built. A mistake in any is an error naming the file, line and
//! column, before anything boots.
//!
//! A crate directory (one with a `Cargo.toml`, such as `cordon new sip` makes) is built
//! with `cargo build --release --target wasm32-unknown-unknown`, into a target directory
//! all such crates share (`target/external-sips` of this checkout), with this checkout's
//! toolchain.

use std::path::Path;

use anyhow::{Context, bail};

/// The bytes of the module in `path`: a SIP crate's directory built, a `.wat` file
/// assembled with its header's manifest, anything else read as a binary module.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    if path.join("Cargo.toml").is_file() {
        let module = build_crate(path)?;
        return std::fs::read(&module).with_context(|| format!("reading {}", module.display()));
    }
    if !path.is_file() {
        bail!("no SIP module at `{shown}` (a module file, or a SIP crate's directory)");
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

/// The toolchain to build SIP crates with: the one running (`RUSTUP_TOOLCHAIN`, set by
/// rustup under `cargo run`), else the channel this checkout's `rust-toolchain.toml` pins.
fn toolchain() -> String {
    if let Ok(running) = std::env::var("RUSTUP_TOOLCHAIN") {
        return running;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rust-toolchain.toml");
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("toolchain")?
                .get("channel")?
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| "stable".into())
}

/// Where SIP crates outside the workspace are built (shared, so the guest library is
/// built once).
fn external_target() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/external-sips")
}

/// The module file `path` stands for: a SIP crate's directory is built (its module's
/// path); anything else is itself.
pub fn module_file(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    if path.join("Cargo.toml").is_file() {
        build_crate(path)
    } else {
        Ok(path.to_path_buf())
    }
}

/// Builds the SIP crate in `dir` for wasm32; the path of a copy of its module kept for
/// this crate alone (two crates of the same package name share the build directory's
/// file, so the build's own output would be overwritten by the other's). Cargo's own
/// messages (compiler errors with file:line:col) go to the terminal.
fn build_crate(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let shown = dir.display();
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", external_target())
        // This checkout's toolchain (it has the wasm32 target), unless one is chosen.
        .env("RUSTUP_TOOLCHAIN", toolchain())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo to build the SIP crate `{shown}`"))?;
    if !output.status.success() {
        bail!("the SIP crate `{shown}` does not build (cargo's messages are above)");
    }
    // The cdylib the build produced, from cargo's JSON messages.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let module = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter(|msg| {
            msg["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .filter_map(|msg| {
            msg["filenames"].as_array().and_then(|files| {
                files
                    .iter()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".wasm"))
                    .map(String::from)
            })
        })
        .next_back()
        .with_context(|| {
            format!(
                "`{shown}` built no .wasm module: a SIP crate has `[lib] crate-type = [\"cdylib\"]`"
            )
        })?;
    let crate_dir = dir
        .canonicalize()
        .with_context(|| format!("resolving `{shown}`"))?;
    let kept = external_target().join("modules").join(format!(
        "{}.wasm",
        crate_dir
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "%")
    ));
    if let Some(parent) = kept.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::copy(&module, &kept)
        .with_context(|| format!("copying {module} to {}", kept.display()))?;
    Ok(kept)
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
        Ok(verified) if cordon_abi::is_sip_name(&verified.manifest.name) => {
            Ok(verified.manifest.name)
        }
        Ok(verified) => bail!(
            "`{shown}` is a SIP named `{}`: {} (set the `name` key of its manifest)",
            verified.manifest.name,
            cordon_abi::SIP_NAME_RULE
        ),
        Err(rejection) => bail!("`{shown}`: the verifier refuses it: {rejection}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
