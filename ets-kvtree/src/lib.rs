//! Refcounted prefix tree over token ids, one node per reasoning step, with exact KV
//! accounting, pins and LRU eviction.
//!
//! **Owns**: the tree of token spans a search has produced ([`KvTree`]); dedupe of identical
//! steps under one parent; reference and pin counts per node; the accounting of live versus
//! resident tokens and bytes ([`KvStats`]); least-recently-used eviction of cached nodes
//! ([`Evicted`]); a generic per-node payload `P` (later the physical K/V of the node's span),
//! dropped exactly when its node is evicted.
//!
//! **Must not**: know any model, tokenizer, policy, reward or search rule (callers decide what a
//! step is and when to hold or drop it); depend on candle, mistral.rs, tokio or any other
//! runtime; do I/O; use `unsafe`.
//!
//! **Entry points**: [`KvTree::new`], then [`KvTree::insert`] (a step under its parent, taking
//! a reference), [`KvTree::retain`] / [`KvTree::release`], [`KvTree::pin`] /
//! [`KvTree::unpin`], [`KvTree::evict_to_tokens`] / [`KvTree::evict_to_bytes`] and
//! [`KvTree::stats`].
//!
//! **Invariants**:
//! - The root (empty span, no payload) is always present and never evicted; node counts in
//!   [`KvStats`] exclude it. It may be retained or pinned like any node (it adds no tokens).
//! - A node is *live* when it or a descendant holds a reference or a pin; live nodes are never
//!   evicted. A node is *resident* until evicted; only unreferenced, unpinned, childless nodes
//!   are evicted, so every resident node's ancestors are resident.
//! - Counts never go negative: `release` / `unpin` of a node with none is an error and changes
//!   nothing. Every refused operation changes nothing.
//! - A [`NodeId`] names one node forever: after its eviction every call with it reports
//!   [`KvTreeError::UnknownNode`] even when its slot is reused.
//! - Stats are maintained incrementally and always equal a recount from scratch; operations
//!   cost O(depth) (eviction O(log n) per node).
//!
//! ```
//! use ets_kvtree::KvTree;
//!
//! let mut tree: KvTree = KvTree::new(2); // 2 bytes of KV per token
//! let prompt = tree.insert(tree.root(), &[1, 2, 3], || ()).unwrap();
//! let a = tree.insert(prompt, &[4, 5], || ()).unwrap();
//! let b = tree.insert(prompt, &[6], || ()).unwrap();
//! assert_eq!(tree.insert(prompt, &[6], || unreachable!()).unwrap(), b); // dedupe
//! tree.release(prompt).unwrap(); // the prompt stays live through its children
//!
//! let s = tree.stats();
//! assert_eq!((s.live_tokens, s.live_bytes, s.live_nodes), (6, 12, 3));
//! assert_eq!(s.logical_tokens, 5 + 2 * 4); // a once, b twice
//!
//! tree.release(a).unwrap();
//! assert_eq!(tree.stats().live_tokens, 4); // a is cached, not live
//! let evicted = tree.evict_to_tokens(0);
//! assert_eq!((evicted.nodes, evicted.tokens), (1, 2)); // only a was evictable
//! assert!(!tree.contains(a));
//! assert_eq!(tree.path_tokens(b).unwrap(), vec![1, 2, 3, 6]);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod evict;
mod node;
mod stats;
mod tree;

pub use error::KvTreeError;
pub use evict::Evicted;
pub use node::NodeId;
pub use stats::KvStats;
pub use tree::KvTree;
