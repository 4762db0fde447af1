//! The runtime on the host with a mock kernel: every way a SIP can end.
//!
//! With the `compile` feature (as the workspace's `cargo test` builds it, since the runner
//! needs it) every module also runs in the compiled engine, compiled for the host with the
//! kernel's settings, and must end the same way with the same console output.

use cordon_abi::Limits;
use sip_runtime::{Exit, FUEL_SLICE, Fault, Kernel, Metering, Sip};

#[derive(Clone, Default)]
struct Mock {
    console: Vec<u8>,
    yields: u32,
    kill_after_checks: Option<u32>,
    checks: u32,
}

impl Kernel for Mock {
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }
    fn yield_now(&mut self) {
        self.yields += 1;
    }
    fn ticks(&mut self) -> u64 {
        7
    }
    fn cycles(&mut self) -> u64 {
        1234
    }
    fn abi_version(&mut self) -> i32 {
        cordon_abi::VERSION
    }
    fn kill_requested(&mut self) -> bool {
        self.checks += 1;
        self.kill_after_checks.is_some_and(|n| self.checks > n)
    }
    // The channel calls are exercised in QEMU against the real kernel; here they only
    // need to exist (and report misuse the way the kernel does).
    fn chan_create(&mut self, _: &str) -> Result<Result<(u32, u32), i32>, String> {
        Ok(Ok((1, 2)))
    }
    fn chan_send(&mut self, ep: u32, _: &[u8]) -> Result<i32, String> {
        if ep == 1 {
            Ok(0)
        } else {
            Err(format!("endpoint handle {ep} is not held by this SIP"))
        }
    }
    fn chan_recv(&mut self, _: u32, out: &mut [u8], _: Option<u64>) -> Result<i32, String> {
        out.fill(7);
        Ok(out.len() as i32)
    }
    fn chan_call(
        &mut self,
        _: u32,
        msg: &[u8],
        out: &mut [u8],
        _: Option<u64>,
    ) -> Result<i32, String> {
        out[..msg.len()].copy_from_slice(msg);
        Ok(msg.len() as i32)
    }
    fn chan_select(&mut self, eps: &[u32], _: Option<u64>) -> Result<i32, String> {
        Ok(eps.len() as i32 - 1)
    }
    fn chan_close(&mut self, _: u32) -> Result<i32, String> {
        Ok(0)
    }
    fn chan_initial(&mut self, _: &str, _: &str, _: bool, _: bool) -> Result<i32, String> {
        Ok(cordon_abi::status::NOT_FOUND)
    }
    fn chan_check(&mut self, _: u32, _: &str, _: bool) -> Result<i32, String> {
        Ok(0)
    }
    fn buf_alloc(&mut self, _: u32) -> Result<i32, String> {
        Ok(1)
    }
    fn buf_write(&mut self, _: u32, _: u32, _: &[u8]) -> Result<i32, String> {
        Ok(0)
    }
    fn buf_read(&mut self, _: u32, _: u32, _: &mut [u8]) -> Result<i32, String> {
        Ok(0)
    }
    fn buf_free(&mut self, _: u32) -> Result<i32, String> {
        Ok(0)
    }
    fn buf_size(&mut self, _: u32) -> Result<i32, String> {
        Ok(0)
    }
    fn dev_read(&mut self, _: u32, _: u32, _: u32) -> Result<i64, String> {
        Err("no devices".into())
    }
    fn dev_write(&mut self, _: u32, _: u32, _: u32, _: u32) -> Result<i32, String> {
        Err("no devices".into())
    }
    fn dev_wait(&mut self, _: u32, _: Option<u64>) -> Result<i32, String> {
        Err("no devices".into())
    }
    fn buf_dma(&mut self, _: u32) -> Result<i64, String> {
        Err("no devices".into())
    }
    fn sip_start(&mut self, _: &str, _: &[u8]) -> Result<i32, String> {
        Err("no powers".into())
    }
    fn sip_kill(&mut self, _: u32) -> Result<i32, String> {
        Err("no powers".into())
    }
    fn sip_info(&mut self, _: u32, _: &mut [u8]) -> Result<i32, String> {
        Err("no powers".into())
    }
    fn args(&mut self, out: &mut [u8]) -> Result<i32, String> {
        let encoded = b"one\0two\0";
        if let Some(out) = out.get_mut(..encoded.len()) {
            out.copy_from_slice(encoded);
        }
        Ok(encoded.len() as i32)
    }
    fn console_read(&mut self, _: &mut [u8], _: Option<u64>) -> Result<i32, String> {
        Err("no powers".into())
    }
    fn report(&mut self, _: u32, _: &mut [u8]) -> Result<i32, String> {
        Err("no powers".into())
    }
    fn shutdown(&mut self, _: i32) -> Result<(), String> {
        Err("no powers".into())
    }
    fn bench(&mut self, _: &str) -> Result<i32, String> {
        Err("no powers".into())
    }
}

fn run_with(wat: &str, limits: Limits, kernel: Mock) -> (Exit, Mock, sip_runtime::Stats) {
    let bytes = wat::parse_str(wat).expect("test WAT assembles");
    #[cfg(feature = "compile")]
    let (compiled_exit, compiled_console) = run_compiled(&bytes, &limits, kernel.clone());
    let mut sip = Sip::new(&bytes, &limits, kernel).expect("instantiates");
    let exit = sip.run();
    #[cfg(feature = "compile")]
    {
        assert_eq!(
            compiled_exit, exit,
            "the compiled engine ends the SIP differently"
        );
        assert_eq!(
            compiled_console,
            sip.kernel().console,
            "the compiled engine's console output differs"
        );
    }
    let stats = sip.stats();
    let Mock {
        console,
        yields,
        kill_after_checks,
        checks,
    } = sip.kernel();
    (
        exit,
        Mock {
            console: console.clone(),
            yields: *yields,
            kill_after_checks: *kill_after_checks,
            checks: *checks,
        },
        stats,
    )
}

/// Runs `bytes` in the compiled engine, with a thread advancing its epoch as the kernel's
/// timer does (every millisecond), so a kill reaches a SIP that never calls the kernel.
#[cfg(feature = "compile")]
fn run_compiled(bytes: &[u8], limits: &Limits, kernel: Mock) -> (Exit, Vec<u8>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut sip =
        sip_runtime::compiled::CompiledSip::compile_on_host(bytes, limits, kernel, Metering::Fuel)
            .expect("compiles and instantiates");
    let epoch = sip.epoch();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let ticker = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                epoch.tick();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let exit = sip.run();
    done.store(true, Ordering::Relaxed);
    ticker.join().unwrap();
    (exit, sip.kernel().console.clone())
}

fn run(wat: &str) -> Exit {
    run_with(wat, Limits::default(), Mock::default()).0
}

const PRELUDE: &str = r#"
    (import "cordon" "exit" (func $exit (param i32)))
    (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
    (import "cordon" "yield_now" (func $yield))
    (import "cordon" "ticks" (func $ticks (result i64)))
    (import "cordon" "abi_version" (func $version (result i32)))
    (memory (export "memory") 1)
"#;

fn sip(body: &str) -> String {
    format!("(module {PRELUDE} {body})")
}

#[test]
fn prints_and_exits_with_status() {
    let wat = sip(r#"(data (i32.const 16) "hello, cordon")
        (func (export "cordon_main")
            (drop (call $write (i32.const 16) (i32.const 13)))
            (call $yield)
            (call $exit (i32.const 3))
            (unreachable))"#);
    let (exit, kernel, stats) = run_with(&wat, Limits::default(), Mock::default());
    assert_eq!(exit, Exit::Status(3));
    assert_eq!(kernel.console, b"hello, cordon");
    assert_eq!(kernel.yields, 1);
    assert_eq!(stats.abi_calls, 3, "write, yield, exit");
}

#[test]
fn returning_from_main_is_status_zero() {
    assert_eq!(
        run(&sip(r#"(func (export "cordon_main"))"#)),
        Exit::Status(0)
    );
}

#[test]
fn abi_values_reach_the_sip() {
    let wat = sip(r#"(func (export "cordon_main")
        (if (i64.ne (call $ticks) (i64.const 7)) (then (call $exit (i32.const 1))))
        (call $exit (call $version)))"#);
    assert_eq!(run(&wat), Exit::Status(cordon_abi::VERSION));
}

#[test]
fn out_of_bounds_load_faults() {
    let wat = sip(r#"(func (export "cordon_main") (drop (i32.load (i32.const 70000))))"#);
    assert_eq!(run(&wat), Exit::Fault(Fault::OutOfBoundsMemory));
}

#[test]
fn unreachable_faults() {
    assert_eq!(
        run(&sip(r#"(func (export "cordon_main") (unreachable))"#)),
        Exit::Fault(Fault::Unreachable)
    );
}

#[test]
fn division_by_zero_faults() {
    let wat =
        sip(r#"(func (export "cordon_main") (drop (i32.div_s (i32.const 1) (i32.const 0))))"#);
    assert_eq!(run(&wat), Exit::Fault(Fault::DivisionByZero));
}

#[test]
fn unbounded_recursion_hits_the_call_depth_limit() {
    let wat = sip(r#"(func $f (call $f)) (func (export "cordon_main") (call $f))"#);
    let limits = Limits {
        max_call_depth: 64,
        ..Limits::default()
    };
    assert_eq!(
        run_with(&wat, limits, Mock::default()).0,
        Exit::Fault(Fault::StackOverflow)
    );
}

#[test]
fn memory_growth_past_the_manifest_faults() {
    let wat = sip(r#"(func (export "cordon_main") (drop (memory.grow (i32.const 100))))"#);
    let limits = Limits {
        max_memory_pages: 4,
        ..Limits::default()
    };
    assert_eq!(
        run_with(&wat, limits, Mock::default()).0,
        Exit::Fault(Fault::LimitExceeded)
    );
}

#[test]
fn memory_growth_within_the_manifest_succeeds() {
    let wat = sip(r#"(func (export "cordon_main")
        (call $exit (memory.grow (i32.const 2))))"#);
    let limits = Limits {
        max_memory_pages: 4,
        ..Limits::default()
    };
    assert_eq!(
        run_with(&wat, limits, Mock::default()).0,
        Exit::Status(1),
        "old size 1"
    );
}

#[test]
fn endless_loop_spends_its_fuel_budget() {
    let wat = sip(r#"(func (export "cordon_main") (loop $l (br $l)))"#);
    let budget = 3 * FUEL_SLICE + 17;
    let limits = Limits {
        fuel: Some(budget),
        ..Limits::default()
    };
    let (exit, _, stats) = run_with(&wat, limits, Mock::default());
    assert_eq!(exit, Exit::Fault(Fault::FuelExhausted { budget }));
    assert_eq!(stats.fuel_used, budget);
}

#[test]
fn unmetered_runs_behave_the_same_and_refuse_budgets() {
    let wat = sip(
        r#"(func (export "cordon_main") (call $exit (i32.div_u (i32.const 9) (i32.const 3))))"#,
    );
    let bytes = wat::parse_str(&wat).unwrap();
    let mut sip =
        Sip::with_metering(&bytes, &Limits::default(), Mock::default(), Metering::Off).unwrap();
    assert_eq!(sip.run(), Exit::Status(3));
    assert_eq!(sip.stats().fuel_used, 0);
    let budget = Limits {
        fuel: Some(10),
        ..Limits::default()
    };
    let refused = Sip::with_metering(&bytes, &budget, Mock::default(), Metering::Off);
    assert!(refused.err().unwrap().0.contains("needs fuel metering"));
}

#[test]
fn endless_loop_is_killed_between_fuel_slices() {
    let wat = sip(r#"(func (export "cordon_main") (loop $l (br $l)))"#);
    let kernel = Mock {
        kill_after_checks: Some(2),
        ..Mock::default()
    };
    let (exit, kernel, stats) = run_with(&wat, Limits::default(), kernel);
    assert_eq!(exit, Exit::Killed);
    assert_eq!(kernel.checks, 3);
    assert_eq!(stats.fuel_used, 3 * FUEL_SLICE);
}

#[test]
fn kill_is_noticed_at_an_abi_call() {
    let wat = sip(r#"(func (export "cordon_main") (loop $l (call $yield) (br $l)))"#);
    let kernel = Mock {
        kill_after_checks: Some(5),
        ..Mock::default()
    };
    let (exit, kernel, _) = run_with(&wat, Limits::default(), kernel);
    assert_eq!(exit, Exit::Killed);
    assert_eq!(kernel.yields, 5);
}

#[test]
fn console_write_outside_memory_faults_the_sip() {
    let wat = sip(r#"(func (export "cordon_main")
        (drop (call $write (i32.const 65530) (i32.const 100))))"#);
    match run(&wat) {
        Exit::Fault(Fault::BadAbiCall(why)) => {
            assert!(why.contains("reaches outside linear memory"), "{why}")
        }
        other => panic!("expected a bad ABI call, got {other:?}"),
    }
    let wat = sip(r#"(func (export "cordon_main")
        (drop (call $write (i32.const -1) (i32.const 2))))"#);
    assert!(matches!(run(&wat), Exit::Fault(Fault::BadAbiCall(_))));
}

#[test]
fn channel_calls_copy_guest_memory_and_faults_blame_the_sip() {
    let wat = r#"(module
        (import "cordon" "chan_send" (func $send (param i32 i32 i32) (result i32)))
        (import "cordon" "chan_call" (func $call (param i32 i32 i32 i32 i32 i64) (result i32)))
        (import "cordon" "exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "abc")
        (func (export "cordon_main")
            ;; call copies the message (3 bytes at 0) to the reply buffer at 100
            (drop (call $call (i32.const 1) (i32.const 0) (i32.const 3) (i32.const 100) (i32.const 16) (i64.const -1)))
            (if (i32.ne (i32.load8_u (i32.const 102)) (i32.const 99)) (then (call $exit (i32.const 1))))
            (drop (call $send (i32.const 1) (i32.const 0) (i32.const 3)))
            (drop (call $send (i32.const 9) (i32.const 0) (i32.const 3)))
            (call $exit (i32.const 0))))"#;
    match run(wat) {
        Exit::Fault(Fault::BadAbiCall(why)) => {
            assert_eq!(why, "endpoint handle 9 is not held by this SIP")
        }
        other => panic!("expected the bad handle to fault the SIP, got {other:?}"),
    }
    let wat = r#"(module
        (import "cordon" "chan_recv" (func $recv (param i32 i32 i32 i64) (result i32)))
        (memory (export "memory") 1)
        (func (export "cordon_main")
            (drop (call $recv (i32.const 1) (i32.const 65530) (i32.const 100) (i64.const 0)))))"#;
    match run(wat) {
        Exit::Fault(Fault::BadAbiCall(why)) => assert!(
            why.starts_with("chan_recv: [0xfffa, +100) reaches outside"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_abi_operation_has_a_host_function() {
    // Import every operation; instantiation fails if one is not registered.
    let imports: String = cordon_abi::OPS
        .iter()
        .map(|op| {
            let ty = |types: &[cordon_abi::ValType], kw: &str| {
                types
                    .iter()
                    .map(|t| {
                        format!(
                            "({kw} {})",
                            if *t == cordon_abi::ValType::I32 {
                                "i32"
                            } else {
                                "i64"
                            }
                        )
                    })
                    .collect::<String>()
            };
            format!(
                "(import \"cordon\" \"{}\" (func {} {}))",
                op.name,
                ty(op.params, "param"),
                ty(op.results, "result")
            )
        })
        .collect();
    let wat =
        format!(r#"(module {imports} (memory (export "memory") 1) (func (export "cordon_main")))"#);
    assert_eq!(run(&wat), Exit::Status(0));
}

#[test]
fn exits_survive_the_hosted_report() {
    use sip_runtime::{Exit, Fault};
    let exits = [
        Exit::Status(0),
        Exit::Status(-7),
        Exit::Status(i32::MAX),
        Exit::Killed,
        Exit::Fault(Fault::OutOfBoundsMemory),
        Exit::Fault(Fault::FuelExhausted { budget: 1 << 40 }),
        Exit::Fault(Fault::BadAbiCall("contract says no".into())),
        Exit::Fault(Fault::Other("engine".into())),
        Exit::Fault(Fault::IndirectCallMismatch),
    ];
    for exit in exits {
        let (value, detail, text) = exit.to_report();
        assert_eq!(
            Exit::from_report(value, detail, text.unwrap_or("")),
            Some(exit.clone())
        );
    }
    assert_eq!(Exit::from_report(99, 0, ""), None);
    assert_eq!(Exit::from_report(0, 1 << 33, ""), None);
}

// --- the verifier and the runtime agree -------------------------------------------

/// `body` inside `cordon_main` with `locals` extra i32 locals, with a manifest, so that the
/// verifier can judge it.
fn verifiable(locals: u32, body: &str) -> Vec<u8> {
    with_manifest(&format!(
        "(module (memory (export \"memory\") 1) (func (export \"cordon_main\") (local {}) {body}))",
        "i32 ".repeat(locals as usize)
    ))
}

/// Assembles `wat` and appends a default manifest.
fn with_manifest(wat: &str) -> Vec<u8> {
    let mut bytes = wat::parse_str(wat).expect("test WAT assembles");
    bytes.extend(
        cordon_abi::Manifest {
            name: "edge".into(),
            limits: Limits::default(),
            endpoints: vec![],
            resources: vec![],
        }
        .custom_section(),
    );
    bytes
}

/// The oracle: what the verifier accepts, the runtime loads; what it refuses is refused
/// with the engine rule.
#[track_caller]
fn agree(bytes: &[u8], accepted: bool) {
    match verifier::verify(bytes, &verifier::Policy::default()) {
        Ok(_) => {
            assert!(
                accepted,
                "the verifier accepted a module over the engine's limits"
            );
            if let Err(err) = Sip::new(bytes, &Limits::default(), Mock::default()) {
                panic!("accepted by the verifier, refused by the runtime: {err}");
            }
        }
        Err(rejection) => {
            assert!(!accepted, "refused: {rejection}");
            assert_eq!(rejection.rule, verifier::Rule::Engine, "{rejection}");
        }
    }
}

#[test]
fn modules_at_every_engine_limit_load_and_past_it_are_refused_by_the_verifier() {
    use verifier::engine;
    // Locals (one more than the limit: the function has no parameters).
    agree(&verifiable(engine::MAX_LOCALS, ""), true);
    agree(&verifiable(engine::MAX_LOCALS + 1, ""), false);
    // 50,000 locals used to pass the verifier and fail at load.
    agree(&verifiable(50_000, ""), false);
    // Operand stack.
    let push = |n: u32| "(i64.const 7)".repeat(n as usize) + &"(drop)".repeat(n as usize);
    agree(&verifiable(0, &push(engine::MAX_OPERAND_STACK)), true);
    agree(&verifiable(0, &push(engine::MAX_OPERAND_STACK + 1)), false);
    // Both at once: the engine's frame holds locals and stack together.
    agree(
        &verifiable(engine::MAX_LOCALS, &push(engine::MAX_OPERAND_STACK)),
        true,
    );
    // Nesting.
    let nest = |n: u32| "(block ".repeat(n as usize) + &")".repeat(n as usize);
    agree(&verifiable(0, &nest(engine::MAX_NESTING - 1)), true);
    agree(&verifiable(0, &nest(engine::MAX_NESTING + 1)), false);
}

#[test]
fn function_types_at_the_engine_limit_load_and_past_it_are_refused() {
    use verifier::engine;
    let module = |params: usize| {
        with_manifest(&format!(
            "(module (memory (export \"memory\") 1) (func $f (param {}) ) (func (export \"cordon_main\")))",
            "i32 ".repeat(params)
        ))
    };
    agree(&module(engine::MAX_PARAMS), true);
    agree(&module(engine::MAX_PARAMS + 1), false);
    // Past wasmparser's own limit the refusal is a validation error.
    assert!(verifier::verify(&module(5_000), &verifier::Policy::default()).is_err());
}

/// Where an artifact's text lies is what the kernel maps executable for a ring-3 SIP: a
/// page-aligned range inside the image, and a clear error for anything that is not an
/// artifact.
#[cfg(feature = "compile")]
#[test]
fn artifact_text_is_found_page_aligned_and_garbage_is_refused() {
    use sip_runtime::compiled::{CODE_PAGE, precompile, text_range};
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "cordon_main") (loop $l (br $l))))"#,
    )
    .unwrap();
    let artifact = precompile(&wasm).expect("compiles");
    let text = text_range(&artifact).expect("an artifact has text");
    assert!(!text.is_empty() && text.end <= artifact.len(), "{text:?}");
    assert_eq!(text.start % CODE_PAGE, 0, "{text:?}");
    assert_eq!(text.end % CODE_PAGE, 0, "{text:?}");

    let message = |bytes: &[u8]| text_range(bytes).unwrap_err().0;
    assert!(
        message(&wasm).contains("no ELF header"),
        "{}",
        message(&wasm)
    );
    assert!(message(&[]).contains("malformed"), "{}", message(&[]));
    // Cut off inside the text: the section table lies past the end.
    let cut = &artifact[..text.start + 16];
    assert!(message(cut).contains("malformed"), "{}", message(cut));
}

#[test]
fn args_are_copied_into_guest_memory_and_a_bad_buffer_faults_the_sip() {
    // Asks with a small buffer (gets the length, nothing written), then with room: prints
    // what it got.
    let wat = r#"(module
        (import "cordon" "args" (func $args (param i32 i32) (result i32)))
        (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
        (import "cordon" "exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "cordon_main") (local $len i32)
            (local.set $len (call $args (i32.const 100) (i32.const 2)))
            (if (i32.ne (i32.load8_u (i32.const 100)) (i32.const 0)) (then (call $exit (i32.const 1))))
            (drop (call $args (i32.const 100) (local.get $len)))
            (drop (call $write (i32.const 100) (local.get $len)))
            (call $exit (local.get $len))))"#;
    let (exit, kernel, _) = run_with(wat, Limits::default(), Mock::default());
    assert_eq!(exit, Exit::Status(8));
    assert_eq!(kernel.console, b"one\0two\0");
    // A buffer reaching outside linear memory is the SIP's fault, not the kernel's.
    for (ptr, cap) in [(65530, 100), (-1, 8), (0, -1)] {
        let wat = format!(
            r#"(module
            (import "cordon" "args" (func $args (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "cordon_main") (drop (call $args (i32.const {ptr}) (i32.const {cap})))))"#
        );
        match run(&wat) {
            Exit::Fault(Fault::BadAbiCall(why)) => assert!(why.contains("args"), "{why}"),
            other => panic!("args({ptr}, {cap}): expected a bad ABI call, got {other:?}"),
        }
    }
}

#[test]
fn console_read_report_and_start_check_their_buffers_and_flags_before_the_kernel() {
    // Each call hands a buffer outside linear memory, or a role with unknown bits: the SIP
    // is faulted naming the operation, and the kernel (whose mock would answer "no
    // powers") is never asked.
    for (import, call) in [
        (
            r#"(import "cordon" "console_read" (func $f (param i32 i32 i64) (result i32)))"#,
            "(drop (call $f (i32.const 65530) (i32.const 100) (i64.const -1)))",
        ),
        (
            r#"(import "cordon" "report" (func $f (param i32 i32 i32) (result i32)))"#,
            "(drop (call $f (i32.const 0) (i32.const -1) (i32.const 8)))",
        ),
        (
            r#"(import "cordon" "sip_start" (func $f (param i32 i32 i32 i32) (result i32)))"#,
            "(drop (call $f (i32.const 0) (i32.const 5) (i32.const 65000) (i32.const 4096)))",
        ),
        (
            r#"(import "cordon" "chan_initial" (func $f (param i32 i32 i32 i32 i32) (result i32)))"#,
            "(drop (call $f (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 4)))",
        ),
    ] {
        let wat = format!(
            r#"(module {import}
            (memory (export "memory") 1)
            (func (export "cordon_main") {call}))"#
        );
        match run(&wat) {
            Exit::Fault(Fault::BadAbiCall(why)) => assert!(!why.contains("no powers"), "{why}"),
            other => panic!("{import}: expected a bad ABI call, got {other:?}"),
        }
    }
    // In range, the kernel decides (here: the mock has no powers to give).
    let wat = r#"(module
        (import "cordon" "console_read" (func $f (param i32 i32 i64) (result i32)))
        (memory (export "memory") 1)
        (func (export "cordon_main") (drop (call $f (i32.const 0) (i32.const 64) (i64.const 0)))))"#;
    match run(wat) {
        Exit::Fault(Fault::BadAbiCall(why)) => assert!(why.contains("no powers"), "{why}"),
        other => panic!("expected the kernel's refusal, got {other:?}"),
    }
}
