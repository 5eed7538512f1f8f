//! LRU bookkeeping and eviction of unreferenced, unpinned, childless nodes.
//!
//! The tree keeps the set of evictable leaves ordered by `(last_use, slot)`. A use of a node
//! (insert, dedupe hit, retain, release, pin, unpin) stamps it and all its ancestors with the
//! next tick of a monotone clock, so a node is never "older" than its descendants and evicting
//! leaves in clock order is least-recently-used order over the whole tree. Evicting a leaf can
//! make its parent evictable; it then joins the set with its own stamp. Each eviction costs
//! O(log n).

use crate::{KvTree, KvTreeError, NodeId};

/// What an eviction removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evicted {
    /// Nodes removed.
    pub nodes: usize,
    /// Tokens of the removed spans.
    pub tokens: u64,
    /// `tokens × bytes_per_token`.
    pub bytes: u64,
}

impl<P> KvTree<P> {
    /// Evicts unreferenced, unpinned, childless nodes, least recently used first, until the
    /// resident tokens are at most `max_resident_tokens` or nothing is evictable. Evicted
    /// payloads are dropped.
    pub fn evict_to_tokens(&mut self, max_resident_tokens: u64) -> Evicted {
        self.evict_to_tokens_with(max_resident_tokens, |_, payload| drop(payload))
    }

    /// [`KvTree::evict_to_tokens`] with a byte budget: resident bytes end at most
    /// `max_resident_bytes` unless nothing more is evictable.
    pub fn evict_to_bytes(&mut self, max_resident_bytes: u64) -> Evicted {
        self.evict_to_bytes_with(max_resident_bytes, |_, payload| drop(payload))
    }

    /// [`KvTree::evict_to_tokens`], handing each evicted node's id and payload to `on_evict`
    /// (e.g. to return K/V blocks to a pool) in eviction order.
    pub fn evict_to_tokens_with(
        &mut self,
        max_resident_tokens: u64,
        mut on_evict: impl FnMut(NodeId, P),
    ) -> Evicted {
        let mut evicted = Evicted::default();
        while self.counters.resident_tokens > max_resident_tokens {
            let Some((_, index)) = self.lru.pop_first() else {
                break;
            };
            self.slab.at_mut(index).in_lru = false;
            let (id, tokens, payload) = self.remove_leaf(index);
            evicted.nodes += 1;
            evicted.tokens += tokens;
            on_evict(id, payload);
        }
        evicted.bytes = evicted.tokens.saturating_mul(self.bytes_per_token);
        evicted
    }

    /// [`KvTree::evict_to_bytes`], handing each evicted node's id and payload to `on_evict`.
    pub fn evict_to_bytes_with(
        &mut self,
        max_resident_bytes: u64,
        on_evict: impl FnMut(NodeId, P),
    ) -> Evicted {
        // resident_tokens × bpt ≤ max  ⇔  resident_tokens ≤ ⌊max / bpt⌋.
        let max_tokens = max_resident_bytes
            .checked_div(self.bytes_per_token)
            .unwrap_or(u64::MAX);
        self.evict_to_tokens_with(max_tokens, on_evict)
    }

    /// Evicts one node now, regardless of LRU order, and returns its payload. It must be
    /// unreferenced, unpinned, childless and not the root.
    pub fn evict_node(&mut self, id: NodeId) -> Result<P, KvTreeError> {
        let node = self.node(id)?;
        if node.parent.is_none() {
            return Err(KvTreeError::RootImmutable);
        }
        if node.is_active() {
            return Err(KvTreeError::InUse(id));
        }
        if !node.children.is_empty() {
            return Err(KvTreeError::HasChildren(id));
        }
        let removed = self.lru.remove(&(node.last_use, id.index()));
        debug_assert!(removed, "an evictable node is in the LRU set");
        self.slab.at_mut(id.index()).in_lru = false;
        Ok(self.remove_leaf(id.index()).2)
    }

    /// Number of nodes that are evictable right now.
    pub fn evictable_nodes(&self) -> usize {
        self.lru.len()
    }

    /// Unlinks the evictable leaf in slot `index` (already out of the LRU set) from its parent,
    /// frees its slot and updates the resident counters.
    fn remove_leaf(&mut self, index: u32) -> (NodeId, u64, P) {
        let node = self.slab.remove(index);
        debug_assert!(node.is_evictable() && !node.in_lru);
        let parent_index = node.parent.expect("the root is never evicted");
        let parent = self.slab.at_mut(parent_index);
        parent.children.remove(&node.serial);
        parent.by_span.remove(&node.tokens[..]);
        self.sync_lru(parent_index);
        let tokens = node.span_len();
        self.counters.resident_tokens -= tokens;
        self.counters.resident_nodes -= 1;
        let payload = node.payload.expect("non-root nodes carry a payload");
        (node.id, tokens, payload)
    }

    /// Puts the node in slot `index` into, or takes it out of, the evictable set so that
    /// membership matches `is_evictable`.
    pub(crate) fn sync_lru(&mut self, index: u32) {
        let node = self.slab.at_mut(index);
        let want = node.is_evictable();
        if want == node.in_lru {
            return;
        }
        node.in_lru = want;
        let key = (node.last_use, index);
        if want {
            self.lru.insert(key);
        } else {
            self.lru.remove(&key);
        }
    }

    /// Stamps the node in slot `index` and its ancestors with the next clock tick.
    pub(crate) fn touch(&mut self, index: u32) {
        self.clock += 1;
        let now = self.clock;
        let mut cursor = Some(index);
        while let Some(i) = cursor {
            let node = self.slab.at_mut(i);
            if node.in_lru {
                self.lru.remove(&(node.last_use, i));
                self.lru.insert((now, i));
            }
            node.last_use = now;
            cursor = node.parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Counts its drops in a shared cell.
    struct DropCounter(Rc<Cell<usize>>);

    impl Drop for DropCounter {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let mut t: KvTree = KvTree::new(1);
        let root = t.root();
        let a = t.insert(root, &[1], || ()).unwrap();
        let b = t.insert(root, &[2], || ()).unwrap();
        let c = t.insert(root, &[3], || ()).unwrap();
        t.release(c).unwrap();
        t.release(a).unwrap();
        t.release(b).unwrap();
        // Use order now: c, a, b. A dedupe hit on c makes it the most recent.
        let c2 = t.insert(root, &[3], || ()).unwrap();
        assert_eq!(c2, c);
        t.release(c).unwrap();
        let mut order = Vec::new();
        let ev = t.evict_to_tokens_with(1, |id, ()| order.push(id));
        assert_eq!(order, vec![a, b]);
        assert_eq!(
            ev,
            Evicted {
                nodes: 2,
                tokens: 2,
                bytes: 2
            }
        );
        assert!(t.contains(c));
    }

    #[test]
    fn evicting_a_leaf_exposes_its_parent_with_its_subtree_recency() {
        let mut t: KvTree = KvTree::new(1);
        let root = t.root();
        let p = t.insert(root, &[1], || ()).unwrap();
        let q = t.insert(root, &[2], || ()).unwrap();
        let child = t.insert(p, &[3], || ()).unwrap();
        t.release(p).unwrap();
        t.release(q).unwrap();
        t.release(child).unwrap(); // p's subtree was used after q
        let mut order = Vec::new();
        t.evict_to_tokens_with(0, |id, ()| order.push(id));
        assert_eq!(order, vec![q, child, p]);
        assert_eq!(t.stats().resident_nodes, 0);
    }

    #[test]
    fn a_parent_is_as_recent_as_its_latest_used_descendant() {
        let mut t: KvTree = KvTree::new(1);
        let root = t.root();
        let p = t.insert(root, &[1], || ()).unwrap();
        let r = t.insert(root, &[2], || ()).unwrap();
        let c = t.insert(p, &[3], || ()).unwrap();
        t.release(p).unwrap(); // p itself: oldest
        t.release(r).unwrap();
        t.release(c).unwrap(); // p's subtree: newest
        t.evict_node(c).unwrap();
        let mut order = Vec::new();
        t.evict_to_tokens_with(0, |id, ()| order.push(id));
        assert_eq!(order, vec![r, p]);
    }

    #[test]
    fn stops_at_the_budget() {
        let mut t: KvTree = KvTree::new(1);
        let a = t.insert(t.root(), &[1, 1, 1], || ()).unwrap();
        let b = t.insert(t.root(), &[2, 2], || ()).unwrap();
        t.release(a).unwrap();
        t.release(b).unwrap();
        assert_eq!(t.evict_to_tokens(5), Evicted::default());
        let ev = t.evict_to_tokens(4);
        assert_eq!((ev.nodes, ev.tokens), (1, 3));
        assert!(!t.contains(a) && t.contains(b));
        assert_eq!(t.stats().resident_tokens, 2);
    }

    #[test]
    fn pins_and_references_protect_the_node_and_its_ancestors() {
        let mut t: KvTree = KvTree::new(1);
        let p = t.insert(t.root(), &[1, 2], || ()).unwrap();
        let mid = t.insert(p, &[3], || ()).unwrap();
        let leaf = t.insert(mid, &[4], || ()).unwrap();
        let held = t.insert(p, &[5], || ()).unwrap();
        for id in [p, mid, leaf] {
            t.release(id).unwrap();
        }
        t.pin(leaf).unwrap();
        assert_eq!(t.evict_to_tokens(0), Evicted::default());
        assert_eq!(t.stats().live_tokens, 5);
        t.unpin(leaf).unwrap();
        let ev = t.evict_to_tokens(0);
        assert_eq!(
            (ev.nodes, ev.tokens),
            (2, 2),
            "leaf then mid; p is held up by `held`"
        );
        assert!(t.contains(p) && t.contains(held));
        assert_eq!(t.evict_node(held), Err(KvTreeError::InUse(held)));
        assert_eq!(t.evict_node(p), Err(KvTreeError::HasChildren(p)));
        assert_eq!(t.evict_node(t.root()), Err(KvTreeError::RootImmutable));
    }

    #[test]
    fn payload_is_dropped_exactly_on_eviction() {
        let drops = Rc::new(Cell::new(0));
        let mut t: KvTree<DropCounter> = KvTree::new(1);
        let new = || DropCounter(Rc::clone(&drops));
        let a = t.insert(t.root(), &[1], new).unwrap();
        let b = t.insert(a, &[2], new).unwrap();
        assert_eq!(t.insert(a, &[2], new).unwrap(), b);
        assert_eq!(
            drops.get(),
            0,
            "a dedupe hit neither builds nor drops a payload"
        );
        t.release(b).unwrap();
        t.release(b).unwrap();
        t.release(a).unwrap();
        assert_eq!(drops.get(), 0, "releasing caches, it does not drop");
        t.pin(a).unwrap();
        t.evict_to_tokens(0);
        assert_eq!(drops.get(), 1, "b only");
        t.unpin(a).unwrap();
        let payload = t.evict_node(a).unwrap();
        assert_eq!(drops.get(), 1, "evict_node hands the payload over");
        drop(payload);
        assert_eq!(drops.get(), 2);
        let c = t.insert(t.root(), &[3], new).unwrap();
        drop(t);
        assert_eq!(drops.get(), 3, "dropping the tree drops resident payloads");
        let _ = c;
    }

    #[test]
    fn byte_budget_converts_through_bytes_per_token() {
        let mut t: KvTree = KvTree::new(10);
        let a = t.insert(t.root(), &[1, 2], || ()).unwrap();
        let b = t.insert(t.root(), &[3, 4, 5], || ()).unwrap();
        t.release(a).unwrap();
        t.release(b).unwrap();
        assert_eq!(t.evict_to_bytes(50), Evicted::default());
        let ev = t.evict_to_bytes(49);
        assert_eq!(
            ev,
            Evicted {
                nodes: 1,
                tokens: 2,
                bytes: 20
            }
        );
        assert_eq!(t.stats().resident_bytes, 30);
        let mut zero: KvTree = KvTree::new(0);
        let z = zero.insert(zero.root(), &[1], || ()).unwrap();
        zero.release(z).unwrap();
        assert_eq!(
            zero.evict_to_bytes(0),
            Evicted::default(),
            "0 bytes always fit"
        );
    }

    #[test]
    fn evictable_count_tracks_cached_leaves() {
        let mut t: KvTree = KvTree::new(1);
        let a = t.insert(t.root(), &[1], || ()).unwrap();
        let b = t.insert(a, &[2], || ()).unwrap();
        t.release(a).unwrap();
        assert_eq!(t.evictable_nodes(), 0);
        assert!(!t.is_evictable(a));
        t.release(b).unwrap();
        assert_eq!(t.evictable_nodes(), 1);
        assert!(t.is_evictable(b));
        t.retain(b).unwrap();
        assert_eq!(t.evictable_nodes(), 0);
    }
}
