//! The contract between the kernel and the *hosted* SIP runtime: `sip-runtime` built as an
//! executable of its own (`sip-runtime/hosted`) that the kernel loads into a SIP's address
//! space under every isolation configuration except `soft`.
//!
//! At entry the runtime finds a pointer to [`HostedArgs`] (as words) in `rdi`. It reaches
//! the kernel with one system call per ABI operation: the number is [`crate::Op::number`]
//! in `rax`, arguments in `rdi, rsi, rdx, r10, r8, r9`, results in `rax` (and `rdx` for
//! `chan_create`'s second handle). In ring 3 the instruction is `syscall`; a runtime that
//! the kernel runs in ring 0 is handed a `gate` address instead and makes a plain call
//! with the same registers (Singularity's configurations in which only the address space
//! changes). Pointers are addresses in the SIP's own address space; the kernel checks each
//! against the caller's user pages and answers [`crate::status::BAD_ADDRESS`] otherwise.
//!
//! Arguments per operation (`[p, n]` = pointer and length):
//!
//! | op | arguments | result |
//! |---|---|---|
//! | exit | pointer to an [`ExitReport`] (as words) | never returns |
//! | console_write | `[p, n]` | n |
//! | yield_now, ticks, cycles, abi_version | — | value |
//! | chan_create | contract `[p, n]` | status; rdx = exporter \| importer << 32 |
//! | chan_send | ep, message `[p, n]` | status |
//! | chan_recv | ep, buffer `[p, n]`, timeout (negative = forever) | length or status |
//! | chan_call | ep, message `[p, n]`, buffer `[p, n]`, timeout | length or status |
//! | chan_select | endpoints `[p, count]` (u32 each), timeout | index or status |
//! | chan_close | ep | status |
//! | chan_initial | name `[p, n]`, contract `[p, n]`, importer (0/1) | handle or status |
//! | chan_check | ep, contract `[p, n]`, importer | 1, 0 or status |
//! | buf_alloc, buf_free, buf_size | size or handle | handle, status or size |
//! | buf_write, buf_read | buf, offset, data `[p, n]` | status or length |
//! | dev_read, dev_write | resource, offset, width (, value) | value or status |
//! | dev_wait | resource, timeout | status |
//! | buf_dma | buf | physical address |

/// What the kernel hands the hosted runtime, as consecutive little-endian words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostedArgs {
    /// The verified module's bytes (mapped read-only).
    pub module: u64,
    pub module_len: u64,
    /// The runtime's heap: demand-zero pages the runtime may use for anything.
    pub heap: u64,
    pub heap_len: u64,
    pub max_memory_pages: u64,
    pub max_table_elements: u64,
    pub max_call_depth: u64,
    /// Fuel budget; `u64::MAX` for none.
    pub fuel: u64,
    /// 1 = fuel metering on, 0 = off.
    pub metering: u64,
    /// Address of the kernel's call gate when the runtime runs in ring 0, else 0.
    pub gate: u64,
    /// Non-zero only for the kernel's system-call probe program (a test): which probe.
    pub probe: u64,
    /// The module's compiled artifact (mapped read-only, its text read+execute), or 0 with
    /// `artifact_len` 0 to interpret the module.
    pub artifact: u64,
    pub artifact_len: u64,
}

impl HostedArgs {
    /// Number of words.
    pub const WORDS: usize = 13;

    pub fn to_words(&self) -> [u64; Self::WORDS] {
        [
            self.module,
            self.module_len,
            self.heap,
            self.heap_len,
            self.max_memory_pages,
            self.max_table_elements,
            self.max_call_depth,
            self.fuel,
            self.metering,
            self.gate,
            self.probe,
            self.artifact,
            self.artifact_len,
        ]
    }

    pub fn from_words(w: &[u64; Self::WORDS]) -> HostedArgs {
        HostedArgs {
            module: w[0],
            module_len: w[1],
            heap: w[2],
            heap_len: w[3],
            max_memory_pages: w[4],
            max_table_elements: w[5],
            max_call_depth: w[6],
            fuel: w[7],
            metering: w[8],
            gate: w[9],
            probe: w[10],
            artifact: w[11],
            artifact_len: w[12],
        }
    }
}

/// How the hosted runtime ended, handed to `exit` as consecutive words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitReport {
    /// One of [`exit_kind`].
    pub kind: u64,
    /// The exit status, fault code or fuel budget (see `sip_runtime::Exit::to_report`).
    pub value: u64,
    /// A second value (a fault's detail, e.g. the fuel budget).
    pub detail: u64,
    /// Text (a fault or load error), `[p, n]` in the runtime's memory.
    pub message: u64,
    pub message_len: u64,
    pub abi_calls: u64,
    pub fuel_used: u64,
    /// The cycle counter when the module was instantiated (0 if it never was).
    pub instantiated_at: u64,
}

impl ExitReport {
    pub const WORDS: usize = 8;

    pub fn to_words(&self) -> [u64; Self::WORDS] {
        [
            self.kind,
            self.value,
            self.detail,
            self.message,
            self.message_len,
            self.abi_calls,
            self.fuel_used,
            self.instantiated_at,
        ]
    }

    pub fn from_words(w: &[u64; Self::WORDS]) -> ExitReport {
        ExitReport {
            kind: w[0],
            value: w[1],
            detail: w[2],
            message: w[3],
            message_len: w[4],
            abi_calls: w[5],
            fuel_used: w[6],
            instantiated_at: w[7],
        }
    }
}

/// Values of [`ExitReport::kind`].
pub mod exit_kind {
    /// The SIP ran and ended; `value`/`detail`/message encode how.
    pub const RAN: u64 = 0;
    /// The module could not be instantiated; the message says why.
    pub const LOAD_FAILED: u64 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let args = HostedArgs {
            module: 1,
            module_len: 2,
            heap: 3,
            heap_len: 4,
            max_memory_pages: 5,
            max_table_elements: 6,
            max_call_depth: 7,
            fuel: 8,
            metering: 9,
            gate: 10,
            probe: 11,
            artifact: 12,
            artifact_len: 13,
        };
        assert_eq!(HostedArgs::from_words(&args.to_words()), args);
        let report = ExitReport {
            kind: 1,
            value: 2,
            detail: 3,
            message: 4,
            message_len: 5,
            abi_calls: 6,
            fuel_used: 7,
            instantiated_at: 8,
        };
        assert_eq!(ExitReport::from_words(&report.to_words()), report);
    }
}
