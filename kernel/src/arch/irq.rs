//! A spin lock that masks interrupts while held.
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

/// The longest time (TSC cycles) any [`IrqMutex`] kept interrupts masked, since the last
/// [`take_longest_masked`]. Only the outermost lock of a nest counts (it is the one that
/// masked them); interrupt handlers themselves are not included.
static LONGEST_MASKED: AtomicU64 = AtomicU64::new(0);
/// Where the lock of that section was taken.
static LONGEST_AT: spin::Mutex<Option<&'static Location<'static>>> = spin::Mutex::new(None);

/// The longest interrupts-masked lock section since the last call and where its lock was
/// taken, and starts anew.
pub fn take_longest_masked() -> (u64, Option<&'static Location<'static>>) {
    interrupts::without_interrupts(|| {
        let at = LONGEST_AT.lock().take();
        (LONGEST_MASKED.swap(0, Ordering::Relaxed), at)
    })
}

/// Called with interrupts still masked. A plain load and store cost less than an atomic
/// read-modify-write on every lock; two processors recording at once may lose one record
/// (a statistic, not a correctness matter).
fn record_masked(cycles: u64, at: &'static Location<'static>) {
    if cycles > LONGEST_MASKED.load(Ordering::Relaxed) {
        LONGEST_MASKED.store(cycles, Ordering::Relaxed);
        // Interrupts are still masked here, so the handler cannot find this lock held.
        if let Some(mut slot) = LONGEST_AT.try_lock() {
            *slot = Some(at);
        }
    }
}

/// A mutex that disables interrupts while locked.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Guard of an [`IrqMutex`]; re-enables interrupts on drop if they were enabled before.
pub struct IrqGuard<'a, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    were_enabled: bool,
    /// When this guard masked interrupts (only if they were enabled before), and where.
    masked_at: u64,
    taken_at: &'static Location<'static>,
}

impl<T> IrqMutex<T> {
    pub const fn new(value: T) -> Self {
        IrqMutex {
            inner: spin::Mutex::new(value),
        }
    }

    #[track_caller]
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        IrqGuard {
            guard: Some(self.inner.lock()),
            were_enabled,
            masked_at: if were_enabled {
                super::cycles::now()
            } else {
                0
            },
            taken_at: Location::caller(),
        }
    }

    /// Locks unless already locked (used by the panic path, which must not spin on a lock
    /// its own thread may hold).
    #[track_caller]
    pub fn try_lock(&self) -> Option<IrqGuard<'_, T>> {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqGuard {
                guard: Some(guard),
                were_enabled,
                masked_at: if were_enabled {
                    super::cycles::now()
                } else {
                    0
                },
                taken_at: Location::caller(),
            }),
            None => {
                if were_enabled {
                    interrupts::enable();
                }
                None
            }
        }
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if self.were_enabled {
            let masked = super::cycles::now().wrapping_sub(self.masked_at);
            record_masked(masked, self.taken_at);
            interrupts::enable();
        }
    }
}
