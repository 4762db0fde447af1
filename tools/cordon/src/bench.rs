//! Comparing isolation configurations: the kernel's `micro` suite booted once per
//! configuration, its figures read from the console and set side by side, each as a ratio
//! to the soft baseline measured in the same run of this command.

use bootpkg::Isolation;

/// How to find one figure on the console: the line containing `line`, then the number
/// right after `after` (or right before `before`) in the rest of that line.
pub struct Metric {
    pub label: &'static str,
    line: &'static str,
    find: Find,
}

enum Find {
    After(&'static str),
    Before(&'static str),
}

const fn after(label: &'static str, line: &'static str, marker: &'static str) -> Metric {
    Metric {
        label,
        line,
        find: Find::After(marker),
    }
}

const fn before(label: &'static str, line: &'static str, marker: &'static str) -> Metric {
    Metric {
        label,
        line,
        find: Find::Before(marker),
    }
}

/// Every figure the comparison reports, in table order.
pub const METRICS: &[Metric] = &[
    after(
        "minimum kernel call (abi_version), cycles",
        "[abi-bench] minimum kernel call",
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
    before(
        "kernel thread switch",
        "kernel thread switch",
        " cycles per switch",
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
    after("copy-on-write fault", "copy-on-write fault (", "median "),
    before(
        "echo pair: system calls",
        "counters (echo pair)",
        " system calls",
    ),
    before("echo pair: CR3 loads", "counters (echo pair)", " CR3 loads"),
    before(
        "echo pair: context switches",
        "counters (echo pair)",
        " context switches",
    ),
    before(
        "echo pair: demand-zero faults",
        "counters (echo pair)",
        " demand-zero faults",
    ),
    before(
        "echo pair: channel messages",
        "counters (echo pair)",
        " channel messages",
    ),
    before(
        "echo pair: bytes copied by the kernel",
        "counters (echo pair)",
        " bytes copied by the kernel",
    ),
];

/// Rows whose figures are counts, not cycles (no ratio is printed for them).
fn is_count(metric: &Metric) -> bool {
    metric.label.starts_with("echo pair:")
}

/// One configuration's figures, in [`METRICS`] order (`None`: not printed in this run).
pub fn parse(console: &str) -> Vec<Option<u64>> {
    METRICS
        .iter()
        .map(|metric| {
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
            }
        })
        .collect()
}

/// The comparison table: one row per metric, one column per configuration, cycles with
/// the ratio to the first column (soft) in parentheses.
pub fn table(results: &[(Isolation, Vec<Option<u64>>)]) -> String {
    let mut out = format!("{:<42}", "TSC cycles (median) / count");
    for (isolation, _) in results {
        out.push_str(&format!(" {:>20}", isolation.name()));
    }
    out.push('\n');
    for (row, metric) in METRICS.iter().enumerate() {
        if results.iter().all(|(_, figures)| figures[row].is_none()) {
            continue;
        }
        out.push_str(&format!("{:<42}", metric.label));
        let base = results.first().and_then(|(_, figures)| figures[row]);
        for (_, figures) in results {
            let cell = match (figures[row], base) {
                (None, _) => "-".to_string(),
                (Some(v), Some(b)) if !is_count(metric) && b > 0 => {
                    format!("{v} ({:.2}x)", v as f64 / b as f64)
                }
                (Some(v), _) => v.to_string(),
            };
            out.push_str(&format!(" {cell:>20}"));
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
  counters (echo pair): 2629 system calls, 1228 CR3 loads, 1241 context switches, 319 demand-zero faults, 1 copy-on-write faults
";

    #[test]
    fn figures_are_read_from_the_console() {
        let figures = parse(CONSOLE);
        let get = |label: &str| {
            let i = METRICS.iter().position(|m| m.label == label).unwrap();
            figures[i]
        };
        assert_eq!(get("minimum kernel call (abi_version), cycles"), Some(3328));
        assert_eq!(get("kernel thread switch"), Some(2812));
        assert_eq!(get("channel round trip, 16 B message"), Some(1104068));
        assert_eq!(get("echo pair: system calls"), Some(2629));
        assert_eq!(get("echo pair: CR3 loads"), Some(1228));
        assert_eq!(get("echo pair: demand-zero faults"), Some(319));
        assert_eq!(get("SIP fork (ring-3 runtime image)"), None);
    }

    #[test]
    fn table_shows_ratios_to_the_first_configuration() {
        let soft = parse(CONSOLE);
        let mut hard = soft.clone();
        hard[0] = Some(6656);
        let text = table(&[(Isolation::Soft, soft), (Isolation::Hard, hard)]);
        assert!(text.contains("6656 (2.00x)"), "{text}");
        assert!(text.contains("3328 (1.00x)"), "{text}");
        // Counts carry no ratio; rows nobody measured are left out.
        assert!(text.contains(" 2629 "), "{text}");
        assert!(!text.contains("SIP fork (ring-0"), "{text}");
    }
}
