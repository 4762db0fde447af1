//! What each SIP may hold in the channel manager, and what it holds now.
//!
//! Every endpoint and exchange-heap block is charged to one account: its holder's, or,
//! while it travels inside a message, its sender's until the receiver takes it. A charge
//! is an object count and bytes (queue slots or block contents plus a fixed overhead for
//! the record). SIP operations charge within the quota; objects the kernel hands out on
//! the system manifest's word (initial endpoints) are charged without a check.

use alloc::vec::Vec;

/// Limits of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Endpoints and blocks at once.
    pub objects: u32,
    /// Bytes of queue slots and block contents at once, overheads included.
    pub bytes: u64,
}

/// What an account holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub objects: u32,
    pub bytes: u64,
}

/// A charge did not fit the quota (or the account does not exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverQuota;

#[derive(Clone, Copy)]
struct Account {
    quota: Quota,
    used: Usage,
    /// The most it ever held at once.
    peak: Usage,
}

/// Accounts indexed by owner (process id).
#[derive(Default)]
pub struct Accounts {
    accounts: Vec<Option<Account>>,
}

impl Accounts {
    /// Makes room for owners `0..owners` now, so opening their accounts never allocates.
    pub fn reserve(&mut self, owners: usize) -> Result<(), OverQuota> {
        if owners > self.accounts.len() {
            let more = owners - self.accounts.len();
            self.accounts
                .try_reserve_exact(more)
                .map_err(|_| OverQuota)?;
            self.accounts.resize(owners, None);
        }
        Ok(())
    }

    /// Opens (or reopens, emptied) `owner`'s account. Fails only if the table cannot grow.
    pub fn open(&mut self, owner: usize, quota: Quota) -> Result<(), OverQuota> {
        if owner >= self.accounts.len() {
            let more = owner + 1 - self.accounts.len();
            self.accounts.try_reserve(more).map_err(|_| OverQuota)?;
            self.accounts.resize(owner + 1, None);
        }
        self.accounts[owner] = Some(Account {
            quota,
            used: Usage::default(),
            peak: Usage::default(),
        });
        Ok(())
    }

    /// Changes `owner`'s limits; what it holds already stays.
    pub fn set_quota(&mut self, owner: usize, quota: Quota) {
        if let Some(Some(a)) = self.accounts.get_mut(owner) {
            a.quota = quota;
        }
    }

    pub fn quota(&self, owner: usize) -> Option<Quota> {
        Some(self.accounts.get(owner)?.as_ref()?.quota)
    }

    pub fn usage(&self, owner: usize) -> Usage {
        self.accounts
            .get(owner)
            .and_then(|a| a.as_ref())
            .map_or_else(Usage::default, |a| a.used)
    }

    /// The most `owner` ever held at once.
    pub fn peak(&self, owner: usize) -> Usage {
        self.accounts
            .get(owner)
            .and_then(|a| a.as_ref())
            .map_or_else(Usage::default, |a| a.peak)
    }

    /// Whether `objects` more objects of `bytes` more bytes fit `owner`'s quota.
    pub fn fits(&self, owner: usize, objects: u32, bytes: u64) -> bool {
        match self.accounts.get(owner) {
            Some(Some(a)) => {
                a.used.objects.saturating_add(objects) <= a.quota.objects
                    && a.used.bytes.saturating_add(bytes) <= a.quota.bytes
            }
            _ => false,
        }
    }

    /// Charges within the quota.
    pub fn charge(&mut self, owner: usize, objects: u32, bytes: u64) -> Result<(), OverQuota> {
        if !self.fits(owner, objects, bytes) {
            return Err(OverQuota);
        }
        self.force(owner, objects, bytes);
        Ok(())
    }

    /// Charges whatever the quota says (the kernel's own grants).
    pub fn force(&mut self, owner: usize, objects: u32, bytes: u64) {
        if let Some(Some(a)) = self.accounts.get_mut(owner) {
            a.used.objects = a.used.objects.saturating_add(objects);
            a.used.bytes = a.used.bytes.saturating_add(bytes);
            a.peak.objects = a.peak.objects.max(a.used.objects);
            a.peak.bytes = a.peak.bytes.max(a.used.bytes);
        }
    }

    pub fn uncharge(&mut self, owner: usize, objects: u32, bytes: u64) {
        if let Some(Some(a)) = self.accounts.get_mut(owner) {
            debug_assert!(a.used.objects >= objects && a.used.bytes >= bytes);
            a.used.objects = a.used.objects.saturating_sub(objects);
            a.used.bytes = a.used.bytes.saturating_sub(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stay_within_the_quota_and_come_back() {
        let mut a = Accounts::default();
        a.open(
            3,
            Quota {
                objects: 2,
                bytes: 100,
            },
        )
        .unwrap();
        assert!(a.charge(3, 1, 60).is_ok());
        assert_eq!(a.charge(3, 1, 50), Err(OverQuota), "bytes");
        assert!(a.charge(3, 1, 40).is_ok());
        assert_eq!(a.charge(3, 1, 0), Err(OverQuota), "objects");
        a.uncharge(3, 2, 100);
        assert_eq!(a.usage(3), Usage::default());
        assert_eq!(
            a.peak(3),
            Usage {
                objects: 2,
                bytes: 100
            }
        );
        assert_eq!(a.charge(7, 1, 1), Err(OverQuota), "no account, no charge");
    }
}
