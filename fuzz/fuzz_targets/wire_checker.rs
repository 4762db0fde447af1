//! The kernel's message checker on arbitrary bytes against every shipped contract: it
//! accepts or refuses, never panics, and what it accepts names only fields the contract
//! declares.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn shipped() -> &'static [contracts::Protocol] {
    static PROTOCOLS: OnceLock<Vec<contracts::Protocol>> = OnceLock::new();
    PROTOCOLS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts/files");
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).expect("contracts/files") {
            let path = entry.expect("readable").path();
            if path.extension().is_some_and(|e| e == "contract") {
                let text = std::fs::read_to_string(&path).expect("readable");
                all.extend(contracts::compile(&text).expect("shipped contracts compile"));
            }
        }
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, message)) = data.split_first() else {
        return;
    };
    let protocols = shipped();
    let protocol = &protocols[pick as usize % protocols.len()];
    if let Ok(checked) = contracts::wire::check(protocol, message) {
        let declared = &protocol.messages[checked.message as usize];
        assert!(message.len() as u32 <= declared.max_encoded);
        for h in &checked.handles {
            assert!(h.field < declared.fields.len());
        }
    }
});
