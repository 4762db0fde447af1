//! Compiled code in a hosted runtime: the kernel, not the runtime, decides what is
//! executable.
//!
//! The kernel maps the artifact read-only and its text (`sip_runtime::compiled::text_range`)
//! read+execute before the runtime starts; the runtime can change no mapping, and the ABI
//! has no operation that makes memory executable (a sealed SIP loads no code after start).
//! So when wasmtime publishes the module, [`MappedCode`] only checks that the text it
//! publishes is exactly what the kernel mapped executable, and refuses anything else (the
//! module then fails to load, with that reason, instead of faulting on its first call).
//! The kernel and this runtime find the text with the same function
//! (`sip_runtime::compiled::text_range`) on the same bytes.

use core::ops::Range;

use sip_runtime::compiled::wasmtime::{self, CustomCodeMemory};

/// The text the kernel mapped executable, as addresses in the runtime's window.
pub struct MappedCode {
    text: Range<usize>,
}

impl MappedCode {
    /// For the artifact at `base` whose text is `text` (offsets in the artifact).
    pub fn new(base: usize, text: Range<usize>) -> MappedCode {
        MappedCode {
            text: base + text.start..base + text.end,
        }
    }

    fn check(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        let start = ptr as usize;
        if start == self.text.start && start.checked_add(len) == Some(self.text.end) {
            return Ok(());
        }
        Err(wasmtime::format_err!(
            "code at {ptr:p} (+{len}) is not the text the kernel mapped executable ({:#x}..{:#x})",
            self.text.start,
            self.text.end
        ))
    }
}

impl CustomCodeMemory for MappedCode {
    fn required_alignment(&self) -> usize {
        sip_runtime::compiled::CODE_PAGE
    }

    fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        self.check(ptr, len)
    }

    /// Nothing to undo: the runtime changed no mapping. (wasmtime also calls this when a
    /// module whose publication was refused is dropped; refusing here would make it panic.)
    fn unpublish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }
}
