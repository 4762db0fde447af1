//! System manifests: which SIPs start and which channels connect them.
//!
//! A system is a TOML file in `systems/` (Hubris' `app.toml` in spirit):
//!
//! ```toml
//! sips = ["echo-server", "echo-client"]
//!
//! [[channels]]
//! contract = "Echo"
//! exporter = "echo-server.clients"   # SIP name . endpoint name it asks for
//! importer = "echo-client.server"
//! ```
//!
//! Devices go to SIPs only on the system manifest's word (and only to a SIP whose own
//! manifest asks for that device):
//!
//! ```toml
//! [[devices]]
//! sip = "virtio-blk"
//! device = "pci:1af4:1001"          # vendor:device ids, or an address: "pci@00:04.0"
//! ```
//!
//! Powers over other SIPs are the system manifest's to give too, and `modules` adds
//! modules to the boot package that are not started at boot (a SIP with the `start` power
//! may start them):
//!
//! ```toml
//! modules = ["hello", "forever"]
//!
//! [[powers]]
//! sip = "supervisor"
//! may = ["start", "kill", "inspect"]
//! ```
//!
//! The powers: `start`, `kill`, `inspect` (other SIPs' accounting and the kernel's
//! tables), `console` (what is typed on the console; one SIP at most), `shutdown` and
//! `bench` (the kernel's micro-benchmark suite, now).
//!
//! A SIP listed in `on-request` is an entry of the system manifest like any other
//! (channels, devices, powers and limits name it) but does not start at boot: a SIP with
//! the `start` power starts it by name, and it then gets exactly what its entry names —
//! its channels are made at that moment, and the peer (which must be running) takes its
//! new end by name with `chan_initial`. Once it has ended it may be started again, with
//! fresh channels. A channel between two on-request SIPs is refused (neither end would
//! be running when the other starts):
//!
//! ```toml
//! sips = ["supervisor"]
//! on-request = ["echo-server"]
//!
//! [[channels]]
//! contract = "Echo"
//! exporter = "echo-server.clients"
//! importer = "supervisor.echo"
//! ```
//!
//! The system manifest may lower any SIP's limits below what the SIP's own manifest asks
//! (never raise them):
//!
//! ```toml
//! [[limits]]
//! sip = "burn"
//! cpu-ticks = 5        # also memory-pages, call-depth, fuel, kernel-objects, kernel-bytes
//! ```
//!
//! The engine that runs SIPs is the boot's (`--engine interp|compiled`) unless the system
//! manifest chooses one for an entry; a SIP asked to run compiled runs compiled or is
//! refused, never silently interpreted:
//!
//! ```toml
//! [[engines]]
//! sip = "fs"
//! engine = "compiled"   # or "interp"
//! ```
//!
//! A SIP that ends can be restarted by the kernel's supervisor, with a fresh incarnation
//! (the next generation) wired to the same channels and devices; a crash loop backs off
//! and gives up (see the README's recovery section):
//!
//! ```toml
//! [[restart]]
//! sip = "fs"
//! policy = "on-failure"    # or "always", "never" (the default for an entry without one)
//! max-restarts = 5         # restarts within window-ms before the supervisor gives up
//! window-ms = 60000
//! backoff-ms = 10          # delay before the first restart, doubled each time...
//! max-backoff-ms = 2000    # ...up to this
//! min-healthy-ms = 1000    # an incarnation that ran this long resets the backoff
//! answer-within-ms = 5000  # optional watchdog: a message waiting this long while the SIP
//!                          # makes no kernel call means it hangs: killed, then restarted
//! ```
//!
//! Any entry of `sips`, `on-request` or `modules` may be the path of a `.wasm` or `.wat`
//! file instead of a built-in name (relative to the manifest's directory); the SIP then
//! goes by the name in its module's manifest everywhere else in the file:
//!
//! ```toml
//! sips = ["echo-server", "client.wat"]   # client.wat's `;;@` header names its endpoints
//! ```
//!
//! Arguments reach a SIP as `cordon_sip::args()` (and `--arg SIP=VALUE` on the command line
//! appends to them):
//!
//! ```toml
//! [[args]]
//! sip = "primes"
//! args = ["1000"]
//! ```
//!
//! Contract files besides the shipped `contracts/files` go into the boot package when the
//! manifest names them (relative to its directory):
//!
//! ```toml
//! contracts = ["kv.contract"]
//! ```
//!
//! A SIP named twice is addressed as `name#2` for its second instance. `client = "name"`
//! names the SIP that the `client-space` and `client-ring3` isolation configurations
//! isolate from the rest (Singularity's WebFiles client); by default the last SIP.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bootpkg::{Attach, Connection, DeviceGrant, LimitCap, PowerGrant};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSpec {
    contract: toml::Spanned<String>,
    exporter: toml::Spanned<String>,
    importer: toml::Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSpec {
    sip: String,
    device: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerSpec {
    sip: String,
    may: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitSpec {
    sip: String,
    memory_pages: Option<u32>,
    call_depth: Option<u32>,
    fuel: Option<u64>,
    cpu_ticks: Option<u64>,
    kernel_objects: Option<u32>,
    kernel_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineSpec {
    sip: String,
    engine: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RestartSpec {
    sip: String,
    policy: String,
    max_restarts: Option<u32>,
    window_ms: Option<u64>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    min_healthy_ms: Option<u64>,
    answer_within_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgsSpec {
    sip: String,
    args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    #[serde(default)]
    args: Vec<ArgsSpec>,
    #[serde(default)]
    restart: Vec<RestartSpec>,
    #[serde(default)]
    engines: Vec<EngineSpec>,
    #[serde(default)]
    limits: Vec<LimitSpec>,
    /// Modules in the boot package that are not started at boot.
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    powers: Vec<PowerSpec>,
    sips: Vec<String>,
    /// Entries started only when a SIP with the `start` power asks.
    #[serde(default, rename = "on-request")]
    on_request: Vec<String>,
    #[serde(default)]
    channels: Vec<ChannelSpec>,
    #[serde(default)]
    devices: Vec<DeviceSpec>,
    /// The SIP the `client-*` isolation configurations isolate (default: the last).
    client: Option<String>,
    /// Contract files for the boot package besides `contracts/files`, relative to the
    /// manifest.
    #[serde(default)]
    contracts: Vec<String>,
}

/// A parsed system manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// Every entry: those started at boot, then those started on request.
    pub sips: Vec<String>,
    /// Indices into `sips` of the entries started only on request.
    pub on_request: Vec<u32>,
    pub channels: Vec<Connection>,
    /// Index of the client SIP: the one Figure 5's `client-*` configurations isolate.
    pub client: Option<u32>,
    /// Devices given to SIPs.
    pub devices: Vec<DeviceGrant>,
    /// Powers over other SIPs given to SIPs.
    pub powers: Vec<PowerGrant>,
    /// More modules for the boot package, not started at boot.
    pub modules: Vec<String>,
    /// Limits lowered below the SIPs' own.
    pub limits: Vec<LimitCap>,
    /// Engines chosen for single entries, overriding `--engine`.
    pub engines: Vec<(u32, bootpkg::Engine)>,
    /// Restart policies of single entries.
    pub restarts: Vec<bootpkg::RestartPolicy>,
    /// Modules given as files rather than built-in names: (the name in the module's
    /// manifest, which entries and channels use; the file).
    pub files: Vec<(String, PathBuf)>,
    /// Where each channel is written, for errors found before boot.
    pub channel_sites: Vec<ChannelSite>,
    /// Where the system was given: the manifest's path, or `--sip`.
    pub origin: String,
    /// Contract files the manifest adds to the boot package (besides `contracts/files`).
    pub contracts: Vec<PathBuf>,
    /// Arguments of single entries (`cordon_sip::args()`).
    pub args: Vec<bootpkg::SipArgs>,
}

/// Where a channel's values are written in its manifest: `FILE:LINE:COLUMN` of each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelSite {
    pub contract: String,
    pub exporter: String,
    pub importer: String,
}

impl System {
    /// Adds `--sip` modules (built-in names or paths) to the boot package without starting
    /// them: what `--shell` boots for the shell's `run`.
    pub fn add_modules(&mut self, given: &[String]) -> anyhow::Result<()> {
        for name in resolve_sip_args(given, &mut self.files)? {
            if !self.modules.contains(&name) && !self.sips.contains(&name) {
                self.modules.push(name);
            }
        }
        Ok(())
    }

    /// Adds the console and the shell (`--shell`): entries `console` and `shell` first (pids
    /// 1 and 2), the Console channel between them, and their powers — the console reads
    /// the console; the shell may start, kill, inspect and shut down. The SIPs of the system
    /// keep their entries, channels and grants.
    pub fn add_shell(&mut self) -> anyhow::Result<()> {
        let shell = load("shell")?;
        if let Some(taken) = ["console", "shell"]
            .into_iter()
            .find(|name| self.sips.iter().any(|s| s == name))
        {
            bail!(
                "--shell adds SIPs `console` and `shell`, and {} has an entry `{taken}` already",
                self.origin
            );
        }
        if self.reads_console() {
            bail!(
                "--shell adds a console reader, and a SIP of {} has the `console` power already (the console has one reader)",
                self.origin
            );
        }
        let first = |name: &str| {
            shell
                .sips
                .iter()
                .position(|s| s == name)
                .expect("systems/shell.toml has a console and a shell") as u32
        };
        let (console, sh) = (first("console"), first("shell"));
        // Every index of this system moves up by the two entries put before it.
        let up = |i: &mut u32| *i += 2;
        self.on_request.iter_mut().for_each(up);
        for c in &mut self.channels {
            up(&mut c.exporter.sip);
            up(&mut c.importer.sip);
        }
        self.client.iter_mut().for_each(up);
        self.devices.iter_mut().for_each(|d| up(&mut d.sip));
        self.powers.iter_mut().for_each(|p| up(&mut p.sip));
        self.limits.iter_mut().for_each(|l| up(&mut l.sip));
        self.engines.iter_mut().for_each(|e| up(&mut e.0));
        self.restarts.iter_mut().for_each(|r| up(&mut r.sip));
        self.args.iter_mut().for_each(|a| up(&mut a.sip));
        self.sips
            .splice(0..0, ["console".to_string(), "shell".to_string()]);
        // What shell.toml gives the two, renumbered to entries 0 and 1.
        let renumber = |i: u32| u32::from(i == sh);
        for c in shell.channels.iter().filter(|c| {
            [c.exporter.sip, c.importer.sip]
                .iter()
                .all(|&i| i == console || i == sh)
        }) {
            let mut c = c.clone();
            c.exporter.sip = renumber(c.exporter.sip);
            c.importer.sip = renumber(c.importer.sip);
            self.channels.push(c);
        }
        for p in shell
            .powers
            .iter()
            .filter(|p| p.sip == console || p.sip == sh)
        {
            self.powers.push(PowerGrant {
                sip: renumber(p.sip),
                ..*p
            });
        }
        Ok(())
    }

    /// Whether a SIP of this system reads the console (has the `console` power).
    pub fn reads_console(&self) -> bool {
        self.powers.iter().any(|p| p.console)
    }

    /// Appends `--arg SIP=VALUE` arguments (in order) to the entries they name (`SIP` or
    /// `SIP#N` as in the manifest).
    pub fn add_args(&mut self, given: &[String]) -> anyhow::Result<()> {
        for arg in given {
            let Some((sip, value)) = arg.split_once('=') else {
                bail!("--arg {arg}: write SIP=VALUE (e.g. --arg primes=1000)");
            };
            let index = find_sip(&self.sips, sip).with_context(|| format!("--arg {arg}"))? as u32;
            match self.args.iter_mut().find(|a| a.sip == index) {
                Some(entry) => entry.args.push(value.into()),
                None => self.args.push(bootpkg::SipArgs {
                    sip: index,
                    args: vec![value.into()],
                }),
            }
        }
        bootpkg::SipArgs::check_all(&self.sips, &self.args)
            .map_err(|e| anyhow::anyhow!("--arg: {e}"))
    }

    /// The manifest of the module `sip` names, as the verifier reads it; `None` for a
    /// module the verifier refuses (the kernel reports that, with its reason).
    pub fn own_manifest(&self, sip: &str) -> anyhow::Result<Option<cordon_abi::Manifest>> {
        let module = self.module(sip)?;
        Ok(verifier::verify(&module, &verifier::Policy::default())
            .ok()
            .map(|verified| verified.manifest))
    }

    /// The bytes of the module an entry or `modules` names: its file, if one was given,
    /// else the built-in module.
    pub fn module(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        match self.files.iter().find(|(n, _)| n == name) {
            Some((_, path)) => crate::sips::read(path),
            None => crate::sips::module(name),
        }
    }
}

/// The directory of the contract files every boot package carries.
pub fn contract_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/files");
    dir.canonicalize().unwrap_or(dir)
}

/// The repository's `systems/` directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systems")
}

/// Names of the systems in `systems/`.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A system of SIPs started in order with no channels.
pub fn of_sips(sips: &[String]) -> System {
    System {
        sips: sips.to_vec(),
        on_request: Vec::new(),
        channels: Vec::new(),
        client: sips.len().checked_sub(1).map(|i| i as u32),
        devices: Vec::new(),
        powers: Vec::new(),
        modules: Vec::new(),
        limits: Vec::new(),
        engines: Vec::new(),
        restarts: Vec::new(),
        files: Vec::new(),
        channel_sites: Vec::new(),
        origin: "--sip".into(),
        contracts: Vec::new(),
        args: Vec::new(),
    }
}

/// The system `--sip` gives: these SIPs (built-in names or paths of `.wasm`/`.wat` files,
/// relative to the working directory) started in order, with no channels.
pub fn of_sip_args(sips: &[String]) -> anyhow::Result<System> {
    let mut files = Vec::new();
    let entries = resolve_sip_args(sips, &mut files)?;
    Ok(System {
        files,
        ..of_sips(&entries)
    })
}

/// The SIP names `--sip` arguments stand for: each path replaced by its module's name (the
/// file recorded in `files`), each other argument checked to be a built-in module.
fn resolve_sip_args(
    given: &[String],
    files: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<Vec<String>> {
    let mut entries = given.to_vec();
    resolve_files(&mut entries, Path::new(""), files)?;
    for name in &entries {
        if !files.iter().any(|(n, _)| n == name) && !crate::sips::names().contains(&name.as_str()) {
            // The built-in module's error lists the names.
            crate::sips::module(name)?;
        }
    }
    Ok(entries)
}

/// Replaces each entry that is a path (see `sips::is_path`; relative to `base`) by the
/// name in its module's manifest, recording the file in `files`. Loading the module here
/// refuses an unreadable, malformed or unverifiable file before anything is built.
fn resolve_files(
    entries: &mut [String],
    base: &Path,
    files: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    let named: Vec<String> = entries
        .iter()
        .filter(|e| !crate::sips::is_path(e, base))
        .cloned()
        .collect();
    for entry in entries.iter_mut() {
        if !crate::sips::is_path(entry, base) {
            continue;
        }
        // A crate is built once, here: the system refers to its module file.
        let path = crate::sips::module_file(&base.join(&*entry))?;
        let bytes = crate::sips::read(&path)?;
        let name = crate::sips::manifest_name(&bytes, entry)?;
        if named.contains(&name) {
            bail!(
                "`{entry}` is a SIP named `{name}`, and so is the built-in module also listed; \
                 rename one (the `name` key of its manifest)"
            );
        }
        match files.iter().find(|(n, _)| *n == name) {
            Some((_, other)) if *other != path => bail!(
                "`{entry}` and `{}` are both SIPs named `{name}`; rename one (the `name` key \
                 of its manifest)",
                other.display()
            ),
            Some(_) => {}
            None => files.push((name.clone(), path)),
        }
        *entry = name;
    }
    Ok(())
}

/// Loads a system: a built-in name (`systems/<name>.toml`) or the path of a manifest file
/// (anything with a path separator or ending in `.toml`, e.g. `systems/webfiles.toml`).
pub fn load(name: &str) -> anyhow::Result<System> {
    let path = locate(name)?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_file(&text, &path).with_context(|| format!("in {}", path.display()))
}

/// The manifest file `name` stands for: a path as given, else `systems/<name>.toml`.
fn locate(name: &str) -> anyhow::Result<PathBuf> {
    if name.contains(std::path::is_separator) || name.ends_with(".toml") {
        let path = PathBuf::from(name);
        if !path.is_file() {
            bail!(
                "no system manifest at `{name}` (a path names a file; built-in systems: {})",
                names().join(", ")
            );
        }
        return Ok(path);
    }
    let path = dir().join(format!("{name}.toml"));
    if !path.is_file() {
        bail!(
            "no system `{name}` (systems: {}; or give the path of a manifest file)",
            names().join(", ")
        );
    }
    Ok(path)
}

fn attach(sips: &[String], spec: &str) -> anyhow::Result<Attach> {
    let Some((sip, endpoint)) = spec.split_once('.') else {
        bail!("`{spec}`: write an end as SIP.endpoint");
    };
    Ok(Attach {
        sip: find_sip(sips, sip).with_context(|| format!("in `{spec}`"))? as u32,
        endpoint: endpoint.into(),
    })
}

/// The index of `sip` (`name` or `name#N` for the Nth instance) in `sips`.
fn find_sip(sips: &[String], sip: &str) -> anyhow::Result<usize> {
    let (name, nth) = match sip.split_once('#') {
        Some((name, n)) => (
            name,
            n.parse::<usize>()
                .with_context(|| format!("`{sip}`: bad instance number"))?,
        ),
        None => (sip, 1),
    };
    let index = sips
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_str() == name)
        .nth(nth.saturating_sub(1))
        .map(|(i, _)| i)
        .with_context(|| format!("no SIP `{sip}` in sips = {sips:?}"))?;
    Ok(index)
}

/// Parses a system manifest given as text (module paths relative to the working
/// directory; positions in errors name `<system>`).
pub fn parse(text: &str) -> anyhow::Result<System> {
    parse_file(text, Path::new("<system>"))
}

/// `FILE:LINE:COLUMN` of byte `at` of `text`.
fn site(file: &Path, text: &str, at: usize) -> String {
    let (line, column) = contracts::diag::line_col(text, at);
    format!("{}:{line}:{column}", file.display())
}

/// Parses the system manifest `text`, read from `path`; an entry of `sips`, `on-request`
/// or `modules` that is the path of a `.wasm` or `.wat` file is relative to the
/// manifest's directory and goes by the name in its module's manifest everywhere else in
/// the file.
pub fn parse_file(text: &str, path: &Path) -> anyhow::Result<System> {
    let base = path.parent().unwrap_or(Path::new(""));
    let mut file: SystemFile = toml::from_str(text)?;
    // The kernel compiles the package's files named `*.contract`, and only those.
    if let Some(odd) = file.contracts.iter().find(|c| !c.ends_with(".contract")) {
        bail!("contracts = [..]: `{odd}` is not a `.contract` file");
    }
    if file.sips.is_empty() {
        bail!("`sips` is empty: a system starts at least one SIP");
    }
    // Module files are read (crates built) once, here.
    let mut files = Vec::new();
    resolve_files(&mut file.sips, base, &mut files)?;
    resolve_files(&mut file.on_request, base, &mut files)?;
    resolve_files(&mut file.modules, base, &mut files)?;
    if let Some(both) = file.on_request.iter().find(|s| file.sips.contains(s)) {
        bail!("`{both}` is in both `sips` and `on-request`: an entry starts at boot or on request");
    }
    let at_boot = file.sips.len();
    let on_request: Vec<u32> = (at_boot..at_boot + file.on_request.len())
        .map(|i| i as u32)
        .collect();
    file.sips.append(&mut file.on_request);
    let mut channels = Vec::new();
    let mut channel_sites = Vec::new();
    for c in &file.channels {
        let at = |value: &toml::Spanned<String>| site(path, text, value.span().start);
        let end = |value: &toml::Spanned<String>| {
            attach(&file.sips, value.get_ref()).map_err(|e| anyhow::anyhow!("{}: {e:#}", at(value)))
        };
        channels.push(Connection {
            contract: c.contract.get_ref().clone(),
            exporter: end(&c.exporter)?,
            importer: end(&c.importer)?,
        });
        channel_sites.push(ChannelSite {
            contract: at(&c.contract),
            exporter: at(&c.exporter),
            importer: at(&c.importer),
        });
    }
    // The same check the kernel makes of the boot package, before anything is built.
    bootpkg::check_wiring(&file.sips, &on_request, &channels).map_err(anyhow::Error::msg)?;
    let client = match &file.client {
        Some(name) => find_sip(&file.sips, name)?,
        None => at_boot - 1,
    };
    let mut devices = Vec::new();
    for d in &file.devices {
        devices.push(DeviceGrant {
            sip: find_sip(&file.sips, &d.sip)? as u32,
            device: d
                .device
                .parse()
                .map_err(|e: String| anyhow::anyhow!("[[devices]] for `{}`: {e}", d.sip))?,
        });
    }
    let mut powers = Vec::new();
    for p in &file.powers {
        let mut grant = PowerGrant {
            sip: find_sip(&file.sips, &p.sip)? as u32,
            ..PowerGrant::default()
        };
        for power in &p.may {
            if !grant.grant(power) {
                bail!(
                    "[[powers]] for `{}`: no power `{power}` (powers: {})",
                    p.sip,
                    PowerGrant::NAMES.join(", ")
                );
            }
        }
        powers.push(grant);
    }
    // The console has one reader: what is typed goes to one SIP.
    let readers: Vec<&str> = file
        .powers
        .iter()
        .filter(|p| p.may.iter().any(|m| m == "console"))
        .map(|p| p.sip.as_str())
        .collect();
    if let [first, second, ..] = readers[..] {
        bail!(
            "[[powers]]: the `console` power is given to `{first}` and to `{second}`; the console has one reader (give it to one SIP, which serves the others through the Console contract)"
        );
    }
    let mut limits = Vec::new();
    for l in &file.limits {
        limits.push(LimitCap {
            sip: find_sip(&file.sips, &l.sip)? as u32,
            memory_pages: l.memory_pages,
            call_depth: l.call_depth,
            fuel: l.fuel,
            cpu_ticks: l.cpu_ticks,
            kernel_objects: l.kernel_objects,
            kernel_bytes: l.kernel_bytes,
        });
    }
    let mut engines = Vec::new();
    for e in &file.engines {
        let engine = bootpkg::Engine::from_name(&e.engine).with_context(|| {
            format!(
                "[[engines]] for `{}`: no engine `{}` (engines: interp, compiled)",
                e.sip, e.engine
            )
        })?;
        engines.push((find_sip(&file.sips, &e.sip)? as u32, engine));
    }
    let mut restarts: Vec<bootpkg::RestartPolicy> = Vec::new();
    for r in &file.restart {
        let mode = bootpkg::RestartMode::from_name(&r.policy).with_context(|| {
            format!(
                "[[restart]] for `{}`: no policy `{}` (policies: never, on-failure, always)",
                r.sip, r.policy
            )
        })?;
        let sip = find_sip(&file.sips, &r.sip)? as u32;
        if restarts.iter().any(|p| p.sip == sip) {
            bail!("[[restart]] for `{}` is given twice", r.sip);
        }
        let defaults = bootpkg::RestartPolicy::new(sip, mode);
        let policy = bootpkg::RestartPolicy {
            max_restarts: r.max_restarts.unwrap_or(defaults.max_restarts),
            window_ms: r.window_ms.unwrap_or(defaults.window_ms),
            backoff_ms: r.backoff_ms.unwrap_or(defaults.backoff_ms),
            max_backoff_ms: r.max_backoff_ms.unwrap_or(defaults.max_backoff_ms),
            min_healthy_ms: r.min_healthy_ms.unwrap_or(defaults.min_healthy_ms),
            answer_within_ms: r.answer_within_ms,
            ..defaults
        };
        policy
            .check()
            .map_err(|e| anyhow::anyhow!("[[restart]] for `{}`: {e}", r.sip))?;
        restarts.push(policy);
    }
    let mut args = Vec::new();
    for a in &file.args {
        args.push(bootpkg::SipArgs {
            sip: find_sip(&file.sips, &a.sip)
                .with_context(|| format!("[[args]] for `{}`", a.sip))? as u32,
            args: a.args.clone(),
        });
    }
    bootpkg::SipArgs::check_all(&file.sips, &args).map_err(|e| anyhow::anyhow!("[[args]]: {e}"))?;
    Ok(System {
        sips: file.sips,
        on_request,
        channels,
        client: Some(client as u32),
        devices,
        powers,
        modules: file.modules,
        limits,
        engines,
        restarts,
        files,
        channel_sites,
        origin: path.display().to_string(),
        contracts: file.contracts.iter().map(|c| base.join(c)).collect(),
        args,
    })
}

/// Checks that every `--inject` names a SIP the system may run (an entry or a module of
/// the package), so a misspelt name is refused before boot instead of never firing.
pub fn check_injections(system: &System, injections: &[bootpkg::Injection]) -> anyhow::Result<()> {
    for injection in injections {
        let known = system.sips.iter().chain(&system.modules);
        if !known.clone().any(|s| *s == injection.sip) {
            let names: Vec<&str> = known.map(String::as_str).collect();
            bail!(
                "--inject {}:{}:{}: no SIP `{}` in this system (its SIPs: {})",
                injection.kind.name(),
                injection.sip,
                injection.at,
                injection.sip,
                names.join(", ")
            );
        }
    }
    Ok(())
}

/// Checks that the devices `system` gives and the devices each SIP's own manifest asks for
/// agree, so a mismatch is refused before anything boots (the kernel checks again, for
/// packages built some other way). A module the verifier refuses is left for the kernel
/// to report.
pub fn check_devices(system: &System) -> anyhow::Result<()> {
    use bootpkg::DeviceSelector;
    use cordon_abi::Resource;
    // What sits at an address is known only on the machine: the kernel checks that.
    let fits = |given: &DeviceSelector, asked: &Resource| {
        let Resource::PciDevice { vendor, device } = *asked;
        given.ids().is_none_or(|ids| ids == (vendor, device))
    };
    for (index, sip) in system.sips.iter().enumerate() {
        let Some(manifest) = system.own_manifest(sip)? else {
            continue;
        };
        let asked = &manifest.resources;
        let given: Vec<&DeviceSelector> = system
            .devices
            .iter()
            .filter(|g| g.sip == index as u32)
            .map(|g| &g.device)
            .collect();
        for g in &given {
            if !asked.iter().any(|r| fits(g, r)) {
                let list: Vec<String> = asked.iter().map(|r| r.to_string()).collect();
                bail!(
                    "the system manifest gives `{sip}` device {g}, but `{sip}`'s own manifest does not ask for it (it asks for {})",
                    if list.is_empty() {
                        "no device".into()
                    } else {
                        list.join(", ")
                    }
                );
            }
        }
        for (i, r) in asked.iter().enumerate() {
            if !given.iter().any(|g| fits(g, r)) {
                let Resource::PciDevice { vendor, device } = *r;
                bail!(
                    "`{sip}`'s own manifest asks for resource {i} ({r}), but the system manifest gives it no such device; a SIP's manifest only asks. To give it one, add to the system manifest:\n[[devices]]\nsip = \"{sip}\"\ndevice = \"pci:{vendor:04x}:{device:04x}\""
                );
            }
        }
    }
    Ok(())
}

/// Every contract source shipped in `contracts/files`: (file name, text).
pub fn contract_files() -> anyhow::Result<Vec<ContractFile>> {
    let dir = contract_dir();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "contract") {
            files.push(ContractFile::read(path)?);
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A contract file of the boot package.
#[derive(Clone, Debug)]
pub struct ContractFile {
    /// Its name in the package (the file name).
    pub name: String,
    /// Where it was read.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl ContractFile {
    fn read(path: PathBuf) -> anyhow::Result<ContractFile> {
        let bytes = std::fs::read(&path)
            .with_context(|| format!("no contract file at `{}`", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ContractFile { name, path, bytes })
    }
}

impl System {
    /// Every contract file the boot package carries: `contracts/files`, then the ones the
    /// system manifest adds. A file named like another is refused.
    pub fn contract_files(&self) -> anyhow::Result<Vec<ContractFile>> {
        let mut files = contract_files()?;
        for path in &self.contracts {
            let file = ContractFile::read(path.clone())?;
            if let Some(other) = files.iter().find(|f| f.name == file.name) {
                bail!(
                    "{}: `contracts` adds `{}`, and `{}` has that file name already; rename one",
                    self.origin,
                    path.display(),
                    other.path.display()
                );
            }
            files.push(file);
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_systems_parse() {
        for name in names() {
            let system = load(&name).unwrap();
            assert!(!system.sips.is_empty(), "{name}");
        }
        let echo = load("echo").unwrap();
        assert_eq!(
            echo.channels[0].exporter,
            Attach {
                sip: 0,
                endpoint: "clients".into()
            }
        );
        assert_eq!(
            echo.channels[0].importer,
            Attach {
                sip: 1,
                endpoint: "server".into()
            }
        );
    }

    #[test]
    fn a_shell_added_to_a_system_comes_first_and_moves_every_index() {
        let mut system = load("supervisor").unwrap();
        let before = system.clone();
        system.add_shell().unwrap();
        assert_eq!(system.sips[..2], ["console", "shell"]);
        assert_eq!(system.sips[2..], before.sips[..]);
        // Every entry index the system had names the same SIP afterwards.
        let name = |s: &System, i: u32| s.sips[i as usize].clone();
        for (old, new) in before.channels.iter().zip(&system.channels) {
            assert_eq!(
                name(&before, old.exporter.sip),
                name(&system, new.exporter.sip)
            );
            assert_eq!(
                name(&before, old.importer.sip),
                name(&system, new.importer.sip)
            );
        }
        for (old, new) in before.on_request.iter().zip(&system.on_request) {
            assert_eq!(name(&before, *old), name(&system, *new));
        }
        for (old, new) in before.powers.iter().zip(&system.powers) {
            assert_eq!(name(&before, old.sip), name(&system, new.sip));
        }
        // The Console channel and the two SIPs' powers.
        let console = system.channels.last().unwrap();
        assert_eq!(console.contract, "Console");
        assert_eq!((console.exporter.sip, console.importer.sip), (0, 1));
        assert!(
            system
                .powers
                .iter()
                .any(|p| p.sip == 0 && p.console && !p.start)
        );
        assert!(
            system
                .powers
                .iter()
                .any(|p| p.sip == 1 && p.start && p.kill && p.shutdown)
        );
        assert!(system.reads_console());
    }

    #[test]
    fn a_system_is_found_by_name_or_by_path() {
        let by_name = load("echo").unwrap();
        let path = dir().join("echo.toml");
        let by_path = load(path.to_str().unwrap()).unwrap();
        assert_eq!(by_name.sips, by_path.sips);
        assert_eq!(by_name.channels, by_path.channels);
        // A copy outside the repository boots the same way.
        let outside =
            std::env::temp_dir().join(format!("cordon-system-{}.toml", std::process::id()));
        std::fs::copy(&path, &outside).unwrap();
        let copied = load(outside.to_str().unwrap());
        std::fs::remove_file(&outside).unwrap();
        assert_eq!(copied.unwrap().sips, by_name.sips);
        let missing = format!("{:#}", load("no/such/system.toml").unwrap_err());
        assert!(
            missing.contains("no system manifest at `no/such/system.toml`"),
            "{missing}"
        );
        let unknown = format!("{:#}", load("nosuch").unwrap_err());
        assert!(
            unknown.contains("no system `nosuch`") && unknown.contains("echo"),
            "{unknown}"
        );
    }

    #[test]
    fn bad_systems_are_explained() {
        let err = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(err("sips = []").contains("`sips` is empty"));
        assert!(err("sips = [\"a\"]\nbogus = 1").contains("unknown field `bogus`"));
        let text = "sips = [\"a\"]\n[[channels]]\ncontract = \"Echo\"\nexporter = \"b.x\"\nimporter = \"a.y\"";
        assert!(err(text).contains("`b.x`: no SIP `b`"));
        let text = "sips = [\"a\", \"a\"]\n[[channels]]\ncontract = \"Echo\"\nexporter = \"a#2.x\"\nimporter = \"a.y\"";
        assert_eq!(parse(text).unwrap().channels[0].exporter.sip, 1);
        assert!(err("sips = [\"a\"]\nclient = \"z\"").contains("no SIP `z`"));
        let text = "sips = [\"a\"]\n[[devices]]\nsip = \"a\"\ndevice = \"pci@00:04.0\"";
        assert_eq!(parse(text).unwrap().devices[0].sip, 0);
        let text = "sips = [\"a\"]\n[[devices]]\nsip = \"a\"\ndevice = \"disk\"";
        assert!(err(text).contains("[[devices]] for `a`: `disk` is not a device"));
        let text = "sips = [\"a\"]\n[[devices]]\nsip = \"b\"\ndevice = \"pci:1af4:1001\"";
        assert!(err(text).contains("no SIP `b`"));
        let text = "sips = [\"a\"]\nmodules = [\"m\"]\n[[powers]]\nsip = \"a\"\nmay = [\"kill\", \"inspect\"]";
        let system = parse(text).unwrap();
        assert_eq!(system.modules, ["m"]);
        assert!(system.powers[0].kill && system.powers[0].inspect && !system.powers[0].start);
        let text = "sips = [\"a\"]\n[[limits]]\nsip = \"a\"\ncpu-ticks = 5";
        assert_eq!(parse(text).unwrap().limits[0].cpu_ticks, Some(5));
        let text = "sips = [\"a\"]\n[[limits]]\nsip = \"a\"\ncpu = 5";
        assert!(err(text).contains("unknown field `cpu`"));
        let text = "sips = [\"a\", \"b\"]\n[[restart]]\nsip = \"b\"\npolicy = \"on-failure\"\nmax-restarts = 2";
        let system = parse(text).unwrap();
        assert_eq!(system.restarts.len(), 1);
        assert_eq!(system.restarts[0].sip, 1);
        assert_eq!(system.restarts[0].max_restarts, 2);
        assert_eq!(system.restarts[0].backoff_ms, 10, "a default");
        let text = "sips = [\"a\"]\n[[restart]]\nsip = \"a\"\npolicy = \"sometimes\"";
        assert!(err(text).contains("no policy `sometimes` (policies: never, on-failure, always)"));
        let text = "sips = [\"a\"]\n[[restart]]\nsip = \"a\"\npolicy = \"always\"\nbackoff-ms = 9\nmax-backoff-ms = 1";
        assert!(
            err(text).contains("[[restart]] for `a`: max-backoff-ms = 1 is below backoff-ms = 9")
        );
        let text = "sips = [\"a\"]\n[[restart]]\nsip = \"a\"\npolicy = \"always\"\n[[restart]]\nsip = \"a\"\npolicy = \"never\"";
        assert!(err(text).contains("given twice"));
        let text = "sips = [\"a\"]\n[[powers]]\nsip = \"a\"\nmay = [\"reboot\"]";
        assert!(err(text).contains(
            "no power `reboot` (powers: start, kill, inspect, console, shutdown, bench)"
        ));
        assert_eq!(parse("sips = [\"a\", \"b\"]").unwrap().client, Some(1));
        let text = "sips = [\"a\", \"b\"]\nclient = \"a\"";
        assert_eq!(parse(text).unwrap().client, Some(0));
    }

    #[test]
    fn on_request_entries_follow_the_boot_entries() {
        let err = |text: &str| format!("{:#}", parse(text).unwrap_err());
        let text = "sips = [\"s\"]\non-request = [\"e\"]\n[[channels]]\ncontract = \"Echo\"\nexporter = \"e.clients\"\nimporter = \"s.echo\"";
        let system = parse(text).unwrap();
        assert_eq!(system.sips, ["s", "e"]);
        assert_eq!(system.on_request, [1]);
        assert_eq!(system.channels[0].exporter.sip, 1);
        assert_eq!(system.client, Some(0), "the client is a boot entry");
        assert!(
            err("sips = [\"s\"]\non-request = [\"s\"]").contains("both `sips` and `on-request`")
        );
        let text = "sips = [\"s\"]\non-request = [\"e\", \"f\"]\n[[channels]]\ncontract = \"Echo\"\nexporter = \"e.clients\"\nimporter = \"f.server\"";
        assert!(err(text).contains("connects two on-request SIPs"));
        let text = "sips = [\"a\", \"b\"]\n[[channels]]\ncontract = \"Echo\"\nexporter = \"a.x\"\nimporter = \"b.y\"\n[[channels]]\ncontract = \"Echo\"\nexporter = \"a.x\"\nimporter = \"b.z\"";
        assert!(err(text).contains("endpoint `a.x` is the end of two channels"));
    }
}
