//! Spin locks that mask interrupts while held: a mutex, and a readers-writer lock.
//!
//! Interrupt handlers (the timer) touch the scheduler, the console and the heap. If a
//! thread held one of those locks when the interrupt arrived, the handler would spin
//! forever; so every such lock disables interrupts for as long as it is held and restores
//! the previous state afterwards. Mutual exclusion between processors comes from the spin
//! lock itself; masking only keeps this processor's own handlers out.

use core::ops::{Deref, DerefMut};
use core::panic::Location;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::interrupts;

use super::smp::MAX_CPUS;

/// The longest time (TSC cycles) any [`IrqMutex`] or [`IrqRwLock`] kept interrupts masked on each
/// processor, since the last [`take_longest_masked`]. Only the outermost lock of a nest
/// counts (it is the one that masked them); interrupt handlers themselves are not included.
static LONGEST_MASKED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Where the lock of each processor's longest section was taken.
static LONGEST_AT: [spin::Mutex<Option<&'static Location<'static>>>; MAX_CPUS] =
    [const { spin::Mutex::new(None) }; MAX_CPUS];

/// The longest interrupts-masked lock sections since the last call.
#[derive(Clone, Copy, Debug)]
pub struct Masked {
    /// The longest on any processor, and where its lock was taken.
    pub longest: u64,
    pub at: Option<&'static Location<'static>>,
    /// Each processor's longest, by CPU number.
    pub per_cpu: [u64; MAX_CPUS],
}

impl Masked {
    pub const NONE: Masked = Masked {
        longest: 0,
        at: None,
        per_cpu: [0; MAX_CPUS],
    };
}

/// The longest interrupts-masked lock sections since the last call (on every processor),
/// and starts anew.
pub fn take_longest_masked() -> Masked {
    interrupts::without_interrupts(|| {
        let mut masked = Masked::NONE;
        for cpu in 0..MAX_CPUS {
            let cycles = LONGEST_MASKED[cpu].swap(0, Ordering::Relaxed);
            let at = LONGEST_AT[cpu].lock().take();
            masked.per_cpu[cpu] = cycles;
            if cycles > masked.longest {
                masked.longest = cycles;
                masked.at = at;
            }
        }
        masked
    })
}

/// Called with interrupts still masked, on processor `cpu`: only that processor records
/// into its slot, so a plain load and store cost less than an atomic read-modify-write on
/// every lock. A reset by [`take_longest_masked`] on another processor racing a record
/// may be lost, or pair a length with the wrong place (a statistic, not a correctness
/// matter).
fn record_masked(cycles: u64, cpu: usize, at: &'static Location<'static>) {
    let Some(longest) = LONGEST_MASKED.get(cpu) else {
        return;
    };
    if cycles > longest.load(Ordering::Relaxed) {
        longest.store(cycles, Ordering::Relaxed);
        // Interrupts are still masked here, so the handler cannot find this lock held.
        if let Some(mut slot) = LONGEST_AT[cpu].try_lock() {
            *slot = Some(at);
        }
    }
}

/// Interrupts masked for a lock's section: on drop, restores them if they were enabled
/// before and records how long the section kept them masked. A guard declares its lock's
/// own guard before this, so the lock is released first.
struct Masking {
    were_enabled: bool,
    /// When this section masked interrupts (only if they were enabled before), and where
    /// its lock was taken.
    masked_at: u64,
    taken_at: &'static Location<'static>,
}

impl Masking {
    #[track_caller]
    fn begin() -> Masking {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        Masking {
            were_enabled,
            masked_at: if were_enabled {
                super::cycles::now()
            } else {
                0
            },
            taken_at: Location::caller(),
        }
    }
}

impl Drop for Masking {
    fn drop(&mut self) {
        if self.were_enabled {
            let (now, cpu) = super::cycles::now_on_cpu();
            record_masked(now.wrapping_sub(self.masked_at), cpu, self.taken_at);
            interrupts::enable();
        }
    }
}

/// A mutex that disables interrupts while locked.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Guard of an [`IrqMutex`]; re-enables interrupts on drop if they were enabled before.
pub struct IrqGuard<'a, T> {
    // Fields drop in order: the lock is released before interrupts are let in.
    guard: spin::MutexGuard<'a, T>,
    _masking: Masking,
}

impl<T> IrqMutex<T> {
    pub const fn new(value: T) -> Self {
        IrqMutex {
            inner: spin::Mutex::new(value),
        }
    }

    #[track_caller]
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let masking = Masking::begin();
        IrqGuard {
            guard: self.inner.lock(),
            _masking: masking,
        }
    }

    /// Locks unless already locked (used by the panic path, which must not spin on a lock
    /// its own thread may hold).
    #[track_caller]
    pub fn try_lock(&self) -> Option<IrqGuard<'_, T>> {
        let masking = Masking::begin();
        Some(IrqGuard {
            guard: self.inner.try_lock()?,
            _masking: masking,
        })
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A readers-writer lock that disables interrupts while held, either way: readers share
/// it (each on its own processor, none waiting for another), a writer has it alone. A
/// writer first takes `spin`'s upgradeable guard, which keeps new readers from starting
/// while the present ones finish (`spin` promises no more fairness than that: short
/// reader sections are what let writers in). Neither side may be taken again while held
/// (a second read behind a waiting writer would wait for ever).
pub struct IrqRwLock<T> {
    inner: spin::RwLock<T>,
}

/// Shared guard of an [`IrqRwLock`].
pub struct IrqReadGuard<'a, T> {
    guard: spin::RwLockReadGuard<'a, T>,
    _masking: Masking,
}

/// Exclusive guard of an [`IrqRwLock`].
pub struct IrqWriteGuard<'a, T> {
    guard: spin::RwLockWriteGuard<'a, T>,
    _masking: Masking,
}

impl<T> IrqRwLock<T> {
    pub const fn new(value: T) -> Self {
        IrqRwLock {
            inner: spin::RwLock::new(value),
        }
    }

    #[track_caller]
    pub fn read(&self) -> IrqReadGuard<'_, T> {
        let masking = Masking::begin();
        IrqReadGuard {
            guard: self.inner.read(),
            _masking: masking,
        }
    }

    #[track_caller]
    pub fn write(&self) -> IrqWriteGuard<'_, T> {
        let masking = Masking::begin();
        IrqWriteGuard {
            // `spin`'s plain `write` lets readers keep coming in; an upgradeable guard
            // keeps new readers from starting while the present ones finish.
            guard: self.inner.upgradeable_read().upgrade(),
            _masking: masking,
        }
    }
}

impl<T> Deref for IrqReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for IrqWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
