//! Cordon's front end as a library: what the runner does with files alone — contract
//! files checked (`report`), SIP modules read from `.wasm`, `.wat` and crate directories
//! (`files`), new contracts and SIP crates (`scaffold`) and the commands built on them
//! (`commands`). Nothing here needs the kernel or the built-in SIPs, so `cargo run --
//! contract` and friends never build them; the full runner (`tools/cordon`) uses these
//! modules too.
#![deny(unsafe_code)]

pub mod commands;
pub mod files;
pub mod report;
pub mod scaffold;
