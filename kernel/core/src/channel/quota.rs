//! What each SIP may hold in the channel manager, and what it holds now.
//!
//! Every endpoint and exchange-heap block is charged to one account: its holder's, or,
//! while it travels inside a message, its sender's until the receiver takes it. A charge
//! is an object count and bytes (queue slots or block contents plus a fixed overhead for
//! the record). SIP operations charge within the quota; objects the kernel hands out on
//! the system manifest's word (initial endpoints) are charged without a check.

use alloc::vec::Vec;

use super::held::Heads;

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
    /// Whose account this is: a reused entry belongs to its newest owner only.
    owner: usize,
    quota: Quota,
    used: Usage,
    /// The most it ever held at once.
    peak: Usage,
    /// Its owner ended: nothing new is handed to it (what it holds is being released).
    closed: bool,
    /// The lists of what it holds ([`super::held`]).
    heads: Heads,
}

/// Accounts indexed by owner (process id), or by owner modulo the number of entries
/// [`Accounts::reserve`] made (the kernel's process slots, reused by later generations).
#[derive(Default)]
pub struct Accounts {
    accounts: Vec<Option<Account>>,
    modulus: Option<usize>,
}

impl Accounts {
    /// Makes `slots` entries now and from then on keeps owner `o` in entry `o % slots`,
    /// so opening accounts never allocates; owners that share an entry must not live at
    /// once (the kernel's pids of one process slot).
    pub fn reserve(&mut self, slots: usize) -> Result<(), OverQuota> {
        if slots > self.accounts.len() {
            let more = slots - self.accounts.len();
            self.accounts
                .try_reserve_exact(more)
                .map_err(|_| OverQuota)?;
            self.accounts.resize(slots, None);
        }
        self.modulus = Some(slots);
        Ok(())
    }

    fn index(&self, owner: usize) -> usize {
        self.modulus.map_or(owner, |m| owner % m)
    }

    /// Opens (or reopens, emptied) `owner`'s account, replacing any earlier owner of its
    /// entry. Fails only if the table cannot grow.
    pub fn open(&mut self, owner: usize, quota: Quota) -> Result<(), OverQuota> {
        let index = self.index(owner);
        if index >= self.accounts.len() {
            let more = index + 1 - self.accounts.len();
            self.accounts.try_reserve(more).map_err(|_| OverQuota)?;
            self.accounts.resize(index + 1, None);
        }
        self.accounts[index] = Some(Account {
            owner,
            quota,
            used: Usage::default(),
            peak: Usage::default(),
            closed: false,
            heads: Heads::default(),
        });
        Ok(())
    }

    /// The heads of `owner`'s lists of held objects.
    pub fn heads(&self, owner: usize) -> Option<Heads> {
        Some(self.get(owner)?.heads)
    }

    pub fn heads_mut(&mut self, owner: usize) -> Option<&mut Heads> {
        Some(&mut self.get_mut(owner)?.heads)
    }

    /// Marks `owner` ended: [`Accounts::is_open`] is false from now on, so the kernel hands
    /// it nothing more while its holdings are released (its charges still come back).
    pub fn close(&mut self, owner: usize) {
        if let Some(a) = self.get_mut(owner) {
            a.closed = true;
        }
    }

    /// Whether `owner` has an account and has not ended.
    pub fn is_open(&self, owner: usize) -> bool {
        self.get(owner).is_some_and(|a| !a.closed)
    }

    fn get(&self, owner: usize) -> Option<&Account> {
        self.accounts
            .get(self.index(owner))?
            .as_ref()
            .filter(|a| a.owner == owner)
    }

    fn get_mut(&mut self, owner: usize) -> Option<&mut Account> {
        let index = self.index(owner);
        self.accounts
            .get_mut(index)?
            .as_mut()
            .filter(|a| a.owner == owner)
    }

    /// Changes `owner`'s limits; what it holds already stays.
    pub fn set_quota(&mut self, owner: usize, quota: Quota) {
        if let Some(a) = self.get_mut(owner) {
            a.quota = quota;
        }
    }

    pub fn quota(&self, owner: usize) -> Option<Quota> {
        Some(self.get(owner)?.quota)
    }

    pub fn usage(&self, owner: usize) -> Usage {
        self.get(owner).map_or_else(Usage::default, |a| a.used)
    }

    /// The most `owner` ever held at once.
    pub fn peak(&self, owner: usize) -> Usage {
        self.get(owner).map_or_else(Usage::default, |a| a.peak)
    }

    /// Whether `objects` more objects of `bytes` more bytes fit `owner`'s quota.
    pub fn fits(&self, owner: usize, objects: u32, bytes: u64) -> bool {
        match self.get(owner) {
            Some(a) => {
                a.used.objects.saturating_add(objects) <= a.quota.objects
                    && a.used.bytes.saturating_add(bytes) <= a.quota.bytes
            }
            None => false,
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
        if let Some(a) = self.get_mut(owner) {
            a.used.objects = a.used.objects.saturating_add(objects);
            a.used.bytes = a.used.bytes.saturating_add(bytes);
            a.peak.objects = a.peak.objects.max(a.used.objects);
            a.peak.bytes = a.peak.bytes.max(a.used.bytes);
        }
    }

    pub fn uncharge(&mut self, owner: usize, objects: u32, bytes: u64) {
        if let Some(a) = self.get_mut(owner) {
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

    #[test]
    fn a_reused_entry_belongs_to_its_newest_owner_only() {
        let mut a = Accounts::default();
        a.reserve(4).unwrap();
        let quota = Quota {
            objects: 5,
            bytes: 100,
        };
        a.open(1, quota).unwrap();
        a.charge(1, 2, 10).unwrap();
        // Owner 5 takes entry 1 (5 % 4) after owner 1 ended.
        a.open(5, quota).unwrap();
        assert_eq!(a.usage(5), Usage::default());
        // The old owner's late charges and refunds touch nothing.
        a.uncharge(1, 2, 10);
        a.force(1, 3, 3);
        assert_eq!(a.usage(5), Usage::default());
        assert_eq!(a.usage(1), Usage::default());
        assert!(a.charge(5, 5, 100).is_ok());
    }

    #[test]
    fn a_closed_account_still_takes_refunds_and_reopens_fresh() {
        let mut a = Accounts::default();
        let quota = Quota {
            objects: 5,
            bytes: 100,
        };
        assert!(!a.is_open(1), "no account yet");
        a.open(1, quota).unwrap();
        a.charge(1, 2, 10).unwrap();
        a.close(1);
        assert!(!a.is_open(1));
        a.uncharge(1, 2, 10);
        assert_eq!(a.usage(1), Usage::default());
        a.open(1, quota).unwrap();
        assert!(a.is_open(1));
    }
}
