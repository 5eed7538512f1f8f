//! Accounting: the [`KvStats`] snapshot and the incremental counters behind it.
//!
//! Every counter is updated by the operation that changes it, so [`KvTree::stats`] is O(1).
//! Liveness is tracked per node by `active_in_subtree` (referenced or pinned nodes in the
//! subtree, itself included): a node turns live or dead only when that count crosses zero,
//! which the walk to the root in [`KvTree::propagate_active`] observes in O(depth).

use crate::KvTree;

/// Accounting snapshot of a [`KvTree`]. Node counts never include the root, whose span is
/// empty; token counts are unaffected by that choice.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KvStats {
    /// Tokens in the union of the root paths of all referenced or pinned nodes: the KV that
    /// must stay in memory for the current holders, each shared prefix counted once.
    pub live_tokens: u64,
    /// `live_tokens × bytes_per_token`.
    pub live_bytes: u64,
    /// Nodes on those paths (root excluded).
    pub live_nodes: usize,
    /// Tokens of every node still in the tree: live ones plus unreferenced cached ones.
    pub resident_tokens: u64,
    /// `resident_tokens × bytes_per_token`.
    pub resident_bytes: u64,
    /// Nodes in the tree (root excluded).
    pub resident_nodes: usize,
    /// Highest `live_tokens` since creation or the last [`KvTree::reset_peak`].
    pub peak_live_tokens: u64,
    /// `peak_live_tokens × bytes_per_token`.
    pub peak_live_bytes: u64,
    /// Σ over nodes of `(refcount + pins) × path_len`: the tokens the holders would need
    /// without any prefix sharing.
    pub logical_tokens: u64,
    /// `logical_tokens / live_tokens`; 1.0 when nothing is live.
    pub sharing_ratio: f64,
}

/// The incrementally maintained counters; bytes and ratios are derived on read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) live_tokens: u64,
    pub(crate) live_nodes: usize,
    pub(crate) resident_tokens: u64,
    pub(crate) resident_nodes: usize,
    pub(crate) peak_live_tokens: u64,
    pub(crate) logical_tokens: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, bytes_per_token: u64) -> KvStats {
        let bytes = |tokens: u64| tokens.saturating_mul(bytes_per_token);
        let sharing_ratio = if self.live_tokens == 0 {
            1.0
        } else {
            self.logical_tokens as f64 / self.live_tokens as f64
        };
        KvStats {
            live_tokens: self.live_tokens,
            live_bytes: bytes(self.live_tokens),
            live_nodes: self.live_nodes,
            resident_tokens: self.resident_tokens,
            resident_bytes: bytes(self.resident_tokens),
            resident_nodes: self.resident_nodes,
            peak_live_tokens: self.peak_live_tokens,
            peak_live_bytes: bytes(self.peak_live_tokens),
            logical_tokens: self.logical_tokens,
            sharing_ratio,
        }
    }
}

impl<P> KvTree<P> {
    /// Current accounting, O(1).
    pub fn stats(&self) -> KvStats {
        self.counters.snapshot(self.bytes_per_token)
    }

    /// Restarts peak tracking: the peak becomes the current live size.
    pub fn reset_peak(&mut self) {
        self.counters.peak_live_tokens = self.counters.live_tokens;
    }

    /// Records that the node in slot `index` became active (`up`) or inactive (`!up`):
    /// adjusts `active_in_subtree` on the path to the root and the live counters of every
    /// node whose count crosses zero.
    pub(crate) fn propagate_active(&mut self, index: u32, up: bool) {
        let mut cursor = Some(index);
        while let Some(i) = cursor {
            let node = self.slab.at_mut(i);
            let crossed = if up {
                node.active_in_subtree += 1;
                node.active_in_subtree == 1
            } else {
                node.active_in_subtree -= 1;
                node.active_in_subtree == 0
            };
            if crossed && node.parent.is_some() {
                let len = node.span_len();
                if up {
                    self.counters.live_tokens += len;
                    self.counters.live_nodes += 1;
                } else {
                    self.counters.live_tokens -= len;
                    self.counters.live_nodes -= 1;
                }
            }
            cursor = node.parent;
        }
        if up {
            let c = &mut self.counters;
            c.peak_live_tokens = c.peak_live_tokens.max(c.live_tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand_on_a_small_tree() {
        // root ─ p[1,2,3] ─┬─ a[4,5] ─ c[6]
        //                  └─ b[7]
        let mut t: KvTree = KvTree::new(8);
        let root = t.root();
        let p = t.insert(root, &[1, 2, 3], || ()).unwrap();
        let a = t.insert(p, &[4, 5], || ()).unwrap();
        let b = t.insert(p, &[7], || ()).unwrap();
        let c = t.insert(a, &[6], || ()).unwrap();
        t.retain(c).unwrap(); // c: 2 refs
        t.pin(b).unwrap(); // b: 1 ref + 1 pin
        t.release(p).unwrap();
        t.release(a).unwrap();
        let s = t.stats();
        assert_eq!(s.live_tokens, 7);
        assert_eq!(s.live_bytes, 56);
        assert_eq!(s.live_nodes, 4);
        assert_eq!(
            (s.resident_tokens, s.resident_bytes, s.resident_nodes),
            (7, 56, 4)
        );
        // c: 2 × 6, b: 2 × 4.
        assert_eq!(s.logical_tokens, 20);
        assert_eq!(s.sharing_ratio, 20.0 / 7.0);
        assert_eq!((s.peak_live_tokens, s.peak_live_bytes), (7, 56));

        // Dropping c's references: a and c become cached, p stays live through b.
        t.release(c).unwrap();
        t.release(c).unwrap();
        let s = t.stats();
        assert_eq!((s.live_tokens, s.live_nodes, s.logical_tokens), (4, 2, 8));
        assert_eq!((s.resident_tokens, s.resident_nodes), (7, 4));
        assert_eq!(s.peak_live_tokens, 7);
        t.reset_peak();
        assert_eq!(t.stats().peak_live_tokens, 4);

        t.release(b).unwrap();
        t.unpin(b).unwrap();
        let s = t.stats();
        assert_eq!((s.live_tokens, s.live_nodes, s.logical_tokens), (0, 0, 0));
        assert_eq!(s.sharing_ratio, 1.0);
        assert_eq!(s.peak_live_tokens, 4);
        t.evict_to_tokens(0);
        assert_eq!(
            t.stats(),
            KvStats {
                peak_live_tokens: 4,
                peak_live_bytes: 32,
                sharing_ratio: 1.0,
                ..KvStats::default()
            }
        );
    }

    #[test]
    fn empty_tree_stats() {
        let t: KvTree = KvTree::new(3);
        let s = t.stats();
        assert_eq!(
            s,
            KvStats {
                sharing_ratio: 1.0,
                ..KvStats::default()
            }
        );
        assert_eq!(t.bytes_per_token(), 3);
    }
}
