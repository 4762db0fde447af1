//! What each owner holds: intrusive doubly linked lists through the object tables.
//!
//! Every endpoint and block held by a process (or kept for a driver) sits in that owner's
//! list, and every block a driver learnt the physical address of sits in the driver's pin
//! list. Linking and unlinking take constant time and never allocate (the links live in
//! the objects, the heads in the owner's account), so ending a process visits only what
//! it holds, in steps, whatever other processes hold: no scan of shared tables.

use super::table::Table;

/// One object's place in a list (neighbours by handle).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    prev: Option<u32>,
    next: Option<u32>,
    /// Whether the object is in a list at all (an owner without an account has none).
    listed: bool,
}

impl Link {
    pub fn is_listed(&self) -> bool {
        self.listed
    }

    /// The next object of the list (by handle).
    pub fn next(&self) -> Option<u32> {
        self.next
    }
}

/// The first object of each of one owner's lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// Endpoints it holds.
    pub endpoints: Option<u32>,
    /// Blocks it holds, or that are kept for it as a driver.
    pub blocks: Option<u32>,
    /// Blocks whose physical address it learnt (wherever they are now).
    pub pins: Option<u32>,
}

/// Puts `id` at the front of the list starting at `head`. `link` finds the object's link
/// for this list. `id` must be live and in no list of this kind.
pub fn push<T>(
    table: &mut Table<T>,
    head: &mut Option<u32>,
    id: u32,
    link: fn(&mut T) -> &mut Link,
) {
    let first = *head;
    if let Some(first) = first
        && let Some(item) = table.get_mut(first)
    {
        link(item).prev = Some(id);
    }
    if let Some(item) = table.get_mut(id) {
        *link(item) = Link {
            prev: None,
            next: first,
            listed: true,
        };
        *head = Some(id);
    }
}

/// Takes `id` out of the list starting at `head` (`None`: the owner has no account, so
/// only the neighbours are patched). Does nothing if `id` is in no list.
pub fn remove<T>(
    table: &mut Table<T>,
    head: Option<&mut Option<u32>>,
    id: u32,
    link: fn(&mut T) -> &mut Link,
) {
    let Some(item) = table.get_mut(id) else {
        return;
    };
    let this = core::mem::take(link(item));
    if !this.listed {
        return;
    }
    match this.prev {
        Some(prev) => {
            if let Some(item) = table.get_mut(prev) {
                link(item).next = this.next;
            }
        }
        None => {
            if let Some(head) = head {
                *head = this.next;
            }
        }
    }
    if let Some(next) = this.next
        && let Some(item) = table.get_mut(next)
    {
        link(item).prev = this.prev;
    }
}

/// The objects of the list starting at `head`, first to last, at most `limit` of them
/// (for invariant checks: a list that loops is cut off and found by the count).
pub fn walk<T>(
    table: &Table<T>,
    head: Option<u32>,
    limit: usize,
    link: fn(&T) -> &Link,
) -> alloc::vec::Vec<u32> {
    let mut out = alloc::vec::Vec::new();
    let mut at = head;
    while let Some(id) = at {
        if out.len() >= limit {
            break;
        }
        out.push(id);
        at = table.get(id).and_then(|item| link(item).next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(Link);

    fn link(item: &mut Item) -> &mut Link {
        &mut item.0
    }

    fn read(item: &Item) -> &Link {
        &item.0
    }

    #[test]
    fn push_and_remove_anywhere_keep_the_list_whole() {
        let mut table = Table::default();
        let ids: alloc::vec::Vec<u32> = (0..4)
            .map(|_| table.insert(Item(Link::default())).unwrap())
            .collect();
        let mut head = None;
        for &id in &ids {
            push(&mut table, &mut head, id, link);
        }
        assert_eq!(
            walk(&table, head, 10, read),
            [ids[3], ids[2], ids[1], ids[0]]
        );
        remove(&mut table, Some(&mut head), ids[2], link); // middle
        remove(&mut table, Some(&mut head), ids[3], link); // first
        remove(&mut table, Some(&mut head), ids[0], link); // last
        assert_eq!(walk(&table, head, 10, read), [ids[1]]);
        remove(&mut table, Some(&mut head), ids[0], link); // not listed: nothing
        assert_eq!(walk(&table, head, 10, read), [ids[1]]);
        remove(&mut table, Some(&mut head), ids[1], link);
        assert_eq!(head, None);
        assert!(!table.get(ids[1]).unwrap().0.is_listed());
    }
}
