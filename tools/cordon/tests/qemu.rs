//! In-QEMU tests: each boots the real kernel image under QEMU (TCG) with a boot package
//! chosen here and checks the verdict (QEMU exit status via `isa-debug-exit`) and what the
//! kernel printed. On a mismatch the whole console is shown.

use cordon::{BootOptions, Firmware, Isolation, Outcome, Verdict, boot};

fn run(options: BootOptions) -> Outcome {
    boot(&options).unwrap_or_else(|err| panic!("could not boot QEMU: {err:#}"))
}

fn self_test(group: &str) -> Outcome {
    run(BootOptions {
        self_test: Some(group.to_string()),
        ..BootOptions::default()
    })
}

#[track_caller]
fn expect(outcome: &Outcome, verdict: Verdict, needles: &[&str]) {
    let missing: Vec<&&str> = needles
        .iter()
        .filter(|n| !outcome.console.contains(**n))
        .collect();
    if outcome.verdict != verdict || !missing.is_empty() {
        panic!(
            "expected {verdict:?} with {needles:?}\n got {:?}, missing {missing:?}\n--- console ---\n{}\n--- end ---",
            outcome.verdict, outcome.console
        );
    }
}

#[test]
fn default_system_boots_runs_threads_and_powers_off_cleanly() {
    let outcome = run(BootOptions::default());
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "booted: isolation=soft",
            "[worker-0]",
            "[worker-1]",
            "[collector] all 2 workers reported",
            "[ticker] tick",
            "powering off (success)",
        ],
    );
    assert!(outcome.banner_after.is_some(), "no banner line");
}

#[test]
fn uefi_boot_reaches_the_same_system() {
    let outcome = run(BootOptions {
        firmware: Firmware::Uefi,
        ..BootOptions::default()
    });
    expect(
        &outcome,
        Verdict::Passed,
        &["booted: isolation=soft", "powering off (success)"],
    );
}

#[test]
fn hard_isolation_is_refused_honestly() {
    let outcome = run(BootOptions {
        isolation: Isolation::Hard,
        ..BootOptions::default()
    });
    expect(
        &outcome,
        Verdict::Failed,
        &["booted: isolation=hard", "isolation=hard is not available"],
    );
}

#[test]
fn threads_switch_preempt_sleep_and_wait() {
    expect(
        &self_test("threads"),
        Verdict::Passed,
        &[
            "semaphore_ping_pong_switches_threads ... ok",
            "spinning_threads_are_preempted ... ok",
            "sleep_wakes_after_deadline ... ok",
            "wait_queue_timeout_and_notify ... ok",
            "exited_threads_return_their_stacks ... ok",
            "ktest threads: 5 passed, 0 failed",
        ],
    );
}

#[test]
fn frames_and_heap_are_allocated_and_returned() {
    expect(
        &self_test("memory"),
        Verdict::Passed,
        &[
            "frame_blocks_are_zeroed_disjoint_and_returned ... ok",
            "heap_allocates_and_frees ... ok",
            "frame_exhaustion_is_reported_not_fatal ... ok",
            "ktest memory: 3 passed, 0 failed",
        ],
    );
}

#[test]
fn page_fault_on_unmapped_write_is_decoded() {
    expect(
        &self_test("page-fault"),
        Verdict::Failed,
        &[
            "KERNEL PANIC",
            "kernel-mode page fault at CR2=0xdeadbeef000",
            "P=0 (page not present)",
            "W/R=1 (write)",
            "U/S=0 (supervisor)",
            "RSVD=0",
            "I/D=0 (data access)",
            "powering off (failure)",
        ],
    );
}

#[test]
fn page_fault_on_read_only_write_is_decoded() {
    expect(
        &self_test("page-fault-protection"),
        Verdict::Failed,
        &[
            "kernel-mode page fault at CR2=",
            "P=1 (protection violation)",
            "W/R=1 (write)",
            "U/S=0 (supervisor)",
        ],
    );
}

#[test]
fn kernel_panic_is_reported_as_failure_with_location() {
    expect(
        &self_test("panic"),
        Verdict::Failed,
        &[
            "KERNEL PANIC at kernel/src/ktest.rs:",
            "deliberate panic requested by self-test",
            "powering off (failure)",
        ],
    );
}

#[test]
fn kernel_stack_overflow_is_caught_on_the_double_fault_stack() {
    expect(
        &self_test("double-fault"),
        Verdict::Failed,
        &["KERNEL PANIC", "kernel-mode double fault (#DF) (vector 8"],
    );
}

#[test]
fn unknown_self_test_is_rejected_with_the_list() {
    expect(
        &self_test("bogus"),
        Verdict::Failed,
        &["unknown self-test 'bogus'; known: threads, memory"],
    );
}
