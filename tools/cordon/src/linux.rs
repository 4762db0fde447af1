//! Linux in the same QEMU configuration, for the micro-benchmark table: Debian's
//! `linux-image-amd64` kernel booted with a one-file initramfs whose `/init` is a static
//! benchmark program (`tools/cordon/linux/bench.c`: getpid, pipe ping-pong between two
//! processes (also pinned to one CPU and to two, and four pairs at once), fork+exec+wait, semaphore ping-pong between two threads, sched_yield ping-pong,
//! demand-zero and copy-on-write
//! faults after fork, timed with the same serialised TSC read as Cordon's).
//!
//! The kernel comes from the Debian archive (`apt-get download`, unpacked with `dpkg-deb`)
//! and the program is compiled with the host's C compiler (`cc -static`); both are cached
//! in the directory given to [`prepare`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{Metric, after, before, count_after};

/// The benchmark program's source, compiled on the host.
const SOURCE: &str = include_str!("../linux/bench.c");

/// Linux's figures, labelled as the `micro` rows they stand beside.
pub const METRICS: &[Metric] = &[
    after(
        "minimum kernel call (abi_version), cycles",
        "linux: minimum system call (getpid)",
        "median ",
    ),
    after(
        "channel round trip, 1 B message",
        "linux: pipe round trip, 1 byte",
        "median ",
    ),
    after(
        "channel round trip, 16 B message",
        "linux: pipe round trip, 16 bytes",
        "median ",
    ),
    after(
        "channel round trip, 16 KiB copied",
        "linux: pipe round trip, 16 KiB copied",
        "median ",
    ),
    before(
        "4 echo pairs at once, elapsed cycles per round trip",
        "pipe pairs at once (",
        " cycles per round trip",
    ),
    after(
        "channel round trip, 16 B, both SIPs on CPU 0",
        "linux: pinned pipe round trip (16 bytes), both on CPU 0",
        "median ",
    ),
    after(
        "channel round trip, 16 B, client CPU 0, server CPU 1",
        "linux: pinned pipe round trip (16 bytes), CPU 0 to CPU 1",
        "median ",
    ),
    after(
        "SIP create+start+exit+reap (startup)",
        "linux: process create+start",
        "median ",
    ),
    before(
        "kernel thread switch",
        "linux: thread switch",
        " cycles per switch",
    ),
    after(
        "SIP-to-SIP yield (two SIPs ping-pong)",
        "linux: sched_yield ping-pong (two processes",
        "median ",
    ),
    after(
        "linux only: sched_yield ping-pong, two threads of one process",
        "linux: sched_yield ping-pong (two threads",
        "median ",
    ),
    after(
        "copy-on-write fault",
        "linux: copy-on-write fault",
        "median ",
    ),
    after("demand-zero fault", "linux: demand-zero fault", "median "),
    count_after(
        "linux: kernel page-table isolation (1 = on)",
        "linux: page-table isolation:",
        " ",
    ),
];

/// A bootable Linux with the benchmark as its init.
pub struct Prepared {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The Debian package the kernel came from.
    pub package: String,
}

/// Finds or fetches the kernel, compiles the benchmark and writes the initramfs in `dir`.
pub fn prepare(dir: &Path) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (kernel, package) = kernel(dir)?;
    let program = dir.join("bench");
    let source = dir.join("bench.c");
    std::fs::write(&source, SOURCE)?;
    if !crate::qemu::on_path("cc") {
        crate::qemu::install(
            &["gcc", "libc6-dev"],
            "a C compiler (for the Linux benchmark)",
        )?;
    }
    let output = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .context("running cc")?;
    if !output.status.success() {
        bail!(
            "cc -static {} failed (static C library missing? `apt-get install libc6-dev`):\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let initrd = dir.join("initrd.cpio");
    let init = std::fs::read(&program)?;
    std::fs::write(
        &initrd,
        newc(&[
            ("proc", 0o040_755, &[][..]),
            ("sys", 0o040_755, &[][..]),
            ("init", 0o100_755, &init[..]),
        ]),
    )?;
    Ok(Prepared {
        kernel,
        initrd,
        package,
    })
}

/// The cached kernel, or Debian's current `linux-image-amd64` fetched into `dir`.
fn kernel(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let cached = |dir: &Path| -> Option<(PathBuf, String)> {
        let entry = std::fs::read_dir(dir.join("boot"))
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let package = format!("linux-image-{}", name.trim_start_matches("vmlinuz-"));
        Some((entry.path(), package))
    };
    if let Some(found) = cached(dir) {
        return Ok(found);
    }
    let explain =
        "the Linux comparison needs Debian's kernel package (apt-get download linux-image-amd64)";
    let depends = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context(explain)?;
    let package = String::from_utf8_lossy(&depends.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .map(|rest| format!("linux-image-{rest}"))
        .with_context(|| {
            format!("{explain}: apt-cache knows no linux-image-amd64 (apt-get update?)")
        })?;
    eprintln!("[cordon] fetching {package} (Debian's kernel, for the Linux comparison)");
    let output = Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(dir)
        .output()
        .context(explain)?;
    if !output.status.success() {
        bail!(
            "{explain}: `apt-get download {package}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let deb = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x ./boot",
            deb.display()
        ))
        .current_dir(dir)
        .status()
        .context("unpacking the kernel package")?;
    let _ = std::fs::remove_file(&deb);
    if !status.success() {
        bail!("unpacking {} failed ({status})", deb.display());
    }
    cached(dir).with_context(|| format!("{package} holds no /boot/vmlinuz-*"))
}

/// A cpio archive in the "newc" format the kernel unpacks as its initramfs.
pub fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn pad(out: &mut Vec<u8>) {
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    let trailer = [("TRAILER!!!", 0, &[][..])];
    for (ino, (name, mode, data)) in entries.iter().chain(trailer.iter()).enumerate() {
        let fields = [
            ino as u32 + 1,
            *mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(&mut out);
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out
}

/// Boots the prepared Linux under TCG (the same `-cpu max`, memory, processor count and
/// clock mode as Cordon's boots) and returns its console.
pub fn boot(
    linux: &Prepared,
    memory_mib: u32,
    cpus: u32,
    icount: bool,
    timeout: Duration,
) -> anyhow::Result<String> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        &format!("{memory_mib}M"),
    ])
    .args([
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(&linux.kernel)
    .arg("-initrd")
    .arg(&linux.initrd)
    .args(["-append", "console=ttyS0 quiet panic=-1"]);
    if cpus > 1 {
        qemu.args(["-smp", &cpus.to_string()]);
    }
    if icount {
        qemu.args(["-icount", "shift=0,sleep=off"]);
    }
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 for Linux")?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Linux did not power off within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let console = reader.join().unwrap_or_default();
    if !console.contains("linux: bench done") {
        bail!("the Linux benchmark did not finish; its console:\n{console}");
    }
    Ok(console)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_archives_are_padded_and_end_with_the_trailer() {
        let archive = newc(&[("init", 0o100_755, b"abc")]);
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
        // Header 110 bytes + "init\0" padded to 116, data padded to 4, then the trailer.
        assert_eq!(&archive[110..115], b"init\0");
        assert_eq!(&archive[116..119], b"abc");
        assert_eq!(
            &archive[6 + 6 * 8..6 + 7 * 8],
            b"00000003",
            "file size field"
        );
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("TRAILER!!!"));
    }

    #[test]
    fn figures_line_up_with_the_micro_rows() {
        let console = "\
linux: minimum system call (getpid): median 2290 cycles/call (empty loop 7 subtracted)
linux: pipe round trip, 1 byte: median 301234 cycles (200 round trips)
linux: pipe round trip, 16 bytes: median 306642 cycles (200 round trips)
linux: pipe round trip, 16 KiB copied: median 1077044 cycles (200 round trips)
linux: pinned pipe round trip (16 bytes), both on CPU 0: median 290001 cycles (200 round trips)
linux: pinned pipe round trip (16 bytes), CPU 0 to CPU 1: median 410002 cycles (200 round trips)
linux: 4 pipe pairs at once (2 CPUs, 200 checked round trips each): 160000000 cycles, 200000 cycles per round trip
linux: process create+start (fork, exec, exit, wait; 9 runs): median 15523739 cycles
linux: thread switch (semaphore ping-pong, 2000 round trips): 41234 cycles per switch
linux: sched_yield ping-pong (two processes, one CPU): median 4424 cycles/yield (7 trials x 1000 yields)
linux: sched_yield ping-pong (two threads of one process, one CPU): median 3987 cycles/yield (7 trials x 1000 yields)
linux: copy-on-write fault (fault, copy 4 KiB; 4096 pages per pass, 3 passes): median 30511 cycles per page
linux: demand-zero fault (first write to anonymous memory; 4096 pages per pass, 3 passes): median 12345 cycles per page
linux: page-table isolation: 1
";
        let figures = crate::bench::parse(METRICS, console);
        assert_eq!(
            figures,
            vec![
                Some(2290),
                Some(301234),
                Some(306642),
                Some(1077044),
                Some(200000),
                Some(290001),
                Some(410002),
                Some(15523739),
                Some(41234),
                Some(4424),
                Some(3987),
                Some(30511),
                Some(12345),
                Some(1)
            ]
        );
        for metric in &METRICS[..METRICS.len() - 1] {
            assert!(
                crate::bench::MICRO.iter().any(|m| m.label == metric.label),
                "{}",
                metric.label
            );
        }
    }
}
