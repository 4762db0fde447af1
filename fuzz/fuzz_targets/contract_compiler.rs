//! The contract compiler on arbitrary text: it compiles or reports located errors, never
//! panics; what it compiles yields bindings, and every error renders against the source.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = core::str::from_utf8(data) else {
        return;
    };
    match contracts::compile(source) {
        Ok(protocols) => {
            let _ = contracts::bindings::rust(&protocols);
        }
        Err(err) => {
            let _ = err.render("fuzz.contract", source);
        }
    }
});
