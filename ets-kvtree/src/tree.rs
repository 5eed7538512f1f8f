//! The tree itself: construction, insertion with dedupe, reference and pin counts, queries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::node::{Node, Slab};
use crate::stats::Counters;
use crate::{KvTreeError, NodeId};

/// Refcounted prefix tree over token ids, one node per reasoning step.
///
/// `P` is a per-node payload (later the physical K/V of the node's span); it is created when a
/// node is inserted and dropped exactly when the node is evicted.
pub struct KvTree<P = ()> {
    pub(crate) slab: Slab<P>,
    pub(crate) root: NodeId,
    pub(crate) bytes_per_token: u64,
    pub(crate) counters: Counters,
    /// Evictable leaves keyed by `(last_use, slot)`, least recently used first.
    pub(crate) lru: BTreeSet<(u64, u32)>,
    /// Monotone use clock.
    pub(crate) clock: u64,
    /// Creation counter (children iterate in creation order).
    pub(crate) next_serial: u64,
}

/// Which count an operation moves.
#[derive(Clone, Copy)]
enum Count {
    Ref,
    Pin,
}

impl<P> KvTree<P> {
    /// An empty tree: only the root (an empty span without payload that is always present and
    /// never evicted). `bytes_per_token` converts token counts to bytes in
    /// [`KvStats`](crate::KvStats).
    pub fn new(bytes_per_token: u64) -> Self {
        let mut slab = Slab::new();
        let id = slab.next_id();
        let root = slab.insert(Node {
            id,
            parent: None,
            tokens: Arc::from(&[][..]),
            payload: None,
            refcount: 0,
            pins: 0,
            active_in_subtree: 0,
            last_use: 0,
            in_lru: false,
            path_len: 0,
            depth: 0,
            serial: 0,
            children: BTreeMap::new(),
            by_span: HashMap::new(),
        });
        KvTree {
            slab,
            root,
            bytes_per_token,
            counters: Counters::default(),
            lru: BTreeSet::new(),
            clock: 0,
            next_serial: 1,
        }
    }

    /// The root: the empty prefix every path starts from.
    pub fn root(&self) -> NodeId {
        self.root
    }

    /// Bytes of KV per token, as given to [`KvTree::new`].
    pub fn bytes_per_token(&self) -> u64 {
        self.bytes_per_token
    }

    pub(crate) fn node(&self, id: NodeId) -> Result<&Node<P>, KvTreeError> {
        self.slab.get(id).ok_or(KvTreeError::UnknownNode(id))
    }

    /// Inserts a child span under `parent`. If `parent` already has a child with exactly these
    /// tokens, that node is returned (dedupe; `payload` is not called). Either way the returned
    /// node gains one reference and counts as used. Empty spans are allowed and dedupe like any
    /// other.
    pub fn insert(
        &mut self,
        parent: NodeId,
        tokens: &[u32],
        payload: impl FnOnce() -> P,
    ) -> Result<NodeId, KvTreeError> {
        let parent_node = self.node(parent)?;
        if let Some(&existing) = parent_node.by_span.get(tokens) {
            self.retain(existing)?;
            return Ok(existing);
        }
        let (path_len, depth) = (parent_node.path_len, parent_node.depth);
        // Create the payload before touching the tree, so a panicking closure leaves it intact.
        let payload = payload();
        let span: Arc<[u32]> = Arc::from(tokens);
        let len = span.len() as u64;
        let serial = self.next_serial;
        self.next_serial += 1;
        let id = self.slab.next_id();
        self.slab.insert(Node {
            id,
            parent: Some(parent.index()),
            tokens: Arc::clone(&span),
            payload: Some(payload),
            refcount: 1,
            pins: 0,
            active_in_subtree: 0,
            last_use: 0,
            in_lru: false,
            path_len: path_len + len,
            depth: depth + 1,
            serial,
            children: BTreeMap::new(),
            by_span: HashMap::new(),
        });
        let parent_node = self.slab.at_mut(parent.index());
        parent_node.children.insert(serial, id);
        parent_node.by_span.insert(span, id);
        self.sync_lru(parent.index());
        self.counters.resident_tokens += len;
        self.counters.resident_nodes += 1;
        self.counters.logical_tokens += path_len + len;
        self.propagate_active(id.index(), true);
        self.touch(id.index());
        Ok(id)
    }

    /// Adds one reference to `id` (and marks it used).
    pub fn retain(&mut self, id: NodeId) -> Result<(), KvTreeError> {
        self.adjust(id, Count::Ref, true)
    }

    /// Drops one reference from `id` (and marks it used). Errors, changing nothing, if it holds
    /// none. The node stays resident (cached) until evicted.
    pub fn release(&mut self, id: NodeId) -> Result<(), KvTreeError> {
        self.adjust(id, Count::Ref, false)
    }

    /// Adds one pin to `id`: a pinned node keeps itself and its ancestors live and unevictable.
    pub fn pin(&mut self, id: NodeId) -> Result<(), KvTreeError> {
        self.adjust(id, Count::Pin, true)
    }

    /// Removes one pin from `id`. Errors, changing nothing, if it is not pinned.
    pub fn unpin(&mut self, id: NodeId) -> Result<(), KvTreeError> {
        self.adjust(id, Count::Pin, false)
    }

    /// Moves a reference or pin count by one and updates liveness, the logical size, the
    /// evictable set and the use clock.
    fn adjust(&mut self, id: NodeId, count: Count, up: bool) -> Result<(), KvTreeError> {
        let node = self.slab.get_mut(id).ok_or(KvTreeError::UnknownNode(id))?;
        let was_active = node.is_active();
        let field = match count {
            Count::Ref => &mut node.refcount,
            Count::Pin => &mut node.pins,
        };
        *field = if up {
            field.checked_add(1).ok_or(KvTreeError::CountOverflow(id))?
        } else {
            field.checked_sub(1).ok_or(match count {
                Count::Ref => KvTreeError::NotReferenced(id),
                Count::Pin => KvTreeError::NotPinned(id),
            })?
        };
        let now_active = node.is_active();
        let path_len = node.path_len;
        if up {
            self.counters.logical_tokens += path_len;
        } else {
            self.counters.logical_tokens -= path_len;
        }
        if was_active != now_active {
            self.propagate_active(id.index(), now_active);
        }
        self.sync_lru(id.index());
        self.touch(id.index());
        Ok(())
    }

    /// Whether `id` names a node that is still in the tree.
    pub fn contains(&self, id: NodeId) -> bool {
        self.slab.get(id).is_some()
    }

    /// The parent of `id`; `None` for the root or an unknown id.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        let parent = self.slab.get(id)?.parent?;
        Some(self.slab.at(parent).id)
    }

    /// The node's own span.
    pub fn tokens(&self, id: NodeId) -> Result<&[u32], KvTreeError> {
        Ok(&self.node(id)?.tokens)
    }

    /// The concatenation of the spans on the root→node path.
    pub fn path_tokens(&self, id: NodeId) -> Result<Vec<u32>, KvTreeError> {
        let node = self.node(id)?;
        let mut spans = Vec::with_capacity(node.depth);
        let mut cursor = Some(id.index());
        while let Some(i) = cursor {
            let n = self.slab.at(i);
            spans.push(&n.tokens[..]);
            cursor = n.parent;
        }
        let mut out = Vec::with_capacity(node.path_len as usize);
        for span in spans.iter().rev() {
            out.extend_from_slice(span);
        }
        Ok(out)
    }

    /// Tokens on the root→node path.
    pub fn path_len(&self, id: NodeId) -> Result<u64, KvTreeError> {
        Ok(self.node(id)?.path_len)
    }

    /// Steps below the root (root = 0).
    pub fn depth(&self, id: NodeId) -> Result<usize, KvTreeError> {
        Ok(self.node(id)?.depth)
    }

    /// The node's payload. The root has none: [`KvTreeError::RootImmutable`].
    pub fn payload(&self, id: NodeId) -> Result<&P, KvTreeError> {
        self.node(id)?
            .payload
            .as_ref()
            .ok_or(KvTreeError::RootImmutable)
    }

    /// The node's payload, mutably. The root has none: [`KvTreeError::RootImmutable`].
    pub fn payload_mut(&mut self, id: NodeId) -> Result<&mut P, KvTreeError> {
        self.slab
            .get_mut(id)
            .ok_or(KvTreeError::UnknownNode(id))?
            .payload
            .as_mut()
            .ok_or(KvTreeError::RootImmutable)
    }

    /// References held on `id`; 0 for an unknown id.
    pub fn refcount(&self, id: NodeId) -> u32 {
        self.slab.get(id).map_or(0, |n| n.refcount)
    }

    /// Pins held on `id`; 0 for an unknown id.
    pub fn pins(&self, id: NodeId) -> u32 {
        self.slab.get(id).map_or(0, |n| n.pins)
    }

    /// Whether `id` is live: it or a descendant is referenced or pinned. False for unknown ids.
    pub fn is_live(&self, id: NodeId) -> bool {
        self.slab.get(id).is_some_and(|n| n.active_in_subtree > 0)
    }

    /// Whether `id` could be evicted now: resident, not the root, unreferenced, unpinned and
    /// childless.
    pub fn is_evictable(&self, id: NodeId) -> bool {
        self.slab.get(id).is_some_and(|n| n.is_evictable())
    }

    /// Tokens in the union of the root→id paths, each node counted once. Errors if any id is
    /// unknown.
    pub fn union_tokens(&self, ids: &[NodeId]) -> Result<u64, KvTreeError> {
        for &id in ids {
            self.node(id)?;
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        for &id in ids {
            let mut cursor = Some(id.index());
            while let Some(i) = cursor {
                if !seen.insert(i) {
                    break;
                }
                let n = self.slab.at(i);
                total += n.span_len();
                cursor = n.parent;
            }
        }
        Ok(total)
    }

    /// The children of `id` in creation order; empty for an unknown id.
    pub fn children(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.slab
            .get(id)
            .into_iter()
            .flat_map(|n| n.children.values().copied())
    }

    /// The child of `parent` whose span is exactly `tokens`, without inserting or touching it.
    pub fn find_child(&self, parent: NodeId, tokens: &[u32]) -> Option<NodeId> {
        self.slab.get(parent)?.by_span.get(tokens).copied()
    }

    /// Every node in the tree, root included, in slot order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slab.iter().map(|n| n.id)
    }
}

impl<P> fmt::Debug for KvTree<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvTree")
            .field("bytes_per_token", &self.bytes_per_token)
            .field("stats", &self.stats())
            .field("evictable", &self.lru.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> KvTree {
        KvTree::new(4)
    }

    #[test]
    fn insert_dedupes_identical_spans_under_one_parent() {
        let mut t = tree();
        let root = t.root();
        let mut calls = 0;
        let a = t.insert(root, &[1, 2], || calls += 1).unwrap();
        let again = t.insert(root, &[1, 2], || calls += 1).unwrap();
        assert_eq!(a, again);
        assert_eq!(calls, 1, "payload is built once");
        assert_eq!(t.refcount(a), 2);
        // Same tokens under another parent, or a different span, make new nodes.
        let b = t.insert(a, &[1, 2], || ()).unwrap();
        let c = t.insert(root, &[1], || ()).unwrap();
        assert!(b != a && c != a && b != c);
        assert_eq!(t.children(root).collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(t.find_child(root, &[1, 2]), Some(a));
        assert_eq!(t.find_child(root, &[9]), None);
        assert_eq!(t.stats().resident_nodes, 3);
    }

    #[test]
    fn empty_spans_are_nodes_and_dedupe() {
        let mut t = tree();
        let e1 = t.insert(t.root(), &[], || ()).unwrap();
        let e2 = t.insert(t.root(), &[], || ()).unwrap();
        assert_eq!(e1, e2);
        assert_eq!(t.refcount(e1), 2);
        let x = t.insert(e1, &[7], || ()).unwrap();
        assert_eq!(t.path_tokens(x).unwrap(), vec![7]);
        assert_eq!(t.depth(x).unwrap(), 2);
        let s = t.stats();
        assert_eq!((s.resident_nodes, s.live_nodes, s.live_tokens), (2, 2, 1));
    }

    #[test]
    fn refcounts_move_by_one_and_never_go_negative() {
        let mut t = tree();
        let a = t.insert(t.root(), &[1], || ()).unwrap();
        t.retain(a).unwrap();
        assert_eq!(t.refcount(a), 2);
        t.release(a).unwrap();
        t.release(a).unwrap();
        assert_eq!(t.refcount(a), 0);
        let before = t.stats();
        assert_eq!(t.release(a), Err(KvTreeError::NotReferenced(a)));
        assert_eq!(t.refcount(a), 0);
        assert_eq!(t.stats(), before);
        assert!(t.contains(a), "an unreferenced node stays cached");
        assert_eq!(t.unpin(a), Err(KvTreeError::NotPinned(a)));
        t.pin(a).unwrap();
        assert_eq!((t.pins(a), t.refcount(a)), (1, 0));
        assert!(t.is_live(a));
        t.unpin(a).unwrap();
        assert!(!t.is_live(a));
        assert_eq!(t.refcount(NodeId::never_issued()), 0);
    }

    #[test]
    fn root_can_be_held_but_has_no_payload() {
        let mut t = tree();
        let root = t.root();
        t.retain(root).unwrap();
        t.pin(root).unwrap();
        let s = t.stats();
        assert_eq!((s.live_nodes, s.live_tokens, s.logical_tokens), (0, 0, 0));
        assert_eq!(s.sharing_ratio, 1.0);
        t.release(root).unwrap();
        t.unpin(root).unwrap();
        assert_eq!(t.payload(root), Err(KvTreeError::RootImmutable));
        assert_eq!(t.parent(root), None);
        assert_eq!(t.depth(root), Ok(0));
        assert_eq!(t.path_tokens(root), Ok(vec![]));
    }

    #[test]
    fn stale_ids_error_after_eviction_even_when_the_slot_is_reused() {
        let mut t = tree();
        let a = t.insert(t.root(), &[1, 2], || ()).unwrap();
        t.release(a).unwrap();
        assert_eq!(t.evict_to_tokens(0).nodes, 1);
        let b = t.insert(t.root(), &[1, 2], || ()).unwrap();
        assert_eq!(b.index(), a.index(), "the slot is reused");
        assert_ne!(a, b);
        let unknown = Err(KvTreeError::UnknownNode(a));
        assert!(!t.contains(a));
        assert_eq!(t.retain(a), unknown.clone());
        assert_eq!(t.release(a), unknown.clone());
        assert_eq!(t.pin(a), unknown.clone());
        assert_eq!(t.unpin(a), unknown.clone());
        assert_eq!(
            t.tokens(a).map(<[u32]>::to_vec),
            unknown.clone().map(|()| vec![])
        );
        assert_eq!(t.path_len(a), unknown.clone().map(|()| 0));
        assert_eq!(t.insert(a, &[3], || ()), unknown.clone().map(|()| a));
        assert_eq!(t.union_tokens(&[b, a]), unknown.clone().map(|()| 0));
        assert_eq!(t.payload(a).copied(), unknown.clone());
        assert_eq!(t.refcount(a), 0);
        assert_eq!(t.parent(a), None);
        assert_eq!(t.children(a).count(), 0);
        assert_eq!(t.refcount(b), 1, "the new occupant is untouched");
        let err = t.retain(a).unwrap_err().to_string();
        assert!(err.contains(&a.to_string()), "{err}");
    }

    #[test]
    fn the_tree_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<KvTree>();
        send_sync::<KvTree<Vec<f32>>>();
    }

    #[test]
    fn queries_follow_the_path() {
        let mut t = tree();
        let a = t.insert(t.root(), &[1, 2, 3], || ()).unwrap();
        let b = t.insert(a, &[4], || ()).unwrap();
        let c = t.insert(b, &[5, 6], || ()).unwrap();
        assert_eq!(t.tokens(c).unwrap(), &[5, 6]);
        assert_eq!(t.path_tokens(c).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(t.path_len(c).unwrap(), 6);
        assert_eq!(t.depth(c).unwrap(), 3);
        assert_eq!(t.parent(c), Some(b));
        assert_eq!(t.parent(a), Some(t.root()));
        assert_eq!(t.nodes().count(), 4);
    }

    #[test]
    fn union_tokens_counts_shared_prefixes_once() {
        let mut t = tree();
        let p = t.insert(t.root(), &[1, 2, 3], || ()).unwrap();
        let a = t.insert(p, &[4, 5], || ()).unwrap();
        let b = t.insert(p, &[6], || ()).unwrap();
        let c = t.insert(a, &[7, 8, 9], || ()).unwrap();
        assert_eq!(t.union_tokens(&[]).unwrap(), 0);
        assert_eq!(t.union_tokens(&[t.root()]).unwrap(), 0);
        assert_eq!(t.union_tokens(&[a]).unwrap(), 5);
        assert_eq!(t.union_tokens(&[a, b]).unwrap(), 6);
        assert_eq!(t.union_tokens(&[a, b, c, c, p]).unwrap(), 9);
        assert_eq!(t.union_tokens(&[c, b]).unwrap(), 9);
    }

    #[test]
    fn payloads_are_reachable_and_mutable() {
        let mut t: KvTree<String> = KvTree::new(1);
        let a = t.insert(t.root(), &[1], || "a".to_owned()).unwrap();
        t.payload_mut(a).unwrap().push('!');
        assert_eq!(t.payload(a).unwrap(), "a!");
        assert_eq!(t.payload_mut(t.root()), Err(KvTreeError::RootImmutable));
    }

    #[test]
    fn a_panicking_payload_leaves_the_tree_unchanged() {
        let mut t = tree();
        let a = t.insert(t.root(), &[1], || ()).unwrap();
        let before = t.stats();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.insert(a, &[2], || panic!("no memory for K/V"))
        }));
        assert!(result.is_err());
        assert_eq!(t.stats(), before);
        assert_eq!(t.children(a).count(), 0);
    }
}
