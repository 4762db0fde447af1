//! Hands the runner what it boots: the kernel ELF (built for x86_64-unknown-none as an
//! artifact dependency), every Rust SIP (artifact dependencies built for
//! wasm32-unknown-unknown), the hand-written probe modules in `sips/wat` (assembled here,
//! with a manifest named after the file: default limits, or the memory limit a
//! `;; memory-pages: N` line gives, and the devices a `;; resources:` line asks for), and a
//! work directory.

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
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut module =
            wat::parse_file(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        // A probe may raise its memory limit with a `;; memory-pages: N` line.
        let text = std::fs::read_to_string(&path).expect("readable");
        let mut limits = cordon_abi::Limits::default();
        if let Some(pages) = text
            .lines()
            .find_map(|l| l.strip_prefix(";; memory-pages:"))
        {
            limits.max_memory_pages = pages
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad `;; memory-pages:` line", path.display()));
        }
        // A probe may set a CPU budget with a `;; cpu-ticks: N` line.
        if let Some(ticks) = text.lines().find_map(|l| l.strip_prefix(";; cpu-ticks:")) {
            limits.cpu_ticks = Some(
                ticks
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: bad `;; cpu-ticks:` line", path.display())),
            );
        }
        // A driver probe asks for devices with a `;; resources: pci:VVVV:DDDD ...` line.
        let resources = text
            .lines()
            .find_map(|l| l.strip_prefix(";; resources:"))
            .map(|list| {
                list.split_whitespace()
                    .map(|r| {
                        r.parse()
                            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let manifest = cordon_abi::Manifest {
            name: name.clone(),
            limits,
            endpoints: Vec::new(),
            resources,
        };
        module.extend(manifest.custom_section());
        let wasm = Path::new(&out).join(format!("{name}.wasm"));
        std::fs::write(&wasm, module).expect("OUT_DIR is writable");
        sips.push((name, wasm.display().to_string()));
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
