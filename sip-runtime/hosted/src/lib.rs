//! The SIP runtime as an executable of its own.
//!
//! Under every isolation configuration except `soft`, the kernel does not call
//! `sip-runtime` itself: it loads this program (built for x86_64-unknown-none, position
//! independent) into the SIP's address space together with the verified module, and runs
//! it in ring 3 (or ring 0 for Singularity's intermediate configurations). The program is
//! the *same* `sip-runtime` code the kernel runs in soft mode; only the [`Kernel`]
//! implementation differs: each ABI operation is one system call ([`sys::call`]) whose
//! arguments point into the runtime's own memory (see `cordon_abi::hosted`).
//!
//! A SIP runs interpreted, or compiled when the kernel maps its artifact beside the module
//! ([`code`]).
//!
//! This library holds what both executables share: the entry glue and the system-call
//! wrappers. `unsafe` is confined to [`sys`], the user-mode counterpart of the kernel's
//! `arch` module.
//!
//! [`Kernel`]: sip_runtime::Kernel
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod code;
pub mod kernel;
pub mod sys;
