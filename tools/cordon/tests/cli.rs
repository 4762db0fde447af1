//! The runner's command line: bad arguments are refused, with the valid values, before
//! anything is built or booted.

use std::process::Command;

fn cordon(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon-runner"))
        .args(args)
        .output()
        .expect("runs the cordon binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_isolation_mode_names_the_valid_ones() {
    let (code, stderr) = cordon(&["--isolation", "foo"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'foo'"), "{stderr}");
    assert!(
        stderr.contains("[possible values: soft, paged, client-space, client-ring3, hard]"),
        "{stderr}"
    );
    assert!(!stderr.contains("[cordon]"), "nothing may start: {stderr}");
}

#[test]
fn unknown_option_is_refused() {
    let (code, stderr) = cordon(&["--frobnicate"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unexpected argument '--frobnicate'"),
        "{stderr}"
    );
}

#[test]
fn unknown_accelerator_names_the_valid_ones() {
    let (code, stderr) = cordon(&["--accel", "hvf"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("[possible values: tcg, kvm]"), "{stderr}");
}

#[test]
fn a_driver_asking_for_a_device_the_system_does_not_give_is_refused_before_boot() {
    let (code, stderr) = cordon(&["--sip", "virtio-blk", "--sip", "hello"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`virtio-blk`'s own manifest asks for resource 0 (PCI device 1af4:1001), but the system manifest gives it no such device"),
        "{stderr}"
    );
    assert!(stderr.contains("device = \"pci:1af4:1001\""), "{stderr}");
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
}

fn sip_path(name: &str) -> &'static str {
    cordon::sips::SIPS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
        .unwrap_or_else(|| panic!("runner built without SIP {name}"))
}

#[test]
fn verify_accepts_built_sips_and_explains_refusals() {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon-runner"))
        .args(["verify", sip_path("hello"), sip_path("spin")])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("accepted: SIP `hello`, imports ["),
        "{stdout}"
    );
    assert!(stdout.contains("fuel 20000000"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_cordon-runner"))
        .args(["verify", sip_path("hello"), sip_path("load-code")])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("refused: rule `closed-abi` at byte 0x16: import `cordon.load_code` is not part of the kernel ABI"),
        "{stdout}"
    );
}

#[test]
fn unknown_sip_names_the_available_ones() {
    let (code, stderr) = cordon(&["--sip", "nosuch"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no SIP called `nosuch` (built-in SIPs: ") && stderr.contains("hello"),
        "{stderr}"
    );
    assert!(
        stderr.contains("or give the path of a .wasm or .wat file"),
        "{stderr}"
    );
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
}

/// A scratch directory for one test, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("cordon-cli-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_module_file_with_a_mistake_is_refused_before_boot_with_its_position() {
    let dir = Scratch::new("module-file");
    // A .wat syntax error: file, line and column, and nothing boots.
    let broken = dir.write(
        "broken.wat",
        ";; probe\n(module\n  (func (export \"cordon_main\")))\n  )\n",
    );
    let (code, stderr) = cordon(&["--sip", &broken]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{broken}:4:3: ")), "{stderr}");
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
    // A bad header line.
    let header = dir.write("header.wat", ";;@ memory-pages = \"many\"\n(module)\n");
    let (code, stderr) = cordon(&["--sip", &header]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{header}:1:1: `;;@` header: `memory-pages` must be a non-negative integer"
        )),
        "{stderr}"
    );
    // A missing file, and a module the verifier refuses, named as such.
    let (code, stderr) = cordon(&["--sip", "./no/such.wasm"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no SIP module at `./no/such.wasm`"),
        "{stderr}"
    );
    let junk = dir.write("junk.wasm", "not wasm");
    let (code, stderr) = cordon(&["--sip", &junk]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the verifier refuses it"), "{stderr}");
    // A module whose name a system manifest could not address (`SIP.endpoint`).
    let dotted = dir.write(
        "client.v2.wat",
        "(module (memory (export \"memory\") 1) (func (export \"cordon_main\")))",
    );
    let (code, stderr) = cordon(&["--sip", &dotted]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the SIP would be called `client.v2`: a SIP's name is lower-case letters, digits and `-`"),
        "{stderr}"
    );
    // A system manifest listing a path: relative to the manifest, checked the same way.
    let system = dir.write("kv.toml", "sips = [\"broken.wat\"]\n");
    let (code, stderr) = cordon(&["--system", &system]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("broken.wat:4:3: "), "{stderr}");
    assert!(stderr.contains(&format!("in {system}")), "{stderr}");
}

#[test]
fn contract_errors_carry_line_and_column() {
    let dir = std::env::temp_dir().join(format!("cordon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("ticker.contract");
    std::fs::write(
        &bad,
        "contract Ticker {\n  message Tick;\n  initial state S { Tick! -> S; }\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon-runner"))
        .args(["contract", bad.to_str().unwrap()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ticker.contract:3:21: error: unbounded queue"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 |   initial state S { Tick! -> S; }"),
        "{stderr}"
    );

    let echo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/files/echo.contract"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cordon-runner"))
        .args(["contract", echo])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("contract Echo: 5 messages"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unknown_engine_is_refused_before_boot() {
    let (code, stderr) = cordon(&["--engine", "jit"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: interp, compiled]"),
        "{stderr}"
    );
}

/// `--inject` is checked before anything boots: its form, and that the SIP it names is in
/// the system.
#[test]
fn a_malformed_or_misdirected_injection_is_refused_before_boot() {
    let (code, stderr) = cordon(&["--inject", "crash:fs"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("expected crash:SIP:N"), "{stderr}");
    let (code, stderr) = cordon(&["--inject", "crash:fs:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is not a call number"), "{stderr}");
    let (code, stderr) = cordon(&["--system", "webfiles", "--inject", "crash:fss:3"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--inject crash:fss:3: no SIP `fss` in this system (its SIPs: virtio-blk, fs, webfiles)"
        ),
        "{stderr}"
    );
}

#[test]
fn contract_and_wiring_mistakes_are_all_reported_before_boot_with_positions() {
    let dir = Scratch::new("wiring");
    // A draft contract the manifest adds, with two errors and an unused message.
    let draft = dir.write(
        "kv.contract",
        "contract KeyValue {\n    message Put(key: bytes[32]);\n    message Draft;\n    initial state S { Put? -> Done; Get? -> S; }\n    state Done;\n    state Lost;\n}\n",
    );
    let system = dir.write(
        "kv.toml",
        "contracts = [\"kv.contract\"]\nsips = [\"echo-server\", \"echo-client\"]\n\n[[channels]]\ncontract = \"Echo\"\nexporter = \"echo-server.clients\"\nimporter = \"echo-client.server\"\n",
    );
    let (code, stderr) = cordon(&["--system", &system]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{draft}:4:37: error: unknown message `Get`")),
        "{stderr}"
    );
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");

    // Fixed, but with the unused message left: a warning; and the wiring is wrong twice.
    std::fs::write(
        &draft,
        "contract KeyValue {\n    message Put(key: bytes[32]);\n    message Done;\n    message Draft;\n    initial state S { Put? -> Done! -> S; }\n}\n",
    )
    .unwrap();
    std::fs::write(
        &system,
        "contracts = [\"kv.contract\"]\nsips = [\"echo-server\", \"echo-client\"]\n\n[[channels]]\ncontract = \"KeyValu\"\nexporter = \"echo-server.clients\"\nimporter = \"echo-client.srv\"\n",
    )
    .unwrap();
    let (code, stderr) = cordon(&["--system", &system]);
    assert_eq!(code, Some(2), "{stderr}");
    for needle in [
        format!(
            "{draft}:4:13: warning: message `Draft` is declared but no state sends or receives it"
        ),
        format!("{system}:5:12: no contract `KeyValu` (the package's contracts: "),
        "KeyValue".to_string(),
        format!(
            "{system}:7:12: `echo-client.srv`: `echo-client`'s own manifest declares no endpoint `srv` (it declares `server` (importer of Echo))"
        ),
        format!(
            "{system}: `echo-client`'s own manifest declares endpoint `server` (importer of Echo), which no channel connects"
        ),
    ] {
        assert!(stderr.contains(&needle), "missing {needle:?} in\n{stderr}");
    }
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
}

#[test]
fn a_malformed_or_misdirected_argument_is_refused_before_boot() {
    let (code, stderr) = cordon(&["--sip", "hello", "--arg", "hello"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--arg hello: write SIP=VALUE"), "{stderr}");
    let (code, stderr) = cordon(&["--sip", "hello", "--arg", "primes=10"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--arg primes=10: no SIP `primes`"),
        "{stderr}"
    );
    let long = format!("hello={}", "x".repeat(5000));
    let (code, stderr) = cordon(&["--sip", "hello", "--arg", &long]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("arguments of `hello`: the arguments take 5001 bytes; at most 4096"),
        "{stderr}"
    );
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
}

#[test]
fn a_module_built_against_another_abi_is_refused_before_boot_with_both_revisions() {
    let dir = Scratch::new("abi");
    let mut module =
        wat::parse_str("(module (memory (export \"memory\") 1) (func (export \"cordon_main\")))")
            .unwrap();
    let manifest = cordon_abi::Manifest {
        name: "old".into(),
        limits: cordon_abi::Limits::default(),
        endpoints: Vec::new(),
        resources: Vec::new(),
    };
    // The section as a SIP built against ABI v5 carries it.
    let payload = manifest.encode_for(5);
    let mut body = vec![cordon_abi::MANIFEST_SECTION.len() as u8];
    body.extend_from_slice(cordon_abi::MANIFEST_SECTION.as_bytes());
    body.extend_from_slice(&payload);
    module.push(0);
    module.push(body.len() as u8);
    module.extend(body);
    let path = dir.0.join("old.wasm");
    std::fs::write(&path, module).unwrap();
    let (code, stderr) = cordon(&["--sip", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "built against Cordon ABI v5, and this kernel speaks ABI v{}",
            cordon_abi::VERSION
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
}

#[test]
fn console_powers_are_checked_before_boot() {
    let dir = Scratch::new("console-powers");
    // Two readers of one console.
    let two = dir.write(
        "two.toml",
        "sips = [\"hello\", \"primes\"]\n\n[[powers]]\nsip = \"hello\"\nmay = [\"console\"]\n\n[[powers]]\nsip = \"primes\"\nmay = [\"console\", \"shutdown\"]\n",
    );
    let (code, stderr) = cordon(&["--system", &two]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "the `console` power is given to `hello` and to `primes`; the console has one reader"
        ),
        "{stderr}"
    );
    // --shell adds a console reader and the entries `console` and `shell`: a system that
    // has either already is refused.
    let reader = dir.write(
        "reader.toml",
        "sips = [\"hello\"]\n\n[[powers]]\nsip = \"hello\"\nmay = [\"console\"]\n",
    );
    let (code, stderr) = cordon(&["--system", &reader, "--shell"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("has the `console` power already (the console has one reader)"),
        "{stderr}"
    );
    let (code, stderr) = cordon(&["--system", "shell", "--shell"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("has an entry `console` already"),
        "{stderr}"
    );
    assert!(!stderr.contains("booted"), "nothing may boot: {stderr}");
}
