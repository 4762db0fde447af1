//! Comparing isolation configurations: a workload (the kernel's `micro` suite, or the
//! WebFiles system) booted once per configuration and repetition, its figures read from the
//! console and set side by side, each as a ratio to the soft baseline measured in the same
//! run of this command.

use bootpkg::{Engine, Isolation};

/// One configuration a benchmark boots: an isolation configuration, the engine that runs
/// the SIPs and the processors of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub isolation: Isolation,
    pub engine: Engine,
    /// Processors (QEMU `-smp`); 1 unless `bench --cpus` asks for more.
    pub cpus: u32,
    /// WebFiles clients sharing the file system; 1 unless `bench --clients` asks for more.
    pub clients: u32,
}

impl Config {
    pub fn interp(isolation: Isolation) -> Config {
        Config {
            isolation,
            engine: Engine::Interp,
            cpus: 1,
            clients: 1,
        }
    }

    /// `soft`, `hard`, … for interpreted SIPs; `soft+compiled`, `hard+compiled`, … for
    /// compiled ones; `@2cpu` after either on two processors; `-4clients` after that for
    /// four WebFiles clients.
    pub fn name(&self) -> String {
        let mut name = match self.engine {
            Engine::Interp => self.isolation.name().to_string(),
            Engine::Compiled => format!("{}+compiled", self.isolation.name()),
        };
        if self.cpus != 1 {
            name.push_str(&format!("@{}cpu", self.cpus));
        }
        if self.clients != 1 {
            name.push_str(&format!("-{}clients", self.clients));
        }
        name
    }

    pub fn description(&self) -> String {
        let engine = match self.engine {
            Engine::Interp => "SIPs interpreted (wasmi)",
            Engine::Compiled => "SIPs compiled ahead of time (Cranelift)",
        };
        let cpus = match self.cpus {
            1 => String::new(),
            n => format!("; {n} processors (SIP threads on every one)"),
        };
        format!("{}; {engine}{cpus}", self.isolation.description())
    }
}

/// The SIP modules the kernel's `micro` suite starts (one list, the kernel's too).
pub use bootpkg::MICRO_SIPS;

/// How to find one figure on the console: the line containing `line`, then the number
/// right after `after` (or right before `before`) in the rest of that line.
pub struct Metric {
    pub label: &'static str,
    line: &'static str,
    find: Find,
    /// A count of events (shown without a ratio), not a cost in cycles.
    pub count: bool,
}

enum Find {
    After(&'static str),
    Before(&'static str),
    /// Not read but computed: the sum of earlier figures (by label) times a cost each.
    Estimate(&'static [(&'static str, u64)]),
}

/// A cost in cycles found right after `marker` on the line containing `line`.
pub(crate) const fn after(label: &'static str, line: &'static str, marker: &'static str) -> Metric {
    metric(label, line, Find::After(marker), false)
}

/// A cost in cycles found right before `marker`.
pub(crate) const fn before(
    label: &'static str,
    line: &'static str,
    marker: &'static str,
) -> Metric {
    metric(label, line, Find::Before(marker), false)
}

/// A count found right before `marker`.
pub(crate) const fn count(label: &'static str, line: &'static str, marker: &'static str) -> Metric {
    metric(label, line, Find::Before(marker), true)
}

/// A count found right after `marker`.
pub(crate) const fn count_after(
    label: &'static str,
    line: &'static str,
    marker: &'static str,
) -> Metric {
    metric(label, line, Find::After(marker), true)
}

/// A figure computed from earlier figures of the same run: Σ figure × cost.
pub(crate) const fn estimate(label: &'static str, terms: &'static [(&'static str, u64)]) -> Metric {
    metric(label, "", Find::Estimate(terms), false)
}

const fn metric(label: &'static str, line: &'static str, find: Find, count: bool) -> Metric {
    Metric {
        label,
        line,
        find,
        count,
    }
}

/// Every figure of the `micro` suite, in table order.
pub const MICRO: &[Metric] = &[
    after(
        "minimum kernel call (abi_version), cycles",
        "[abi-bench] minimum kernel call",
        "median ",
    ),
    after(
        "channel round trip, 1 B message",
        "[echo-client] round trip, 1-byte message",
        "median ",
    ),
    after(
        "channel round trip, 16 B message",
        "[echo-client] round trip, 16-byte message",
        "median ",
    ),
    after(
        "channel round trip, 16 KiB copied",
        "[echo-client] round trip, 16 KiB copied",
        "median ",
    ),
    after(
        "channel round trip, 16 KiB buffer moved",
        "[echo-client] round trip, 16 KiB exchange-heap buffer moved",
        "median ",
    ),
    after(
        "SIP create+start (hello)",
        "SIP create+start (hello",
        "median ",
    ),
    after(
        "SIP create+start+exit+reap (startup)",
        "SIP create+start+exit+reap (startup",
        "median ",
    ),
    before(
        "kernel thread switch",
        "kernel thread switch",
        " cycles per switch",
    ),
    after(
        "SIP-to-SIP yield (two SIPs ping-pong)",
        "[yield] yield ping-pong (two SIPs)",
        "median ",
    ),
    // Linux only (SIPs have one thread each): the yield row without an address-space
    // switch, the like-for-like figure for `soft`. Cordon never prints this line.
    after(
        "linux only: sched_yield ping-pong, two threads of one process",
        "linux: sched_yield ping-pong (two threads",
        "median ",
    ),
    after(
        "SIP fork (ring-3 runtime image)",
        "SIP fork (ring-3",
        "median ",
    ),
    after(
        "SIP fork (ring-0 runtime image)",
        "SIP fork (ring-0",
        "median ",
    ),
    after(
        "cross-processor call (IPI to CPU 1 and its reply)",
        "cross-processor call (",
        "median ",
    ),
    after(
        "invlpg of one kernel page, this CPU only",
        "invlpg of one kernel page (",
        "median ",
    ),
    after(
        "TLB shootdown of one kernel page, 2 CPUs",
        "TLB shootdown of one kernel page (",
        "median ",
    ),
    before(
        "4 echo pairs at once, elapsed cycles per round trip",
        "echo pairs at once (",
        " cycles per round trip",
    ),
    before(
        "4 echo pairs, channel manager alone for every operation (as one global lock)",
        "echo pairs, one channel lock for all (",
        " cycles per round trip",
    ),
    after(
        "channel round trip, 16 B, both SIPs on CPU 0",
        "[echo-client] one CPU: round trip, 16-byte message",
        "median ",
    ),
    after(
        "channel round trip, 16 B, client CPU 0, server CPU 1",
        "[echo-client] across two CPUs: round trip, 16-byte message",
        "median ",
    ),
    after("copy-on-write fault", "copy-on-write fault (", "median "),
    after("demand-zero fault", "demand-zero fault (", "median "),
    after(
        "compute mix, native in the kernel",
        "compute mix natively in the kernel",
        "median ",
    ),
    before("compute mix, as a SIP", "[compute] compute mix:", " cycles"),
    count(
        "echo pair: system calls",
        "counters (echo pair)",
        " system calls",
    ),
    count("echo pair: CR3 loads", "counters (echo pair)", " CR3 loads"),
    count(
        "echo pair: context switches",
        "counters (echo pair)",
        " context switches",
    ),
    count(
        "echo pair: demand-zero faults",
        "counters (echo pair)",
        " demand-zero faults",
    ),
    count(
        "echo pair: channel messages",
        "counters (echo pair)",
        " channel messages",
    ),
    count(
        "echo pair: messages delivered directly",
        "counters (echo pair)",
        " delivered directly",
    ),
    count(
        "echo pair: bytes copied by the kernel",
        "counters (echo pair)",
        " bytes copied by the kernel",
    ),
];

/// The kernel's counter line for a whole system run.
const RUN: &str = "counters (system run)";
/// The kernel supervisor's end-of-run line.
const SUPERVISOR: &str = "supervisor: ";

/// Every figure of the WebFiles system, in table order. Cycle figures come from the client
/// (its measured reads); counts cover the whole system run (start-up and warm-up too).
pub const WEBFILES: &[Metric] = &[
    before(
        "I/O cycles per file read (open, 16 KiB reads, close)",
        "[webfiles] webfiles: classes read",
        " cycles per read in I/O",
    ),
    after(
        "measured reads, total cycles (incl. checksums)",
        "[webfiles] webfiles: result",
        "total_cycles=",
    ),
    after(
        "  of which checksum verification (client)",
        "[webfiles] webfiles: result",
        "verify_cycles=",
    ),
    count(
        "file reads measured",
        "[webfiles] webfiles: result",
        " bytes=",
    ),
    count(
        "bytes read (measured)",
        "[webfiles] webfiles: result",
        " io_cycles=",
    ),
    count(
        "disk requests (DMA)",
        "[virtio-blk] virtio-blk: served",
        " requests,",
    ),
    // Recovery (the system manifest's restart policies; `--inject` makes it happen).
    count(
        "recovery: SIPs restarted by the supervisor",
        SUPERVISOR,
        " restarts",
    ),
    count_after(
        "recovery: files read again by the client",
        "[webfiles] webfiles: recovery:",
        "retried=",
    ),
    count_after(
        "recovery: idempotent requests the bindings sent again",
        "[webfiles] webfiles: recovery:",
        "resent=",
    ),
    count_after(
        "recovery: disk reads sent again by the file system",
        "[fs] fs: recovery:",
        "retried=",
    ),
    after(
        "recovery: failure to first reply from the new SIP, median",
        SUPERVISOR,
        "median ",
    ),
    after(
        "recovery: failure to first reply from the new SIP, worst",
        SUPERVISOR,
        "worst ",
    ),
    count("run: system calls", RUN, " system calls"),
    count("run: CR3 loads", RUN, " CR3 loads"),
    count("run: TLB invalidations (invlpg)", RUN, " TLB invalidations"),
    count(
        "run: TLB shootdowns (other CPUs asked)",
        RUN,
        " TLB shootdowns",
    ),
    count("run: IPIs sent", RUN, " IPIs sent"),
    count("run: context switches", RUN, " context switches"),
    count("run: demand-zero faults", RUN, " demand-zero faults"),
    count("run: copy-on-write faults", RUN, " copy-on-write faults"),
    count("run: channel messages", RUN, " channel messages"),
    count(
        "run: messages delivered directly",
        RUN,
        " delivered directly",
    ),
    count(
        "run: bytes copied by the kernel",
        RUN,
        " bytes copied by the kernel",
    ),
    count("run: device interrupts", RUN, " device interrupts"),
    count(
        "run: device register accesses",
        RUN,
        " device register accesses",
    ),
    count(
        "run: idle cycles (halted, nothing to run)",
        RUN,
        " idle cycles",
    ),
    before("run: busy cycles (not halted)", RUN, " busy cycles"),
    before(
        "run: longest interrupts-masked lock section, cycles",
        RUN,
        " cycles longest interrupts-masked",
    ),
    // TCG makes a CR3 load cost a flush of QEMU's whole software TLB, and `-icount` counts
    // none of the hardware's cost: this prices the counted events at the anchors note's
    // hardware figures instead (entry/exit 50-200 cycles, CR3 load < 300 without a full
    // TLB refill, INVLPG ~350, minor fault 1,800-3,200).
    estimate(
        "run: isolation events at hardware cost (estimate)",
        &[
            ("run: system calls", 150),
            ("run: CR3 loads", 300),
            ("run: TLB invalidations (invlpg)", 350),
            ("run: demand-zero faults", 2_500),
            ("run: copy-on-write faults", 2_500),
        ],
    ),
];

/// One configuration's figures, in `metrics` order (`None`: not printed in this run).
pub fn parse(metrics: &[Metric], console: &str) -> Vec<Option<u64>> {
    let mut figures: Vec<Option<u64>> = Vec::with_capacity(metrics.len());
    for metric in metrics {
        let figure = match metric.find {
            Find::Estimate(terms) => terms.iter().try_fold(0u64, |sum, &(label, cost)| {
                let at = metrics.iter().position(|m| m.label == label)?;
                Some(sum + figures.get(at).copied().flatten()? * cost)
            }),
            _ => read(metric, console),
        };
        figures.push(figure);
    }
    figures
}

/// One figure read from the console.
fn read(metric: &Metric, console: &str) -> Option<u64> {
    let line = console.lines().find(|l| l.contains(metric.line))?;
    let rest = &line[line.find(metric.line)? + metric.line.len()..];
    match metric.find {
        Find::After(marker) => {
            let tail = &rest[rest.find(marker)? + marker.len()..];
            let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        }
        Find::Before(marker) => {
            let head = &rest[..rest.find(marker)?];
            let digits: String = head
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits.parse().ok()
        }
        Find::Estimate(_) => None,
    }
}

/// Every raw figure as CSV: `configuration,run,metric,value`, one line per figure a run
/// printed (runs numbered from 1).
/// What heads a column: a configuration, or another system (e.g. `linux`).
pub trait Column {
    fn column(&self) -> String;
}

impl Column for Config {
    fn column(&self) -> String {
        self.name()
    }
}

impl Column for Isolation {
    fn column(&self) -> String {
        self.name().to_string()
    }
}

impl Column for String {
    fn column(&self) -> String {
        self.clone()
    }
}

impl Column for &str {
    fn column(&self) -> String {
        self.to_string()
    }
}

pub fn csv<C: Column>(metrics: &[Metric], results: &[(C, Vec<Vec<Option<u64>>>)]) -> String {
    let mut out = String::from("configuration,run,metric,value\n");
    for (isolation, runs) in results {
        for (run, figures) in runs.iter().enumerate() {
            for (metric, value) in metrics.iter().zip(figures) {
                if let Some(value) = value {
                    out.push_str(&format!(
                        "{},{},\"{}\",{value}\n",
                        isolation.column(),
                        run + 1,
                        metric.label.trim()
                    ));
                }
            }
        }
    }
    out
}

/// A figure over repeated runs: the median and the spread ((max - min) / median).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: u64,
    pub spread: f64,
}

/// Summarises each metric over `runs` (each from [`parse`]); `None` where no run has it.
pub fn summarise(runs: &[Vec<Option<u64>>]) -> Vec<Option<Summary>> {
    let rows = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..rows)
        .map(|row| {
            let mut values: Vec<u64> = runs.iter().filter_map(|r| r[row]).collect();
            if values.is_empty() {
                return None;
            }
            values.sort_unstable();
            let median = values[values.len() / 2];
            let spread = (values[values.len() - 1] - values[0]) as f64 / median.max(1) as f64;
            Some(Summary { median, spread })
        })
        .collect()
}

/// The comparison table: one row per metric, one column per configuration: the median
/// over runs, its ratio to the first column (soft) and the spread of the runs.
pub fn table<C: Column>(metrics: &[Metric], results: &[(C, Vec<Option<Summary>>)]) -> String {
    const WIDTH: usize = 26;
    let mut out = format!("{:<52}", "median TSC cycles (ratio to soft) ±spread");
    for (isolation, _) in results {
        out.push_str(&format!(" {:>WIDTH$}", isolation.column()));
    }
    out.push('\n');
    for (row, metric) in metrics.iter().enumerate() {
        if results.iter().all(|(_, figures)| figures[row].is_none()) {
            continue;
        }
        out.push_str(&format!("{:<52}", metric.label));
        let base = results.first().and_then(|(_, figures)| figures[row]);
        for (_, figures) in results {
            let cell = match (figures[row], base) {
                (None, _) => "-".to_string(),
                (Some(v), _) if metric.count => v.median.to_string(),
                (Some(v), Some(b)) if b.median > 0 => format!(
                    "{} ({:.2}x) ±{:.0}%",
                    v.median,
                    v.median as f64 / b.median as f64,
                    v.spread * 100.0
                ),
                (Some(v), _) => format!("{} ±{:.0}%", v.median, v.spread * 100.0),
            };
            out.push_str(&format!(" {cell:>WIDTH$}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[abi-bench] minimum kernel call (abi_version): median 3328 cycles/call, min 3003
  kernel thread switch (semaphore ping-pong, 2000 round trips): 2812 cycles per switch
[echo-client] round trip, 16-byte message: median 1104068 cycles (201 calls)
  counters (echo pair): 2629 system calls, 1228 CR3 loads, 1241 context switches, 319 demand-zero faults, 1 copy-on-write faults, 1207 channel messages (1200 delivered directly), 6621447 bytes copied by the kernel
";

    #[test]
    fn figures_are_read_from_the_console() {
        let figures = parse(MICRO, CONSOLE);
        let get = |label: &str| {
            let i = MICRO.iter().position(|m| m.label == label).unwrap();
            figures[i]
        };
        assert_eq!(get("minimum kernel call (abi_version), cycles"), Some(3328));
        assert_eq!(get("kernel thread switch"), Some(2812));
        assert_eq!(get("channel round trip, 16 B message"), Some(1104068));
        assert_eq!(get("echo pair: system calls"), Some(2629));
        assert_eq!(get("echo pair: CR3 loads"), Some(1228));
        assert_eq!(get("echo pair: demand-zero faults"), Some(319));
        assert_eq!(get("echo pair: messages delivered directly"), Some(1200));
        assert_eq!(get("echo pair: bytes copied by the kernel"), Some(6621447));
        assert_eq!(get("SIP fork (ring-3 runtime image)"), None);
    }

    #[test]
    fn table_shows_ratios_to_the_first_configuration() {
        let soft = parse(MICRO, CONSOLE);
        let mut hard = soft.clone();
        hard[0] = Some(6656);
        let mut hard_again = hard.clone();
        hard_again[0] = Some(7000);
        let text = table(
            MICRO,
            &[
                (Isolation::Soft, summarise(&[soft])),
                (
                    Isolation::Hard,
                    summarise(&[hard.clone(), hard, hard_again]),
                ),
            ],
        );
        assert!(text.contains("6656 (2.00x) ±5%"), "{text}");
        assert!(text.contains("3328 (1.00x) ±0%"), "{text}");
        // Counts carry no ratio; rows nobody measured are left out.
        assert!(text.contains(" 2629 "), "{text}");
        assert!(!text.contains("SIP fork (ring-0"), "{text}");
    }

    #[test]
    fn csv_has_every_raw_figure() {
        let runs = vec![parse(MICRO, CONSOLE), parse(MICRO, CONSOLE)];
        let text = csv(MICRO, &[(Isolation::Hard, runs)]);
        assert!(text.starts_with("configuration,run,metric,value\n"));
        assert!(
            text.contains("hard,2,\"kernel thread switch\",2812\n"),
            "{text}"
        );
        let lines = text.lines().count() - 1;
        let per_run = parse(MICRO, CONSOLE).iter().flatten().count();
        assert_eq!(lines, 2 * per_run);
    }

    #[test]
    fn summaries_take_the_median_and_spread() {
        let runs = vec![vec![Some(10); MICRO.len()], vec![Some(30); MICRO.len()], {
            let mut r = vec![Some(20); MICRO.len()];
            r[1] = None;
            r
        }];
        let s = summarise(&runs);
        assert_eq!(
            s[0],
            Some(Summary {
                median: 20,
                spread: 1.0
            })
        );
        assert_eq!(s[1].unwrap().median, 30); // of the two runs that have it
    }
}
