//! In-QEMU tests: each boots the real kernel image under QEMU (TCG) with a boot package
//! chosen here and checks the verdict (QEMU exit status via `isa-debug-exit`) and what the
//! kernel printed. On a mismatch the whole console is shown.

use bootpkg::Engine;
use cordon::{BootOptions, Firmware, Isolation, Outcome, Verdict, boot};

/// Two tests of `body`: the first name in soft isolation, the second in hard (every SIP in
/// its own ring-3 address space). The expectations are the same, word for word. With third
/// and fourth names, also both modes with every SIP compiled ahead of time (`--engine
/// compiled`), same expectations.
macro_rules! in_both_modes {
    ($soft:ident, $hard:ident, $body:ident) => {
        #[test]
        fn $soft() {
            $body(Isolation::Soft);
        }

        #[test]
        fn $hard() {
            $body(Isolation::Hard);
        }
    };
    ($soft:ident, $hard:ident, $compiled:ident, $compiled_hard:ident, $body:ident) => {
        in_both_modes!($soft, $hard, $body);

        #[test]
        fn $compiled() {
            ENGINE.set(Engine::Compiled);
            $body(Isolation::Soft);
        }

        #[test]
        fn $compiled_hard() {
            ENGINE.set(Engine::Compiled);
            $body(Isolation::Hard);
        }
    };
}

/// Tests of `body` on a two-processor machine (`--smp 2`), in soft and in hard isolation:
/// the same expectations as on one processor.
macro_rules! on_two_cpus {
    ($soft:ident, $hard:ident, $body:ident) => {
        #[test]
        fn $soft() {
            CPUS.set(2);
            $body(Isolation::Soft);
        }

        #[test]
        fn $hard() {
            CPUS.set(2);
            $body(Isolation::Hard);
        }
    };
}

thread_local! {
    /// The engine every boot of the running test uses (each test runs on its own thread).
    static ENGINE: std::cell::Cell<Engine> = const { std::cell::Cell::new(Engine::Interp) };
    /// The processors of every boot of the running test.
    static CPUS: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

/// Held by each boot of more than one processor: under TCG each processor is a host
/// thread, and this machine has two cores, so such boots run one at a time.
static SMP_BOOTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(options: BootOptions) -> Outcome {
    let options = BootOptions {
        engine: ENGINE.get(),
        cpus: CPUS.get().max(options.cpus),
        ..options
    };
    let _one_at_a_time = (options.cpus > 1).then(|| {
        SMP_BOOTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    });
    let outcome = boot(&options).unwrap_or_else(|err| panic!("could not boot QEMU: {err:#}"));
    if options.cpus > 1 {
        let running = format!("CPUs: {} running", options.cpus);
        assert!(
            outcome.console.contains(&running),
            "asked for {} processors; no `{running}` in\n{}",
            options.cpus,
            outcome.console
        );
    }
    outcome
}

fn self_test(group: &str) -> Outcome {
    run(BootOptions {
        self_test: Some(group.to_string()),
        ..BootOptions::default()
    })
}

/// The figure `label` of `metrics` that `outcome`'s console printed (the whole console in
/// the panic if it did not).
#[track_caller]
fn figure(metrics: &[cordon::bench::Metric], outcome: &Outcome, label: &str) -> u64 {
    let row = metrics
        .iter()
        .position(|m| m.label == label)
        .unwrap_or_else(|| panic!("`{label}` is not a known metric"));
    cordon::bench::parse(metrics, &outcome.console)[row]
        .unwrap_or_else(|| panic!("no `{label}` in\n{}", outcome.console))
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
fn default_system_runs_its_sips_and_powers_off_cleanly() {
    let outcome = run(BootOptions::default());
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "booted: isolation=soft",
            "[hello] Hello from a SIP: ABI v8",
            "[kernel] SIP hello (pid 1) exited with status 0",
            "[primes] 17984 primes below 200000",
            "[kernel] SIP primes (pid 2) exited with status 0",
            "[echo-binder] 3 pings answered over a channel found by name",
            "[kernel] SIP directory (pid 3) exited with status 0",
            "[kernel] SIP echo-provider (pid 4) exited with status 0",
            "[kernel] SIP echo-binder (pid 5) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "powering off (success)",
        ],
    );
    assert!(outcome.banner_after.is_some(), "no banner line");
    assert_frames_back(&outcome);
}

on_two_cpus!(
    default_system_runs_on_two_cpus,
    default_system_runs_on_two_cpus_in_ring3,
    default_system_on_two_cpus
);

/// The default system with a second processor running: the same SIPs and endings, every
/// frame back, and the unmapping of kernel stacks shot down on the other processor.
fn default_system_on_two_cpus(isolation: Isolation) {
    let outcome = run(in_mode(isolation, BootOptions::default()));
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "CPUs: 2 running (local APIC IDs 0, 1)",
            "threads run on every CPU",
            "[echo-binder] 3 pings answered over a channel found by name",
            "[kernel] SIP echo-binder (pid 5) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "powering off (success)",
        ],
    );
    assert_frames_back(&outcome);
    let figure = |label: &str| figure(cordon::bench::WEBFILES, &outcome, label);
    // Every SIP thread's stack is unmapped when it ends, with a shootdown each.
    let shootdowns = figure("run: TLB shootdowns (other CPUs asked)");
    assert!(
        shootdowns >= 5,
        "{shootdowns} shootdowns\n{}",
        outcome.console
    );
    assert!(figure("run: IPIs sent") >= shootdowns);
}

on_two_cpus!(
    processors_answer_calls_and_shootdowns_prevent_stale_translations,
    processors_answer_calls_and_shootdowns_prevent_stale_translations_in_hard,
    smp_self_test
);

/// The `smp` self-test group: it also shows that both shootdown tests can fail (with
/// shootdowns off, CPU 1 reads a freed frame through its stale translation of a kernel
/// page, and writes into a forked child's page through its stale translation of the
/// parent's).
fn smp_self_test(isolation: Isolation) {
    expect(
        &run(BootOptions {
            isolation,
            self_test: Some("smp".into()),
            ..BootOptions::default()
        }),
        Verdict::Passed,
        &[
            "ktest smp::every_processor_answers_a_call ... ok",
            "ktest smp::a_call_may_call_back_without_deadlock ... ok",
            "with shootdowns off, CPU 1 read 0xbadcafe00000001 from a frame already freed",
            &format!("{} processor(s) did)", CPUS.get() - 1),
            "ktest smp::a_stale_translation_is_seen_without_shootdowns_and_never_with_them ... ok",
            "its write landed in the child's page (0x5742415900000003): one space wrote another's memory",
            "the child kept 0xbadcafe00000001; 2 user-space shootdowns",
            "ktest smp::a_stale_user_translation_writes_into_a_forked_space_without_shootdowns ... ok",
            "ktest smp::a_stack_in_its_shootdown_is_not_yet_reaped ... ok",
            "ktest smp: 5 passed, 0 failed",
        ],
    );
}

/// Four processors: each answers, and each of the three others sees the stale
/// translation without shootdowns and the new frame with them.
#[test]
fn four_processors_answer_calls_and_take_shootdowns() {
    CPUS.set(4);
    smp_self_test(Isolation::Soft);
}

#[test]
fn four_processors_answer_calls_and_take_shootdowns_in_hard() {
    CPUS.set(4);
    smp_self_test(Isolation::Hard);
}

on_two_cpus!(
    sip_pairs_exchange_checked_messages_on_both_processors_while_kills_race,
    sip_pairs_exchange_checked_messages_on_both_processors_while_kills_race_in_hard,
    smp_stress
);

/// The `stress` self-test group: nine Echo pairs (three split over the two processors by
/// pinning, the rest placed and moved by the scheduler), every payload checked by its
/// client, three pairs killed mid-run; each processor runs threads for at least a quarter
/// of the run, a quarter of the messages or more cross processors, and heap and frames
/// are back to their baseline exactly. In `hard` the 36 address spaces need more than the
/// default 256 MiB.
fn smp_stress(isolation: Isolation) {
    let outcome = run(BootOptions {
        self_test: Some("stress".into()),
        memory_mib: 1024,
        ..in_mode(isolation, system("smp-stress"))
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[echo-stress] seed 1: 300 round trips, every payload checked",
            "[echo-stress] seed 6: 300 round trips, every payload checked",
            "[echo-stress] seed 9: the server went away after",
            "[kernel] SIP echo-stress (pid 16) killed by the kernel",
            "received on another processor than they were sent from",
            "back to their values before the SIPs started",
            "ktest stress::sip_pairs_on_every_processor_with_kills_racing_sends ... ok",
            "ktest stress: 1 passed, 0 failed",
        ],
    );
}

/// On one processor the `smp` group says what it needs instead of passing.
#[test]
fn smp_self_test_on_one_cpu_asks_for_two() {
    expect(
        &self_test("smp"),
        Verdict::Failed,
        &["1 processor(s) running: boot with --smp 2 or more"],
    );
}

fn sips(names: &[&str]) -> BootOptions {
    BootOptions {
        system: cordon::system::of_sips(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
        ..BootOptions::default()
    }
}

/// Boots `system` in `isolation` with the default options otherwise.
fn run_system(isolation: Isolation, system: cordon::system::System) -> Outcome {
    run(in_mode(
        isolation,
        BootOptions {
            system,
            ..BootOptions::default()
        },
    ))
}

/// The SIP and contract tests run in soft isolation and in hard isolation (every SIP in
/// its own ring-3 address space, the same modules and runtime): the expectations are the
/// same, word for word.
fn in_mode(isolation: Isolation, options: BootOptions) -> BootOptions {
    BootOptions {
        isolation,
        ..options
    }
}

in_both_modes!(
    misbehaving_sips_end_alone_with_their_reason,
    misbehaving_sips_end_alone_with_their_reason_in_ring3,
    misbehaving_sips_end_alone_with_their_reason_compiled,
    misbehaving_sips_end_alone_with_their_reason_in_ring3_compiled,
    misbehaving_sips
);

on_two_cpus!(
    misbehaving_sips_end_alone_on_two_cpus,
    misbehaving_sips_end_alone_on_two_cpus_in_ring3,
    misbehaving_sips
);

fn misbehaving_sips(isolation: Isolation) {
    let outcome = run(in_mode(
        isolation,
        sips(&[
            "hello",
            "spin",
            "oob",
            "oom",
            "trap",
            "panic",
            "recurse",
            "divide",
            "bad-pointer",
            "primes",
            "hog",
        ]),
    ));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP hello (pid 1) exited with status 0",
            "[kernel] SIP spin (pid 2) terminated: fuel budget of 20000000 exhausted",
            "[kernel] SIP oob (pid 3) terminated: out-of-bounds memory access",
            "[kernel] SIP oom (pid 4) terminated: memory or table limit of the manifest exceeded",
            "[kernel] SIP trap (pid 5) terminated: unreachable executed",
            "[panic] panicked at sips/sip-panic/src/lib.rs",
            "[kernel] SIP panic (pid 6) exited with status 101",
            "[kernel] SIP recurse (pid 7) terminated: call stack exhausted",
            "[kernel] SIP divide (pid 8) terminated: integer division by zero",
            "[kernel] SIP bad-pointer (pid 9) terminated: bad kernel call: console_write(0xfde8, 4096) reaches outside linear memory",
            "[kernel] SIP primes (pid 10) exited with status 0",
            "[kernel] SIP hog (pid 11) could not be loaded: not enough memory for its declared limits (4096 pages of memory, 2048 KiB of kernel objects)",
            "9 of 11 SIPs did not exit with status 0",
        ],
    );
    attack_row(
        "faults",
        isolation,
        &[
            "spin",
            "oob",
            "oom",
            "trap",
            "panic",
            "recurse",
            "divide",
            "bad-pointer",
            "hog",
        ],
        &outcome,
    );
}

in_both_modes!(
    sealed_process_invariants_hold,
    sealed_process_invariants_hold_in_ring3,
    sealed_process_invariants_hold_compiled,
    sealed_process_invariants_hold_in_ring3_compiled,
    sealed_process_invariants
);

fn sealed_process_invariants(isolation: Isolation) {
    let outcome = run(in_mode(
        isolation,
        sips(&["load-code", "backdoor", "secret", "snoop"]),
    ));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            // Fixed code and closed API: a module asking for a code-loading call is refused.
            "[kernel] SIP load-code (pid 1) refused by the verifier: rule `closed-abi` at byte 0x16: import `cordon.load_code` is not part of the kernel ABI",
            // Explicit communication only: nothing may call into a SIP but the kernel.
            "[kernel] SIP backdoor (pid 2) refused by the verifier: rule `exports` at byte 0x36: export `backdoor`",
            // State isolation: another SIP's memory is not reachable from this one.
            "[kernel] SIP secret (pid 3) exited with status 0",
            "0 copies of the other SIP's secret",
            "[kernel] SIP snoop (pid 4) exited with status 0",
            "2 of 4 SIPs did not exit with status 0",
        ],
    );
    attack_row(
        "sealing",
        isolation,
        &["load-code", "backdoor", "snoop"],
        &outcome,
    );
}

fn system(name: &str) -> BootOptions {
    BootOptions {
        system: cordon::system::load(name).expect("shipped system"),
        ..BootOptions::default()
    }
}

in_both_modes!(
    echo_pair_measures_round_trips_and_moves_buffers,
    echo_pair_measures_round_trips_and_moves_buffers_in_ring3,
    echo_pair_measures_round_trips_and_moves_buffers_compiled,
    echo_pair_measures_round_trips_and_moves_buffers_in_ring3_compiled,
    echo_pair
);

fn echo_pair(isolation: Isolation) {
    expect(
        &run(in_mode(isolation, system("echo"))),
        Verdict::Passed,
        &[
            "[echo-client] round trip, 1-byte message: median",
            "[echo-client] round trip, 16-byte message: median",
            "[echo-client] round trip, 16 KiB copied as bytes: median",
            "[echo-client] round trip, 16 KiB exchange-heap buffer moved: median",
            "[echo-server] served 804 requests; the client said Bye",
            "[kernel] SIP echo-server (pid 1) exited with status 0",
            "[kernel] SIP echo-client (pid 2) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
}

in_both_modes!(
    contract_violation_terminates_the_sender_and_the_peer_goes_on,
    contract_violation_terminates_the_sender_and_the_peer_goes_on_in_ring3,
    contract_violation_terminates_the_sender_and_the_peer_goes_on_compiled,
    contract_violation_terminates_the_sender_and_the_peer_goes_on_in_ring3_compiled,
    contract_violation
);

on_two_cpus!(
    contract_violation_terminates_the_sender_on_two_cpus,
    contract_violation_terminates_the_sender_on_two_cpus_in_ring3,
    contract_violation
);

fn contract_violation(isolation: Isolation) {
    expect(
        &run(in_mode(isolation, system("violation"))),
        Verdict::Failed,
        &[
            "[echo-violator] sending Pong as the client",
            "[kernel] SIP echo-violator (pid 2) terminated: bad kernel call: contract violation: contract Echo, importer in state Ready may not send Pong",
            "[echo-server] served 0 requests; the client went away",
            "[kernel] SIP echo-server (pid 1) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "1 of 2 SIPs did not exit with status 0",
        ],
    );
}

in_both_modes!(
    services_are_found_by_name_and_endpoints_travel_in_messages,
    services_are_found_by_name_and_endpoints_travel_in_messages_in_ring3,
    services_are_found_by_name_and_endpoints_travel_in_messages_compiled,
    services_are_found_by_name_and_endpoints_travel_in_messages_in_ring3_compiled,
    directory
);

fn directory(isolation: Isolation) {
    expect(
        &run(in_mode(isolation, system("directory"))),
        Verdict::Passed,
        &[
            "[echo-binder] `nosuch` is not registered; my channel end came back",
            "[echo-provider] receive timed out after",
            "[directory] registered `echo`",
            "[echo-provider] a client connected through the directory",
            "[echo-binder] 3 pings answered over a channel found by name",
            "[directory] answered",
            "[kernel] SIP directory (pid 1) exited with status 0",
            "[kernel] SIP echo-provider (pid 2) exited with status 0",
            "[kernel] SIP echo-binder (pid 3) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
}

in_both_modes!(
    a_sip_past_its_cpu_budget_is_stopped_by_the_kernel,
    a_sip_past_its_cpu_budget_is_stopped_by_the_kernel_in_ring3,
    a_sip_past_its_cpu_budget_is_stopped_by_the_kernel_compiled,
    a_sip_past_its_cpu_budget_is_stopped_by_the_kernel_in_ring3_compiled,
    cpu_budget
);

/// `burn` spins with no fuel budget under a 20-tick CPU budget: the kernel, counting
/// ticks itself, ends it; `hello` and `primes` beside it finish. Under `-icount`, so the
/// timer ticks with guest instructions: how many ticks pass before the kill lands then
/// depends on the kernel, not on how busy the host is (without it a loaded host once
/// stretched one fuel slice over an extra tick: 31).
fn cpu_budget(isolation: Isolation) {
    let outcome = run(BootOptions {
        icount: true,
        ..in_mode(isolation, sips(&["hello", "burn", "primes"]))
    });
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP hello (pid 1) exited with status 0",
            "[kernel] SIP burn (pid 2) used up its CPU budget of 20 ticks",
            "[kernel] SIP burn (pid 2) killed by the kernel",
            "[primes] 17984 primes below 200000",
            "[kernel] SIP primes (pid 3) exited with status 0",
            "1 of 3 SIPs did not exit with status 0",
        ],
    );
    attack_row("cpu burn", isolation, &["burn"], &outcome);
    let burn = outcome
        .console
        .lines()
        .find(|l| l.starts_with("2    burn"))
        .expect("burn's summary row");
    let ticks: u64 = burn.split_whitespace().nth(8).unwrap().parse().unwrap();
    assert!((21..=30).contains(&ticks), "charged {ticks} ticks: {burn}");
}

in_both_modes!(
    powers_over_sips_come_only_from_the_system_manifest,
    powers_over_sips_come_only_from_the_system_manifest_in_ring3,
    powers
);

/// `supervisor` holds the start, kill and inspect powers: it starts `hello` 1,000 times
/// (the 256 process slots are reused, with new generations) and waits for each through
/// the kernel's accounting, starts `forever` and kills it; starts the on-request entry
/// `echo-server`, which gets exactly the Echo channel its entry names (busy while it runs;
/// killed, then started again with a fresh channel), and `gift`, which ends with a block in
/// transit to the supervisor (kept charged to it until received). Three probes each try
/// one power they were not given and are ended for it.
fn powers(isolation: Isolation) {
    let outcome = run(in_mode(isolation, system("supervisor")));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP no-start (pid 2) terminated: bad kernel call: sip_start: the system manifest did not give this SIP the `start` power",
            "[kernel] SIP no-kill (pid 3) terminated: bad kernel call: sip_kill: the system manifest did not give this SIP the `kill` power",
            "[kernel] SIP no-inspect (pid 4) terminated: bad kernel call: sip_info: the system manifest did not give this SIP the `inspect` power",
            "[supervisor] started hello as pid 5 (1 of 1000, slot generation 1): exited 0 after 5 kernel calls",
            "[supervisor] started hello as pid 1007 (1000 of 1000, slot generation 4): exited 0 after 5 kernel calls",
            "[supervisor] 1000 starts of hello, every one exited 0; process slots reached generation 4",
            "[kernel] SIP forever (pid 1008) killed by SIP supervisor (pid 1)",
            "[supervisor] started forever as pid 1008, saw it running",
            "[supervisor] unknown modules and pids are reported as not found",
            "[supervisor] started on-request echo-server as pid 1009: one round trip over its Echo channel; a second start while it ran was refused as busy; killed it, its channel closed",
            "[kernel] SIP echo-server (pid 1009) killed by SIP supervisor (pid 1)",
            "[echo-server] served 1 requests; the client said Bye",
            "[kernel] SIP echo-server (pid 1010) exited with status 0",
            "[supervisor] started echo-server again as pid 1010: one round trip over a fresh channel, then Bye; it exited 0",
            "[gift] sent a 4096-byte block; exiting without waiting for the reply",
            "[kernel] SIP gift (pid 1011) left 1 object (4224 bytes) it sent in transit: charged to it, with its process slot, until received or destroyed",
            "[supervisor] gift (pid 1011) ended with a 4096-byte block in transit to this SIP; received it afterwards, intact",
            "[kernel] SIP supervisor (pid 1) exited with status 0",
            "(752 earlier processes' rows gave way to later ones in reused slots)",
            "0 endpoints and 0 exchange-heap blocks left",
            // The probes; the two SIPs it killed on purpose do not count.
            "3 of 1008 SIPs did not exit with status 0",
        ],
    );
    attack_row(
        "powers not given",
        isolation,
        &["no-start", "no-kill", "no-inspect"],
        &outcome,
    );
}

in_both_modes!(
    a_sip_printing_without_end_is_cut_off_at_its_console_budget,
    a_sip_printing_without_end_is_cut_off_at_its_console_budget_in_ring3,
    console_budget
);

/// `chatter` writes 512 KiB to the console; the kernel passes its 256 KiB budget, says so
/// once, drops the rest, and the SIPs beside it finish.
fn console_budget(isolation: Isolation) {
    let outcome = run(in_mode(isolation, sips(&["hello", "chatter", "primes"])));
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[kernel] SIP chatter (pid 2) used its console budget of 256 KiB; the rest of its output is dropped",
            "[kernel] SIP chatter (pid 2) exited with status 0",
            "[hello] Hello from a SIP",
            "[primes] 17984 primes below 200000",
        ],
    );
    attack_row("console flood", isolation, &["chatter"], &outcome);
    let dots = outcome.console.bytes().filter(|&b| b == b'.').count();
    assert!(
        (256 << 10..(256 << 10) + 4096).contains(&dots),
        "{dots} bytes of chatter reached the console"
    );
}

in_both_modes!(
    several_attackers_at_once_end_alone,
    several_attackers_at_once_end_alone_in_ring3,
    several_attackers_at_once_end_alone_compiled,
    several_attackers_at_once_end_alone_in_ring3_compiled,
    attackers_at_once
);

on_two_cpus!(
    several_attackers_at_once_end_alone_on_two_cpus,
    several_attackers_at_once_end_alone_on_two_cpus_in_ring3,
    attackers_at_once
);

/// Two kernel-object floods, a CPU burner and a console flood at once, beside `hello` and
/// `primes`: admission control backed every quota, each attacker ends alone, the others'
/// work completes, nothing is left.
fn attackers_at_once(isolation: Isolation) {
    let outcome = run(in_mode(
        isolation,
        sips(&["flood", "flood", "burn", "chatter", "hello", "primes"]),
    ));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP flood (pid 1) exited with status 0",
            "[kernel] SIP flood (pid 2) exited with status 0",
            "[kernel] SIP burn (pid 3) killed by the kernel",
            "[kernel] SIP chatter (pid 4) used its console budget of 256 KiB",
            "[kernel] SIP hello (pid 5) exited with status 0",
            "[primes] 17984 primes below 200000",
            "[kernel] SIP primes (pid 6) exited with status 0",
            "1 of 6 SIPs did not exit with status 0",
        ],
    );
    attack_row(
        "several at once",
        isolation,
        &["flood", "burn", "chatter"],
        &outcome,
    );
}

in_both_modes!(
    the_system_manifest_lowers_limits_and_never_raises_them,
    the_system_manifest_lowers_limits_and_never_raises_them_in_ring3,
    capped
);

/// `burn` asks for 20 ticks; the system manifest gives it 5. A cap above `hello`'s own
/// limit changes nothing.
fn capped(isolation: Isolation) {
    let outcome = run(in_mode(isolation, system("capped")));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP burn (pid 1) used up its CPU budget of 5 ticks",
            "[kernel] SIP burn (pid 1) killed by the kernel",
            "[kernel] SIP chatter (pid 2) exited with status 0",
            "[kernel] SIP hello (pid 3) exited with status 0",
            "1 of 3 SIPs did not exit with status 0",
        ],
    );
}

/// One row of the attack table: which attack, in which mode, how each attacker ended,
/// and what the run left behind (from the kernel's `reclaim:` line). Fails on any frame
/// not given back or any endpoint or block left; the heap may keep the fixed cost the
/// kernel names (process records, failure messages). The row is printed and written to
/// `target/tmp/attack-<attack>-<mode>.row`; `.ci/run` prints them all as one table.
#[track_caller]
fn attack_row(attack: &str, isolation: Isolation, attackers: &[&str], outcome: &Outcome) {
    let Reclaim {
        heap: (heap_before, heap_after),
        frames: (frames_before, frames_after),
        endpoints,
        blocks,
    } = reclaim(outcome);
    let endings: Vec<String> = attackers
        .iter()
        .map(|a| {
            let prefix = format!("[kernel] SIP {a} (pid ");
            let line = outcome
                .console
                .lines()
                .rfind(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no ending for {a}"));
            let ending = line.split(") ").nth(1).unwrap_or("?");
            let short = ending.split(':').next().unwrap_or(ending);
            format!("{a}: {short}")
        })
        .collect();
    // The engine the test's boots used: compiled rows are their own.
    let mode = match ENGINE.get() {
        Engine::Interp => isolation.name().to_string(),
        Engine::Compiled => format!("{}+compiled", isolation.name()),
    };
    let row = format!(
        "| {attack} | {mode} | {} | {:+} | {:+} | {endpoints} | {blocks} |",
        endings.join("; "),
        heap_after - heap_before,
        frames_after - frames_before,
    );
    println!("{row}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(
        dir.join(format!("attack-{attack}-{mode}.row")),
        format!("{row}\n"),
    )
    .expect("target/tmp is writable");
    assert!(
        !outcome.console.contains("KERNEL PANIC"),
        "{}",
        outcome.console
    );
    assert_eq!(frames_after, frames_before, "frames not given back: {row}");
    assert_eq!(endpoints + blocks, 0, "kernel objects left: {row}");
}

/// The free-frame counts of the `reclaim:` line must match exactly.
#[track_caller]
fn assert_frames_back(outcome: &Outcome) {
    let Reclaim { frames, .. } = reclaim(outcome);
    assert_eq!(frames.0, frames.1, "free frames before and after the SIPs");
}

/// The kernel's `reclaim:` line: heap bytes and free frames (before, after), endpoints
/// and blocks left.
struct Reclaim {
    heap: (i64, i64),
    frames: (i64, i64),
    endpoints: i64,
    blocks: i64,
}

#[track_caller]
fn reclaim(outcome: &Outcome) -> Reclaim {
    let line = outcome
        .console
        .lines()
        .find(|l| l.starts_with("reclaim: "))
        .expect("reclaim line");
    let numbers: Vec<i64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    // heap A -> B bytes (+D, ...), free frames F -> G; E endpoints and K ... blocks left
    let [
        heap_before,
        heap_after,
        _,
        frames_before,
        frames_after,
        endpoints,
        blocks,
    ] = numbers[..]
    else {
        panic!("unexpected reclaim line: {line}");
    };
    Reclaim {
        heap: (heap_before, heap_after),
        frames: (frames_before, frames_after),
        endpoints,
        blocks,
    }
}

in_both_modes!(
    resource_floods_end_in_out_of_memory_for_the_attacker_alone,
    resource_floods_end_in_out_of_memory_for_the_attacker_alone_in_ring3,
    resource_floods_end_in_out_of_memory_for_the_attacker_alone_compiled,
    resource_floods_end_in_out_of_memory_for_the_attacker_alone_in_ring3_compiled,
    resource_floods
);

/// `flood` creates channels and blocks until refused, nests endpoints 1,500 deep in
/// transit, closes a cycle of endpoints in transit and exits with another chain in flight,
/// beside SIPs whose results are checked. Before quotas the channel flood panicked the
/// kernel and the block flood never ended.
fn resource_floods(isolation: Isolation) {
    let outcome = run(in_mode(isolation, sips(&["hello", "flood", "primes"])));
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[hello] Hello from a SIP",
            "made, then OutOfMemory",
            "[flood] after freeing them, chan_create: Ok(())",
            "[flood] buf_alloc(1): 4096 made, then OutOfMemory",
            "[flood] after freeing them, buf_alloc(1): Ok(())",
            "closed from the top: 1500 senders saw PeerClosed",
            "a cycle of 9 endpoints in transit: 9 of 9 senders saw PeerClosed",
            "[kernel] SIP flood (pid 2) exited with status 0",
            "[primes] 17984 primes below 200000",
            "[kernel] SIP primes (pid 3) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "powering off (success)",
        ],
    );
    attack_row("kernel-object floods", isolation, &["flood"], &outcome);
    let flood = outcome
        .console
        .lines()
        .find(|l| l.starts_with("2    flood"))
        .expect("flood's summary row");
    assert!(
        flood.contains(" 4096 "),
        "peak objects at the quota: {flood}"
    );
}

in_both_modes!(
    looping_sip_is_killed_and_sip_memory_is_reclaimed_exactly,
    looping_sip_is_killed_and_sip_memory_is_reclaimed_exactly_in_ring3,
    looping_sip_is_killed_and_sip_memory_is_reclaimed_exactly_compiled,
    looping_sip_is_killed_and_sip_memory_is_reclaimed_exactly_in_ring3_compiled,
    looping_sip_killed
);

fn looping_sip_killed(isolation: Isolation) {
    let outcome = run(BootOptions {
        self_test: Some("sips".into()),
        ..in_mode(
            isolation,
            sips(&["forever", "hello", "oob", "trap", "oom", "blocked"]),
        )
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[kernel] SIP forever (pid 1) killed by the kernel",
            "looping_sip_does_not_stop_others_and_is_killed ... ok",
            "back to their values before the SIPs started",
            "sip_memory_and_stack_are_reclaimed_exactly ... ok",
            "a_sip_blocked_in_the_kernel_is_killed ... ok",
            "ktest sips: 3 passed, 0 failed",
        ],
    );
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
        &[
            "booted: isolation=soft",
            "[kernel] SIP hello (pid 1) exited with status 0",
            "[kernel] SIP echo-binder (pid 5) exited with status 0",
            "powering off (success)",
        ],
    );
}

// Every configuration of Singularity's Figure 5 boots the default system, and the banner
// names it (soft is `default_system_runs_its_sips_and_powers_off_cleanly`).

#[test]
fn default_system_runs_with_4k_pages_in_one_space() {
    default_system_in(Isolation::Paged);
}

#[test]
fn default_system_runs_with_the_client_in_its_own_ring0_space() {
    default_system_in(Isolation::ClientSpace);
}

#[test]
fn default_system_runs_with_the_client_in_ring3() {
    default_system_in(Isolation::ClientRing3);
}

#[test]
fn default_system_runs_with_every_sip_in_ring3() {
    default_system_in(Isolation::Hard);
}

fn default_system_in(isolation: Isolation) {
    {
        let outcome = run(in_mode(isolation, BootOptions::default()));
        let banner = format!(
            "isolation={}: {}",
            isolation.name(),
            isolation.description()
        );
        expect(
            &outcome,
            Verdict::Passed,
            &[
                &banner,
                "[hello] Hello from a SIP: ABI v8",
                "[primes] 17984 primes below 200000",
                "[echo-binder] 3 pings answered over a channel found by name",
                "[kernel] SIP echo-binder (pid 5) exited with status 0",
                "0 endpoints and 0 exchange-heap blocks left",
                "powering off (success)",
            ],
        );
        assert!(
            outcome.console.contains("free frames") && !outcome.console.contains("KERNEL PANIC"),
            "{}",
            outcome.console
        );
    }
}

#[test]
fn ring3_programs_cannot_cross_the_system_call_boundary() {
    expect(
        &self_test("ring3"),
        Verdict::Passed,
        &[
            "syscalls_with_bad_pointers_or_lengths_fail_cleanly ... ok",
            "ring3_read_of_kernel_memory_kills_only_that_program ... ok",
            "ring3_write_of_kernel_memory_kills_only_that_program ... ok",
            "privileged_instruction_in_ring3_kills_the_program ... ok",
            "unknown_system_call_ends_the_caller ... ok",
            "chan_select over 1048576 endpoints (1 to 64)",
            "oversized_select_list_is_bounded_by_the_kernel ... ok",
            "probe_address_spaces_are_reclaimed_exactly ... ok",
            "vector_registers_never_cross_between_threads ... ok",
            "random_system_calls_end_only_the_caller ... ok",
            "processor: SSE on with x87/SSE state saved on every switch",
            "ktest ring3: 9 passed, 0 failed",
        ],
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

in_both_modes!(
    destroying_a_long_chain_masks_interrupts_no_longer_than_a_short_one,
    destroying_a_long_chain_masks_interrupts_no_longer_than_a_short_one_in_hard,
    chain_destruction
);

/// Under `-icount` (cycles are instructions): the longest interrupts-masked section while
/// the kernel destroys a chain of 10,000 endpoints in transit is within 1.5x of a chain
/// of 100 (the ktest checks it and prints both).
fn chain_destruction(isolation: Isolation) {
    let outcome = run(BootOptions {
        self_test: Some("channels".into()),
        icount: true,
        isolation,
        ..BootOptions::default()
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "while destroying a chain of endpoints in transit",
            "destroying_a_chain_masks_interrupts_as_briefly_at_10000_as_at_100 ... ok",
            "ktest channels: 1 passed, 0 failed",
        ],
    );
}

#[test]
fn copy_on_write_fork_isolates_and_copies_only_written_pages() {
    expect(
        &self_test("cow"),
        Verdict::Passed,
        &[
            "fork_parent_and_child_see_their_own_writes_stack_included ... ok",
            "fork_of_a_large_space_copies_only_written_pages ... ok",
            "copy-on-write fault (fault + copy + invlpg):",
            "ktest cow: 2 passed, 0 failed",
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
fn ring0_never_executes_a_page_ring3_may_use() {
    let outcome = self_test("smep");
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "ktest smep: ring 0 calling into a user page",
            "KERNEL PANIC",
            "kernel-mode page fault",
            "I/D=1",
        ],
    );
    assert!(
        !outcome.console.contains("SMEP is off"),
        "{}",
        outcome.console
    );
}

#[test]
fn ring0_reading_a_user_page_outside_a_system_call_faults_with_smap() {
    let outcome = self_test("smap");
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "SMAP on",
            "ktest smap: ring 0 reading a user page outside a system call",
            "KERNEL PANIC",
            "kernel-mode page fault",
            "P=1",
            "U/S=0",
        ],
    );
    assert!(
        !outcome.console.contains("SMAP is off"),
        "{}",
        outcome.console
    );
}

#[test]
fn kernel_thread_stack_overflow_hits_the_guard_page_and_is_reported() {
    let outcome = self_test("thread-stack-overflow");
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "ktest thread-stack-overflow: recursing on a 64 KiB thread stack",
            "KERNEL PANIC",
            "kernel stack overflow: a thread ran into the guard page below its stack",
        ],
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

/// The micro-benchmark suite runs to completion with every SIP in ring 3, and the echo pair's
/// messages cross address spaces in one copy: delivered straight into the waiting receiver.
#[test]
fn benchmarks_run_in_ring3_and_messages_cross_spaces_in_one_copy() {
    let outcome = run(BootOptions {
        isolation: Isolation::Hard,
        bench: Some("micro".into()),
        ..sips(&cordon::bench::MICRO_SIPS)
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "bench micro: isolation=hard",
            "[abi-bench] minimum kernel call (abi_version): median",
            "[echo-client] round trip, 16-byte message: median",
            "[yield] yield ping-pong (two SIPs): median",
            "SIP create+start+exit+reap (startup, 9 runs): median",
            "SIP fork (ring-3 runtime image",
            "copy-on-write fault (",
            "demand-zero fault (",
            "bench micro: done",
        ],
    );
    let figure = |label: &str| figure(cordon::bench::MICRO, &outcome, label);
    let messages = figure("echo pair: channel messages");
    let direct = figure("echo pair: messages delivered directly");
    let copied = figure("echo pair: bytes copied by the kernel");
    assert!(messages > 1000, "{messages} messages");
    // The client calls a server that is already waiting: nearly every message lands
    // directly, so each byte is copied once.
    assert!(
        direct * 10 >= messages * 9,
        "{direct} of {messages} delivered directly"
    );
    assert!(figure("echo pair: system calls") >= messages);
    assert!(figure("echo pair: CR3 loads") > 0);
    assert!(copied > 0);
}

on_two_cpus!(
    micro_suite_on_two_cpus_measures_calls_and_shootdowns,
    micro_suite_on_two_cpus_measures_calls_and_shootdowns_in_ring3,
    micro_on_two_cpus
);

/// The micro suite's cross-processor rows with a second processor (suite `smp`: those
/// rows alone, the rest of the micro suite runs in its own test): measured, and printed
/// as numbers, not asserted against a bound.
fn micro_on_two_cpus(isolation: Isolation) {
    // The echo pair's modules: the suite runs it on one processor and across two.
    let outcome = run(BootOptions {
        isolation,
        bench: Some("smp".into()),
        ..system("echo")
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "bench smp: 2 processors",
            "cross-processor call (CPU 0 -> CPU 1",
            "invlpg of one kernel page (this CPU only",
            "TLB shootdown of one kernel page (2 CPUs",
            "[echo-client] one CPU: round trip, 16-byte message",
            "[echo-client] across two CPUs: round trip, 16-byte message",
            "bench smp: done",
        ],
    );
    let figures = cordon::bench::parse(cordon::bench::MICRO, &outcome.console);
    for label in [
        "cross-processor call (IPI to CPU 1 and its reply)",
        "invlpg of one kernel page, this CPU only",
        "TLB shootdown of one kernel page, 2 CPUs",
        "channel round trip, 16 B, both SIPs on CPU 0",
        "channel round trip, 16 B, client CPU 0, server CPU 1",
    ] {
        let row = cordon::bench::MICRO
            .iter()
            .position(|m| m.label == label)
            .expect("a known metric");
        assert!(
            figures[row].is_some_and(|cycles| cycles > 0),
            "no `{label}` figure in\n{}",
            outcome.console
        );
    }
}

/// A disk image given with `--disk` appears to the kernel as a virtio-blk PCI device (the
/// device the WebFiles driver SIP will drive); without one there is none.
#[test]
fn disk_image_appears_as_a_virtio_blk_pci_device() {
    let disk = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pci-test-disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let with_disk = run(BootOptions {
        disk: Some(disk),
        ..sips(&["hello"])
    });
    expect(
        &with_disk,
        Verdict::Passed,
        &["PCI: ", "virtio-blk (1af4:1001, class 01.00, I/O 0x"],
    );
    let without = run(sips(&["hello"]));
    expect(&without, Verdict::Passed, &["no virtio-blk disk"]);
}

/// A WebFiles set for the tests: one directory, a few reads (every byte still checked).
fn webfiles_disk(name: &str) -> (cordon::webfiles::Workload, std::path::PathBuf) {
    let workload = cordon::webfiles::Workload {
        dirs: 1,
        warmup: 2,
        reads: 25,
        ..cordon::webfiles::Workload::QUICK
    };
    // Tests of one mode in both engines run at once: each gets a directory of its own.
    let dir = std::env::temp_dir().join(format!(
        "cordon-test-{name}-{}-{}",
        ENGINE.get().name(),
        std::process::id()
    ));
    let image = cordon::webfiles::prepare(&workload, &dir).expect("webfiles-gen works");
    (workload, image)
}

fn webfiles_system(isolation: Isolation, disk: Option<std::path::PathBuf>) -> BootOptions {
    BootOptions {
        isolation,
        disk,
        ..system("webfiles")
    }
}

in_both_modes!(
    webfiles_reads_every_byte_right_through_driver_and_file_system_sips,
    webfiles_reads_every_byte_right_through_driver_and_file_system_sips_in_ring3,
    webfiles_reads_every_byte_right_through_driver_and_file_system_sips_compiled,
    webfiles_reads_every_byte_right_through_driver_and_file_system_sips_in_ring3_compiled,
    webfiles
);

on_two_cpus!(
    webfiles_serves_three_clients_every_byte_right_on_two_cpus,
    webfiles_serves_three_clients_every_byte_right_on_two_cpus_in_ring3,
    webfiles_three_clients
);

/// One file system serving three WebFiles clients at once (`fs.clients`, `clients#2`,
/// `clients#3`), each its own SIP with its own request stream and open files, on two
/// processors: every client verifies every file, every SIP exits 0, nothing is left.
fn webfiles_three_clients(isolation: Isolation) {
    let (workload, image) = webfiles_disk(&format!("clients-{}", isolation.name()));
    let mut options = webfiles_system(isolation, Some(image));
    options.system = cordon::webfiles::with_clients(&options.system, 3).expect("three clients");
    let outcome = run(options);
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[fs] fs: serving 3 clients",
            "verified=25 client=1 ",
            "verified=25 client=2 ",
            "verified=25 client=3 ",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
    cordon::webfiles::check_clients(&outcome.console, &workload, 3)
        .unwrap_or_else(|why| panic!("{why}\n{}", outcome.console));
    let together = cordon::webfiles::Throughput::of(&outcome.console).expect("three results");
    assert_eq!(
        together.reads,
        3 * u64::from(workload.warmup + workload.reads)
    );
}

/// The three WebFiles SIPs: the driver gets the disk's registers, interrupt and DMA, the
/// file system mounts the ext4 image through it, and the client checks every file it reads
/// against the generator's CRC-32.
fn webfiles(isolation: Isolation) {
    let (workload, image) = webfiles_disk(isolation.name());
    let outcome = run(webfiles_system(isolation, Some(image)));
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[virtio-blk] virtio-blk: 45056 sectors (22 MiB), read-only, queue of 256",
            "[fs] fs: mounted ext4 volume \"webfiles\"",
            "[webfiles] webfiles: 1 directories (36 files, ",
            "2 warm-up + 25 measured reads",
            "verified=25",
            "device interrupts",
            "[kernel] virtio-blk at 00:04.0 quiesced before pid 1's blocks are freed: bus mastering off, device reset",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
    cordon::webfiles::check(&outcome.console, &workload)
        .unwrap_or_else(|why| panic!("{why}\n{}", outcome.console));
    // Every figure is there (whether the driver ever had to wait for an interrupt depends
    // on how fast the emulated disk completes, so its count is not asserted).
    // (Restore times exist only after a restart.)
    let figures = cordon::bench::parse(cordon::bench::WEBFILES, &outcome.console);
    assert!(
        figures
            .iter()
            .zip(cordon::bench::WEBFILES)
            .filter(|(_, m)| !m.label.starts_with("recovery: failure to first reply"))
            .all(|(f, _)| f.is_some()),
        "every WebFiles figure is printed: {figures:?}\n{}",
        outcome.console
    );
}

#[test]
fn a_volume_that_is_not_ext4_ends_only_the_file_system_sip() {
    let dir = std::env::temp_dir().join(format!("cordon-test-zeros-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zeros = dir.join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();
    let outcome = run(webfiles_system(Isolation::Hard, Some(zeros)));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[fs] fs: the volume (4194304 bytes) does not mount as ext4",
            "[kernel] SIP fs (pid 2) exited with status 2",
            // The system manifest restarts a failed file system; one that cannot mount
            // fails every time, and the supervisor gives up at its policy's limit.
            "[supervisor] fs (generation 1, pid 2) ended; restarting it in 10 ms as generation 2",
            "[supervisor] fs (generation 6, pid 8) ended after 5 restarts within 60000 ms: giving up, it stays ended",
            "[webfiles] webfiles: FAILED: opening /webfiles.conf: the file system went away, and did not come back (NotFound)",
            "[kernel] SIP virtio-blk (pid 1) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "2 of 8 SIPs did not exit with status 0",
        ],
    );
    assert!(
        !outcome.console.contains("KERNEL PANIC"),
        "{}",
        outcome.console
    );
}

/// Overwrites the first block of group 0's inode table (inodes 1 to 16, the root
/// directory's among them) with a fixed pattern, leaving the superblock intact: a volume
/// that mounts and then lies.
fn damage_first_inodes(image: &std::path::Path) {
    let mut bytes = std::fs::read(image).unwrap();
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let superblock = 1024;
    let block_size = 1024 << le32(superblock + 24);
    let first_data_block = le32(superblock + 20);
    let descriptors = (first_data_block + 1) * block_size;
    let inode_table = le32(descriptors + 8) * block_size;
    for (i, byte) in bytes[inode_table..inode_table + block_size]
        .iter_mut()
        .enumerate()
    {
        *byte = (i as u8).wrapping_mul(167).wrapping_add(13);
    }
    std::fs::write(image, bytes).unwrap();
}

/// Corrupt metadata found after mounting fails the request that met it, with the
/// reason, in the client's console and the file system's; the file system keeps serving
/// and exits cleanly, and nothing else is hurt.
#[test]
fn a_corrupt_inode_fails_the_request_with_its_reason() {
    let (_, image) = webfiles_disk("corrupt");
    damage_first_inodes(&image);
    let outcome = run(webfiles_system(Isolation::Hard, Some(image)));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[fs] fs: mounted ext4 volume \"webfiles\"",
            "[fs] fs: /webfiles.conf: corrupt filesystem: ",
            "[webfiles] webfiles: FAILED: opening /webfiles.conf: corrupt filesystem: ",
            "[fs] fs: served 1 requests; the client went away",
            "[kernel] SIP fs (pid 2) exited with status 0",
            "[kernel] SIP virtio-blk (pid 1) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "1 of 3 SIPs did not exit with status 0",
        ],
    );
    assert!(
        !outcome.console.contains("KERNEL PANIC"),
        "{}",
        outcome.console
    );
}

in_both_modes!(
    a_driver_killed_mid_run_is_quiesced_and_its_clients_end_cleanly,
    a_driver_killed_mid_run_is_quiesced_and_its_clients_end_cleanly_in_ring3,
    a_driver_killed_mid_run_is_quiesced_and_its_clients_end_cleanly_compiled,
    a_driver_killed_mid_run_is_quiesced_and_its_clients_end_cleanly_in_ring3_compiled,
    driver_killed
);

/// `driver-killer`, holding the kill and inspect powers, kills the disk driver once it
/// has made 40 kernel calls (the file system is waiting for a read by then): the device is
/// quiesced before the driver's blocks are freed, the file system and the client see the
/// disk and the file system gone, and nothing is left over.
fn driver_killed(isolation: Isolation) {
    let (_, image) = webfiles_disk(&format!("killed-{}", isolation.name()));
    let outcome = run(BootOptions {
        disk: Some(image),
        ..in_mode(isolation, system("webfiles-driver-killed"))
    });
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP driver-killer (pid 4) exited with status 0",
            "[kernel] virtio-blk at 00:04.0 quiesced before pid 1's blocks are freed: bus mastering off, device reset",
            "[kernel] SIP virtio-blk (pid 1) killed by SIP driver-killer (pid 4)",
            // No restart policy in this system: the file system asks for the driver's
            // endpoint again and learns it will not come.
            "the driver went away and did not come back: NotFound",
            "[webfiles] webfiles: FAILED: ",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
    attack_row(
        "driver killed mid-run",
        isolation,
        &["virtio-blk"],
        &outcome,
    );
}

in_both_modes!(
    webfiles_survives_its_driver_and_file_system_crashing_mid_run,
    webfiles_survives_its_driver_and_file_system_crashing_mid_run_in_ring3,
    webfiles_survives_its_driver_and_file_system_crashing_mid_run_compiled,
    webfiles_survives_its_driver_and_file_system_crashing_mid_run_in_ring3_compiled,
    recovery_under_injected_crashes
);

/// The file system and the disk driver each crash mid-run (`--inject`); the supervisor
/// restarts each as generation 2 with fresh channels (the driver's device quiesced and
/// claimed again), the file system sends the disk read it lost again, the client reads
/// the file it lost again, and every byte of every read still matches. Each crash leaves
/// a crash record; frames, endpoints and blocks come back.
fn recovery_under_injected_crashes(isolation: Isolation) {
    let (workload, image) = webfiles_disk(&format!("recovery-{}", isolation.name()));
    let outcome = run(BootOptions {
        injections: vec![
            bootpkg::Injection::parse("crash:fs:120").unwrap(),
            bootpkg::Injection::parse("crash:virtio-blk:80").unwrap(),
        ],
        ..webfiles_system(isolation, Some(image))
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[kernel] crash record of SIP fs (pid 2, generation 1): terminated: injected fault: crash injected at kernel call 120 of `fs`",
            "[kernel]   endpoint: BlockDevice importer in state Ready",
            "[kernel]   last output: fs: mounted ext4 volume \"webfiles\"",
            "[supervisor] fs (generation 1, pid 2) ended; restarting it in 10 ms as generation 2",
            "[supervisor] fs restarted: generation 2, pid ",
            "[kernel] crash record of SIP virtio-blk (pid 1, generation 1): terminated: injected fault: crash injected at kernel call 80 of `virtio-blk`",
            "[kernel] virtio-blk at 00:04.0 quiesced before pid 1's blocks are freed: bus mastering off, device reset",
            "[supervisor] virtio-blk (generation 1, pid 1) ended; restarting it in 10 ms as generation 2",
            "[supervisor] virtio-blk restarted: generation 2, pid ",
            "verified=25",
            "supervisor: 2 restarts, 0 given up; failure to first reply from the new incarnation: median ",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
    cordon::webfiles::check(&outcome.console, &workload)
        .unwrap_or_else(|why| panic!("{why}\n{}", outcome.console));
    let figure = |label: &str| figure(cordon::bench::WEBFILES, &outcome, label);
    assert_eq!(figure("recovery: SIPs restarted by the supervisor"), 2);
    let retried = figure("recovery: files read again by the client")
        + figure("recovery: idempotent requests the bindings sent again")
        + figure("recovery: disk reads sent again by the file system");
    assert!(
        retried > 0,
        "a crash mid-request makes a request be sent again\n{}",
        outcome.console
    );
    assert_frames_back(&outcome);
}

in_both_modes!(
    an_idempotent_request_is_sent_again_and_another_gets_the_typed_error,
    an_idempotent_request_is_sent_again_and_another_gets_the_typed_error_in_ring3,
    an_idempotent_request_is_sent_again_and_another_gets_the_typed_error_compiled,
    an_idempotent_request_is_sent_again_and_another_gets_the_typed_error_in_ring3_compiled,
    idempotent_and_not
);

/// `echo-server` crashes before answering `Ping` (idempotent in the Echo contract: the
/// client's bindings send it again to generation 2 and the call just returns) and before
/// answering `PingBuf` (not idempotent: the client gets `PeerRestarted`, takes generation
/// 3's endpoint and sends it again itself).
fn idempotent_and_not(isolation: Isolation) {
    let outcome = run(BootOptions {
        injections: vec![
            bootpkg::Injection::parse("crash:echo-server:3").unwrap(),
            bootpkg::Injection::parse("crash:echo-server:7").unwrap(),
        ],
        ..in_mode(isolation, system("echo-recovery"))
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[supervisor] echo-server (generation 1, pid 1) ended; restarting it in 10 ms as generation 2",
            "[echo-retry] Ping 1 answered; the bindings sent it again 1 time(s) to a restarted server",
            "[kernel] crash record of SIP echo-server (pid 3, generation 2): terminated: injected fault: crash injected at kernel call 7 of `echo-server`",
            "[kernel]   endpoint: Echo exporter in state Ready_2, 0 queued, peer open",
            "[echo-retry] PingBuf 2: the server was restarted before answering: PeerRestarted (not idempotent: not sent again)",
            "[supervisor] echo-server restarted: generation 3, pid 4",
            "[echo-retry] PingBuf 3 answered by the new incarnation",
            "[echo-server] served 1 requests; the client said Bye",
            "supervisor: 2 restarts, 0 given up",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
    assert_frames_back(&outcome);
}

in_both_modes!(
    a_hung_file_system_is_found_by_the_watchdog_and_restarted,
    a_hung_file_system_is_found_by_the_watchdog_and_restarted_in_ring3,
    hung_file_system
);

/// `--inject hang:fs:120`: the file system stops inside its 120th kernel call, owing the
/// client a reply (or with its request queued). Its policy's watchdog (`answer-within-ms`)
/// kills it after 5 s without a kernel call; it is restarted, the client reads the file
/// again, and every byte is verified.
fn hung_file_system(isolation: Isolation) {
    let (workload, image) = webfiles_disk(&format!("hang-{}", isolation.name()));
    let outcome = run(BootOptions {
        injections: vec![bootpkg::Injection::parse("hang:fs:120").unwrap()],
        ..webfiles_system(isolation, Some(image))
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[kernel] SIP fs (pid 2) stops here: hang injected at kernel call 120 of `fs`",
            "[supervisor] SIP fs (pid 2, generation 1) left a message waiting and made no kernel call within its policy's answer-within-ms: killed by the watchdog",
            "[kernel] crash record of SIP fs (pid 2, generation 1): killed by the kernel",
            "[supervisor] fs (generation 1, pid 2) ended; restarting it in 10 ms as generation 2",
            "[supervisor] fs restarted: generation 2, pid ",
            "verified=25",
            "supervisor: 1 restarts, 0 given up",
            "0 endpoints and 0 exchange-heap blocks left",
        ],
    );
    cordon::webfiles::check(&outcome.console, &workload)
        .unwrap_or_else(|why| panic!("{why}\n{}", outcome.console));
    assert_frames_back(&outcome);
}

in_both_modes!(
    a_crash_loop_is_given_up_at_its_limit_while_other_sips_finish,
    a_crash_loop_is_given_up_at_its_limit_while_other_sips_finish_in_ring3,
    crash_loop
);

/// `panic` fails at once every time; its policy allows 3 restarts within 10 s, backing off
/// 10, 20, 40 ms. The fourth failure is reported and the supervisor stops; `primes` and
/// `hello` finish meanwhile, and every frame comes back.
fn crash_loop(isolation: Isolation) {
    let outcome = run(in_mode(isolation, system("crash-loop")));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] crash record of SIP panic (pid 1, generation 1): exited with status 101",
            "[kernel]   last output: indexing past the end",
            "[supervisor] panic (generation 1, pid 1) ended; restarting it in 10 ms as generation 2",
            "[supervisor] panic restarted: generation 2, pid 4",
            "[supervisor] panic (generation 2, pid 4) ended; restarting it in 20 ms as generation 3",
            "[supervisor] panic (generation 3, pid 5) ended; restarting it in 40 ms as generation 4",
            "[supervisor] panic (generation 4, pid 6) ended after 3 restarts within 10000 ms: giving up, it stays ended",
            "[kernel] SIP primes (pid 2) exited with status 0",
            "[kernel] SIP hello (pid 3) exited with status 0",
            "supervisor: 3 restarts, 1 given up",
            "panic          policy on-failure generation 4, given up",
            "0 endpoints and 0 exchange-heap blocks left",
            "1 of 6 SIPs did not exit with status 0",
        ],
    );
    assert_frames_back(&outcome);
}

#[test]
fn a_driver_whose_device_is_missing_is_not_started() {
    let outcome = run(webfiles_system(Isolation::Soft, None));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "PCI: 6 functions; no virtio-blk disk",
            "[kernel] SIP virtio-blk (pid 1) could not be loaded: resource 0 (PCI device 1af4:1001): no such device on this machine",
            "[fs] fs: the driver did not answer GetInfo",
            "3 of 3 SIPs did not exit with status 0",
        ],
    );
}

in_both_modes!(
    sips_reach_only_the_device_registers_they_were_granted,
    sips_reach_only_the_device_registers_they_were_granted_in_ring3,
    device_grants
);

fn device_grants(isolation: Isolation) {
    let dir = std::env::temp_dir().join(format!("cordon-test-grants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join(format!("{}.img", isolation.name()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let outcome = run(BootOptions {
        disk: Some(disk.clone()),
        ..in_mode(isolation, system("device-probes"))
    });
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP dev-ungranted (pid 1) terminated: bad kernel call: resource 0 was not granted to this SIP",
            "[kernel] SIP dma-ungranted (pid 2) terminated: bad kernel call: buf_dma(1): only a SIP granted a device may learn physical addresses",
            "[kernel] SIP dev-outside (pid 3) terminated: bad kernel call: register [0x1000, +4) is not an aligned access inside the device's 0x80 bytes of I/O space",
            "[kernel] SIP hello (pid 4) exited with status 0",
            "3 of 4 SIPs did not exit with status 0",
        ],
    );
    attack_row(
        "device registers and DMA",
        isolation,
        &["dev-ungranted", "dma-ungranted", "dev-outside"],
        &outcome,
    );
    // Authority comes from the system manifest: a driver whose own manifest asks for the
    // disk gets nothing without it (the runner refuses this before boot; the kernel checks
    // again for a package built another way), and a device the system gives must be one
    // the SIP asks for.
    let mut ungiven = sips(&["dev-outside", "hello"]);
    ungiven.system.devices = vec![bootpkg::DeviceGrant {
        sip: 1,
        device: "pci:1af4:1001".parse().unwrap(),
    }];
    let outcome = run(BootOptions {
        disk: Some(disk),
        ..in_mode(isolation, ungiven)
    });
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP dev-outside (pid 1) could not be loaded: resource 0 (PCI device 1af4:1001): the system manifest gives this SIP no such device (a SIP's own manifest only asks)",
            "[kernel] SIP hello (pid 2) could not be loaded: the system manifest gives it device pci:1af4:1001, which its own manifest does not ask for (it asks for no device)",
            "2 of 2 SIPs did not exit with status 0",
        ],
    );
}

in_both_modes!(
    a_mismatched_or_changed_artifact_is_refused_and_the_others_run,
    a_mismatched_or_changed_artifact_is_refused_and_the_others_run_in_ring3,
    a_mismatched_or_changed_artifact
);

/// The compiled engine runs a SIP only from the artifact compiled from exactly its module:
/// `hello` given `primes`' artifact (as a stale or confused build would) and `primes` with
/// one byte of its artifact changed are refused with what is wrong, and `abi-bench`, whose
/// artifact is intact, runs compiled beside them. (Whoever can rewrite the whole package
/// can also rewrite its hashes: the runner and the image are trusted, as in Singularity.)
/// In ring 3 the kernel checks the same before it maps any of the artifact.
fn a_mismatched_or_changed_artifact(isolation: Isolation) {
    let options = BootOptions {
        engine: Engine::Compiled,
        ..in_mode(isolation, sips(&["hello", "primes", "abi-bench"]))
    };
    let mut package = cordon::qemu::package(&options).expect("package");
    let primes = package.artifact("primes").expect("primes compiled").clone();
    let hello = package
        .artifacts
        .iter_mut()
        .find(|a| a.module == "hello")
        .expect("hello compiled");
    *hello = bootpkg::Artifact {
        module: "hello".into(),
        ..primes
    };
    let primes = package
        .artifacts
        .iter_mut()
        .find(|a| a.module == "primes")
        .unwrap();
    let middle = primes.code.len() / 2;
    primes.code[middle] ^= 0x40;
    let outcome = cordon::qemu::boot_package(&options, &package).expect("boots");
    expect(
        &outcome,
        Verdict::Failed,
        &[
            format!("booted: isolation={}, engine=compiled", isolation.name()).as_str(),
            "[kernel] SIP hello (pid 1) could not be loaded: the compiled artifact for `hello` belongs to another module",
            "[kernel] SIP primes (pid 2) could not be loaded: the compiled artifact for `primes` was changed after compilation",
            "[kernel] SIP abi-bench (pid 3) exited with status 0",
        ],
    );
    let row = outcome
        .console
        .lines()
        .find(|l| l.starts_with("3    abi-bench"))
        .expect("abi-bench's summary row");
    assert!(
        row.contains(" compiled "),
        "abi-bench ran in another engine: {row}"
    );
}

/// The system manifest chooses the engine per SIP, and the summary names the engine that
/// actually ran each one.
#[test]
fn the_system_manifest_chooses_the_engine_per_sip() {
    let mut system = cordon::system::parse(
        r#"
        sips = ["hello", "primes"]
        [[engines]]
        sip = "primes"
        engine = "compiled"
        "#,
    )
    .expect("manifest parses");
    system.client = None;
    let outcome = run(BootOptions {
        system,
        ..BootOptions::default()
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "booted: isolation=soft, engine=interp",
            "[kernel] SIP primes (pid 2) exited with status 0",
        ],
    );
    let engine_of = |name: &str| {
        let row = outcome
            .console
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no summary row for {name}"));
        row.split_whitespace().nth(2).unwrap().to_string()
    };
    assert_eq!(engine_of("hello"), "interp");
    assert_eq!(engine_of("primes"), "compiled");
}

in_both_modes!(
    modules_given_as_files_boot_from_a_manifest_outside_the_repository,
    modules_given_as_files_boot_from_a_manifest_outside_the_repository_in_ring3,
    modules_from_files
);

/// A system manifest in a directory of its own names its SIPs by path, relative to
/// itself: a compiled `.wasm` (a copy of echo-server, which goes by its manifest's name)
/// and a hand-written `.wat` whose `;;@` header declares the endpoint the channel wires.
fn modules_from_files(isolation: Isolation) {
    let dir =
        std::env::temp_dir().join(format!("cordon-files-{isolation:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = cordon::sips::SIPS
        .iter()
        .find(|(n, _)| *n == "echo-server")
        .map(|(_, path)| *path)
        .unwrap();
    std::fs::copy(server, dir.join("server.wasm")).unwrap();
    std::fs::write(
        dir.join("client.wat"),
        r#";; An Echo client written by hand: it takes its `server` end and exits.
;;@ endpoints = [{ name = "server", contract = "Echo", role = "importer" }]
(module
  (import "cordon" "chan_initial" (func $initial (param i32 i32 i32 i32 i32) (result i32)))
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "server")
  (data (i32.const 16) "Echo")
  (data (i32.const 32) "took my server end\n")
  (func (export "cordon_main")
    (if (i32.lt_s
          (call $initial (i32.const 0) (i32.const 6) (i32.const 16) (i32.const 4) (i32.const 1))
          (i32.const 0))
      (then (call $exit (i32.const 1))))
    (drop (call $write (i32.const 32) (i32.const 19)))
    (call $exit (i32.const 0))))
"#,
    )
    .unwrap();
    let manifest = dir.join("kv.toml");
    std::fs::write(
        &manifest,
        r#"
        sips = ["server.wasm", "./client.wat"]
        [[channels]]
        contract = "Echo"
        exporter = "echo-server.clients"
        importer = "client.server"
        "#,
    )
    .unwrap();
    let system = cordon::system::load(manifest.to_str().unwrap()).expect("manifest loads");
    let outcome = run_system(isolation, system);
    std::fs::remove_dir_all(&dir).unwrap();
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "[client] took my server end",
            "[kernel] SIP client (pid 2) exited with status 0",
            "[kernel] SIP echo-server (pid 1) exited with status 0",
            "powering off (success)",
        ],
    );
}

in_both_modes!(
    arguments_reach_sips_and_a_bad_args_buffer_faults_only_its_sip,
    arguments_reach_sips_and_a_bad_args_buffer_faults_only_its_sip_in_ring3,
    arguments
);

/// The system manifest's `[[args]]` and `--arg` (`System::add_args`) reach the SIPs in
/// order; `args-probe` then hands the kernel a buffer outside its memory and is ended
/// alone.
fn arguments(isolation: Isolation) {
    let mut system = cordon::system::parse(
        r#"
        sips = ["hello", "args-probe"]
        [[args]]
        sip = "hello"
        args = ["big"]
        "#,
    )
    .expect("manifest parses");
    system
        .add_args(&["hello=world".into(), "args-probe=x".into()])
        .expect("arguments are well-formed");
    let outcome = run_system(isolation, system);
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[hello] Hello, big world! (2 arguments)",
            "[kernel] SIP hello (pid 1) exited with status 0",
            "[args-probe] x",
            "[kernel] SIP args-probe (pid 2) terminated: bad kernel call: args: [0xfffa, +100) reaches outside linear memory (65536 bytes)",
            "1 of 2 SIPs did not exit with status 0",
        ],
    );
    attack_row("args outside memory", isolation, &["args-probe"], &outcome);
}

/// The README's new-user path, run as written: the `sh` block after the `new-user-path`
/// marker, in a temporary directory standing for the checkout, with `cargo run -- ARGS`
/// meaning this runner with ARGS. It makes a contract and two SIP crates outside the
/// workspace, builds them, and boots them in soft and in hard isolation.
#[test]
fn the_readme_new_user_path_works() {
    let readme = include_str!("../../../README.md");
    let marked = &readme[readme
        .find("<!-- new-user-path")
        .expect("the README marks its new-user path")..];
    let start = marked
        .find("```sh\n")
        .expect("a sh block follows the marker")
        + 6;
    let block = &marked[start..][..marked[start..].find("\n```").expect("the block ends")];
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("new-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let checkout = root.join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let script = format!(
        "set -eu\n\
         cargo() {{ if [ \"$1\" = run ] && [ \"$2\" = -- ]; then shift 2; \"$CORDON\" \"$@\"; else command cargo \"$@\"; fi; }}\n\
         {block}\n"
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(&checkout)
        .env("CORDON", env!("CARGO_BIN_EXE_cordon-runner"))
        .output()
        .expect("bash runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the README's commands failed:\n{output}"
    );
    for needle in [
        "wrote ../kv/kv.contract (contract `Kv`)",
        "made SIP `kv-server`",
        "made SIP `kv-client`",
        "booted: isolation=soft",
        "booted: isolation=hard",
        // Started from the shell, it gets its channel to the server that waited for it;
        // started again, a fresh one.
        "started kv-client: pid 4; it exited with status 0",
        "started kv-client: pid 5; it exited with status 0",
    ] {
        assert!(output.contains(needle), "missing {needle:?} in\n{output}");
    }
    assert_eq!(
        output
            .matches("[kv-client] kv-client: Kv answered Reply { id: 0, data: \"\" }")
            .count(),
        4,
        "one answer per boot, and one per start from the shell:\n{output}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

in_both_modes!(
    the_kernel_refuses_a_package_whose_wiring_contradicts_a_sips_manifest,
    the_kernel_refuses_a_package_whose_wiring_contradicts_a_sips_manifest_in_ring3,
    contradicted_wiring
);

/// A package built without the runner's checks (the library's `boot`, as any other
/// builder would) wires echo-server's `clients` as an importer and echo-client's `server`
/// as an exporter: the kernel applies the same rule (`bootpkg::endpoint_mismatches`) and
/// starts neither, naming the mismatch, while `hello` beside them runs.
fn contradicted_wiring(isolation: Isolation) {
    let system = cordon::system::parse(
        r#"
        sips = ["echo-server", "echo-client", "hello"]
        [[channels]]
        contract = "Echo"
        exporter = "echo-client.server"
        importer = "echo-server.clients"
        "#,
    )
    .expect("the manifest's names resolve; roles are the kernel's to check here");
    let outcome = run_system(isolation, system);
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "`echo-server.clients` is the importer of this channel, but `echo-server`'s own manifest declares it as the exporter",
            "`echo-client.server` is the exporter of this channel, but `echo-client`'s own manifest declares it as the importer",
            "[kernel] SIP hello (pid 3) exited with status 0",
        ],
    );
    assert!(
        !outcome.console.contains("KERNEL PANIC"),
        "{}",
        outcome.console
    );
}

/// What followed the shell's prompt for the `nth` (from 0) typing of `command` in
/// `script`: the echo of the line, the shell's answer (printed in one piece), and any other
/// SIP's lines that came meanwhile, up to the next prompt. Found by counting prompts (each
/// script line is typed after one more): another SIP's output may land inside the echo.
#[track_caller]
fn shell_answer<'a>(outcome: &'a Outcome, script: &[&str], command: &str, nth: usize) -> &'a str {
    let line = script
        .iter()
        .enumerate()
        .filter(|(_, typed)| **typed == command)
        .nth(nth)
        .unwrap_or_else(|| panic!("the script types `{command}` fewer than {} times", nth + 1))
        .0;
    outcome
        .console
        .split(cordon::SHELL_PROMPT)
        .nth(line + 1)
        .unwrap_or_else(|| {
            panic!(
                "no prompt for line {} (`{command}`)\n--- console ---\n{}",
                line + 1,
                outcome.console
            )
        })
}

/// The cycles column of SIP `name`'s row in a `ps` answer.
#[track_caller]
fn ps_cycles(answer: &str, name: &str) -> u64 {
    let row = answer
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{answer}"));
    row.split_whitespace()
        .nth(6)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no cycles in {row}"))
}

/// A `ps` answer's last line without the heap figure (which the process table's own rows
/// move): SIPs running, frames free, endpoints and blocks.
#[track_caller]
fn ps_resources(answer: &str) -> String {
    let footer = answer
        .lines()
        .find(|l| l.contains(" running; kernel heap "))
        .unwrap_or_else(|| panic!("no footer in\n{answer}"));
    let (running, rest) = footer.split_once("; kernel heap ").unwrap();
    let (_heap, rest) = rest.split_once(" in use; ").unwrap();
    format!("{running}; {rest}")
}

/// The shell, driven through the serial port: a client started from it finds a service
/// through the running directory; a SIP that never ends, started from it, is seen using
/// the processor in `ps` (the kernel's own cycle count rises), is killed, and every
/// resource the kernel accounts is back to what it was before it started; the kernel's
/// tables answer; mistakes are told, not fatal; `shutdown` powers off cleanly.
fn shell_session(isolation: Isolation) {
    let script = [
        "help",
        "run echo-binder",
        "wait 5",
        "ps",
        "run forever",
        "ps",
        "ps",
        "kill 6",
        "ps",
        "channels",
        "contracts",
        "counters",
        "info 6",
        "kill 6",
        "run nope",
        "run hello \"from the shell\"",
        "wait 7",
        "frob",
        "shutdown",
    ];
    let outcome = run(BootOptions {
        input: cordon::ConsoleInput::Script(script.map(String::from).to_vec()),
        ..in_mode(isolation, system("shell"))
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "Cordon shell: `help` lists the commands.",
            "[echo-binder] 3 pings answered over a channel found by name",
            "started echo-binder: pid 5",
            "pid 5 exited with status 0",
            "started forever: pid 6",
            "[kernel] SIP forever (pid 6) killed by SIP shell (pid 2)",
            "killed pid 6",
            "kill: pid 6 has ended already",
            "run: no module `nope` in the boot package",
            "[hello] Hello, from the shell! (1 arguments)",
            "pid 7 exited with status 0",
            "frob: no such command (`help` lists them)",
            "[kernel] SIP shell (pid 2) shuts the system down (status 0)",
            "[kernel] SIP console (pid 1) ended by the shutdown",
            "0 endpoints and 0 exchange-heap blocks left",
            "powering off (success)",
        ],
    );
    let help = shell_answer(&outcome, &script, "help", 0);
    for command in [
        "ps",
        "channels",
        "contracts",
        "counters",
        "run [-w] NAME",
        "kill PID",
        "wait PID",
        "shutdown",
    ] {
        assert!(help.contains(command), "help lacks {command}:\n{help}");
    }
    // The kernel's accounting of a SIP that only computes: its cycles rise between two
    // looks, and its end gives back everything it held.
    let (first, second) = (
        ps_cycles(shell_answer(&outcome, &script, "ps", 1), "forever"),
        ps_cycles(shell_answer(&outcome, &script, "ps", 2), "forever"),
    );
    assert!(
        second > first,
        "forever's cycles did not rise: {first} then {second}"
    );
    let before = ps_resources(shell_answer(&outcome, &script, "ps", 0));
    let after = ps_resources(shell_answer(&outcome, &script, "ps", 3));
    assert_eq!(
        before, after,
        "resources before forever started and after it was killed"
    );
    assert!(
        shell_answer(&outcome, &script, "ps", 3)
            .lines()
            .any(|l| l.contains(" forever ") && l.contains(" killed ")),
        "forever is not shown killed"
    );
    let channels = shell_answer(&outcome, &script, "channels", 0);
    assert!(
        channels.contains("Console") && channels.contains("Directory"),
        "{channels}"
    );
    let contracts = shell_answer(&outcome, &script, "contracts", 0);
    assert!(
        contracts.contains("Console") && contracts.contains("Echo"),
        "{contracts}"
    );
    let counters = shell_answer(&outcome, &script, "counters", 0);
    assert!(counters.contains("context switches"), "{counters}");
    assert!(shell_answer(&outcome, &script, "info 6", 0).contains("pid 6: was killed"));
    // The end-of-run table is the same accounting.
    assert!(
        outcome
            .console
            .contains("SIP accounting (the shell's `ps`):")
    );
    assert_frames_back(&outcome);
}

in_both_modes!(
    the_shell_runs_inspects_and_kills_sips_over_the_serial_console,
    the_shell_runs_inspects_and_kills_sips_over_the_serial_console_in_ring3,
    shell_session
);

/// Attack tests of the operations the shell's powers unlock: each called without its
/// power ends the caller alone; a table that does not exist and arguments without their
/// NUL byte fault the caller, not the kernel; a `hello` started with arguments gets them.
fn console_and_shell_powers(isolation: Isolation) {
    let outcome = run(in_mode(isolation, system("console-probes")));
    expect(
        &outcome,
        Verdict::Failed,
        &[
            "[kernel] SIP no-console (pid 1) terminated: bad kernel call: console_read: the system manifest did not give this SIP the `console` power",
            "[kernel] SIP no-report (pid 2) terminated: bad kernel call: report: the system manifest did not give this SIP the `inspect` power",
            "[kernel] SIP no-shutdown (pid 3) terminated: bad kernel call: shutdown: the system manifest did not give this SIP the `shutdown` power",
            "[kernel] SIP bad-report (pid 4) terminated: bad kernel call: report: no table 99 (tables 0 to 3: sips, channels, contracts, counters)",
            "[kernel] SIP bad-start-args (pid 5) terminated: bad kernel call: sip_start: the arguments do not end with a NUL byte",
            "[kernel] SIP no-bench (pid 6) terminated: bad kernel call: bench: the system manifest did not give this SIP the `bench` power",
            "[hello] Hello, probing args! (2 arguments)",
            "[kernel] SIP hello (pid 7) exited with status 0",
            "0 endpoints and 0 exchange-heap blocks left",
            "6 of 7 SIPs did not exit with status 0",
        ],
    );
    assert_frames_back(&outcome);
    attack_row(
        "console and shell powers not given",
        isolation,
        &[
            "no-console",
            "no-report",
            "no-shutdown",
            "no-bench",
            "bad-report",
            "bad-start-args",
        ],
        &outcome,
    );
}

in_both_modes!(
    console_and_shell_operations_need_their_powers,
    console_and_shell_operations_need_their_powers_in_ring3,
    console_and_shell_powers
);

/// The shell's `bench` runs the kernel's micro suite in the running system (soft only:
/// the suite's own test covers hard) and says it completed; the system then shuts down
/// cleanly.
#[test]
fn the_shell_runs_the_kernels_micro_suite() {
    let outcome = run(BootOptions {
        input: cordon::ConsoleInput::Script(vec![
            "bench".into(),
            "bench nope".into(),
            "shutdown".into(),
        ]),
        ..system("shell")
    });
    expect(
        &outcome,
        Verdict::Passed,
        &[
            "bench micro: isolation=soft",
            "SIP create+start (hello,",
            "bench micro: done",
            "bench: the micro suite ran to completion",
            "bench: no suite `nope` (suites: micro)",
            "bench: the nope suite cannot run here (see above)",
            "powering off (success)",
        ],
    );
}
