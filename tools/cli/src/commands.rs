//! The runner's commands that work on files only — `contract`, `verify`, `new` — as one
//! clap subcommand set: the `cordon` front end runs them itself (without the kernel or any
//! built-in SIP being built), and the full runner offers them too.

use std::process::ExitCode;

use clap::Subcommand;

/// Commands on contract files, module files and new crates.
#[derive(Subcommand, Debug)]
pub enum FileCommand {
    /// Check WebAssembly modules with the kernel's verifier and say why each is refused
    /// (.wasm, .wat with its `;;@` manifest header, or a SIP crate's directory).
    Verify {
        /// Module files or SIP crate directories.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Start a contract file or a SIP crate (outside this workspace) from a template.
    New {
        #[command(subcommand)]
        what: NewCommand,
    },
    /// Check contract files (every error with file:line:column, and warnings), or print
    /// their Rust bindings.
    Contract {
        /// Print the generated Rust bindings instead of the summary.
        #[arg(long)]
        rust: bool,
        /// Contract files (e.g. contracts/files/echo.contract).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

/// The names of [`FileCommand`]'s subcommands, for a front end deciding what to run.
pub const NAMES: &[&str] = &["verify", "new", "contract"];

#[derive(Subcommand, Debug)]
pub enum NewCommand {
    /// A SIP crate in DIR (named after DIR) that the runner builds and boots by path
    /// (`--sip DIR`, or DIR in a system manifest's `sips`).
    Sip {
        /// The crate's directory (created; must not exist or be empty).
        dir: std::path::PathBuf,
        /// A contract file: the SIP declares one endpoint of its contract and its code is
        /// a working server (exporter) or client (importer) of it.
        #[arg(long, value_name = "FILE", requires = "role")]
        contract: Option<std::path::PathBuf>,
        /// The SIP's side of the contract.
        #[arg(long, value_enum, requires = "contract")]
        role: Option<RoleArg>,
    },
    /// A contract file (`.contract` added if missing), named after the file
    /// (`key-value` → `contract KeyValue`).
    Contract {
        /// The file to write (must not exist).
        file: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    /// The server's side.
    Exporter,
    /// The client's side.
    Importer,
}

/// Runs one of the file commands.
pub fn run(command: FileCommand) -> ExitCode {
    match command {
        FileCommand::Verify { files } => verify(&files),
        FileCommand::Contract { rust, files } => contract(&files, rust),
        FileCommand::New { what } => {
            let made = match what {
                NewCommand::Contract { file } => crate::scaffold::new_contract(&file),
                NewCommand::Sip {
                    dir,
                    contract,
                    role,
                } => crate::scaffold::new_sip(
                    &dir,
                    contract.as_deref(),
                    role.map(|r| match r {
                        RoleArg::Exporter => contracts::Role::Exporter,
                        RoleArg::Importer => contracts::Role::Importer,
                    }),
                ),
            };
            match made {
                Ok(said) => {
                    println!("{said}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("[cordon] error: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `cordon contract`: the contract compiler on the host.
fn contract(files: &[std::path::PathBuf], rust: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let name = file.display().to_string();
        let source = match std::fs::read_to_string(file) {
            Ok(source) => source,
            Err(err) => {
                eprintln!("{name}: cannot read: {err}");
                failed = true;
                continue;
            }
        };
        let report = contracts::compile_all(&source);
        eprint!("{}", crate::report::render(&report, &name, &source));
        if !report.errors.is_empty() {
            failed = true;
            continue;
        }
        let protocols = report.protocols;
        if rust {
            print!("{}", contracts::bindings::rust(&protocols));
            continue;
        }
        for p in &protocols {
            let named = p.states.iter().filter(|s| !s.anonymous).count();
            println!(
                "{name}: contract {}: {} messages, {} states ({} inside sequences), {} transitions; \
                 at most {} message(s) queued to the exporter and {} to the importer; largest message {} bytes",
                p.name,
                p.messages.len(),
                named,
                p.states.len() - named,
                p.transitions.len(),
                p.max_in_flight[contracts::Dir::ToExporter.index()],
                p.max_in_flight[contracts::Dir::ToImporter.index()],
                p.max_message_bytes()
            );
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `cordon verify`: the kernel's verifier on the host.
fn verify(files: &[std::path::PathBuf]) -> ExitCode {
    let mut refused = 0;
    for file in files {
        let bytes = match crate::files::read(file) {
            Ok(bytes) => bytes,
            Err(err) => {
                eprintln!("{err:#}");
                refused += 1;
                continue;
            }
        };
        match verifier::verify(&bytes, &verifier::Policy::default()) {
            Ok(verified) => {
                let imports: Vec<&str> = verified
                    .imports
                    .iter()
                    .map(|n| cordon_abi::OPS[*n as usize].name)
                    .collect();
                let limits = verified.manifest.limits;
                println!(
                    "{}: accepted: SIP `{}`, imports [{}], memory {}..{} pages, call depth {}, fuel {}",
                    file.display(),
                    verified.manifest.name,
                    imports.join(", "),
                    verified.initial_memory_pages,
                    limits.max_memory_pages,
                    limits.max_call_depth,
                    limits.fuel.map_or("unlimited".into(), |f| f.to_string()),
                );
            }
            Err(rejection) => {
                println!("{}: refused: {rejection}", file.display());
                refused += 1;
            }
        }
    }
    if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
