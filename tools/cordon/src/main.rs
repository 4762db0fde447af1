//! `cordon`: boots Cordon in QEMU.
//!
//! `cargo run -- --isolation soft` builds the kernel (an artifact dependency of this
//! crate), makes a boot image whose ramdisk carries the boot parameters, boots QEMU with
//! the serial console on this terminal and exits with the kernel's verdict.
#![deny(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cordon::{Accel, BootOptions, Firmware, Isolation, LogLevel, Verdict};

/// Boot Cordon in QEMU (with no subcommand), or work with SIP modules.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    boot: BootArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check WebAssembly modules with the kernel's verifier and say why each is refused.
    Verify {
        /// Module files (.wasm).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// List the SIP modules this runner can boot and the system manifests.
    Sips,
    /// Check contract files (errors with file:line:column), or print their Rust bindings.
    Contract {
        /// Print the generated Rust bindings instead of the summary.
        #[arg(long)]
        rust: bool,
        /// Contract files (e.g. contracts/files/echo.contract).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Boot the kernel's micro-benchmarks (SIP create+start, minimum kernel call, fuel
    /// metering, thread switch) and print what they measure.
    Bench {
        /// Run the suite once in each of the five isolation configurations and print a
        /// table of every figure side by side, as ratios to `soft`.
        #[arg(long)]
        compare: bool,
        /// With --compare: boots per configuration (interleaved, so host noise hits every
        /// configuration alike); the table gives the median and the spread.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
        runs: u32,
        #[command(flatten)]
        boot: BootArgs,
    },
}

#[derive(clap::Args, Debug)]
struct BootArgs {
    /// How SIPs are isolated: one of the five configurations of Singularity's Figure 5,
    /// from `soft` (software isolation only) to `hard` (every SIP in its own ring-3
    /// address space). The client of `client-*` is the system manifest's `client`.
    #[arg(long, value_enum, default_value = "soft")]
    isolation: IsolationArg,
    /// QEMU accelerator. TCG (software emulation) works everywhere; KVM needs a host
    /// processor with VT-x or AMD-V.
    #[arg(long, value_enum, default_value = "tcg")]
    accel: Accel,
    /// Firmware to boot through.
    #[arg(long, value_enum, default_value = "bios")]
    firmware: Firmware,
    /// Start QEMU halted with a GDB server on localhost:1234.
    #[arg(long)]
    gdb: bool,
    /// Kernel console log level.
    #[arg(long, value_enum, default_value = "info")]
    log: LogArg,
    /// Run a kernel self-test group instead of the normal system (threads, memory,
    /// page-fault, page-fault-protection, panic, double-fault).
    #[arg(long, value_name = "GROUP")]
    self_test: Option<String>,
    /// Run a kernel benchmark suite (micro) instead of the normal system; `cordon bench`
    /// sets this and the SIPs it needs.
    #[arg(long, value_name = "SUITE", hide = true)]
    bench: Option<String>,
    /// The system manifest to boot: a file in systems/ (default: `default`).
    #[arg(long, value_name = "NAME", conflicts_with = "sips")]
    system: Option<String>,
    /// A SIP module to start, with no channels (repeat for several, in order), instead of
    /// a system manifest. `cargo run -- sips` lists them.
    #[arg(long = "sip", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(cordon::sips::names()))]
    sips: Vec<String>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(64..=16384))]
    memory: u32,
    /// Attach this raw disk image as a virtio-blk PCI device, read-only (e.g. the WebFiles
    /// image from `webfiles-gen`).
    #[arg(long, value_name = "IMAGE")]
    disk: Option<std::path::PathBuf>,
    /// Kill QEMU after this many seconds (0: never).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum IsolationArg {
    /// Physical memory (large pages), one address space, every SIP in ring 0: the baseline.
    Soft,
    /// 4 KiB pages, one system-wide address space, every SIP in ring 0.
    Paged,
    /// The client SIP in its own address space, still ring 0; the rest as `paged`.
    ClientSpace,
    /// The client SIP in its own ring-3 address space; the rest as `paged`.
    ClientRing3,
    /// Every SIP in its own ring-3 address space (a full microkernel).
    Hard,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogArg {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Verify { files }) => verify(&files),
        Some(Command::Contract { rust, files }) => contract(&files, rust),
        Some(Command::Sips) => {
            for name in cordon::sips::names() {
                println!("{name}");
            }
            println!(
                "systems (in systems/): {}",
                cordon::system::names().join(", ")
            );
            ExitCode::SUCCESS
        }
        Some(Command::Bench {
            compare,
            runs,
            mut boot,
        }) => {
            boot.bench = Some("micro".into());
            boot.system = None;
            boot.sips = cordon::bench::MICRO_SIPS.map(String::from).to_vec();
            if compare {
                compare_configurations(boot, runs)
            } else {
                self::boot(boot)
            }
        }
        None => boot(cli.boot),
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
        match contracts::compile(&source) {
            Err(err) => {
                eprint!("{}", err.render(&name, &source));
                failed = true;
            }
            Ok(protocols) if rust => print!("{}", contracts::bindings::rust(&protocols)),
            Ok(protocols) => {
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
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(err) => {
                eprintln!("{}: cannot read: {err}", file.display());
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

/// `cordon bench --compare`: the micro suite in every configuration, `runs` times each
/// (interleaved), then the table.
fn compare_configurations(cli: BootArgs, runs: u32) -> ExitCode {
    let base = match boot_options(&cli) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let total = Isolation::ALL.len() * runs as usize;
    let mut figures: Vec<Vec<Vec<Option<u64>>>> = vec![Vec::new(); Isolation::ALL.len()];
    let started = std::time::Instant::now();
    for run in 0..runs as usize {
        for (i, isolation) in Isolation::ALL.into_iter().enumerate() {
            let n = run * Isolation::ALL.len() + i + 1;
            eprintln!(
                "[cordon] bench {n}/{total} ({:.0} s so far): isolation={isolation}, run {}/{runs}",
                started.elapsed().as_secs_f64(),
                run + 1
            );
            let options = BootOptions {
                isolation,
                echo: false,
                ..base.clone()
            };
            let outcome = match cordon::boot(&options) {
                Ok(outcome) => outcome,
                Err(err) => {
                    eprintln!("[cordon] error: {err:#}");
                    return ExitCode::from(3);
                }
            };
            let log = cordon::image::work_dir().join(format!("bench-{isolation}-{}.log", run + 1));
            let _ = std::fs::write(&log, &outcome.console);
            if outcome.verdict != Verdict::Passed {
                eprintln!(
                    "[cordon] isolation={isolation}: the suite did not finish ({:?}); console in {}",
                    outcome.verdict,
                    log.display()
                );
                return ExitCode::from(1);
            }
            figures[i].push(cordon::bench::parse(&outcome.console));
        }
    }
    let results: Vec<_> = Isolation::ALL
        .into_iter()
        .zip(&figures)
        .map(|(isolation, runs)| (isolation, cordon::bench::summarise(runs)))
        .collect();
    println!(
        "Isolation configurations side by side (Singularity's Figure 5 order), {runs} boot(s) each, \
         accel={}; ratios are to soft in this run; consoles in {}:",
        match base.accel {
            Accel::Tcg => "tcg (emulated cost: compare ratios, not absolute cycles)",
            Accel::Kvm => "kvm",
        },
        cordon::image::work_dir().display()
    );
    let table = cordon::bench::table(&results);
    print!("{table}");
    let raw: Vec<_> = Isolation::ALL.into_iter().zip(figures).collect();
    let csv = cordon::image::work_dir().join("bench-compare.csv");
    let txt = cordon::image::work_dir().join("bench-compare.txt");
    match std::fs::write(&csv, cordon::bench::csv(&raw)).and_then(|()| std::fs::write(&txt, &table))
    {
        Ok(()) => println!(
            "every raw figure: {}; this table: {}",
            csv.display(),
            txt.display()
        ),
        Err(err) => eprintln!("[cordon] could not write {}: {err}", csv.display()),
    }
    for isolation in Isolation::ALL {
        println!("  {:<13} {}", isolation.name(), isolation.description());
    }
    ExitCode::SUCCESS
}

/// Boot options from the command line (or the exit code for a bad system manifest).
fn boot_options(cli: &BootArgs) -> Result<BootOptions, ExitCode> {
    let system = if cli.sips.is_empty() {
        match cordon::system::load(cli.system.as_deref().unwrap_or("default")) {
            Ok(system) => system,
            Err(err) => {
                eprintln!("[cordon] error: {err:#}");
                return Err(ExitCode::from(2));
            }
        }
    } else {
        cordon::system::of_sips(&cli.sips)
    };
    Ok(BootOptions {
        isolation: match cli.isolation {
            IsolationArg::Soft => Isolation::Soft,
            IsolationArg::Paged => Isolation::Paged,
            IsolationArg::ClientSpace => Isolation::ClientSpace,
            IsolationArg::ClientRing3 => Isolation::ClientRing3,
            IsolationArg::Hard => Isolation::Hard,
        },
        log_level: match cli.log {
            LogArg::Error => LogLevel::Error,
            LogArg::Warn => LogLevel::Warn,
            LogArg::Info => LogLevel::Info,
            LogArg::Debug => LogLevel::Debug,
            LogArg::Trace => LogLevel::Trace,
        },
        self_test: cli.self_test.clone(),
        bench: cli.bench.clone(),
        system,
        firmware: cli.firmware,
        accel: cli.accel,
        gdb: cli.gdb,
        memory_mib: cli.memory,
        disk: cli.disk.clone(),
        echo: true,
        timeout: (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout)),
    })
}

fn boot(cli: BootArgs) -> ExitCode {
    let options = match boot_options(&cli) {
        Ok(options) => options,
        Err(code) => return code,
    };
    eprintln!(
        "[cordon] isolation={} firmware={:?} accel={} memory={} MiB",
        options.isolation,
        options.firmware,
        match options.accel {
            Accel::Tcg => "tcg (software emulation: timings are emulated cost)",
            Accel::Kvm => "kvm",
        },
        options.memory_mib,
    );
    if options.gdb {
        eprintln!(
            "[cordon] QEMU is halted waiting for GDB: in another terminal run\n    \
             gdb {} -ex 'target remote localhost:1234'",
            cordon::kernel_elf().display()
        );
    }
    let outcome = match cordon::boot(&options) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("[cordon] error: {err:#}");
            return ExitCode::from(3);
        }
    };
    if let Some(banner) = outcome.banner_after {
        eprintln!(
            "[cordon] banner after {:.2} s, QEMU ran {:.2} s",
            banner.as_secs_f64(),
            outcome.wall.as_secs_f64()
        );
    }
    match outcome.verdict {
        Verdict::Passed => {
            eprintln!("[cordon] kernel powered off: success");
            ExitCode::SUCCESS
        }
        Verdict::Failed => {
            eprintln!("[cordon] kernel powered off: FAILURE (see the console above)");
            ExitCode::from(1)
        }
        Verdict::QemuExited(code) => {
            eprintln!(
                "[cordon] QEMU exited without the kernel's verdict (status {code:?}; \
                 0 usually means a triple fault)"
            );
            ExitCode::from(2)
        }
        Verdict::TimedOut => {
            eprintln!("[cordon] QEMU killed after {} s", cli.timeout);
            ExitCode::from(2)
        }
    }
}
