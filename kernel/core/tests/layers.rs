//! The kernel's layering: `kernel/src/arch` is the floor. It owns the hardware and knows
//! nothing of what the layers above it do with it — time, devices, processes, channels,
//! scheduling, system calls, the console, recovery — which reach it only through hooks
//! they register (e.g. `arch::trap::set_interrupt_hook`), so the kernel's imports point
//! one way. This test reads the source and fails on any code line under `arch` that names
//! one of those modules.

use std::path::Path;

/// Kernel modules above `arch` that `arch` may not name.
const ABOVE: &[&str] = &[
    "time", "devices", "process", "ipc", "sched", "syscall", "console", "recovery", "hosted",
    "report", "bench", "ktest", "logger", "counters", "pci",
];

#[test]
fn arch_names_no_module_above_it() {
    let arch = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/arch");
    let mut found = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&arch).expect("kernel/src/arch exists") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Code only: what a comment mentions is no dependency.
            let code = line.split("//").next().unwrap_or("");
            for module in ABOVE {
                for form in [format!("crate::{module}"), format!("crate::{{{module}")] {
                    let hit = code.match_indices(&form).any(|(at, _)| {
                        // A whole name: `crate::time` but not `crate::timer`.
                        !code[at + form.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if hit {
                        found.push(format!(
                            "{}:{}: {}",
                            path.file_name().unwrap().to_string_lossy(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        files > 10,
        "read only {files} files under {}",
        arch.display()
    );
    assert!(
        found.is_empty(),
        "kernel/src/arch names modules above it (register a hook instead):\n{}",
        found.join("\n")
    );
}
