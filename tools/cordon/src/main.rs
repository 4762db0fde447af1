//! `cordon-runner`: boots Cordon in QEMU (the `cordon` front end hands it every command
//! but the file commands).
//!
//! `cargo run -- --isolation soft` builds the kernel (an artifact dependency of this
//! crate), makes a boot image whose ramdisk carries the boot parameters, boots QEMU with
//! the serial console on this terminal and exits with the kernel's verdict.
#![deny(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod compare;
use cordon::{Accel, BootOptions, ConsoleInput, Firmware, Isolation, LogLevel, Verdict};

/// Boot Cordon in QEMU (with no subcommand), or work with SIP modules.
#[derive(Parser, Debug)]
#[command(name = "cordon", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    boot: BootArgs,
}

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing would fight clap's flatten"
)]
enum Command {
    /// List the SIP modules this runner can boot and the system manifests.
    Sips,
    #[command(flatten)]
    Files(cordon_cli::commands::FileCommand),
    /// The unsafe-code-tax benchmark: the WebFiles system (disk driver, file system and
    /// client SIPs) booted in each of the five isolation configurations, checked, and
    /// compared with Singularity's Figure 5 (table, CSV, JSON and SVG chart in --out). With
    /// --micro: the kernel's micro-benchmarks instead.
    Bench {
        /// The micro-benchmarks (minimum kernel call, thread switch, channel round trips,
        /// SIP create+start, fork, copy-on-write fault) instead of WebFiles.
        #[arg(long)]
        micro: bool,
        /// With --micro: leave out the Linux column (Debian's kernel booted in the same
        /// QEMU configuration with a static benchmark as its init).
        #[arg(long)]
        no_linux: bool,
        /// CI smoke test: a small file set, 100 reads, one boot per configuration; every
        /// byte is still checked.
        #[arg(long, conflicts_with = "micro")]
        quick: bool,
        /// Boots per configuration, interleaved (default 5 for WebFiles, 3 with --micro, 1
        /// with --quick). The table
        /// gives the median and the spread.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
        runs: Option<u32>,
        /// WebFiles reads measured per boot (default 1000; 100 with --quick).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        reads: Option<u32>,
        /// Only these configurations (comma-separated; default: all five).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<IsolationArg>,
        /// Engines to measure (comma-separated; default: both). `compiled` adds a column
        /// `CONFIG+compiled` for each configuration measured.
        #[arg(long, value_enum, value_delimiter = ',')]
        engines: Vec<EngineArg>,
        /// Processor counts to measure side by side, interleaved (e.g. `1,2`): each
        /// configuration gets a column per count (`hard@2cpu`), set against `soft` with as
        /// many processors. Default: --smp's.
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=16))]
        cpus: Vec<u32>,
        /// WebFiles with several clients instead of Figure 5: client SIP counts to
        /// measure side by side (e.g. `1,2,4`), each client on its own channel to the one
        /// file system; the table gives files/s of guest time and the scaling (default
        /// configurations: soft and hard).
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=8), conflicts_with = "micro")]
        clients: Vec<u32>,
        /// Where the tables, CSV, JSON, chart and consoles go (default: target/bench).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
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
    /// The engine that runs SIPs: `interp` (wasmi interprets the verified module) or
    /// `compiled` (native code Cranelift compiled from it when the image was built). A
    /// system manifest's [[engines]] may choose otherwise for single SIPs.
    #[arg(long, value_enum, default_value = "interp")]
    engine: EngineArg,
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
    /// page-fault, page-fault-protection, panic, double-fault, thread-stack-overflow, smep).
    #[arg(long, value_name = "GROUP")]
    self_test: Option<String>,
    /// Run a kernel benchmark suite (micro) instead of the normal system; `cordon bench`
    /// sets this and the SIPs it needs.
    #[arg(long, value_name = "SUITE", hide = true)]
    bench: Option<String>,
    /// The system manifest to boot: a name in systems/ or the path of a manifest file
    /// (default: `default`).
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "sips")]
    system: Option<String>,
    /// A shell on the console: the console SIP reads this terminal and the shell prints
    /// `cordon> ` (`help` lists its commands; `shutdown` powers off). Alone it boots the
    /// `shell` system (add modules for its `run` with --sip); with --system it adds the
    /// console and the shell to that system (pids 1 and 2).
    #[arg(long)]
    shell: bool,
    /// A line to type on the console once the shell prompts (repeat for more, in order;
    /// instead of this terminal). For scripts and tests: `--shell --input ps --input
    /// shutdown`.
    #[arg(long = "input", value_name = "LINE")]
    input: Vec<String>,
    /// A SIP module to start, with no channels (repeat for several, in order), instead of
    /// a system manifest: a built-in name (`cargo run -- sips` lists them) or the path of a
    /// `.wasm` or `.wat` file.
    #[arg(long = "sip", value_name = "NAME|FILE")]
    sips: Vec<String>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(64..=16384))]
    memory: u32,
    /// Processors (QEMU's `-smp N`, 1–16): the kernel starts every one the firmware lists
    /// and the boot log names them. Threads (SIPs' and the kernel's) run on every one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    smp: u32,
    /// Attach this raw disk image as a virtio-blk PCI device, read-only (e.g. the WebFiles
    /// image from `webfiles-gen`).
    #[arg(long, value_name = "IMAGE")]
    disk: Option<std::path::PathBuf>,
    /// Count guest instructions instead of emulated time: QEMU's `-icount`, under which the
    /// guest's cycle counter advances with each instruction executed (deterministic; blind
    /// to TLB refills and host noise). Benchmarks label their figures accordingly.
    #[arg(long)]
    icount: bool,
    /// Kill QEMU after this many seconds (0: never; default 600, never for an interactive
    /// --shell).
    #[arg(long)]
    timeout: Option<u64>,
    /// Inject a fault to exercise recovery: `crash:SIP:N` ends SIP as a fault at its N-th
    /// kernel call (counted across its incarnations, firing once); `hang:SIP:N` stops it
    /// there until it is killed (a restart policy's `answer-within-ms` watchdog finds it).
    /// Repeatable.
    #[arg(long, value_name = "KIND:SIP:N", value_parser = bootpkg::Injection::parse)]
    inject: Vec<bootpkg::Injection>,
    /// An argument for a SIP, appended to those its system-manifest entry gives
    /// (`cordon_sip::args()`); repeat for more, in order.
    #[arg(long = "arg", value_name = "SIP=VALUE")]
    args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
        Some(Command::Files(command)) => cordon_cli::commands::run(command),
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
            micro,
            no_linux,
            quick,
            runs,
            reads,
            only,
            engines,
            cpus,
            clients,
            out,
            boot,
        }) => bench(
            micro, !no_linux, quick, runs, reads, &only, &engines, &cpus, &clients, out, boot,
        ),
        None => boot(cli.boot),
    }
}

/// `cordon bench`: WebFiles (or, with `micro`, the micro suite) in each configuration.
#[allow(clippy::too_many_arguments)]
fn bench(
    micro: bool,
    linux: bool,
    quick: bool,
    runs: Option<u32>,
    reads: Option<u32>,
    only: &[IsolationArg],
    engines: &[EngineArg],
    cpus: &[u32],
    clients: &[u32],
    out: Option<std::path::PathBuf>,
    mut boot: BootArgs,
) -> ExitCode {
    let isolations: Vec<Isolation> = if only.is_empty() && !clients.is_empty() {
        vec![Isolation::Soft, Isolation::Hard]
    } else if only.is_empty() {
        Isolation::ALL.to_vec()
    } else {
        Isolation::ALL
            .into_iter()
            .filter(|i| only.iter().any(|o| isolation(*o) == *i))
            .collect()
    };
    let engines: Vec<bootpkg::Engine> = if engines.is_empty() {
        bootpkg::Engine::ALL.to_vec()
    } else {
        bootpkg::Engine::ALL
            .into_iter()
            .filter(|e| engines.iter().any(|a| engine(*a) == *e))
            .collect()
    };
    let cpus: Vec<u32> = if cpus.is_empty() {
        vec![boot.smp]
    } else {
        cpus.to_vec()
    };
    // Interpreted configurations first (the first column is the ratios' base), then the
    // compiled ones; within each engine, by processor count as given.
    let configs: Vec<cordon::bench::Config> = engines
        .iter()
        .flat_map(|&engine| cpus.iter().map(move |&cpus| (engine, cpus)))
        .flat_map(|(engine, cpus)| {
            isolations
                .iter()
                .map(move |&isolation| cordon::bench::Config {
                    isolation,
                    engine,
                    cpus,
                    clients: 1,
                })
        })
        .collect();
    // With --clients, each configuration once per client count (interleaved like the rest).
    let configs: Vec<cordon::bench::Config> = if clients.is_empty() {
        configs
    } else {
        configs
            .iter()
            .flat_map(|&c| {
                clients
                    .iter()
                    .map(move |&clients| cordon::bench::Config { clients, ..c })
            })
            .collect()
    };
    // Linux (with --micro) boots with the first count.
    boot.smp = cpus[0];
    let out = out.unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench")
    });
    if let Err(err) = std::fs::create_dir_all(&out) {
        eprintln!("[cordon] error: cannot create {}: {err}", out.display());
        return ExitCode::from(2);
    }
    let out = out.canonicalize().unwrap_or(out);
    // WebFiles varies more from boot to boot than the micro suite's medians: 5 boots each.
    let runs = runs.unwrap_or(match (quick, micro) {
        (true, _) => 1,
        (false, true) => 3,
        (false, false) => 5,
    });
    if micro {
        boot.bench = Some("micro".into());
        boot.system = None;
        boot.sips = cordon::bench::MICRO_SIPS.map(String::from).to_vec();
    } else {
        boot.sips = Vec::new();
        boot.system = Some("webfiles".into());
    }
    let base = match boot_options(&boot) {
        Ok(options) => options,
        Err(code) => return code,
    };
    if micro {
        return compare::micro(base, &configs, runs, linux, &out);
    }
    let mut workload = if quick {
        cordon::webfiles::Workload::QUICK
    } else {
        cordon::webfiles::Workload::DEFAULT
    };
    if let Some(reads) = reads {
        workload.reads = reads;
    }
    if !clients.is_empty() {
        return compare::webfiles_clients(base, &configs, runs, workload, &out);
    }
    compare::webfiles(base, &configs, runs, workload, !quick, &out)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum EngineArg {
    Interp,
    Compiled,
}

fn engine(arg: EngineArg) -> bootpkg::Engine {
    match arg {
        EngineArg::Interp => bootpkg::Engine::Interp,
        EngineArg::Compiled => bootpkg::Engine::Compiled,
    }
}

fn isolation(arg: IsolationArg) -> Isolation {
    match arg {
        IsolationArg::Soft => Isolation::Soft,
        IsolationArg::Paged => Isolation::Paged,
        IsolationArg::ClientSpace => Isolation::ClientSpace,
        IsolationArg::ClientRing3 => Isolation::ClientRing3,
        IsolationArg::Hard => Isolation::Hard,
    }
}

/// The system the command line names, checked as far as the host can before boot.
fn system(cli: &BootArgs) -> anyhow::Result<cordon::system::System> {
    let mut system = match (&cli.system, cli.sips.is_empty()) {
        // `--shell` alone: the shell system, with --sip modules for its `run`.
        (None, _) if cli.shell => {
            let mut system = cordon::system::load("shell")?;
            system.add_modules(&cli.sips)?;
            system
        }
        (system, true) => {
            let mut system = cordon::system::load(system.as_deref().unwrap_or("default"))?;
            if cli.shell {
                system.add_shell()?;
            }
            system
        }
        // A kernel benchmark starts its SIPs itself: they are modules, not a system.
        (_, false) if cli.bench.is_some() => {
            let mut system = cordon::system::of_sips(&[]);
            system.add_modules(&cli.sips)?;
            system
        }
        (_, false) => cordon::system::of_sip_args(&cli.sips)?,
    };
    system.add_args(&cli.args)?;
    let (protocols, warnings) = cordon::wiring::check_contracts(&system.contract_files()?)?;
    eprint!("{warnings}");
    // Every mistake at once: the channels, the devices and the injections.
    let mistakes: Vec<String> = [
        cordon::wiring::check_channels(&system, &protocols),
        cordon::system::check_devices(&system),
        cordon::system::check_injections(&system, &cli.inject),
    ]
    .into_iter()
    .filter_map(|checked| checked.err().map(|e| format!("{e:#}")))
    .collect();
    if !mistakes.is_empty() {
        anyhow::bail!("{}", mistakes.join("\n"));
    }
    Ok(system)
}

/// Boot options from the command line (or the exit code for a bad system manifest).
fn boot_options(cli: &BootArgs) -> Result<BootOptions, ExitCode> {
    let system = system(cli).map_err(|err| {
        eprintln!("[cordon] error: {err:#}");
        ExitCode::from(2)
    })?;
    // Typing goes to the system's console SIP: scripted lines, or this terminal.
    let input = if !cli.input.is_empty() {
        ConsoleInput::Script(cli.input.clone())
    } else if system.reads_console() && std::io::stdin().is_terminal() {
        ConsoleInput::Terminal
    } else {
        ConsoleInput::None
    };
    Ok(BootOptions {
        isolation: isolation(cli.isolation),
        engine: engine(cli.engine),
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
        cpus: cli.smp,
        disk: cli.disk.clone(),
        icount: cli.icount,
        echo: true,
        timeout: match cli.timeout {
            Some(0) => None,
            Some(seconds) => Some(Duration::from_secs(seconds)),
            None if input == ConsoleInput::Terminal => None,
            None => Some(Duration::from_secs(600)),
        },
        injections: cli.inject.clone(),
        input,
    })
}

fn boot(cli: BootArgs) -> ExitCode {
    let options = match boot_options(&cli) {
        Ok(options) => options,
        Err(code) => return code,
    };
    eprintln!(
        "[cordon] isolation={} engine={} firmware={:?} accel={} memory={} MiB cpus={}",
        options.isolation,
        options.engine.name(),
        options.firmware,
        match options.accel {
            Accel::Tcg => "tcg (software emulation: timings are emulated cost)",
            Accel::Kvm => "kvm",
        },
        options.memory_mib,
        options.cpus,
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
            eprintln!(
                "[cordon] QEMU killed after {} s",
                options.timeout.map_or(0, |t| t.as_secs())
            );
            ExitCode::from(2)
        }
    }
}
