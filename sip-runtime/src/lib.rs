//! The SIP runtime (to be built by the SIP issue).
//!
//! It will embed `wasmi` to run one software-isolated process: engine configuration, the
//! closed kernel ABI as host functions, per-SIP store and limits, trap handling. It reaches
//! the kernel only through one trait, so the same code links into the kernel (soft
//! isolation) or a ring-3 executable (hard isolation). Empty until then.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
