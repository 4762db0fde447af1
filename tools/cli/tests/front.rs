//! The front end: the file commands run in it, without the kernel in its dependency tree;
//! everything else goes to the runner, arguments and exit status untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-front-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_file_commands_never_build_the_kernel_or_the_sips() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "cordon-cli",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(repository())
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.contains("contracts v"), "{tree}");
    for heavy in [
        "kernel v",
        "sip-hosted v",
        "sip-echo-server v",
        "bootloader v",
        "wasmtime v",
    ] {
        assert!(
            !tree.contains(heavy),
            "the front end depends on {heavy:?}:\n{tree}"
        );
    }
}

#[test]
fn file_commands_run_here_and_everything_else_goes_to_the_runner_verbatim() {
    let dir = scratch("forward");
    // A stand-in runner that prints its arguments and exits 7.
    let runner = dir.join("runner.sh");
    std::fs::write(
        &runner,
        "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\nexit 7\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&runner)
        .status()
        .unwrap();
    let front = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .current_dir(&dir)
            .env("CORDON_RUNNER", &runner)
            .output()
            .expect("the front end runs")
    };
    let out = front(&["--isolation", "hard", "--sip", "a b", "--help"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[--isolation]\n[hard]\n[--sip]\n[a b]\n[--help]\n"
    );
    let out = front(&["bench", "--quick"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[bench]\n[--quick]\n");
    // The file commands never reach the runner.
    let echo = repository().join("contracts/files/echo.contract");
    let out = front(&["contract", echo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("contract Echo: "));
    let out = front(&["new", "contract", "key-value"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("key-value.contract")).unwrap();
    assert!(text.contains("contract KeyValue {"), "{text}");
    let out = front(&["verify", "nothing.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SIP module at `nothing.wasm`"));
    std::fs::remove_dir_all(&dir).unwrap();
}
