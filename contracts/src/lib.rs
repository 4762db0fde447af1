//! Cordon's channel contract language (to be built by the contracts issue).
//!
//! It will own the contract parser, the checker (states, reachability, unambiguous
//! transitions, bounded queues) and the generator of the kernel's checking tables and of the
//! typed SIP bindings. `no_std` + `alloc`, host-tested. Empty until then.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
