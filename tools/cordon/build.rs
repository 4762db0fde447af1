//! Hands the runner what it boots: the kernel ELF (built for x86_64-unknown-none as an
//! artifact dependency), every Rust SIP (artifact dependencies built for
//! wasm32-unknown-unknown), the hand-written probe modules in `sips/wat` (listed here;
//! the runner assembles one when it is booted, so a mistake in one is a runner error for
//! that module, not a failed build), and a work directory.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let kernel = std::env::var("CARGO_BIN_FILE_KERNEL_kernel").expect(
        "cargo builds the kernel artifact (nightly with -Zbindeps, see .cargo/config.toml)",
    );
    println!("cargo:rustc-env=CORDON_KERNEL_ELF={kernel}");
    for (bin, var) in [
        ("sip-hosted", "CORDON_SIP_HOSTED_ELF"),
        ("syscall-probe", "CORDON_SYSCALL_PROBE_ELF"),
    ] {
        let key = format!("CARGO_BIN_FILE_SIP_HOSTED_{bin}");
        let path = std::env::var(&key).unwrap_or_else(|_| panic!("cargo sets {key}"));
        println!("cargo:rustc-env={var}={path}");
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-env=CORDON_WORK_DIR={out}");

    let mut sips: Vec<(String, String)> = std::env::vars()
        .filter_map(|(key, path)| {
            // CARGO_CDYLIB_FILE_SIP_<NAME>_sip_<name>
            let rest = key.strip_prefix("CARGO_CDYLIB_FILE_SIP_")?;
            let (_, name) = rest.split_once("_sip_")?;
            Some((name.replace('_', "-"), path))
        })
        .collect();

    let wat_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sips/wat");
    println!("cargo:rerun-if-changed={}", wat_dir.display());
    for entry in std::fs::read_dir(&wat_dir).expect("sips/wat exists") {
        let path = entry.expect("readable directory").path();
        if path.extension().is_none_or(|ext| ext != "wat") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        sips.push((name, path.display().to_string()));
    }
    sips.sort();

    let mut table = String::from(
        "/// Every SIP module this runner can boot: (name, path).\npub const SIPS: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &sips {
        writeln!(table, "    ({name:?}, {path:?}),").unwrap();
    }
    table.push_str("];\n");
    std::fs::write(Path::new(&out).join("sips.rs"), table).expect("OUT_DIR is writable");
}
