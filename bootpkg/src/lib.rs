//! The boot package: everything the runner hands to the kernel at boot.
//!
//! The runner serialises a [`BootPackage`] into the ramdisk that the bootloader loads; the
//! kernel decodes it before it starts anything. It carries the boot parameters
//! ([`BootConfig`]: isolation mode, log level, self-test to run) and named files (later: SIP
//! modules and the system manifest). Changing any of them never requires rebuilding the
//! kernel.
//!
//! The encoding is `postcard` behind a magic number and a format version, so a kernel
//! rejects a package from a different runner with a message instead of misreading it.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

pub mod recovery;
pub use recovery::{InjectKind, Injection, RestartMode, RestartPolicy};

/// First bytes of every boot package.
pub const MAGIC: [u8; 8] = *b"CORDNPKG";
/// Bumped whenever [`BootPackage`]'s layout changes.
pub const FORMAT_VERSION: u32 = 11;

/// How SIPs are isolated from the kernel and from each other: the five configurations of
/// Singularity's "unsafe code tax" experiment (Figure 5 of *Rethinking the Software
/// Stack*), from none to a full microkernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    /// Software isolation only: every SIP run by the kernel itself in ring 0, on the
    /// kernel heap (physical memory through the bootloader's large-page mapping).
    Soft,
    /// Every SIP's runtime in one system-wide address space of 4 KiB pages, ring 0.
    Paged,
    /// As `paged`, but the client SIP has an address space of its own (a CR3 load on
    /// every switch to or from it), still in ring 0.
    ClientSpace,
    /// As `client-space`, with the client SIP in ring 3 (system calls).
    ClientRing3,
    /// Hardware isolation: every SIP in its own ring-3 address space.
    Hard,
}

/// Which engine runs SIP code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    /// `wasmi` interprets the module.
    #[default]
    Interp,
    /// Native code the runner compiled ahead of time with Cranelift (an [`Artifact`]).
    Compiled,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Interp, Engine::Compiled];

    /// The name used on the command line, in manifests and on the console.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interp => "interp",
            Engine::Compiled => "compiled",
        }
    }

    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|engine| engine.name() == name)
    }
}

/// One module compiled ahead of time (install time) for the compiled engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The file (in [`BootPackage::files`]) it was compiled from.
    pub module: String,
    /// SHA-256 of that module's bytes: the kernel runs the artifact only for a module
    /// with this hash (which it verifies first).
    pub module_sha256: [u8; 32],
    /// wasmtime's serialized module (an ELF image of native code and metadata).
    pub code: Vec<u8>,
    /// SHA-256 of `code` as the runner wrote it: a changed or damaged artifact is refused.
    pub code_sha256: [u8; 32],
}

impl Artifact {
    /// The artifact of `code`, compiled from module file `module` (`wasm`).
    pub fn new(module: &str, wasm: &[u8], code: Vec<u8>) -> Artifact {
        Artifact {
            module: module.into(),
            module_sha256: module_sha256(wasm),
            code_sha256: module_sha256(&code),
            code,
        }
    }

    /// Checks that this artifact is intact and was compiled from exactly `wasm`.
    pub fn check(&self, wasm: &[u8]) -> Result<(), String> {
        let hex = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| alloc::format!("{b:02x}"))
                .collect::<String>()
        };
        let code = module_sha256(&self.code);
        if code != self.code_sha256 {
            return Err(alloc::format!(
                "the compiled artifact for `{}` was changed after compilation (its code hashes to {}…, the runner recorded {}…): refused",
                self.module,
                hex(&code[..8]),
                hex(&self.code_sha256[..8])
            ));
        }
        let module = module_sha256(wasm);
        if module != self.module_sha256 {
            return Err(alloc::format!(
                "the compiled artifact for `{}` belongs to another module (compiled from SHA-256 {}…, this module is {}…): refused",
                self.module,
                hex(&self.module_sha256[..8]),
                hex(&module[..8])
            ));
        }
        Ok(())
    }
}

/// SHA-256 of `bytes`, as [`Artifact::module_sha256`] records it.
pub fn module_sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Where one SIP runs under a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Run by the kernel directly (software isolation).
    Kernel,
    /// The hosted runtime in the shared system-wide space, ring 0.
    SharedSpace,
    /// The hosted runtime in a space of its own, in ring 0 or ring 3.
    OwnSpace { ring3: bool },
}

impl Isolation {
    /// Every mode, in the order the command line lists them (Figure 5's order).
    pub const ALL: [Isolation; 5] = [
        Isolation::Soft,
        Isolation::Paged,
        Isolation::ClientSpace,
        Isolation::ClientRing3,
        Isolation::Hard,
    ];

    /// The name used on the command line and on the kernel console.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Soft => "soft",
            Isolation::Paged => "paged",
            Isolation::ClientSpace => "client-space",
            Isolation::ClientRing3 => "client-ring3",
            Isolation::Hard => "hard",
        }
    }

    /// What the configuration is, in Figure 5's terms.
    pub fn description(self) -> &'static str {
        match self {
            Isolation::Soft => {
                "physical memory (large pages), one address space, all SIPs in ring 0 (Singularity's baseline)"
            }
            Isolation::Paged => "4 KiB pages, one system-wide address space, all SIPs in ring 0",
            Isolation::ClientSpace => {
                "4 KiB pages; the client SIP in its own address space, still in ring 0"
            }
            Isolation::ClientRing3 => {
                "4 KiB pages; the client SIP in its own address space in ring 3"
            }
            Isolation::Hard => "every SIP in its own ring-3 address space (a full microkernel)",
        }
    }

    /// Where a SIP runs; `client` says whether it is the system's client SIP.
    pub fn placement(self, client: bool) -> Placement {
        match (self, client) {
            (Isolation::Soft, _) => Placement::Kernel,
            (Isolation::Paged, _) | (Isolation::ClientSpace | Isolation::ClientRing3, false) => {
                Placement::SharedSpace
            }
            (Isolation::ClientSpace, true) => Placement::OwnSpace { ring3: false },
            (Isolation::ClientRing3, true) | (Isolation::Hard, _) => {
                Placement::OwnSpace { ring3: true }
            }
        }
    }

    /// Whether the configuration treats one SIP differently (it needs a client).
    pub fn needs_client(self) -> bool {
        matches!(self, Isolation::ClientSpace | Isolation::ClientRing3)
    }

    /// Parses a command-line name; `None` for anything but the names in [`Isolation::ALL`].
    pub fn from_name(name: &str) -> Option<Isolation> {
        Isolation::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A position-independent x86_64 program (the hosted SIP runtime, the system-call probe),
/// taken apart by the runner so the kernel only copies and relocates: its loadable
/// segments, at addresses relative to wherever the kernel loads it, and the words the
/// kernel must add the load address to (`R_X86_64_RELATIVE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// (offset of a word, addend): the word becomes load address + addend.
    pub relocations: Vec<(u64, u64)>,
}

/// One loadable segment of a [`Program`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub address: u64,
    /// Bytes in memory; past `data.len()` they are zero.
    pub size: u64,
    pub writable: bool,
    pub executable: bool,
    pub data: Vec<u8>,
}

impl Program {
    /// Bytes the program spans from offset 0, rounded up to whole pages.
    pub fn span(&self) -> u64 {
        let end = self
            .segments
            .iter()
            .map(|s| s.address + s.size)
            .max()
            .unwrap_or(0);
        end.div_ceil(4096) * 4096
    }
}

/// Console log verbosity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Every level, in the order the command line lists them.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|level| level.name() == name)
    }
}

/// Boot parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootConfig {
    pub isolation: Isolation,
    pub log_level: LogLevel,
    /// Name of a kernel self-test to run instead of the normal system; the kernel powers
    /// off with the test's verdict.
    pub self_test: Option<String>,
    /// Name of a benchmark suite to run instead of the normal system.
    pub bench: Option<String>,
    /// The engine that runs SIPs unless the system manifest says otherwise for one.
    pub engine: Engine,
    /// Faults to inject (`--inject`), for testing recovery.
    pub injections: Vec<Injection>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            isolation: Isolation::Soft,
            log_level: LogLevel::Info,
            self_test: None,
            bench: None,
            engine: Engine::Interp,
            injections: Vec::new(),
        }
    }
}

/// One named file in the package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub name: String,
    pub data: Vec<u8>,
}

/// What the ramdisk holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPackage {
    pub config: BootConfig,
    /// The system manifest's SIP entries, each naming a module in `files` (the same module
    /// may be named more than once). Every entry not listed in `on_request` starts at
    /// boot, in order.
    pub sips: Vec<String>,
    /// Indices into `sips` of the entries not started at boot: a SIP with the `start`
    /// power starts them, and each gets exactly the channels, devices, powers and limits
    /// its entry names (again, once the previous incarnation has ended).
    pub on_request: Vec<u32>,
    /// Channels the kernel creates at start, handing each end to a SIP.
    pub channels: Vec<Connection>,
    /// Named files: SIP modules, and contract sources (`*.contract`) that the kernel
    /// compiles at boot.
    pub files: Vec<File>,
    /// Index into `sips` of the client SIP, which the `client-*` configurations isolate.
    pub client: Option<u32>,
    /// Programs the kernel runs in SIP address spaces: `sip-hosted`, `syscall-probe`.
    pub programs: Vec<Program>,
    /// Devices the system manifest gives to SIPs. A SIP gets a device only if an entry
    /// here names it *and* its own manifest asks for it.
    pub devices: Vec<DeviceGrant>,
    /// Powers over other SIPs the system manifest gives.
    pub powers: Vec<PowerGrant>,
    /// Limits the system manifest lowers below what SIPs' own manifests ask for.
    pub limits: Vec<LimitCap>,
    /// Engines the system manifest chooses for single entries (index into `sips`),
    /// overriding [`BootConfig::engine`].
    pub engines: Vec<(u32, Engine)>,
    /// Compiled modules, one per module file, when some SIP runs compiled.
    pub artifacts: Vec<Artifact>,
    /// Restart policies of single entries; an entry without one is never restarted.
    pub restarts: Vec<RestartPolicy>,
    /// Arguments of single entries (`cordon_sip::args()`); an entry without any has none.
    pub args: Vec<SipArgs>,
}

/// The SIP modules the kernel's `micro` benchmark suite starts: the runner puts them in
/// the boot package for `bench --micro`, and the kernel checks them before the shell's
/// `bench` runs the suite.
pub const MICRO_SIPS: [&str; 9] = [
    "startup",
    "hello",
    "abi-bench",
    "yield",
    "primes",
    "compute",
    "echo-server",
    "echo-client",
    "echo-stress",
];

/// The arguments the system manifest (or the command line) gives one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipArgs {
    /// Index into [`BootPackage::sips`].
    pub sip: u32,
    pub args: Vec<String>,
}

/// Most bytes one SIP's arguments take encoded (each argument and its NUL).
pub const MAX_ARGS_BYTES: usize = 4096;

impl SipArgs {
    /// The encoded length: each argument followed by a NUL byte.
    pub fn encoded_len(args: &[String]) -> usize {
        args.iter().map(|a| a.len() + 1).sum()
    }

    /// Writes `args` encoded (each followed by a NUL byte) to `out` if they fit, and
    /// returns their encoded length either way: the `args` operation's contract.
    pub fn encode(args: &[String], out: &mut [u8]) -> usize {
        let len = Self::encoded_len(args);
        if len <= out.len() {
            let mut at = 0;
            for arg in args {
                out[at..at + arg.len()].copy_from_slice(arg.as_bytes());
                out[at + arg.len()] = 0;
                at += arg.len() + 1;
            }
        }
        len
    }

    /// Checks every entry's arguments: the entry exists, is given arguments once, and
    /// [`SipArgs::check`] passes. The runner checks before it builds; the kernel again.
    pub fn check_all(sips: &[String], all: &[SipArgs]) -> Result<(), String> {
        for (i, a) in all.iter().enumerate() {
            let Some(name) = sips.get(a.sip as usize) else {
                return Err(alloc::format!(
                    "arguments for entry #{}, which does not exist",
                    a.sip
                ));
            };
            if all[..i].iter().any(|b| b.sip == a.sip) {
                return Err(alloc::format!("arguments for `{name}` are given twice"));
            }
            Self::check(&a.args).map_err(|e| alloc::format!("arguments of `{name}`: {e}"))?;
        }
        Ok(())
    }

    /// Checks arguments as the kernel will hand them over: no NUL inside one, at most
    /// [`MAX_ARGS_BYTES`] encoded.
    pub fn check(args: &[String]) -> Result<(), String> {
        if let Some(bad) = args.iter().find(|a| a.contains('\0')) {
            return Err(alloc::format!("argument {bad:?} contains a NUL byte"));
        }
        let len = Self::encoded_len(args);
        if len > MAX_ARGS_BYTES {
            return Err(alloc::format!(
                "the arguments take {len} bytes; at most {MAX_ARGS_BYTES}"
            ));
        }
        Ok(())
    }
}

/// An end of a channel the system manifest gives a SIP: the endpoint's name and, when the
/// system manifest wired it, the channel's contract and the SIP's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GivenEnd<'a> {
    pub endpoint: &'a str,
    pub contract: Option<&'a str>,
    pub role: Option<cordon_abi::Role>,
}

/// A disagreement between the ends a SIP is given and the endpoints its own manifest
/// declares; indices into those two lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointMismatch {
    /// A given end its manifest does not declare.
    Undeclared(usize),
    /// A given end its manifest declares with the other role.
    Role(usize),
    /// A given end its manifest declares for another contract.
    Contract(usize),
    /// A declared endpoint no end is given for.
    Unconnected(usize),
}

/// Every disagreement between the ends `given` to a SIP and the endpoints its manifest
/// `declared`: the runner reports them before boot, the kernel refuses to start such a
/// SIP (one rule, two places).
pub fn endpoint_mismatches(
    given: &[GivenEnd<'_>],
    declared: &[cordon_abi::EndpointDecl],
) -> Vec<EndpointMismatch> {
    let mut found = Vec::new();
    for (i, end) in given.iter().enumerate() {
        let Some(decl) = declared.iter().find(|d| d.names(end.endpoint)) else {
            found.push(EndpointMismatch::Undeclared(i));
            continue;
        };
        if end.role.is_some_and(|role| role != decl.role) {
            found.push(EndpointMismatch::Role(i));
        }
        if end.contract.is_some_and(|c| c != decl.contract) {
            found.push(EndpointMismatch::Contract(i));
        }
    }
    for (i, decl) in declared.iter().enumerate() {
        if !given.iter().any(|g| g.endpoint == decl.name) {
            found.push(EndpointMismatch::Unconnected(i));
        }
    }
    found
}

/// `exporter` or `importer`.
pub fn role_name(role: cordon_abi::Role) -> &'static str {
    match role {
        cordon_abi::Role::Exporter => "exporter",
        cordon_abi::Role::Importer => "importer",
    }
}

impl EndpointMismatch {
    /// The mismatch in words, about SIP `sip`.
    pub fn describe(
        self,
        sip: &str,
        given: &[GivenEnd<'_>],
        declared: &[cordon_abi::EndpointDecl],
    ) -> String {
        match self {
            EndpointMismatch::Undeclared(i) => {
                let list: Vec<String> = declared
                    .iter()
                    .map(|d| {
                        let more = match d.connections {
                            0 | 1 => String::new(),
                            n => alloc::format!(", also `{}#2` ... `{}#{n}`", d.name, d.name),
                        };
                        alloc::format!(
                            "`{}` ({} of {}{more})",
                            d.name,
                            role_name(d.role),
                            d.contract
                        )
                    })
                    .collect();
                alloc::format!(
                    "`{sip}`'s own manifest declares no endpoint `{}` (it declares {})",
                    given[i].endpoint,
                    if list.is_empty() {
                        String::from("none")
                    } else {
                        list.join(", ")
                    }
                )
            }
            EndpointMismatch::Role(i) => {
                let role = given[i].role.map_or("?", role_name);
                let other = if role == "exporter" {
                    "importer"
                } else {
                    "exporter"
                };
                alloc::format!(
                    "`{sip}.{}` is the {role} of this channel, but `{sip}`'s own manifest declares it as the {other}",
                    given[i].endpoint
                )
            }
            EndpointMismatch::Contract(i) => {
                let decl = declared.iter().find(|d| d.names(given[i].endpoint));
                alloc::format!(
                    "`{sip}.{}` is an end of a {} channel, but `{sip}`'s own manifest declares it for {}",
                    given[i].endpoint,
                    given[i].contract.unwrap_or("?"),
                    decl.map_or("?", |d| d.contract.as_str())
                )
            }
            EndpointMismatch::Unconnected(i) => alloc::format!(
                "`{sip}`'s own manifest declares endpoint `{}` ({} of {}), which no channel connects",
                declared[i].name,
                role_name(declared[i].role),
                declared[i].contract
            ),
        }
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;
    use cordon_abi::{EndpointDecl, Role};

    #[test]
    fn every_mismatch_is_found_once() {
        let declared = alloc::vec![
            EndpointDecl {
                name: "server".into(),
                contract: "Echo".into(),
                role: Role::Importer,
                connections: 1,
            },
            EndpointDecl {
                name: "log".into(),
                contract: "Log".into(),
                role: Role::Importer,
                connections: 1,
            },
        ];
        let given = [
            GivenEnd {
                endpoint: "server",
                contract: Some("Kv"),
                role: Some(Role::Exporter),
            },
            GivenEnd {
                endpoint: "extra",
                contract: None,
                role: None,
            },
        ];
        let found = endpoint_mismatches(&given, &declared);
        assert_eq!(
            found,
            [
                EndpointMismatch::Role(0),
                EndpointMismatch::Contract(0),
                EndpointMismatch::Undeclared(1),
                EndpointMismatch::Unconnected(1),
            ]
        );
        let words: Vec<String> = found
            .iter()
            .map(|m| m.describe("c", &given, &declared))
            .collect();
        assert!(words[0].contains("`c.server` is the exporter of this channel, but `c`'s own manifest declares it as the importer"));
        assert!(
            words[1]
                .contains("is an end of a Kv channel, but `c`'s own manifest declares it for Echo")
        );
        assert!(words[2].contains("declares no endpoint `extra` (it declares `server` (importer of Echo), `log` (importer of Log))"));
        assert!(
            words[3]
                .contains("declares endpoint `log` (importer of Log), which no channel connects")
        );
        // Names only (a SIP no entry names): roles and contracts are not compared.
        let by_name = [
            GivenEnd {
                endpoint: "server",
                contract: None,
                role: None,
            },
            GivenEnd {
                endpoint: "log",
                contract: None,
                role: None,
            },
        ];
        assert!(endpoint_mismatches(&by_name, &declared).is_empty());
    }

    #[test]
    fn numbered_connections_are_optional_up_to_the_declared_count() {
        let declared = alloc::vec![EndpointDecl {
            name: "clients".into(),
            contract: "FileSystem".into(),
            role: Role::Exporter,
            connections: 4,
        }];
        let end = |endpoint| GivenEnd {
            endpoint,
            contract: Some("FileSystem"),
            role: Some(Role::Exporter),
        };
        // The first connection alone, or with some of the others (in any order).
        assert!(endpoint_mismatches(&[end("clients")], &declared).is_empty());
        let three = [end("clients#4"), end("clients"), end("clients#2")];
        assert!(endpoint_mismatches(&three, &declared).is_empty());
        // Past the count, or without the first: refused, and said why.
        let five = [end("clients"), end("clients#5")];
        assert_eq!(
            endpoint_mismatches(&five, &declared),
            [EndpointMismatch::Undeclared(1)]
        );
        let words = EndpointMismatch::Undeclared(1).describe("fs", &five, &declared);
        assert!(
            words.contains(
                "declares no endpoint `clients#5` (it declares `clients` (exporter of FileSystem, also `clients#2` ... `clients#4`))"
            ),
            "{words}"
        );
        assert_eq!(
            endpoint_mismatches(&[end("clients#2")], &declared),
            [EndpointMismatch::Unconnected(0)]
        );
    }
}

/// Checks that a system manifest's wiring can work: every on-request index and channel
/// end names an entry of `sips`, no endpoint is the end of two channels, no channel joins
/// two on-request entries (neither would be running when the other starts), and some
/// entry starts at boot. The runner checks a manifest with it before it builds anything;
/// the kernel checks the boot package again (it may have been built some other way).
pub fn check_wiring(
    sips: &[String],
    on_request: &[u32],
    channels: &[Connection],
) -> Result<(), String> {
    let entries = sips.len() as u32;
    if let Some(bad) = on_request.iter().find(|&&i| i >= entries) {
        return Err(alloc::format!("on-request entry #{bad} does not exist"));
    }
    if !(0..entries).any(|i| !on_request.contains(&i)) {
        return Err("the system manifest starts no SIPs".into());
    }
    let mut ends: Vec<(u32, &str)> = Vec::new();
    for c in channels {
        for end in [&c.exporter, &c.importer] {
            let Some(sip) = sips.get(end.sip as usize) else {
                return Err(alloc::format!(
                    "channel {} names SIP #{}, which does not exist",
                    c.contract,
                    end.sip
                ));
            };
            if ends.contains(&(end.sip, end.endpoint.as_str())) {
                return Err(alloc::format!(
                    "endpoint `{sip}.{}` is the end of two channels",
                    end.endpoint
                ));
            }
            ends.push((end.sip, &end.endpoint));
        }
        if on_request.contains(&c.exporter.sip) && on_request.contains(&c.importer.sip) {
            return Err(alloc::format!(
                "channel {} from `{}.{}` to `{}.{}` connects two on-request SIPs: one end must start at boot, to be running when the other is started",
                c.contract,
                sips[c.exporter.sip as usize],
                c.exporter.endpoint,
                sips[c.importer.sip as usize],
                c.importer.endpoint
            ));
        }
    }
    Ok(())
}

/// The system manifest caps SIP `sip`'s limits: each one set here replaces the SIP's own
/// manifest value when it is lower (a system manifest can lower a limit, never raise it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitCap {
    pub sip: u32,
    pub memory_pages: Option<u32>,
    pub call_depth: Option<u32>,
    pub fuel: Option<u64>,
    pub cpu_ticks: Option<u64>,
    pub kernel_objects: Option<u32>,
    pub kernel_bytes: Option<u64>,
}

impl LimitCap {
    /// `limits` with every cap applied (the lower value wins).
    pub fn apply(&self, mut limits: cordon_abi::Limits) -> cordon_abi::Limits {
        fn low<T: Ord + Copy>(own: T, cap: Option<T>) -> T {
            cap.map_or(own, |c| own.min(c))
        }
        fn budget(own: Option<u64>, cap: Option<u64>) -> Option<u64> {
            match (own, cap) {
                (Some(o), Some(c)) => Some(o.min(c)),
                (o, c) => o.or(c),
            }
        }
        limits.max_memory_pages = low(limits.max_memory_pages, self.memory_pages);
        limits.max_call_depth = low(limits.max_call_depth, self.call_depth);
        limits.max_kernel_objects = low(limits.max_kernel_objects, self.kernel_objects);
        limits.max_kernel_bytes = low(limits.max_kernel_bytes, self.kernel_bytes);
        limits.fuel = budget(limits.fuel, self.fuel);
        limits.cpu_ticks = budget(limits.cpu_ticks, self.cpu_ticks);
        limits
    }
}

/// The system manifest gives SIP `sip` (index into `sips`) powers over other SIPs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerGrant {
    pub sip: u32,
    /// `sip_start`: start SIPs from modules in the package.
    pub start: bool,
    /// `sip_kill`: end any SIP.
    pub kill: bool,
    /// `sip_info`, `report`: read any SIP's state and the kernel's accounting of it, and
    /// the kernel's tables.
    pub inspect: bool,
    /// `console_read`: the bytes typed on the console (one SIP of a system at most).
    pub console: bool,
    /// `shutdown`: end every SIP and power off.
    pub shutdown: bool,
    /// `bench`: run the kernel's benchmark suites.
    pub bench: bool,
}

impl PowerGrant {
    /// Every power's name, as system manifests write them.
    pub const NAMES: [&'static str; 6] =
        ["start", "kill", "inspect", "console", "shutdown", "bench"];

    /// Gives the power called `name`; false if there is none by that name.
    pub fn grant(&mut self, name: &str) -> bool {
        let power = match name {
            "start" => &mut self.start,
            "kill" => &mut self.kill,
            "inspect" => &mut self.inspect,
            "console" => &mut self.console,
            "shutdown" => &mut self.shutdown,
            "bench" => &mut self.bench,
            _ => return false,
        };
        *power = true;
        true
    }
}

/// The system manifest gives SIP `sip` (index into `sips`) the device `device`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub sip: u32,
    pub device: DeviceSelector,
}

/// Which PCI function a grant names: any one with these ids, or the one at this address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSelector {
    Ids { vendor: u16, device: u16 },
    Address { bus: u8, device: u8, function: u8 },
}

impl DeviceSelector {
    /// The (vendor, device) ids this selector names, if it names them (an address names
    /// whatever sits there, known only on the machine).
    pub fn ids(&self) -> Option<(u16, u16)> {
        match *self {
            DeviceSelector::Ids { vendor, device } => Some((vendor, device)),
            DeviceSelector::Address { .. } => None,
        }
    }

    /// Whether the function at `address` with `ids` is one this selector names.
    pub fn names(&self, address: (u8, u8, u8), ids: (u16, u16)) -> bool {
        match *self {
            DeviceSelector::Ids { vendor, device } => (vendor, device) == ids,
            DeviceSelector::Address {
                bus,
                device,
                function,
            } => (bus, device, function) == address,
        }
    }
}

impl core::fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceSelector::Ids { vendor, device } => write!(f, "pci:{vendor:04x}:{device:04x}"),
            DeviceSelector::Address {
                bus,
                device,
                function,
            } => write!(f, "pci@{bus:02x}:{device:02x}.{function}"),
        }
    }
}

impl core::str::FromStr for DeviceSelector {
    type Err = String;

    /// `pci:VVVV:DDDD` (vendor and device ids) or `pci@BB:DD.F` (bus, device, function;
    /// hexadecimal as `lspci` prints them).
    fn from_str(text: &str) -> Result<DeviceSelector, String> {
        let bad = || {
            alloc::format!(
                "`{text}` is not a device (expected `pci:VVVV:DDDD` for vendor and device ids, or `pci@BB:DD.F` for a PCI address)"
            )
        };
        if let Some(address) = text.strip_prefix("pci@") {
            let (bus, rest) = address.split_once(':').ok_or_else(bad)?;
            let (device, function) = rest.split_once('.').ok_or_else(bad)?;
            let hex = |s: &str, max: u8| {
                u8::from_str_radix(s, 16)
                    .ok()
                    .filter(|v| *v <= max && !s.is_empty() && s.len() <= 2)
                    .ok_or_else(bad)
            };
            return Ok(DeviceSelector::Address {
                bus: hex(bus, 0xff)?,
                device: hex(device, 0x1f)?,
                function: hex(function, 7)?,
            });
        }
        match text.parse::<cordon_abi::Resource>() {
            Ok(cordon_abi::Resource::PciDevice { vendor, device }) => {
                Ok(DeviceSelector::Ids { vendor, device })
            }
            Err(_) => Err(bad()),
        }
    }
}

/// One end of a system-manifest channel: which SIP (index into `sips`) and the name the
/// SIP asks for it by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    pub sip: u32,
    pub endpoint: String,
}

/// A channel the system manifest sets up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub contract: String,
    pub exporter: Attach,
    pub importer: Attach,
}

/// Why a ramdisk could not be read as a boot package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The ramdisk is shorter than the header.
    Truncated { len: usize },
    /// The first eight bytes are not [`MAGIC`].
    BadMagic,
    /// Written by a runner with another [`FORMAT_VERSION`].
    Version { found: u32 },
    /// The body does not decode.
    Body(postcard::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { len } => {
                write!(
                    f,
                    "boot package truncated: {len} bytes, header needs {HEADER_LEN}"
                )
            }
            DecodeError::BadMagic => write!(f, "ramdisk is not a Cordon boot package (bad magic)"),
            DecodeError::Version { found } => write!(
                f,
                "boot package format {found}, this kernel reads format {FORMAT_VERSION}: rebuild with the matching runner"
            ),
            DecodeError::Body(e) => write!(f, "boot package body does not decode: {e}"),
        }
    }
}

const HEADER_LEN: usize = MAGIC.len() + 4;

impl BootPackage {
    /// Serialises the package: magic, little-endian format version, postcard body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::from(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Serialising into a Vec only fails on allocation failure, which aborts anyway.
        let body = postcard::to_allocvec(self).expect("boot package serialises");
        out.extend_from_slice(&body);
        out
    }

    /// Reads a package written by [`BootPackage::encode`].
    pub fn decode(bytes: &[u8]) -> Result<BootPackage, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated { len: bytes.len() });
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[MAGIC.len()..HEADER_LEN]);
        let found = u32::from_le_bytes(version);
        if found != FORMAT_VERSION {
            return Err(DecodeError::Version { found });
        }
        postcard::from_bytes(&bytes[HEADER_LEN..]).map_err(DecodeError::Body)
    }

    /// Whether entry `index` of `sips` starts at boot (not only on request).
    pub fn starts_at_boot(&self, index: u32) -> bool {
        !self.on_request.contains(&index)
    }

    /// The entry of `sips` that is started on request under module name `name`.
    pub fn on_request_entry(&self, name: &str) -> Option<u32> {
        self.on_request
            .iter()
            .copied()
            .find(|&i| self.sips.get(i as usize).is_some_and(|s| s == name))
    }

    /// The channels that have entry `index` at one end.
    pub fn channels_of(&self, index: u32) -> impl Iterator<Item = &Connection> {
        self.channels
            .iter()
            .filter(move |c| c.exporter.sip == index || c.importer.sip == index)
    }

    /// The program called `name`, if the package has one.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The artifact compiled from module file `name`, if the runner made one.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.module == name)
    }

    /// The engine for system-manifest entry `entry` (the boot default for `None`).
    pub fn engine_of(&self, entry: Option<u32>) -> Engine {
        entry
            .and_then(|e| self.engines.iter().find(|(i, _)| *i == e))
            .map_or(self.config.engine, |(_, engine)| *engine)
    }

    /// The restart policy of entry `entry`, if the system manifest gives one.
    pub fn restart_policy(&self, entry: u32) -> Option<&RestartPolicy> {
        self.restarts.iter().find(|p| p.sip == entry)
    }

    /// The arguments of entry `entry` (none for `None` or an entry without any).
    pub fn args_of(&self, entry: Option<u32>) -> &[String] {
        entry
            .and_then(|e| self.args.iter().find(|a| a.sip == e))
            .map_or(&[], |a| a.args.as_slice())
    }

    /// The file called `name`, if the package has one.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|file| file.name == name)
            .map(|file| file.data.as_slice())
    }
}

#[cfg(test)]
mod args_tests {
    use super::*;

    #[test]
    fn arguments_are_encoded_only_when_they_fit() {
        let args = alloc::vec![String::from("count"), String::from("12")];
        let mut out = [0xffu8; 9];
        assert_eq!(SipArgs::encode(&args, &mut out), 9);
        assert_eq!(&out, b"count\x0012\x00");
        let mut small = [0xffu8; 8];
        assert_eq!(SipArgs::encode(&args, &mut small), 9);
        assert_eq!(small, [0xff; 8], "nothing written when it does not fit");
        assert_eq!(SipArgs::encode(&[], &mut []), 0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(
            SipArgs::check(&[String::from("a\0b")])
                .unwrap_err()
                .contains("NUL")
        );
        let long = alloc::vec![String::from_utf8(alloc::vec![b'x'; MAX_ARGS_BYTES]).unwrap()];
        assert!(SipArgs::check(&long).unwrap_err().contains("at most 4096"));
        assert!(SipArgs::check(&[String::from("ok")]).is_ok());
    }
}

#[cfg(test)]
mod artifact_tests {
    use super::*;

    #[test]
    fn an_artifact_checks_against_its_own_module_only() {
        let artifact = Artifact::new("hello", b"\0asm one", alloc::vec![1, 2, 3]);
        assert_eq!(artifact.check(b"\0asm one"), Ok(()));
        let other = artifact.check(b"\0asm two").unwrap_err();
        assert!(other.contains("belongs to another module"), "{other}");
        let mut tampered = artifact.clone();
        tampered.code[1] ^= 1;
        let changed = tampered.check(b"\0asm one").unwrap_err();
        assert!(
            changed.contains("was changed after compilation"),
            "{changed}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiring_that_cannot_work_is_refused() {
        let package = sample();
        let check = |on_request: &[u32], channels: &[Connection]| {
            check_wiring(&package.sips, on_request, channels)
        };
        assert_eq!(check(&package.on_request, &package.channels), Ok(()));
        assert!(check(&[0, 1], &[]).unwrap_err().contains("starts no SIPs"));
        assert!(check(&[5], &[]).unwrap_err().contains("#5 does not exist"));
        let twice = [package.channels[0].clone(), package.channels[0].clone()];
        assert!(
            check(&[], &twice)
                .unwrap_err()
                .contains("endpoint `hello.wasm.clients` is the end of two channels")
        );
        let mut far = package.channels[0].clone();
        far.importer.sip = 7;
        assert!(check(&[], &[far]).unwrap_err().contains("names SIP #7"));
        let mut both = package.channels.clone();
        both[0].exporter.sip = 1;
        assert!(
            check(&[0, 1], &both).is_err(),
            "no entry at boot, and a channel between on-request entries"
        );
        let sips = ["a".into(), "b".into(), "c".into()];
        let mut joined = package.channels[0].clone();
        (joined.exporter.sip, joined.importer.sip) = (1, 2);
        assert!(
            check_wiring(&sips, &[1, 2], &[joined])
                .unwrap_err()
                .contains("connects two on-request SIPs")
        );
    }

    #[test]
    fn on_request_entries_are_found_by_module_name() {
        let package = sample();
        assert!(package.starts_at_boot(0) && !package.starts_at_boot(1));
        assert_eq!(package.on_request_entry("hello.wasm"), Some(1));
        assert_eq!(package.on_request_entry("other.wasm"), None);
        assert_eq!(package.channels_of(1).count(), 1);
        assert_eq!(package.channels_of(2).count(), 0);
    }

    fn sample() -> BootPackage {
        BootPackage {
            config: BootConfig {
                isolation: Isolation::Hard,
                log_level: LogLevel::Debug,
                self_test: Some("threads".into()),
                bench: None,
                engine: Engine::Compiled,
                injections: vec![Injection::parse("crash:hello.wasm:3").unwrap()],
            },
            restarts: vec![RestartPolicy::new(1, RestartMode::OnFailure)],
            args: vec![SipArgs {
                sip: 0,
                args: vec!["--count".into(), "3".into()],
            }],
            engines: vec![(1, Engine::Interp)],
            artifacts: vec![Artifact::new("hello.wasm", &[0, 97, 115, 109], vec![7; 9])],
            sips: vec!["hello.wasm".into(), "hello.wasm".into()],
            on_request: vec![1],
            channels: vec![Connection {
                contract: "Echo".into(),
                exporter: Attach {
                    sip: 0,
                    endpoint: "clients".into(),
                },
                importer: Attach {
                    sip: 1,
                    endpoint: "server".into(),
                },
            }],
            files: vec![File {
                name: "hello.wasm".into(),
                data: vec![0, 97, 115, 109],
            }],
            limits: vec![LimitCap {
                sip: 1,
                cpu_ticks: Some(5),
                ..LimitCap::default()
            }],
            powers: vec![PowerGrant {
                sip: 0,
                start: true,
                kill: false,
                inspect: true,
                console: true,
                shutdown: false,
                bench: false,
            }],
            devices: vec![DeviceGrant {
                sip: 1,
                device: DeviceSelector::Address {
                    bus: 0,
                    device: 4,
                    function: 0,
                },
            }],
            client: Some(1),
            programs: vec![Program {
                name: "sip-hosted".into(),
                entry: 0x1000,
                segments: vec![Segment {
                    address: 0x1000,
                    size: 0x2001,
                    writable: false,
                    executable: true,
                    data: vec![0xcc],
                }],
                relocations: vec![(0x1008, 0x1000)],
            }],
        }
    }

    #[test]
    fn round_trips() {
        let pkg = sample();
        assert_eq!(BootPackage::decode(&pkg.encode()).unwrap(), pkg);
        assert_eq!(pkg.file("hello.wasm"), Some(&[0, 97, 115, 109][..]));
        assert_eq!(pkg.file("missing"), None);
    }

    #[test]
    fn rejects_foreign_bytes() {
        assert_eq!(
            BootPackage::decode(b"short"),
            Err(DecodeError::Truncated { len: 5 })
        );
        assert_eq!(
            BootPackage::decode(b"NOTCORDON\0\0\0\0"),
            Err(DecodeError::BadMagic)
        );
        let mut other_version = sample().encode();
        other_version[8] = 99;
        assert_eq!(
            BootPackage::decode(&other_version),
            Err(DecodeError::Version { found: 99 })
        );
        let mut cut = sample().encode();
        cut.truncate(cut.len() - 3);
        assert!(matches!(
            BootPackage::decode(&cut),
            Err(DecodeError::Body(_))
        ));
    }

    #[test]
    fn names_round_trip() {
        for mode in Isolation::ALL {
            assert_eq!(Isolation::from_name(mode.name()), Some(mode));
        }
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::from_name(level.name()), Some(level));
        }
        assert_eq!(Isolation::from_name("foo"), None);
    }

    #[test]
    fn placements_follow_figure_5() {
        use Placement::*;
        let row = |mode: Isolation| (mode.placement(true), mode.placement(false));
        assert_eq!(row(Isolation::Soft), (Kernel, Kernel));
        assert_eq!(row(Isolation::Paged), (SharedSpace, SharedSpace));
        assert_eq!(
            row(Isolation::ClientSpace),
            (OwnSpace { ring3: false }, SharedSpace)
        );
        assert_eq!(
            row(Isolation::ClientRing3),
            (OwnSpace { ring3: true }, SharedSpace)
        );
        assert_eq!(
            row(Isolation::Hard),
            (OwnSpace { ring3: true }, OwnSpace { ring3: true })
        );
        let needs: Vec<_> = Isolation::ALL.iter().map(|m| m.needs_client()).collect();
        assert_eq!(needs, [false, false, true, true, false]);
    }

    #[test]
    fn program_span_covers_bss() {
        let p = sample().programs.remove(0);
        assert_eq!(p.span(), 0x4000);
    }

    #[test]
    fn device_selectors_parse_and_print() {
        for (text, want) in [
            (
                "pci:1af4:1001",
                DeviceSelector::Ids {
                    vendor: 0x1af4,
                    device: 0x1001,
                },
            ),
            (
                "pci@00:04.0",
                DeviceSelector::Address {
                    bus: 0,
                    device: 4,
                    function: 0,
                },
            ),
        ] {
            let parsed: DeviceSelector = text.parse().unwrap();
            assert_eq!(parsed, want);
            assert_eq!(parsed.to_string(), text);
        }
        for bad in [
            "pci@00:20.0",
            "pci@00:04.8",
            "pci@0004.0",
            "pci:1af4",
            "usb:1",
        ] {
            let err = bad.parse::<DeviceSelector>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let by_address: DeviceSelector = "pci@00:04.0".parse().unwrap();
        assert!(by_address.names((0, 4, 0), (1, 2)));
        assert!(!by_address.names((0, 5, 0), (1, 2)));
    }

    #[test]
    fn caps_only_lower_limits() {
        let own = cordon_abi::Limits {
            max_memory_pages: 32,
            cpu_ticks: Some(20),
            ..cordon_abi::Limits::default()
        };
        let cap = LimitCap {
            memory_pages: Some(8),
            cpu_ticks: Some(100),
            fuel: Some(5000),
            kernel_objects: Some(1_000_000),
            ..LimitCap::default()
        };
        let capped = cap.apply(own);
        assert_eq!(capped.max_memory_pages, 8, "lowered");
        assert_eq!(capped.cpu_ticks, Some(20), "not raised");
        assert_eq!(
            capped.fuel,
            Some(5000),
            "a budget where the SIP asked for none"
        );
        assert_eq!(
            capped.max_kernel_objects, own.max_kernel_objects,
            "not raised"
        );
    }
}
