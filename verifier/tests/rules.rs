//! One module per rule, each breaking just that rule, plus a module that passes.

use cordon_abi::{Limits, Manifest};
use verifier::{Policy, Rule, verify};

/// A custom section with an arbitrary name and payload.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut section = vec![0u8];
    assert!(body.len() < 128, "test sections stay small");
    section.push(body.len() as u8);
    section.extend(body);
    section
}

fn manifest(pages: u32) -> Manifest {
    Manifest {
        name: "test".into(),
        limits: Limits {
            max_memory_pages: pages,
            ..Limits::default()
        },
        endpoints: vec![],
        resources: vec![],
    }
}

/// Assembles `wat` and appends a manifest section.
fn module_with(wat: &str, manifest: &Manifest) -> Vec<u8> {
    let mut bytes = wat::parse_str(wat).expect("test WAT assembles");
    bytes.extend(custom_section(
        cordon_abi::MANIFEST_SECTION,
        &manifest.encode(),
    ));
    bytes
}

fn module(wat: &str) -> Vec<u8> {
    module_with(wat, &manifest(4))
}

const GOOD: &str = r#"(module
    (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
    (import "cordon" "exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "hello")
    (func (export "cordon_main")
        (drop (call $write (i32.const 0) (i32.const 5)))
        (call $exit (i32.const 0))))"#;

#[track_caller]
fn rejected(bytes: &[u8], rule: Rule, needle: &str) {
    match verify(bytes, &Policy::default()) {
        Ok(_) => panic!("accepted a module that breaks `{}`", rule.name()),
        Err(rejection) => {
            assert_eq!(rejection.rule, rule, "{rejection}");
            let text = rejection.to_string();
            assert!(text.contains(needle), "`{text}` lacks `{needle}`");
        }
    }
}

#[test]
fn well_formed_sip_is_accepted() {
    let verified = verify(&module(GOOD), &Policy::default()).expect("accepted");
    assert_eq!(verified.manifest.name, "test");
    assert_eq!(verified.imports, vec![1, 0]);
    assert_eq!(verified.initial_memory_pages, 1);
}

#[test]
fn garbage_is_not_webassembly() {
    rejected(b"\0asm\x01\0\0\0\x01\xff", Rule::Validation, "at byte 0x");
    rejected(b"ELF", Rule::Validation, "rule `validation`");
}

#[test]
fn ill_typed_code_fails_validation_with_offset() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "cordon_main") (drop (i32.add (i32.const 1) (i64.const 2)))))"#;
    rejected(&module(wat), Rule::Validation, "type mismatch");
}

#[test]
fn simd_is_not_an_enabled_proposal() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "cordon_main") (drop (v128.const i64x2 0 0))))"#;
    rejected(&module(wat), Rule::Validation, "SIMD");
}

#[test]
fn shared_memory_is_not_an_enabled_proposal() {
    let wat = r#"(module (memory (export "memory") 1 2 shared) (func (export "cordon_main")))"#;
    rejected(&module(wat), Rule::Validation, "threads");
}

#[test]
fn imports_from_other_modules_are_refused() {
    let wat = r#"(module (import "env" "exit" (func (param i32)))
        (memory (export "memory") 1) (func (export "cordon_main")))"#;
    rejected(
        &module(wat),
        Rule::ClosedAbi,
        "import `env.exit`: SIPs import only from module `cordon`",
    );
}

#[test]
fn functions_outside_the_abi_are_refused() {
    let wat = r#"(module (import "cordon" "load_code" (func (param i32 i32)))
        (memory (export "memory") 1) (func (export "cordon_main")))"#;
    rejected(
        &module(wat),
        Rule::ClosedAbi,
        "import `cordon.load_code` is not part of the kernel ABI",
    );
}

#[test]
fn abi_functions_with_the_wrong_signature_are_refused() {
    let wat = r#"(module (import "cordon" "exit" (func (param i64)))
        (memory (export "memory") 1) (func (export "cordon_main")))"#;
    rejected(
        &module(wat),
        Rule::ClosedAbi,
        "has type (i64) -> (), the ABI defines (i32) -> ()",
    );
}

#[test]
fn imported_memory_is_refused() {
    let wat = r#"(module (import "cordon" "memory" (memory 1)) (func (export "cordon_main")))"#;
    rejected(&module(wat), Rule::ClosedAbi, "is not a function");
}

#[test]
fn extra_exports_are_refused() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "cordon_main"))
        (func (export "backdoor")))"#;
    rejected(&module(wat), Rule::Exports, "export `backdoor`");
}

#[test]
fn missing_entry_point_is_refused() {
    rejected(
        &module(r#"(module (memory (export "memory") 1))"#),
        Rule::Exports,
        "no `cordon_main`",
    );
}

#[test]
fn entry_point_must_take_and_return_nothing() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "cordon_main") (param i32)))"#;
    rejected(
        &module(wat),
        Rule::Exports,
        "(i32) -> (), it must be () -> ()",
    );
}

#[test]
fn start_functions_are_refused() {
    let wat = r#"(module (memory (export "memory") 1) (func $init) (start $init)
        (func (export "cordon_main")))"#;
    rejected(&module(wat), Rule::StartFunction, "start function 0");
}

#[test]
fn manifest_is_required() {
    let bytes = wat::parse_str(GOOD).unwrap();
    rejected(
        &bytes,
        Rule::Manifest,
        "no `cordon.manifest` custom section",
    );
}

#[test]
fn duplicate_manifest_is_refused() {
    let mut bytes = module(GOOD);
    bytes.extend(custom_section(
        cordon_abi::MANIFEST_SECTION,
        &manifest(4).encode(),
    ));
    rejected(&bytes, Rule::Manifest, "more than one");
}

#[test]
fn undecodable_manifest_is_refused() {
    let mut bytes = wat::parse_str(GOOD).unwrap();
    bytes.extend(custom_section(
        cordon_abi::MANIFEST_SECTION,
        &[0xff, 0xff, 0xff],
    ));
    rejected(&bytes, Rule::Manifest, "manifest does not decode");
    // With the revision, the manifest behind it must decode too.
    let mut bytes = wat::parse_str(GOOD).unwrap();
    let mut garbage = cordon_abi::MANIFEST_MAGIC.to_vec();
    garbage.extend_from_slice(&(cordon_abi::VERSION as u32).to_le_bytes());
    garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
    bytes.extend(custom_section(cordon_abi::MANIFEST_SECTION, &garbage));
    rejected(&bytes, Rule::Manifest, "manifest does not decode");
}

#[test]
fn a_module_built_against_another_abi_is_refused_with_both_revisions() {
    let mut bytes = wat::parse_str(GOOD).unwrap();
    bytes.extend(custom_section(
        cordon_abi::MANIFEST_SECTION,
        &manifest(4).encode_for(5),
    ));
    rejected(
        &bytes,
        Rule::Manifest,
        &format!(
            "built against Cordon ABI v5, and this kernel speaks ABI v{}",
            cordon_abi::VERSION
        ),
    );
    // One from before revisions were recorded: the bare manifest.
    let mut bytes = wat::parse_str(GOOD).unwrap();
    bytes.extend(custom_section(
        cordon_abi::MANIFEST_SECTION,
        &manifest(4).encode()[8..],
    ));
    rejected(&bytes, Rule::Manifest, "records no ABI revision");
}

#[test]
fn manifest_over_kernel_policy_is_refused() {
    rejected(
        &module_with(GOOD, &manifest(1 << 20)),
        Rule::Manifest,
        "kernel allows at most 4096",
    );
}

#[test]
fn initial_memory_over_the_manifest_is_refused() {
    let wat = r#"(module (memory (export "memory") 9) (func (export "cordon_main")))"#;
    rejected(
        &module(wat),
        Rule::Limits,
        "memory starts at 9 pages, the manifest allows 4",
    );
}

#[test]
fn memory_maximum_over_the_manifest_is_refused() {
    let wat = r#"(module (memory (export "memory") 1 100) (func (export "cordon_main")))"#;
    rejected(&module(wat), Rule::Limits, "may grow to 100 pages");
}

#[test]
fn oversized_table_is_refused() {
    let wat = r#"(module (memory (export "memory") 1) (table 5000 funcref)
        (func (export "cordon_main")))"#;
    rejected(&module(wat), Rule::Limits, "table of 5000");
}

#[test]
fn oversized_module_is_refused() {
    let policy = Policy {
        max_module_bytes: 16,
        ..Policy::default()
    };
    let err = verify(&module(GOOD), &policy).unwrap_err();
    assert_eq!(err.rule, Rule::Limits);
    assert!(err.to_string().contains("the kernel accepts at most 16"));
}
