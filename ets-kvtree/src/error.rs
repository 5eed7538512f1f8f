//! The crate's one error type.

use crate::NodeId;

/// Why a [`KvTree`](crate::KvTree) operation was refused.
///
/// A refused operation changes nothing in the tree.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvTreeError {
    /// The id names no resident node: it was never handed out by this tree, or its node has
    /// been evicted since (the slot's generation moved on).
    #[error("unknown node {0}: not in the tree or already evicted")]
    UnknownNode(NodeId),
    /// `release` of a node that holds no reference.
    #[error("cannot release node {0}: it holds no reference")]
    NotReferenced(NodeId),
    /// `unpin` of a node that is not pinned.
    #[error("cannot unpin node {0}: it is not pinned")]
    NotPinned(NodeId),
    /// The root (the empty prefix) is fixed: it has no payload and is never evicted.
    #[error("the root node has no payload and cannot be evicted")]
    RootImmutable,
    /// Explicit eviction of a node that is referenced or pinned.
    #[error("cannot evict node {0}: it is referenced or pinned")]
    InUse(NodeId),
    /// Explicit eviction of a node that still has resident children.
    #[error("cannot evict node {0}: it still has children in the tree")]
    HasChildren(NodeId),
    /// A reference or pin count would exceed `u32::MAX`.
    #[error("reference or pin count of node {0} would overflow")]
    CountOverflow(NodeId),
}
