//! A slab of kernel objects addressed by handles that carry a generation.
//!
//! Free entries form a list, so inserting and removing take constant time whatever the
//! table holds, and a freed handle does not come back to life when its entry is reused:
//! the generation in the handle no longer matches. Handles are positive `i32`s (a SIP gets
//! them as non-negative results) and never 0.
//!
//! Growing the table is the only allocation, and it is fallible: the kernel refuses the
//! object rather than panic. Entries live in fixed chunks that never move, so growing
//! costs one chunk's allocation, never a copy of every entry (the kernel grows tables
//! with interrupts masked). When the last object goes, the table gives its memory back
//! (a flood leaves no trace on the heap) and new entries start at a generation no old
//! handle has.

use alloc::vec::Vec;

/// Bits of a handle that hold the entry's index plus one; the bits above (below the sign
/// bit) hold its generation minus one. So the first handles are 1, 2, 3 ..., a handle is
/// never 0, and never negative as an i32.
const INDEX_BITS: u32 = 20;
/// Most entries one table has.
pub const MAX_ENTRIES: usize = (1 << INDEX_BITS) - 1;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Generations run 1..=MAX_GENERATION.
const MAX_GENERATION: u32 = 1 << (31 - INDEX_BITS);

enum Entry<T> {
    Used { item: T, generation: u32 },
    Free { next: Option<u32>, generation: u32 },
}

/// The table is full or the heap refused to grow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Entries per chunk.
const CHUNK: usize = 256;

/// Entries in chunks of [`CHUNK`] that never move once allocated.
struct Chunks<E> {
    chunks: Vec<Vec<E>>,
    len: usize,
}

impl<E> Chunks<E> {
    const fn new() -> Self {
        Chunks {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Option<&E> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut E> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// Appends `e`; `Err(e)` if the heap cannot give a new chunk.
    fn push(&mut self, e: E) -> Result<(), E> {
        if self.len.is_multiple_of(CHUNK) {
            let mut chunk = Vec::new();
            if chunk.try_reserve_exact(CHUNK).is_err() || self.chunks.try_reserve(1).is_err() {
                return Err(e);
            }
            self.chunks.push(chunk);
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        last.push(e);
        self.len += 1;
        Ok(())
    }

    fn iter(&self) -> impl Iterator<Item = &E> + Clone {
        self.chunks.iter().flatten()
    }
}

pub struct Table<T> {
    entries: Chunks<Entry<T>>,
    free: Option<u32>,
    live: usize,
    /// The generation new entries start at: above any generation handed out so far
    /// (modulo wrap-around), so emptying the table does not revive old handles.
    fresh: u32,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            entries: Chunks::new(),
            free: None,
            live: 0,
            fresh: 1,
        }
    }
}

fn next_generation(generation: u32) -> u32 {
    if generation >= MAX_GENERATION {
        1
    } else {
        generation + 1
    }
}

fn handle(index: u32, generation: u32) -> u32 {
    ((generation - 1) << INDEX_BITS) | (index + 1)
}

/// (index, generation); a handle with no index part gets an index past any table.
fn split(handle: u32) -> (usize, u32) {
    let index = ((handle & INDEX_MASK) as usize).wrapping_sub(1);
    (index, (handle >> INDEX_BITS) + 1)
}

impl<T> Table<T> {
    /// Objects in the table.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Entries ever used (live or free): the range of [`Table::at`].
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Stores `item` and returns its handle.
    pub fn insert(&mut self, item: T) -> Result<u32, Full> {
        if let Some(index) = self.free {
            let entry = self
                .entries
                .get_mut(index as usize)
                .expect("the free list holds entries");
            let Entry::Free { next, generation } = *entry else {
                unreachable!("the free list holds free entries")
            };
            self.free = next;
            *entry = Entry::Used { item, generation };
            self.live += 1;
            return Ok(handle(index, generation));
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(Full);
        }
        let index = self.entries.len() as u32;
        let generation = self.fresh;
        if self.entries.push(Entry::Used { item, generation }).is_err() {
            return Err(Full);
        }
        self.live += 1;
        Ok(handle(index, generation))
    }

    pub fn get(&self, handle: u32) -> Option<&T> {
        let (index, generation) = split(handle);
        match self.entries.get(index)? {
            Entry::Used {
                item,
                generation: g,
            } if *g == generation => Some(item),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, handle: u32) -> Option<&mut T> {
        let (index, generation) = split(handle);
        match self.entries.get_mut(index)? {
            Entry::Used {
                item,
                generation: g,
            } if *g == generation => Some(item),
            _ => None,
        }
    }

    /// Removes and returns the object; its handle is dead from now on.
    pub fn remove(&mut self, handle: u32) -> Option<T> {
        let (index, generation) = split(handle);
        match self.entries.get(index) {
            Some(Entry::Used { generation: g, .. }) if *g == generation => {}
            _ => return None,
        }
        let later = next_generation(generation);
        if later > self.fresh || (later == 1 && self.fresh != 1) {
            self.fresh = later;
        }
        let old = core::mem::replace(
            self.entries.get_mut(index).expect("checked above"),
            Entry::Free {
                next: self.free,
                generation: later,
            },
        );
        self.free = Some(index as u32);
        self.live -= 1;
        if self.live == 0 {
            // Nothing left: give the memory back. New entries start at `fresh`.
            self.entries = Chunks::new();
            self.free = None;
        }
        match old {
            Entry::Used { item, .. } => Some(item),
            Entry::Free { .. } => unreachable!("checked above"),
        }
    }

    /// The live object at entry `index` and its handle (for scans in bounded steps).
    pub fn at(&self, index: usize) -> Option<(u32, &T)> {
        match self.entries.get(index)? {
            Entry::Used { item, generation } => Some((handle(index as u32, *generation), item)),
            Entry::Free { .. } => None,
        }
    }

    /// Every live object.
    pub fn iter(&self) -> impl Iterator<Item = &T> + Clone {
        self.entries.iter().filter_map(|e| match e {
            Entry::Used { item, .. } => Some(item),
            Entry::Free { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_positive_nonzero_and_die_with_their_object() {
        let mut t = Table::default();
        let a = t.insert("a").unwrap();
        let b = t.insert("b").unwrap();
        assert!(a != 0 && (a as i32) > 0 && b != a);
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.get(a), None);
        // The entry is reused with a new generation: the old handle stays dead.
        let c = t.insert("c").unwrap();
        assert_ne!(c, a);
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(c), Some(&"c"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.capacity(), 2, "the freed entry was reused");
    }

    #[test]
    fn an_emptied_table_gives_its_memory_back_and_old_handles_stay_dead() {
        let mut t = Table::default();
        let old: Vec<u32> = (0..100).map(|i| t.insert(i).unwrap()).collect();
        for h in &old {
            t.remove(*h).unwrap();
        }
        assert_eq!(t.capacity(), 0);
        let new: Vec<u32> = (0..100).map(|i| t.insert(i).unwrap()).collect();
        for h in &old {
            assert_eq!(t.get(*h), None);
            assert!(!new.contains(h));
        }
    }

    #[test]
    fn generations_wrap_without_reaching_zero_or_the_sign_bit() {
        let mut t = Table::default();
        let mut h = t.insert(0).unwrap();
        for _ in 0..(MAX_GENERATION as usize + 5) {
            t.remove(h).unwrap();
            h = t.insert(0).unwrap();
            assert!(h != 0 && (h as i32) > 0, "{h:#x}");
        }
    }

    #[test]
    fn forged_handles_find_nothing() {
        let mut t = Table::default();
        t.insert(1).unwrap();
        assert_eq!(t.insert(7).ok(), Some(2), "handles start at 1");
        t.remove(2).unwrap();
        for forged in [0, 2, u32::MAX, 2 << 20, (1 << 20) | 1, (1 << 20) | 5] {
            assert_eq!(t.get(forged), None, "{forged:#x}");
        }
    }
}
