//! `cordon bench`: boots a workload in several isolation configurations, `runs` times each
//! (interleaved, so host noise hits every configuration alike), with progress, then writes
//! the comparison: the WebFiles unsafe-code-tax benchmark by default, the kernel's micro
//! suite with `--micro`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cordon::bench::{Config, Metric, Summary};
use cordon::webfiles::{self, Machine, Workload};
use cordon::{Accel, BootOptions, Verdict};

/// Raw figures: per configuration, per run, per metric.
type Raw = Vec<(Config, Vec<Vec<Option<u64>>>)>;

/// Boots every configuration `runs` times; each console must pass `check`.
fn boot_all(
    base: &BootOptions,
    configs: &[Config],
    runs: u32,
    figures: &dyn Fn(&str) -> Vec<Option<u64>>,
    what: &str,
    out: &Path,
    check: &dyn Fn(&Config, &str) -> Result<(), String>,
) -> Result<(Raw, String), ExitCode> {
    let total = configs.len() * runs as usize;
    let mut raw: Raw = configs.iter().map(|&c| (c, Vec::new())).collect();
    let started = Instant::now();
    let mut last_console = String::new();
    for run in 0..runs as usize {
        for (i, &config) in configs.iter().enumerate() {
            let n = run * configs.len() + i;
            let elapsed = started.elapsed().as_secs_f64();
            let eta = if n == 0 {
                String::new()
            } else {
                format!(
                    ", about {:.0} s to go",
                    elapsed / n as f64 * (total - n) as f64
                )
            };
            eprintln!(
                "[cordon] {what} {}/{total} ({elapsed:.0} s so far{eta}): {}, run {}/{runs}",
                n + 1,
                config.name(),
                run + 1
            );
            let mut options = BootOptions {
                isolation: config.isolation,
                engine: config.engine,
                cpus: config.cpus,
                echo: false,
                ..base.clone()
            };
            if config.clients != 1 {
                options.system = match webfiles::with_clients(&base.system, config.clients) {
                    Ok(system) => system,
                    Err(err) => {
                        eprintln!("[cordon] error: {err:#}");
                        return Err(ExitCode::from(2));
                    }
                };
            }
            let outcome = match cordon::boot(&options) {
                Ok(outcome) => outcome,
                Err(err) => {
                    eprintln!("[cordon] error: {err:#}");
                    return Err(ExitCode::from(3));
                }
            };
            let log = out.join(format!("{what}-{}-{}.log", config.name(), run + 1));
            let _ = std::fs::write(&log, &outcome.console);
            let checked = match outcome.verdict {
                Verdict::Passed => check(&config, &outcome.console),
                other => Err(format!("the kernel's verdict: {other:?}")),
            };
            if let Err(why) = checked {
                eprintln!(
                    "[cordon] {}, run {}: {why}; console in {}",
                    config.name(),
                    run + 1,
                    log.display()
                );
                return Err(ExitCode::from(1));
            }
            raw[i].1.push(figures(&outcome.console));
            last_console = outcome.console;
        }
    }
    eprintln!(
        "[cordon] {what}: {total} boots in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok((raw, last_console))
}

/// The accelerator as the results record it: `tcg`, `tcg -icount` or `kvm`.
fn accel_label(options: &BootOptions) -> &'static str {
    match (options.accel, options.icount) {
        (Accel::Tcg, true) => "tcg -icount",
        (Accel::Tcg, false) => "tcg",
        (Accel::Kvm, _) => "kvm",
    }
}

/// `machine: HOST CPU (N cores), QEMU VERSION, accel=...` for a table's heading.
fn machine_line(machine: &Machine, options: &BootOptions, configs: &[Config]) -> String {
    format!(
        "machine: {} ({} cores), {}, accel={}",
        machine.host_cpu,
        machine.host_cores,
        machine.qemu,
        accel_name(options, configs)
    )
}

fn accel_name(options: &BootOptions, configs: &[Config]) -> String {
    let accel = match (options.accel, options.icount) {
        (Accel::Tcg, true) => {
            "tcg with -icount (figures count guest instructions, not time: TLB refills and host noise are invisible)"
        }
        (Accel::Tcg, false) => {
            "tcg (software emulation: emulated cost, compare ratios not absolute cycles)"
        }
        (Accel::Kvm, _) => "kvm",
    };
    let most = configs.iter().map(|c| c.cpus).max().unwrap_or(options.cpus);
    let cpus = if configs.iter().all(|c| c.cpus == most) {
        format!("{most} CPU(s)")
    } else {
        format!("CPUs as each column says (`@Ncpu`), up to {most}")
    };
    match (most, options.accel, options.icount) {
        (1, _, _) => format!("{accel}, {cpus}"),
        (_, Accel::Tcg, true) => {
            format!("{accel}, {cpus} (-icount runs every vCPU on one host thread, in turn)")
        }
        (_, Accel::Tcg, false) => format!("{accel}, {cpus} (one host thread each)"),
        (_, Accel::Kvm, _) => format!("{accel}, {cpus}"),
    }
}

fn table(metrics: &[Metric], raw: &Raw) -> String {
    let results: Vec<_> = raw
        .iter()
        .map(|(config, runs)| (*config, cordon::bench::summarise(runs)))
        .collect();
    cordon::bench::table(metrics, &results)
}

/// With `--inject`: what recovery did in each boot, read from the WebFiles rows.
fn recovery(injections: &[bootpkg::Injection], raw: &Raw) -> String {
    if injections.is_empty() {
        return String::new();
    }
    let row = |label: &str| {
        cordon::bench::WEBFILES
            .iter()
            .position(|m| m.label == label)
            .expect("a WebFiles row")
    };
    let restarts = row("recovery: SIPs restarted by the supervisor");
    let client = row("recovery: files read again by the client");
    let fs = row("recovery: disk reads sent again by the file system");
    let resent = row("recovery: idempotent requests the bindings sent again");
    let median = row("recovery: failure to first reply from the new SIP, median");
    let worst = row("recovery: failure to first reply from the new SIP, worst");
    let injected: Vec<String> = injections
        .iter()
        .map(|i| format!("{}:{}:{}", i.kind.name(), i.sip, i.at))
        .collect();
    let mut out = format!(
        "\nRecovery under --inject {} (per boot; every read of every boot was verified against its CRC-32, or the run would have stopped):\n",
        injected.join(" --inject ")
    );
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    for (config, runs) in raw {
        for (n, figures) in runs.iter().enumerate() {
            let retried = figures[client].unwrap_or(0)
                + figures[fs].unwrap_or(0)
                + figures[resent].unwrap_or(0);
            out.push_str(&format!(
                "  {:<22} boot {}: recoveries = {}, requests retried = {} (files by the client {}, idempotent requests by its bindings {}, disk reads by the file system {}), failure to first reply from the new SIP: median {} cycles, worst {}\n",
                config.name(),
                n + 1,
                show(figures[restarts]),
                retried,
                show(figures[client]),
                show(figures[resent]),
                show(figures[fs]),
                show(figures[median]),
                show(figures[worst])
            ));
        }
    }
    out
}

fn legend(configs: &[Config]) -> String {
    configs
        .iter()
        .map(|i| format!("  {:<13} {}\n", i.name(), i.description()))
        .collect()
}

/// Writes `files` (name, contents) into `out` and lists them.
fn write_all(out: &Path, files: &[(&str, String)]) -> bool {
    let mut ok = true;
    for (name, contents) in files {
        let path = out.join(name);
        match std::fs::write(&path, contents) {
            Ok(()) => println!("  wrote {}", path.display()),
            Err(err) => {
                eprintln!("[cordon] could not write {}: {err}", path.display());
                ok = false;
            }
        }
    }
    ok
}

/// The kernel's micro suite in each configuration, and (with `linux`) the same operations
/// on Linux booted in the same QEMU configuration, as one more column.
pub fn micro(
    base: BootOptions,
    configs: &[Config],
    runs: u32,
    linux: bool,
    out: &Path,
) -> ExitCode {
    let prepared = if linux {
        if base.accel != Accel::Tcg {
            eprintln!("[cordon] error: the Linux comparison boots under TCG only; add --no-linux");
            return ExitCode::from(2);
        }
        match cordon::linux::prepare(&out.join("linux")) {
            Ok(prepared) => Some(prepared),
            Err(err) => {
                eprintln!(
                    "[cordon] error: preparing Linux for the comparison: {err:#}\n(--no-linux skips it)"
                );
                return ExitCode::from(3);
            }
        }
    } else {
        None
    };
    let (raw, _) = match boot_all(
        &base,
        configs,
        runs,
        &|console| cordon::bench::parse(cordon::bench::MICRO, console),
        "micro",
        out,
        &|_, console| {
            if console.contains("bench micro: done") {
                Ok(())
            } else {
                Err("the suite did not finish".into())
            }
        },
    ) {
        Ok(raw) => raw,
        Err(code) => return code,
    };
    let mut columns: Vec<(String, Vec<Option<Summary>>)> = raw
        .iter()
        .map(|(config, runs)| (config.name(), cordon::bench::summarise(runs)))
        .collect();
    let mut csv = cordon::bench::csv(cordon::bench::MICRO, &raw);
    let mut notes = String::new();
    if let Some(prepared) = &prepared {
        // One Linux column per processor count measured (`--cpus 1,2`: `linux` and
        // `linux@2cpu`), booted like the configurations beside it.
        let mut counts: Vec<u32> = configs.iter().map(|c| c.cpus).collect();
        counts.sort_unstable();
        counts.dedup();
        let mut console = String::new();
        for cpus in counts {
            let name = match cpus {
                1 => "linux".to_string(),
                n => format!("linux@{n}cpu"),
            };
            let mut linux_runs = Vec::new();
            for run in 0..runs {
                eprintln!(
                    "[cordon] micro: Linux ({}) in the same QEMU configuration, {cpus} CPU(s), run {}/{runs}",
                    prepared.package,
                    run + 1
                );
                let timeout = base.timeout.unwrap_or(Duration::from_secs(600));
                match cordon::linux::boot(prepared, base.memory_mib, cpus, base.icount, timeout) {
                    Ok(text) => {
                        let _ = std::fs::write(
                            out.join(format!("micro-{name}-{}.log", run + 1)),
                            &text,
                        );
                        linux_runs.push(cordon::bench::parse(cordon::linux::METRICS, &text));
                        console = text;
                    }
                    Err(err) => {
                        eprintln!("[cordon] error: {err:#}");
                        return ExitCode::from(1);
                    }
                }
            }
            let summaries = cordon::bench::summarise(&linux_runs);
            let by_row = cordon::bench::MICRO
                .iter()
                .map(|m| {
                    cordon::linux::METRICS
                        .iter()
                        .position(|l| l.label == m.label)
                        .and_then(|i| summaries.get(i).copied().flatten())
                })
                .collect();
            csv.push_str(
                cordon::bench::csv(cordon::linux::METRICS, &[(name.as_str(), linux_runs)])
                    .trim_start_matches("configuration,run,metric,value\n"),
            );
            columns.push((name, by_row));
        }
        let meltdown = console
            .lines()
            .find_map(|l| l.strip_prefix("linux: meltdown: "))
            .unwrap_or("unknown");
        notes = format!(
            "  linux         {} with a static benchmark as /init (tools/cordon/linux/bench.c): getpid via syscall(2), \
             pipe ping-pong between two processes (also pinned: both on CPU 0, CPU 0 to CPU 1; and four \
             pairs of 16 checked bytes at once, placed by Linux), fork+exec+wait, semaphore ping-pong between two threads \
             on one CPU (futex calls included), sched_yield ping-pong (two processes; two threads), \
             demand-zero and CoW faults (one timed pass over 4,096 pages); its meltdown mitigation here: {meltdown}\n",
            prepared.package
        );
    }
    let table = cordon::bench::table(cordon::bench::MICRO, &columns);
    println!(
        "Micro-benchmarks, isolation configurations side by side (Singularity's Figure 5 order){}, \
         {runs} boot(s) each, accel={}; ratios are to the first column, measured in this run:",
        if prepared.is_some() { " and Linux" } else { "" },
        accel_name(&base, configs)
    );
    let text = format!("{table}{}{notes}", legend(configs));
    print!("{text}");
    if write_all(out, &[("micro.txt", text), ("micro.csv", csv)]) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Generates the WebFiles file set and its disk image under `out` and sets `base` to boot
/// the WebFiles system from it; on failure, says why and gives the exit code.
fn webfiles_system(
    base: &mut BootOptions,
    workload: &Workload,
    out: &Path,
) -> Result<(), ExitCode> {
    eprintln!(
        "[cordon] webfiles: generating the file set ({} directories, seed {}) and its ext4 image in {}",
        workload.dirs,
        workload.seed,
        out.display()
    );
    let image = webfiles::prepare(workload, &out.join("webfiles")).map_err(|err| {
        eprintln!("[cordon] error: {err:#}");
        ExitCode::from(3)
    })?;
    base.disk = Some(image);
    base.system = cordon::system::load("webfiles").map_err(|err| {
        eprintln!("[cordon] error: {err:#}");
        ExitCode::from(2)
    })?;
    Ok(())
}

/// WebFiles in each configuration: the unsafe-code tax.
pub fn webfiles(
    mut base: BootOptions,
    configs: &[Config],
    runs: u32,
    workload: Workload,
    icount_pass: bool,
    out: &Path,
) -> ExitCode {
    if let Err(code) = webfiles_system(&mut base, &workload, out) {
        return code;
    }
    let (raw, console) = match boot_all(
        &base,
        configs,
        runs,
        &|console| cordon::bench::parse(cordon::bench::WEBFILES, console),
        "webfiles",
        out,
        &|_, console| webfiles::check(console, &workload),
    ) {
        Ok(raw) => raw,
        Err(code) => return code,
    };
    // Under TCG, one more pass per configuration counts guest instructions (-icount): a
    // deterministic view that separates extra instructions from emulated TLB and ring cost.
    // With several processors `-icount` runs them all on one host thread, in turn (the
    // table's heading says so).
    let icount = if base.accel == Accel::Tcg && !base.icount && icount_pass {
        let options = BootOptions {
            icount: true,
            ..base.clone()
        };
        match boot_all(
            &options,
            configs,
            1,
            &|console| cordon::bench::parse(cordon::bench::WEBFILES, console),
            "webfiles-icount",
            out,
            &|_, console| webfiles::check(console, &workload),
        ) {
            Ok((raw, _)) => Some(raw),
            Err(code) => return code,
        }
    } else {
        None
    };
    let accel = accel_label(&base);
    let machine = Machine::describe(accel, &console);
    let summary = format!(
        "WebFiles (Singularity's unsafe-code-tax experiment): {} measured reads after {} warm-up, \
         {} directories (seed {}), {runs} boot(s) per configuration, every read checked against \
         the generator's CRC-32.\n{}, PCID {}\n",
        workload.reads,
        workload.warmup,
        workload.dirs,
        workload.seed,
        machine_line(&machine, &base, configs),
        machine.pcid
    );
    let mut text = format!(
        "{summary}\n{}\n{}{}{}",
        table(cordon::bench::WEBFILES, &raw),
        webfiles::headline(&raw),
        legend(configs),
        recovery(&base.injections, &raw)
    );
    if let Some(icount) = &icount {
        text.push_str(&format!(
            "\nThe same, counting guest instructions (QEMU -icount, one boot each): the clock advances \
             one cycle per instruction executed, so what costs time without costing instructions \
             (TLB refills after CR3 loads, ring crossings) does not show here. While the processor \
             is halted waiting for the disk the clock jumps to the next event instead, so I/O \
             figures also hold halted time that depends on where completions fall (the idle row); \
             the checksum row is computation only.\n\n{}\n{}",
            table(cordon::bench::WEBFILES, icount),
            webfiles::headline(icount)
        ));
    }
    print!("{text}");
    let subtitle = format!(
        "{} reads, {runs} boot(s) each; QEMU {accel}; {}",
        workload.reads,
        match accel {
            "tcg" => "guest TSC cycles (emulated cost)",
            "tcg -icount" => "guest instruction counts (-icount)",
            _ => "guest TSC cycles",
        }
    );
    let mut files = vec![
        ("webfiles.txt", text.clone()),
        (
            "webfiles.csv",
            cordon::bench::csv(cordon::bench::WEBFILES, &raw),
        ),
        (
            "webfiles.json",
            webfiles::json(&machine, &workload, &raw, icount.as_deref()),
        ),
        ("webfiles.svg", webfiles::svg_chart(&raw, &subtitle)),
    ];
    if let Some(icount) = &icount {
        files.push((
            "webfiles-icount.csv",
            cordon::bench::csv(cordon::bench::WEBFILES, icount),
        ));
    }
    if write_all(out, &files) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// WebFiles with several clients: one file system serving 1, 2, 4, ... client SIPs at
/// once, in each configuration; the throughput of all clients together and its scaling.
pub fn webfiles_clients(
    mut base: BootOptions,
    configs: &[Config],
    runs: u32,
    workload: Workload,
    out: &Path,
) -> ExitCode {
    if let Err(code) = webfiles_system(&mut base, &workload, out) {
        return code;
    }
    // Per boot: every read of every client (warm-up included), and the window from the
    // first one's first read to the last one's last, in kernel ticks and TSC cycles.
    let figures = |console: &str| webfiles::Throughput::figures(webfiles::Throughput::of(console));
    let (raw, console) = match boot_all(
        &base,
        configs,
        runs,
        &figures,
        "webfiles-clients",
        out,
        &|config, console| webfiles::check_clients(console, &workload, config.clients),
    ) {
        Ok(raw) => raw,
        Err(code) => return code,
    };
    let machine = Machine::describe(accel_label(&base), &console);
    let text = format!(
        "WebFiles with several clients: each client SIP has its own channel to the one \
         file-system SIP, which serves their requests one at a time; each client makes {} \
         measured reads after {} warm-up from its own request stream, every byte checked; {} \
         directories (seed {}), {runs} boot(s) per configuration, interleaved.\n{}\n\
         Throughput: every read of every client (warm-up included: one client's warm-up \
         overlaps another's measured reads) over guest time from the first client's first \
         read to the last one's last (the kernel's 100 Hz clock); median [lowest, highest] \
         over boots, and the scaling against one client in the same configuration.\n\n{}",
        workload.reads,
        workload.warmup,
        workload.dirs,
        workload.seed,
        machine_line(&machine, &base, configs),
        clients_table(&raw)
    );
    print!("{text}");
    let mut csv = String::from(
        "configuration,isolation,engine,cpus,clients,run,reads,ticks,tsc_cycles,files_per_second\n",
    );
    for (config, boots) in &raw {
        for (n, f) in boots.iter().enumerate() {
            let t = webfiles::Throughput::from_figures(f);
            let field = |v: Option<String>| v.unwrap_or_default();
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                config.name(),
                config.isolation.name(),
                config.engine.name(),
                config.cpus,
                config.clients,
                n + 1,
                field(t.map(|t| t.reads.to_string())),
                field(t.map(|t| t.ticks.to_string())),
                field(t.map(|t| t.cycles.to_string())),
                field(
                    t.and_then(|t| t.files_per_second())
                        .map(|r| format!("{r:.1}"))
                ),
            ));
        }
    }
    if write_all(
        out,
        &[
            ("webfiles-clients.txt", text),
            ("webfiles-clients.csv", csv),
        ],
    ) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Files per second of guest time of one boot's figures ([`webfiles::Throughput::figures`]).
fn files_per_second(figures: &[Option<u64>]) -> Option<f64> {
    webfiles::Throughput::from_figures(figures)?.files_per_second()
}

/// One row per configuration without its client count, one column per client count:
/// median files/s [lowest, highest], and the median's ratio to one client's; then, with
/// several processor counts, each count's median against the first's.
fn clients_table(raw: &Raw) -> String {
    let mut counts: Vec<u32> = raw.iter().map(|(c, _)| c.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    let row_of = |c: &Config| Config { clients: 1, ..*c };
    let mut rows: Vec<Config> = Vec::new();
    for (config, _) in raw {
        if !rows.contains(&row_of(config)) {
            rows.push(row_of(config));
        }
    }
    let median_of = |config: Config| -> Option<(f64, f64, f64)> {
        let (_, boots) = raw.iter().find(|(c, _)| *c == config)?;
        let mut rates: Vec<f64> = boots.iter().filter_map(|f| files_per_second(f)).collect();
        if rates.is_empty() {
            return None;
        }
        rates.sort_by(f64::total_cmp);
        Some((rates[rates.len() / 2], rates[0], rates[rates.len() - 1]))
    };
    let mut text = format!("{:<24}", "files/s (guest time)");
    for n in &counts {
        let label = if *n == 1 {
            "1 client".to_string()
        } else {
            format!("{n} clients")
        };
        text.push_str(&format!("{label:>34}"));
    }
    text.push('\n');
    for row in &rows {
        text.push_str(&format!("{:<24}", row.name()));
        let one = median_of(*row).map(|m| m.0);
        for &n in &counts {
            let cell = match median_of(Config { clients: n, ..*row }) {
                Some((median, low, high)) => {
                    let scale = one.map_or_else(String::new, |one| {
                        format!(" {:.2}x", median / one.max(f64::MIN_POSITIVE))
                    });
                    format!("{median:.1} [{low:.1}, {high:.1}]{scale}")
                }
                None => "-".to_string(),
            };
            text.push_str(&format!("{cell:>34}"));
        }
        text.push('\n');
    }
    // Processors against processors, same configuration and client count.
    let mut cpus: Vec<u32> = rows.iter().map(|r| r.cpus).collect();
    cpus.sort_unstable();
    cpus.dedup();
    if let [first, ref more @ ..] = cpus[..] {
        for &other in more {
            text.push_str(&format!(
                "\n{other} processors against {first}, same configuration and clients (median files/s):\n"
            ));
            for row in rows.iter().filter(|r| r.cpus == other) {
                let base = Config {
                    cpus: first,
                    ..*row
                };
                text.push_str(&format!("{:<24}", row.name()));
                for &n in &counts {
                    let ratio = median_of(Config { clients: n, ..*row })
                        .zip(median_of(Config { clients: n, ..base }))
                        .map_or_else(
                            || "-".to_string(),
                            |(a, b)| format!("{:.2}x", a.0 / b.0.max(f64::MIN_POSITIVE)),
                        );
                    text.push_str(&format!("{ratio:>34}"));
                }
                text.push('\n');
            }
        }
    }
    text
}
