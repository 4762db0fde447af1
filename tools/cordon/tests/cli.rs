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
    assert!(stderr.contains("[possible values: soft, hard]"), "{stderr}");
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
