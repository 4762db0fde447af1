//! Cycle counting for benchmarks.
//!
//! `rdtsc` is not ordered with the surrounding instructions, so [`start`] fences before
//! reading and [`stop`] uses `rdtscp` (waits for earlier instructions) followed by a
//! fence (keeps later ones out), as Intel's benchmarking note recommends. Under QEMU's TCG
//! the counter follows host time: figures are emulated cost, good for ratios in one run.

use core::arch::x86_64::{__rdtscp, _mm_lfence, _rdtsc};

/// Timestamp at the start of a measured region.
#[inline(always)]
pub fn start() -> u64 {
    // SAFETY: lfence and rdtsc have no memory effects; every x86_64 CPU has both.
    unsafe {
        _mm_lfence();
        _rdtsc()
    }
}

/// Timestamp at the end of a measured region.
#[inline(always)]
pub fn stop() -> u64 {
    let mut aux = 0u32;
    // SAFETY: rdtscp writes only `aux`; the runner's CPU model (`-cpu max`) has RDTSCP.
    unsafe {
        let t = __rdtscp(&mut aux);
        _mm_lfence();
        t
    }
}

/// Timestamp without fences, for cheap bookkeeping (lock hold times), not benchmarks.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: rdtsc has no memory effects; every x86_64 CPU has it.
    unsafe { _rdtsc() }
}

/// Timestamp without fences and the number of the processor that read it (IA32_TSC_AUX,
/// which `arch::smp` sets to each processor's CPU number): for per-processor bookkeeping.
#[inline(always)]
pub fn now_on_cpu() -> (u64, usize) {
    let mut aux = 0u32;
    // SAFETY: rdtscp writes only `aux`; the runner's CPU model (`-cpu max`) has RDTSCP.
    let t = unsafe { __rdtscp(&mut aux) };
    (t, aux as usize)
}
