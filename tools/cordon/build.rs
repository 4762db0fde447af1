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
    // Boot images get a copy without symbols and debug information: the BIOS loader reads
    // the whole file through the emulated disk, so each megabyte is boot time under TCG
    // (measured: 11.7 MB → 3.6 MB, about 7 s less to the banner on a loaded machine).
    // `kernel_elf()` keeps them, for GDB and addr2line.
    println!("cargo:rerun-if-changed={kernel}");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let stripped = Path::new(&out).join("kernel-boot");
    let boot_kernel = match strip(Path::new(&kernel), &stripped) {
        Ok(()) => stripped.display().to_string(),
        Err(why) => {
            println!(
                "cargo:warning=booting the kernel unstripped (slower to load under emulation): {why}"
            );
            kernel.clone()
        }
    };
    println!("cargo:rustc-env=CORDON_KERNEL_BOOT_ELF={boot_kernel}");
    for (bin, var) in [
        ("sip-hosted", "CORDON_SIP_HOSTED_ELF"),
        ("syscall-probe", "CORDON_SYSCALL_PROBE_ELF"),
    ] {
        let key = format!("CARGO_BIN_FILE_SIP_HOSTED_{bin}");
        let path = std::env::var(&key).unwrap_or_else(|_| panic!("cargo sets {key}"));
        println!("cargo:rustc-env={var}={path}");
    }
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

/// Writes `elf` without its symbols and debug sections to `to`, with the toolchain's own
/// `llvm-objcopy` (rust-toolchain.toml's `llvm-tools` component).
fn strip(elf: &Path, to: &Path) -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running {rustc}: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let host = std::env::var("HOST").map_err(|e| format!("HOST: {e}"))?;
    let objcopy = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    let status = std::process::Command::new(&objcopy)
        .arg("--strip-all")
        .arg(elf)
        .arg(to)
        .status()
        .map_err(|e| format!("running {}: {e}", objcopy.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", objcopy.display()))
    }
}
