//! The unsafe-code-tax benchmark (Singularity's Figure 5 experiment) on Cordon: the
//! WebFiles system (`systems/webfiles.toml`: disk driver, file system, client) booted in
//! every isolation configuration, its results checked and set beside Singularity's
//! published slowdowns, written as a table, CSV, JSON and an SVG bar chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bootpkg::Isolation;

use crate::bench::Config;
use crate::system::System;

use crate::bench::{Summary, WEBFILES};

/// Raw figures: per configuration, per run, per metric (in [`WEBFILES`] order).
pub type Raw = [(Config, Vec<Vec<Option<u64>>>)];

/// Singularity's WebFiles run time in each configuration, relative to the soft baseline
/// ("Singularity: Rethinking the Software Stack", Figure 5; real hardware, AMD Athlon 64).
pub fn singularity_slowdown(isolation: Isolation) -> f64 {
    match isolation {
        Isolation::Soft => 0.0,
        Isolation::Paged => 6.3,
        Isolation::ClientSpace => 18.9,
        Isolation::ClientRing3 => 33.0,
        Isolation::Hard => 37.7,
    }
}

/// The workload: which file set, and how many reads the client makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub seed: u64,
    pub dirs: u32,
    pub request_seed: u64,
    pub warmup: u32,
    pub reads: u32,
}

impl Workload {
    /// The default run: 4 directories (144 files, 20 MB), 100 warm-up and 1,000 measured
    /// reads.
    pub const DEFAULT: Workload = Workload {
        seed: 1999,
        dirs: 4,
        request_seed: 7,
        warmup: 100,
        reads: 1000,
    };

    /// The CI smoke test: a small set and few reads, every byte still checked.
    pub const QUICK: Workload = Workload {
        seed: 1999,
        dirs: 2,
        request_seed: 7,
        warmup: 10,
        reads: 100,
    };
}

/// Generates the file set and its ext4 image in `dir`; returns the image.
pub fn prepare(workload: &Workload, dir: &Path) -> anyhow::Result<PathBuf> {
    let generated = webfiles::generator::generate(&webfiles::generator::Options {
        set: webfiles::FileSet {
            seed: workload.seed,
            dirs: workload.dirs,
        },
        request_seed: workload.request_seed,
        warmup: workload.warmup,
        reads: workload.reads,
        out: dir.to_path_buf(),
    })
    .with_context(|| format!("generating the WebFiles set in {}", dir.display()))?;
    Ok(generated.image)
}

/// The WebFiles system with `clients` client SIPs: `system` (`systems/webfiles.toml`) as
/// it is for one; client K (K >= 2) is the Kth instance of `webfiles`, connected to the
/// file system's `clients#K` and given K as its argument (its request stream). The
/// `client-*` configurations isolate the first client only.
pub fn with_clients(system: &System, clients: u32) -> anyhow::Result<System> {
    let mut system = system.clone();
    let index = |name: &str| {
        system
            .sips
            .iter()
            .position(|s| s == name)
            .map(|i| i as u32)
            .with_context(|| format!("{}: no SIP `{name}`", system.origin))
    };
    let fs = index("fs")?;
    index("webfiles")?;
    for k in 2..=clients {
        let sip = system.sips.len() as u32;
        system.sips.push("webfiles".into());
        system.channels.push(bootpkg::Connection {
            contract: "FileSystem".into(),
            exporter: bootpkg::Attach {
                sip: fs,
                endpoint: format!("clients#{k}"),
            },
            importer: bootpkg::Attach {
                sip,
                endpoint: "fs".into(),
            },
        });
        system.args.push(bootpkg::SipArgs {
            sip,
            args: vec![k.to_string()],
        });
    }
    bootpkg::check_wiring(&system.sips, &system.on_request, &system.channels)
        .map_err(anyhow::Error::msg)?;
    Ok(system)
}

/// Checks that a run is sane: every SIP exited 0, the client made every read it was asked
/// for, and every read returned the bytes the generator's checksums say.
pub fn check(console: &str, workload: &Workload) -> Result<(), String> {
    check_clients(console, workload, 1)
}

/// The fields of every client's result line, in the order printed.
fn results(console: &str) -> Vec<impl Fn(&str) -> Option<u64> + '_> {
    console
        .lines()
        .filter(|l| l.contains("[webfiles] webfiles: result"))
        .map(|line| {
            move |name: &str| -> Option<u64> {
                let rest = &line[line.find(&format!(" {name}="))? + name.len() + 2..];
                rest.split_whitespace().next()?.parse().ok()
            }
        })
        .collect()
}

/// [`check`] for a run of [`with_clients`]: each of the `clients` clients (numbered 1 to
/// `clients`) made and verified every read, and every SIP exited 0.
pub fn check_clients(console: &str, workload: &Workload, clients: u32) -> Result<(), String> {
    if let Some(line) = console.lines().find(|l| l.contains("webfiles: FAILED")) {
        return Err(line.trim().to_string());
    }
    let results = results(console);
    if results.len() != clients as usize {
        return Err(format!(
            "{} client(s) printed a result; expected {clients}",
            results.len()
        ));
    }
    let mut numbers = Vec::new();
    for field in &results {
        let (reads, verified) = (field("reads"), field("verified"));
        if reads != Some(u64::from(workload.reads)) || verified != reads {
            return Err(format!(
                "expected {} verified reads, a client reports reads={reads:?} verified={verified:?}",
                workload.reads
            ));
        }
        numbers.push(field("client").unwrap_or(0));
    }
    numbers.sort_unstable();
    if numbers != (1..=u64::from(clients)).collect::<Vec<_>>() {
        return Err(format!(
            "the clients that reported are numbered {numbers:?}; expected 1 to {clients}"
        ));
    }
    for (sip, count) in [("virtio-blk", 1), ("fs", 1), ("webfiles", clients as usize)] {
        let exited = console
            .lines()
            .filter(|l| {
                l.starts_with(&format!("[kernel] SIP {sip} ("))
                    && l.ends_with("exited with status 0")
            })
            .count();
        if exited != count {
            return Err(format!(
                "{exited} of {count} SIP(s) {sip} exited with status 0"
            ));
        }
    }
    Ok(())
}

/// What several clients did together: all their reads (warm-up included), and the window
/// from the first one's first read to the last one's last, in the kernel's 100 Hz clock
/// and in time stamp counter cycles. (Their warm-ups overlap each other's measured reads,
/// so every read in the window counts.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throughput {
    pub reads: u64,
    pub ticks: u64,
    pub cycles: u64,
}

impl Throughput {
    /// Every client's result line on `console`, taken together.
    pub fn of(console: &str) -> Option<Throughput> {
        let results = results(console);
        if results.is_empty() {
            return None;
        }
        let mut reads = 0;
        let (mut began, mut ended) = (u64::MAX, 0);
        let (mut began_tick, mut ended_tick) = (u64::MAX, 0);
        for field in &results {
            reads += field("all_reads")?;
            began = began.min(field("began")?);
            ended = ended.max(field("ended")?);
            began_tick = began_tick.min(field("began_tick")?);
            ended_tick = ended_tick.max(field("ended_tick")?);
        }
        Some(Throughput {
            reads,
            ticks: ended_tick.checked_sub(began_tick)?,
            cycles: ended.checked_sub(began)?,
        })
    }

    /// One boot's figures as the benchmark tables keep them: reads, ticks, cycles (all
    /// `None` when the boot gave none).
    pub fn figures(of: Option<Throughput>) -> Vec<Option<u64>> {
        match of {
            Some(t) => vec![Some(t.reads), Some(t.ticks), Some(t.cycles)],
            None => vec![None; 3],
        }
    }

    /// Back from [`Throughput::figures`].
    pub fn from_figures(figures: &[Option<u64>]) -> Option<Throughput> {
        match *figures {
            [Some(reads), Some(ticks), Some(cycles)] => Some(Throughput {
                reads,
                ticks,
                cycles,
            }),
            _ => None,
        }
    }

    /// Files per second of guest time (the kernel's clock; under TCG it follows the host's);
    /// `None` for a window shorter than [`Throughput::MIN_TICKS`], which the 100 Hz clock
    /// cannot time well.
    pub fn files_per_second(&self) -> Option<f64> {
        (self.ticks >= Self::MIN_TICKS).then(|| self.reads as f64 * 100.0 / self.ticks as f64)
    }

    /// The shortest window timed: 0.1 s, within 10 % of the clock's resolution.
    pub const MIN_TICKS: u64 = 10;
}

/// What the host and the emulator were, for the record.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    pub host_cpu: String,
    pub host_cores: usize,
    pub qemu: String,
    pub accel: String,
    pub pcid: String,
}

impl Machine {
    /// Reads the host's processor and QEMU's version; `pcid` from a kernel console.
    pub fn describe(accel: &str, console: &str) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let host_cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let qemu = std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|v| v.lines().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let pcid = if console.contains("PCID available") {
            "available, not used"
        } else if console.contains("PCID not available") {
            "not available"
        } else {
            "unknown"
        };
        Machine {
            host_cpu,
            host_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            qemu,
            accel: accel.to_string(),
            pcid: pcid.into(),
        }
    }
}

/// The row the chart and the headline use: I/O cycles per file read.
pub const HEADLINE: usize = 0;

/// Each run's headline figure, sorted.
fn headline_values(runs: &[Vec<Option<u64>>]) -> Vec<u64> {
    let mut v: Vec<u64> = runs.iter().filter_map(|r| r[HEADLINE]).collect();
    v.sort_unstable();
    v
}

/// The sorted headline figures of the first configuration with `config`'s engine and
/// processors (its `soft`): each group's configurations are set against it, so the
/// compiled rows show the isolation tax of running compiled code, not the engines'
/// difference, and the two-processor rows the tax on two processors.
fn engine_base(raw: &Raw, config: &Config) -> Option<Vec<u64>> {
    let (_, runs) = raw.iter().find(|(c, _)| {
        c.engine == config.engine && c.cpus == config.cpus && c.clients == config.clients
    })?;
    Some(headline_values(runs)).filter(|v| !v.is_empty())
}

/// One configuration's slowdown against `soft` in its engine, in percent.
#[derive(Clone, Copy, Debug)]
pub struct Slowdown {
    pub config: Config,
    /// The median run, and the lowest and highest runs, against soft's median.
    pub median: f64,
    pub lowest: f64,
    pub highest: f64,
    /// The fastest run against soft's fastest. Under TCG, interference from the host only
    /// ever adds time, so the minimum is the steadier figure when runs spread widely; both
    /// are printed.
    pub fastest: f64,
}

/// Slowdown of each configuration against soft in its engine, from the headline figure of
/// every run.
pub fn slowdowns(raw: &Raw) -> Vec<Slowdown> {
    let pct = |v: u64, of: u64| (v as f64 / of.max(1) as f64 - 1.0) * 100.0;
    raw.iter()
        .filter_map(|(config, runs)| {
            let base = engine_base(raw, config)?;
            let (base_median, base_fastest) = (base[base.len() / 2], base[0]);
            let v = headline_values(runs);
            let median = *v.get(v.len() / 2)?;
            Some(Slowdown {
                config: *config,
                median: pct(median, base_median),
                lowest: pct(v[0], base_median),
                highest: pct(v[v.len() - 1], base_median),
                fastest: pct(v[0], base_fastest),
            })
        })
        .collect()
}

/// The headline beside Singularity's: one line per configuration.
pub fn headline(raw: &Raw) -> String {
    let mut out = String::from(
        "slowdown against soft, same engine (I/O cycles per file read)   Cordon median [lowest, highest run]   fastest vs fastest   Singularity (Figure 5)\n",
    );
    for s in slowdowns(raw) {
        let _ = writeln!(
            out,
            "  {:<48} {:>+7.1}%  [{:+.1}%, {:+.1}%]{:>21}{:>18}",
            s.config.name(),
            s.median,
            s.lowest,
            s.highest,
            format!("{:+.1}%", s.fastest),
            format!("{:+.1}%", singularity_slowdown(s.config.isolation))
        );
    }
    out
}

/// Every raw figure, the summaries and the machine, as JSON; `icount` is the optional
/// pass that counted guest instructions instead of time.
pub fn json(machine: &Machine, workload: &Workload, raw: &Raw, icount: Option<&Raw>) -> String {
    let doc = serde_json::json!({
        "benchmark": "WebFiles (Singularity's unsafe-code-tax experiment) on Cordon",
        "machine": machine,
        "workload": {
            "seed": workload.seed,
            "directories": workload.dirs,
            "request_seed": workload.request_seed,
            "warmup_reads": workload.warmup,
            "measured_reads": workload.reads,
            "read_block_bytes": webfiles::READ_BLOCK,
        },
        "timed": {
            "units": "guest TSC cycles; under TCG they are emulated cost: compare ratios measured in one run",
            "slowdowns": slowdowns_json(raw),
            "configurations": configurations_json(raw),
        },
        "icount": icount.map(|icount| serde_json::json!({
            "units": "guest TSC under QEMU -icount shift=0: proportional to guest instructions executed",
            "slowdowns": slowdowns_json(icount),
            "configurations": configurations_json(icount),
        })),
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialise")
}

fn configurations_json(raw: &Raw) -> Vec<serde_json::Value> {
    raw.iter()
        .map(|(config, runs)| {
            let summaries = crate::bench::summarise(runs);
            let figures: serde_json::Map<String, serde_json::Value> = WEBFILES
                .iter()
                .enumerate()
                .map(|(row, metric)| {
                    let values: Vec<Option<u64>> = runs.iter().map(|r| r[row]).collect();
                    let summary = summaries.get(row).copied().flatten();
                    (
                        metric.label.trim().to_string(),
                        serde_json::json!({
                            "runs": values,
                            "median": summary.map(|s: Summary| s.median),
                            "spread": summary.map(|s: Summary| s.spread),
                            "count": metric.count,
                        }),
                    )
                })
                .collect();
            serde_json::json!({
                "configuration": config.name(),
                "isolation": config.isolation.name(),
                "engine": config.engine.name(),
                "cpus": config.cpus,
                "description": config.description(),
                "singularity_slowdown_percent": singularity_slowdown(config.isolation),
                "figures": figures,
            })
        })
        .collect()
}

fn slowdowns_json(raw: &Raw) -> Vec<serde_json::Value> {
    slowdowns(raw)
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "configuration": s.config.name(),
                "isolation": s.config.isolation.name(),
                "engine": s.config.engine.name(),
                "cpus": s.config.cpus,
                "median_percent": s.median,
                "lowest_percent": s.lowest,
                "highest_percent": s.highest,
                "fastest_vs_fastest_percent": s.fastest,
                "singularity_percent": singularity_slowdown(s.config.isolation),
            })
        })
        .collect()
}

/// A bar chart like Singularity's Figure 5: per configuration, Cordon's median slowdown
/// (with the range over runs) beside Singularity's published one.
pub fn svg_chart(raw: &Raw, subtitle: &str) -> String {
    let bars = slowdowns(raw);
    let (width, height) = (760.0, 420.0);
    let (left, right, top, bottom) = (70.0, 20.0, 70.0, 80.0);
    let plot_h = height - top - bottom;
    let highest = bars
        .iter()
        .map(|b| b.highest.max(singularity_slowdown(b.config.isolation)))
        .fold(10.0f64, f64::max);
    let lowest = bars.iter().map(|b| b.lowest).fold(0.0f64, f64::min);
    let step = if highest - lowest > 100.0 { 20.0 } else { 10.0 };
    let (y_min, y_max) = (
        (lowest / step).floor() * step,
        (highest / step).ceil() * step,
    );
    let y = |v: f64| top + plot_h * (y_max - v) / (y_max - y_min);
    let group = (width - left - right) / bars.len().max(1) as f64;
    let bar = group * 0.3;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"16\" text-anchor=\"middle\">The unsafe-code tax: WebFiles slowdown against soft isolation</text>\n\
         <text x=\"{}\" y=\"42\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
        width / 2.0,
        width / 2.0,
        escape(subtitle)
    );
    let mut tick = y_min;
    while tick <= y_max + 1e-9 {
        let (x_end, ty, label_x) = (width - right, y(tick), left - 6.0);
        let colour = if tick == 0.0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{x_end}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"{colour}\"/><text x=\"{label_x}\" y=\"{:.1}\" text-anchor=\"end\">{tick:+.0}%</text>",
            ty + 4.0
        );
        tick += step;
    }
    let _ = writeln!(
        svg,
        "<text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">slowdown (% of soft)</text>",
        top + plot_h / 2.0
    );
    for (
        i,
        &Slowdown {
            config,
            median,
            lowest: low,
            highest: high,
            ..
        },
    ) in bars.iter().enumerate()
    {
        let x = left + group * i as f64 + group * 0.2;
        let theirs = singularity_slowdown(config.isolation);
        for (j, (value, colour)) in [(median, "#2b6cb0"), (theirs, "#bbbbbb")]
            .into_iter()
            .enumerate()
        {
            let bx = x + j as f64 * bar;
            let (y0, y1) = (y(value.max(0.0)), y(value.min(0.0)));
            let _ = writeln!(
                svg,
                "<rect x=\"{bx:.1}\" y=\"{y0:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{value:+.1}%</text>",
                (y1 - y0).max(0.5),
                bx + bar / 2.0,
                y0 - 4.0
                    - if j == 0 && high > value {
                        y0 - y(high)
                    } else {
                        0.0
                    }
            );
        }
        let cx = x + bar / 2.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
            y(low),
            y(high)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + bar,
            height - bottom + 18.0,
            config.name()
        );
    }
    let ly = height - 30.0;
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"#2b6cb0\"/><text x=\"{}\" y=\"{ly:.1}\">Cordon (median; line: lowest to highest run)</text>\
         <rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"#bbbbbb\"/><text x=\"{}\" y=\"{ly:.1}\">Singularity, Figure 5 (real hardware)</text>",
        ly - 10.0,
        left + 18.0,
        left + 340.0,
        ly - 10.0,
        left + 358.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
PCI: 7 functions; 00:04.0 virtio-blk (1af4:1001, class 01.00, I/O 0xc000+0x80, IRQ 11)
isolation=soft: physical memory; PCID not available (not used: every CR3 load flushes the TLB), NX on
[webfiles] webfiles: classes read [13, 16, 1, 0]; 19819706 cycles per read in I/O
[webfiles] webfiles: result reads=30 bytes=63687 io_cycles=594591184 verify_cycles=64216878 total_cycles=672538598 verified=30 client=1 all_reads=30 began=1000 ended=672539598 began_tick=40 ended_tick=140
[kernel] SIP webfiles (pid 3) exited with status 0
[kernel] SIP fs (pid 2) exited with status 0
[virtio-blk] virtio-blk: served 30 requests, 919040 bytes by DMA, 30 interrupts, 60 used-ring polls; the client went away
[kernel] SIP virtio-blk (pid 1) exited with status 0
[webfiles] webfiles: recovery: retried=2 reconnects=2 resent=3
[fs] fs: recovery: retried=1 reconnects=1
supervisor: 2 restarts, 0 given up; failure to first reply from the new incarnation: median 158743676 cycles, best 158743676, worst 558887004 (2 measured)
  counters (system run): 2629 system calls, 1228 CR3 loads, 77 TLB invalidations, 12 TLB shootdowns, 12 IPIs sent, 510 context switches, 319 demand-zero faults, 1 copy-on-write faults, 218 channel messages (200 delivered directly), 6621447 bytes copied by the kernel, 30 device interrupts, 414 device register accesses, 1234567 idle cycles, 987654321 busy cycles, 4321 cycles longest interrupts-masked lock section
";

    fn workload(reads: u32) -> Workload {
        Workload {
            reads,
            ..Workload::QUICK
        }
    }

    #[test]
    fn figures_are_read_from_the_console() {
        let figures = crate::bench::parse(WEBFILES, CONSOLE);
        let get = |label: &str| {
            figures[WEBFILES
                .iter()
                .position(|m| m.label.trim() == label)
                .unwrap()]
        };
        assert_eq!(
            get("I/O cycles per file read (open, 16 KiB reads, close)"),
            Some(19819706)
        );
        assert_eq!(
            get("measured reads, total cycles (incl. checksums)"),
            Some(672538598)
        );
        assert_eq!(
            get("of which checksum verification (client)"),
            Some(64216878)
        );
        assert_eq!(get("file reads measured"), Some(30));
        assert_eq!(get("bytes read (measured)"), Some(63687));
        assert_eq!(get("disk requests (DMA)"), Some(30));
        assert_eq!(get("run: TLB invalidations (invlpg)"), Some(77));
        assert_eq!(get("run: TLB shootdowns (other CPUs asked)"), Some(12));
        assert_eq!(get("run: IPIs sent"), Some(12));
        assert_eq!(get("run: device interrupts"), Some(30));
        assert_eq!(get("run: device register accesses"), Some(414));
        assert_eq!(
            get("run: idle cycles (halted, nothing to run)"),
            Some(1234567)
        );
        assert_eq!(get("run: busy cycles (not halted)"), Some(987654321));
        assert_eq!(
            get("run: longest interrupts-masked lock section, cycles"),
            Some(4321)
        );
        // 2629 x 150 + 1228 x 300 + 77 x 350 + (319 + 1) x 2500
        assert_eq!(
            get("run: isolation events at hardware cost (estimate)"),
            Some(394_350 + 368_400 + 26_950 + 800_000)
        );
        assert_eq!(get("recovery: SIPs restarted by the supervisor"), Some(2));
        assert_eq!(get("recovery: files read again by the client"), Some(2));
        assert_eq!(
            get("recovery: disk reads sent again by the file system"),
            Some(1)
        );
        assert_eq!(
            get("recovery: idempotent requests the bindings sent again"),
            Some(3)
        );
        assert_eq!(
            get("recovery: failure to first reply from the new SIP, median"),
            Some(158743676)
        );
        assert_eq!(
            get("recovery: failure to first reply from the new SIP, worst"),
            Some(558887004)
        );
        assert!(figures.iter().all(Option::is_some), "{figures:?}");
    }

    #[test]
    fn a_sane_run_passes_and_a_wrong_one_is_named() {
        assert_eq!(check(CONSOLE, &workload(30)), Ok(()));
        assert!(
            check(CONSOLE, &workload(31))
                .unwrap_err()
                .contains("expected 31 verified reads")
        );
        let bad = CONSOLE.replace("verified=30", "verified=29");
        assert!(check(&bad, &workload(30)).is_err());
        let failed =
            format!("{CONSOLE}[webfiles] webfiles: FAILED: /dir00000/class1_2: read 10 bytes\n");
        assert!(
            check(&failed, &workload(30))
                .unwrap_err()
                .contains("class1_2")
        );
        let crashed = CONSOLE.replace(
            "SIP fs (pid 2) exited with status 0",
            "SIP fs (pid 2) exited with status 2",
        );
        assert_eq!(
            check(&crashed, &workload(30)),
            Err("0 of 1 SIP(s) fs exited with status 0".into())
        );
    }

    #[test]
    fn several_clients_are_checked_each_and_timed_together() {
        let one = Throughput::of(CONSOLE).unwrap();
        assert_eq!(
            one,
            Throughput {
                reads: 30,
                ticks: 100,
                cycles: 672538598
            }
        );
        assert!((one.files_per_second().unwrap() - 30.0).abs() < 1e-9);
        let short = Throughput { ticks: 9, ..one };
        assert_eq!(short.files_per_second(), None);
        assert_eq!(
            Throughput::from_figures(&Throughput::figures(Some(one))),
            Some(one)
        );
        assert_eq!(Throughput::from_figures(&Throughput::figures(None)), None);
        // A second client, started later and done later: the window spans both.
        let second = "[webfiles] webfiles: result reads=30 bytes=1 io_cycles=1 verify_cycles=1 total_cycles=1 verified=30 client=2 all_reads=30 began=5000 ended=900000000 began_tick=50 ended_tick=190\n\
[kernel] SIP webfiles (pid 4) exited with status 0\n";
        let two = format!("{CONSOLE}{second}");
        assert_eq!(check_clients(&two, &workload(30), 2), Ok(()));
        let both = Throughput::of(&two).unwrap();
        assert_eq!((both.reads, both.ticks, both.cycles), (60, 150, 899999000));
        assert!((both.files_per_second().unwrap() - 40.0).abs() < 1e-9);
        // Too few results, a client numbered twice, a client that did not exit 0.
        assert_eq!(
            check_clients(CONSOLE, &workload(30), 2),
            Err("1 client(s) printed a result; expected 2".into())
        );
        let twice = two.replace("client=2", "client=1");
        assert!(
            check_clients(&twice, &workload(30), 2)
                .unwrap_err()
                .contains("numbered [1, 1]")
        );
        let failed = two.replace(
            "(pid 4) exited with status 0",
            "(pid 4) exited with status 1",
        );
        assert_eq!(
            check_clients(&failed, &workload(30), 2),
            Err("1 of 2 SIP(s) webfiles exited with status 0".into())
        );
    }

    fn runs(values: &[u64]) -> Vec<Vec<Option<u64>>> {
        values
            .iter()
            .map(|&v| {
                let mut row = vec![None; WEBFILES.len()];
                row[HEADLINE] = Some(v);
                row
            })
            .collect()
    }

    #[test]
    fn slowdowns_are_against_the_soft_median_and_charted() {
        let raw = vec![
            (Config::interp(Isolation::Soft), runs(&[90, 100, 110])),
            (Config::interp(Isolation::Hard), runs(&[150, 140, 160])),
        ];
        let s = slowdowns(&raw);
        assert_eq!(s[0].config, Config::interp(Isolation::Soft));
        assert!((s[0].median - 0.0).abs() < 1e-9 && (s[0].lowest + 10.0).abs() < 1e-9);
        assert!((s[1].median - 50.0).abs() < 1e-9 && (s[1].highest - 60.0).abs() < 1e-9);
        // Fastest against fastest: 140 against 90.
        assert!((s[1].fastest - 5000.0 / 90.0).abs() < 1e-9, "{s:?}");
        let text = headline(&raw);
        assert!(text.contains("+50.0%") && text.contains("+37.7%"), "{text}");
        let svg = svg_chart(&raw, "TCG <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("+50.0%") && svg.contains("+37.7%") && svg.contains("TCG &lt;test&gt;")
        );
        let machine = Machine {
            host_cpu: "cpu".into(),
            host_cores: 2,
            qemu: "QEMU 7.2".into(),
            accel: "tcg".into(),
            pcid: "not available".into(),
        };
        let json: serde_json::Value =
            serde_json::from_str(&json(&machine, &Workload::QUICK, &raw, Some(&raw))).unwrap();
        assert_eq!(json["timed"]["slowdowns"][1]["singularity_percent"], 37.7);
        assert_eq!(json["icount"]["slowdowns"][1]["median_percent"], 50.0);
        assert_eq!(json["machine"]["accel"], "tcg");
        assert_eq!(
            json["timed"]["configurations"][1]["figures"]["I/O cycles per file read (open, 16 KiB reads, close)"]
                ["runs"][2],
            160
        );
    }

    #[test]
    fn compiled_configurations_are_against_compiled_soft() {
        let compiled = |isolation| Config {
            isolation,
            engine: bootpkg::Engine::Compiled,
            cpus: 1,
            clients: 1,
        };
        let raw = vec![
            (Config::interp(Isolation::Soft), runs(&[1000])),
            (Config::interp(Isolation::Hard), runs(&[1100])),
            (compiled(Isolation::Soft), runs(&[100])),
            (compiled(Isolation::Hard), runs(&[140])),
        ];
        let s = slowdowns(&raw);
        assert!((s[1].median - 10.0).abs() < 1e-9, "{s:?}");
        assert!(s[2].median.abs() < 1e-9, "{s:?}");
        assert!((s[3].median - 40.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn two_processor_configurations_are_against_two_processor_soft() {
        let on_two = |isolation| Config {
            cpus: 2,
            ..Config::interp(isolation)
        };
        assert_eq!(on_two(Isolation::Hard).name(), "hard@2cpu");
        assert!(
            on_two(Isolation::Hard)
                .description()
                .contains("2 processors")
        );
        let raw = vec![
            (Config::interp(Isolation::Soft), runs(&[1000])),
            (Config::interp(Isolation::Hard), runs(&[1100])),
            (on_two(Isolation::Soft), runs(&[1200])),
            (on_two(Isolation::Hard), runs(&[1500])),
        ];
        let s = slowdowns(&raw);
        assert!((s[1].median - 10.0).abs() < 1e-9, "{s:?}");
        assert!(s[2].median.abs() < 1e-9, "{s:?}");
        assert!((s[3].median - 25.0).abs() < 1e-9, "{s:?}");
    }
}
