//! The runner's command line: bad arguments are refused, with the valid values, before
//! anything is built or booted.

use std::process::Command;

fn cordon(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
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
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
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

    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
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
        stderr.contains("possible values:") && stderr.contains("hello"),
        "{stderr}"
    );
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
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
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
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
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
