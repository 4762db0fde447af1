//! Booting Cordon in QEMU: finding (or installing) QEMU and firmware, choosing the
//! accelerator, running the image, streaming the serial console and turning the exit
//! status into a [`Verdict`].
//!
//! The kernel powers off through `isa-debug-exit` (iobase 0xf4): QEMU then exits with 33
//! when everything ended cleanly and 35 when the kernel reported a failure. Any other
//! status (QEMU's own errors, 0 after a triple fault under `-no-reboot`) is neither.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bootpkg::{BootConfig, BootPackage, Isolation, LogLevel};

use crate::image::{Firmware, build_image, work_dir};

const QEMU: &str = "qemu-system-x86_64";
const EXIT_PASSED: i32 = 33;
const EXIT_FAILED: i32 = 35;
/// Debian's OVMF build, (code, variables template), newest name first.
const OVMF_CANDIDATES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
];

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation (TCG): works everywhere; timings are emulated cost.
    Tcg,
    /// Hardware virtualisation through /dev/kvm, for real hardware with VT-x/AMD-V.
    Kvm,
}

/// Everything that decides one boot.
#[derive(Clone, Debug)]
pub struct BootOptions {
    pub isolation: Isolation,
    /// The engine that runs SIPs (the system manifest may choose another for one entry).
    pub engine: bootpkg::Engine,
    pub log_level: LogLevel,
    /// Kernel self-test group to run instead of the normal system.
    pub self_test: Option<String>,
    /// Kernel benchmark suite to run instead of the normal system.
    pub bench: Option<String>,
    /// The system manifest: SIPs to start, in order, and the channels between them. Each
    /// SIP module also goes into the boot package, where self-tests find it.
    pub system: crate::system::System,
    pub firmware: Firmware,
    pub accel: Accel,
    /// Start QEMU halted, waiting for a debugger on localhost:1234.
    pub gdb: bool,
    pub memory_mib: u32,
    /// Processors the machine has (QEMU's `-smp`); the kernel starts every one the
    /// firmware lists. Under TCG each runs on a host thread of its own (except with
    /// `-icount`, which runs them all on one).
    pub cpus: u32,
    /// A raw disk image attached as a virtio-blk PCI device (e.g. the WebFiles image).
    pub disk: Option<std::path::PathBuf>,
    /// TCG only: QEMU's `-icount shift=0`: the guest clock (and so its time-stamp counter)
    /// advances with every guest instruction executed, so "cycles" become a deterministic
    /// count proportional to guest instructions, blind to host noise and to TLB refills.
    pub icount: bool,
    /// Copy the console to this process's stdout as it arrives.
    pub echo: bool,
    /// Faults the kernel injects (`--inject`), to exercise recovery.
    pub injections: Vec<bootpkg::Injection>,
    /// Kill QEMU after this long (a safety net, not a measurement).
    pub timeout: Option<Duration>,
    /// What the guest's console receives as typed input.
    pub input: ConsoleInput,
}

/// Where typed console input comes from (the console SIP reads it; see `systems/shell.toml`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ConsoleInput {
    /// Nothing is typed.
    #[default]
    None,
    /// This terminal: QEMU reads the runner's standard input.
    Terminal,
    /// These lines, each typed once the shell's prompt ([`SHELL_PROMPT`]) has appeared one
    /// more time: line 1 after the first prompt, line 2 after the second, and so on.
    Script(Vec<String>),
}

/// The prompt the shell SIP prints before reading a line.
pub const SHELL_PROMPT: &str = "cordon> ";

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            isolation: Isolation::Soft,
            engine: bootpkg::Engine::Interp,
            log_level: LogLevel::Info,
            self_test: None,
            bench: None,
            system: crate::system::load("default").expect("systems/default.toml is valid"),
            firmware: Firmware::Bios,
            accel: Accel::Tcg,
            gdb: false,
            memory_mib: 256,
            cpus: 1,
            disk: None,
            icount: false,
            injections: Vec::new(),
            echo: false,
            timeout: Some(Duration::from_secs(300)),
            input: ConsoleInput::None,
        }
    }
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel powered off reporting success (QEMU status 33).
    Passed,
    /// The kernel powered off reporting failure (QEMU status 35): a panic, a failed
    /// self-test, a refused configuration.
    Failed,
    /// QEMU ended some other way: its own error, a triple fault, a signal.
    QemuExited(Option<i32>),
    /// Killed after the timeout.
    TimedOut,
}

/// What one boot produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Everything the kernel wrote to the serial console, and QEMU's own messages.
    pub console: String,
    /// From starting QEMU to the kernel's banner line.
    pub banner_after: Option<Duration>,
    /// From starting QEMU to its exit.
    pub wall: Duration,
}

/// The line prefix the kernel's banner starts with.
pub const BANNER_PREFIX: &str = "Cordon ";
const BANNER_WORD: &str = " booted: ";

static SETUP: Mutex<()> = Mutex::new(());

pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Installs Debian packages when running as root with apt; otherwise explains how.
pub(crate) fn install(packages: &[&str], missing: &str) -> anyhow::Result<()> {
    let command = format!("apt-get install -y {}", packages.join(" "));
    if !(is_root() && on_path("apt-get")) {
        bail!("{missing} is not installed. Install it with:\n    sudo {command}");
    }
    eprintln!("[cordon] {missing} is missing; installing: {command}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive {command} -qq"
        ))
        .stdout(Stdio::null())
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("`{command}` failed ({status}); install {missing} by hand and retry");
    }
    Ok(())
}

/// Makes sure QEMU (and OVMF for UEFI) is installed; returns the OVMF files if asked.
pub fn ensure_installed(firmware: Firmware) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let _once = SETUP.lock().unwrap_or_else(|poison| poison.into_inner());
    if !on_path(QEMU) {
        install(&["qemu-system-x86"], QEMU)?;
    }
    if firmware == Firmware::Bios {
        return Ok(None);
    }
    let find = || {
        OVMF_CANDIDATES
            .iter()
            .find(|(code, vars)| Path::new(code).is_file() && Path::new(vars).is_file())
            .map(|(code, vars)| (PathBuf::from(code), PathBuf::from(vars)))
    };
    if find().is_none() {
        install(&["ovmf"], "UEFI firmware (OVMF)")?;
    }
    find()
        .map(Some)
        .context("OVMF installed but its firmware files were not found")
}

/// Checks that KVM can really run guests here (the device exists and the processor has
/// VT-x or AMD-V).
pub fn kvm_usable() -> Result<(), String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Err("/dev/kvm cannot be opened".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    if !flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        return Err(
            "the processor shows neither vmx nor svm (a paravirtual /dev/kvm cannot run guests)"
                .into(),
        );
    }
    Ok(())
}

/// Builds the image for `options`, boots it and waits for the verdict.
pub fn boot(options: &BootOptions) -> anyhow::Result<Outcome> {
    boot_package(options, &package(options)?)
}

/// The boot package for `options`: the system's modules and contracts, the bundled
/// programs and, when some SIP runs compiled, every module's compiled artifact.
pub fn package(options: &BootOptions) -> anyhow::Result<BootPackage> {
    let mut files: Vec<bootpkg::File> = options
        .system
        .contract_files()?
        .into_iter()
        .map(|f| bootpkg::File {
            name: f.name,
            data: f.bytes,
        })
        .collect();
    for name in options.system.sips.iter().chain(&options.system.modules) {
        if !files.iter().any(|f| &f.name == name) {
            files.push(bootpkg::File {
                name: name.clone(),
                data: options.system.module(name)?,
            });
        }
    }
    let engines = options.system.engines.clone();
    let compiled = options.engine == bootpkg::Engine::Compiled
        || engines.iter().any(|(_, e)| *e == bootpkg::Engine::Compiled);
    let artifacts = if compiled {
        crate::compile::artifacts(&files)?
    } else {
        Vec::new()
    };
    let package = BootPackage {
        config: BootConfig {
            isolation: options.isolation,
            log_level: options.log_level,
            self_test: options.self_test.clone(),
            bench: options.bench.clone(),
            engine: options.engine,
            injections: options.injections.clone(),
        },
        restarts: options.system.restarts.clone(),
        args: options.system.args.clone(),
        engines,
        artifacts,
        sips: options.system.sips.clone(),
        on_request: options.system.on_request.clone(),
        channels: options.system.channels.clone(),
        files,
        client: options.system.client,
        programs: if needs_programs(options) {
            crate::program::bundled()?
        } else {
            Vec::new()
        },
        devices: options.system.devices.clone(),
        powers: options.system.powers.clone(),
        limits: options.system.limits.clone(),
    };
    Ok(package)
}

/// Whether a boot may run a program in a SIP address space (the hosted runtime, the
/// system-call probe): every configuration but `soft` does, and so may a self-test or a
/// benchmark suite (the micro suite forks the runtime's image) in any. A `soft` boot of a
/// system whose SIPs cannot run the suite leaves them out: 2.5 MB less for the firmware
/// to read, about 1.7 s of every such boot under TCG.
fn needs_programs(options: &BootOptions) -> bool {
    options.isolation != Isolation::Soft
        || options.self_test.is_some()
        || options.bench.is_some()
        || options.system.powers.iter().any(|p| p.bench)
}

/// Boots `package` with `options`' machine settings and waits for the verdict.
pub fn boot_package(options: &BootOptions, package: &BootPackage) -> anyhow::Result<Outcome> {
    let ovmf = ensure_installed(options.firmware)?;
    if options.accel == Accel::Kvm
        && let Err(why) = kvm_usable()
    {
        bail!("--accel kvm: KVM is not usable on this machine: {why}. Use --accel tcg.");
    }
    let image = build_image(crate::kernel_boot_elf(), package, options.firmware)?;

    let mut qemu = Command::new(QEMU);
    qemu.args(["-m", &format!("{}M", options.memory_mib)])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
        ]);
    match options.accel {
        Accel::Tcg => qemu.args(["-accel", "tcg", "-cpu", "max"]),
        Accel::Kvm if options.icount => bail!("-icount needs TCG (--accel tcg)"),
        Accel::Kvm => qemu.args(["-accel", "kvm", "-cpu", "host"]),
    };
    if options.icount {
        qemu.args(["-icount", "shift=0,sleep=off"]);
    }
    if options.cpus > 1 {
        qemu.args(["-smp", &options.cpus.to_string()]);
    }
    qemu.arg("-drive")
        .arg(format!("format=raw,file={}", image.path.display()));
    // One variable store per boot: tests boot several machines at once from one process,
    // and each boot removes its own copy when QEMU exits.
    static BOOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let vars_copy = work_dir().join(format!(
        "ovmf-vars-{}-{}.fd",
        std::process::id(),
        BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    if let Some((code, vars)) = &ovmf {
        std::fs::copy(vars, &vars_copy).context("copying the OVMF variable store")?;
        qemu.arg("-drive").arg(format!(
            "if=pflash,format=raw,readonly=on,file={}",
            code.display()
        ));
        qemu.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars_copy.display()));
    }
    if let Some(disk) = &options.disk {
        if !disk.is_file() {
            bail!("--disk {}: no such file", disk.display());
        }
        // Read-only for the guest: the image is an input, never changed by a run.
        qemu.arg("-drive")
            .arg(format!(
                "if=none,id=disk0,format=raw,readonly=on,file={}",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=disk0"]);
    }
    if options.gdb {
        qemu.args(["-s", "-S"]);
    }
    qemu.stdin(match options.input {
        ConsoleInput::None => Stdio::null(),
        ConsoleInput::Terminal => Stdio::inherit(),
        ConsoleInput::Script(_) => Stdio::piped(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = qemu.spawn().with_context(|| format!("starting {QEMU}"))?;
    let mut typist = match &options.input {
        ConsoleInput::Script(lines) => child.stdin.take().map(|stdin| Typist::new(stdin, lines)),
        _ => None,
    };
    let (tx, rx) = mpsc::channel::<(Vec<u8>, bool)>();
    let mut readers = Vec::new();
    for (stream, is_err) in [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            false,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            true,
        ),
    ] {
        let Some(mut stream) = stream else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || tx.send((buf[..n].to_vec(), is_err)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);

    let mut console = Vec::new();
    let mut banner_after = None;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((chunk, is_err)) => {
                if options.echo {
                    let _ = if is_err {
                        std::io::stderr().write_all(&chunk)
                    } else {
                        let mut out = std::io::stdout();
                        out.write_all(&chunk).and_then(|_| out.flush())
                    };
                }
                console.extend_from_slice(&chunk);
                if banner_after.is_none() && has_banner(&console) {
                    banner_after = Some(started.elapsed());
                }
                if let Some(typist) = typist.as_mut()
                    && !is_err
                {
                    typist.on_output(&chunk);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(limit) = options.timeout
            && started.elapsed() > limit
            && !options.gdb
        {
            timed_out = true;
            let _ = child.kill();
        }
    }
    let status = child.wait().context("waiting for QEMU")?;
    let wall = started.elapsed();
    for reader in readers {
        let _ = reader.join();
    }
    if ovmf.is_some() {
        let _ = std::fs::remove_file(&vars_copy);
    }
    let verdict = if timed_out {
        Verdict::TimedOut
    } else {
        match status.code() {
            Some(EXIT_PASSED) => Verdict::Passed,
            Some(EXIT_FAILED) => Verdict::Failed,
            other => Verdict::QemuExited(other),
        }
    };
    Ok(Outcome {
        verdict,
        console: String::from_utf8_lossy(&console).replace('\r', ""),
        banner_after,
        wall,
    })
}

/// Types scripted lines into QEMU's serial input, each once the shell prompts again.
struct Typist {
    stdin: std::process::ChildStdin,
    lines: std::collections::VecDeque<String>,
    /// The guest's serial output so far (QEMU's own messages, on stderr, kept apart so
    /// they cannot split a prompt), prompts seen in it, and where the search goes on.
    serial: Vec<u8>,
    prompts: usize,
    searched: usize,
    typed: usize,
}

impl Typist {
    fn new(stdin: std::process::ChildStdin, lines: &[String]) -> Typist {
        Typist {
            stdin,
            lines: lines.iter().cloned().collect(),
            serial: Vec::new(),
            prompts: 0,
            searched: 0,
            typed: 0,
        }
    }

    /// Takes more serial output; types the next line for each new prompt.
    fn on_output(&mut self, chunk: &[u8]) {
        self.serial.extend_from_slice(chunk);
        let console = &self.serial;
        let prompt = SHELL_PROMPT.as_bytes();
        while let Some(at) = console[self.searched..]
            .windows(prompt.len())
            .position(|w| w == prompt)
        {
            self.searched += at + prompt.len();
            self.prompts += 1;
        }
        while self.typed < self.prompts {
            let Some(line) = self.lines.pop_front() else {
                return;
            };
            // Enter is CR, as a terminal sends it.
            let _ = self
                .stdin
                .write_all(format!("{line}\r").as_bytes())
                .and_then(|()| self.stdin.flush());
            self.typed += 1;
        }
    }
}

fn has_banner(console: &[u8]) -> bool {
    String::from_utf8_lossy(console)
        .lines()
        .any(|line| line.starts_with(BANNER_PREFIX) && line.contains(BANNER_WORD))
}
