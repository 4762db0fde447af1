//! The verifier on arbitrary bytes: it must answer (accept or refuse with a rule), never
//! panic, however malformed the module.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verifier::verify(data, &verifier::Policy::default());
});
