//! Cordon's SIP verifier (to be built by the SIP issue).
//!
//! It will decide whether a WebAssembly module may run as a software-isolated process:
//! validation with an explicit proposal list, imports restricted to the closed kernel ABI,
//! the exports a SIP needs and nothing more, a generated manifest custom section, and
//! memory/table sizes within the manifest's limits. `no_std` + `alloc`, used by the kernel at
//! load time and by a host command-line front end in `tools/`. Empty until then: no rule is
//! pretended here.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
