//! `cordon`: the front end `cargo run` starts. The commands on files (`contract`,
//! `verify`, `new`) run here, so they never wait for the kernel or the built-in SIPs to
//! be built; anything else — booting, `bench`, `sips`, `--help` — goes to the runner,
//! `cordon-runner`, which Cargo builds (kernel and SIPs as its artifact dependencies) and
//! runs with the same arguments: `cargo run -p cordon --bin cordon-runner -- ARGS`, in the
//! profile this front end was built with. `CORDON_RUNNER=PATH` runs that program instead.
#![deny(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use clap::Parser;

/// The file commands, parsed here; the runner's `--help` lists them with the rest.
#[derive(Parser, Debug)]
#[command(name = "cordon", version)]
struct Cli {
    #[command(subcommand)]
    command: cordon_cli::commands::FileCommand,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let first = args.first().and_then(|a| a.to_str());
    if first.is_some_and(|a| cordon_cli::commands::NAMES.contains(&a)) {
        return cordon_cli::commands::run(Cli::parse().command);
    }
    let mut runner = match std::env::var_os("CORDON_RUNNER") {
        Some(path) => Command::new(path),
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
            let mut cargo = Command::new(cargo);
            cargo.args(["run", "--manifest-path", manifest, "-p", "cordon"]);
            cargo.args(["--bin", "cordon-runner"]);
            if !cfg!(debug_assertions) {
                cargo.arg("--release");
            }
            cargo.arg("--");
            cargo
        }
    };
    // Replaces this process: the runner's exit status is the command's.
    let err = runner.args(&args).exec();
    eprintln!("[cordon] error: cannot start the runner: {err}");
    ExitCode::from(3)
}
