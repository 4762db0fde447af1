//! Hands the runner the path of the kernel ELF (built for x86_64-unknown-none as an
//! artifact dependency) and a work directory for boot images.

fn main() {
    let kernel = std::env::var("CARGO_BIN_FILE_KERNEL_kernel").expect(
        "cargo builds the kernel artifact (nightly with -Zbindeps, see .cargo/config.toml)",
    );
    println!("cargo:rustc-env=CORDON_KERNEL_ELF={kernel}");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-env=CORDON_WORK_DIR={out}");
    println!("cargo:rerun-if-env-changed=CARGO_BIN_FILE_KERNEL_kernel");
}
