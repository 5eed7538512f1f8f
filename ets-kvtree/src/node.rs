//! Node ids, the node record and the generational slab that stores nodes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// Handle of a node: a slab slot plus the generation the slot had when the node was created.
///
/// Slots of evicted nodes are reused with a bumped generation, so an id kept past its node's
/// eviction is reported as [`KvTreeError::UnknownNode`](crate::KvTreeError::UnknownNode)
/// instead of silently naming the slot's new occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    index: u32,
    generation: u32,
}

impl NodeId {
    pub(crate) fn index(self) -> u32 {
        self.index
    }

    /// An id no tree hands out before creating four billion nodes.
    #[cfg(test)]
    pub(crate) fn never_issued() -> Self {
        NodeId {
            index: u32::MAX,
            generation: 7,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// One reasoning step: a span of tokens under its parent.
pub(crate) struct Node<P> {
    pub(crate) id: NodeId,
    /// Slot of the parent; `None` only for the root.
    pub(crate) parent: Option<u32>,
    /// The node's own span (shared with the parent's `by_span` key).
    pub(crate) tokens: Arc<[u32]>,
    /// `None` only for the root.
    pub(crate) payload: Option<P>,
    pub(crate) refcount: u32,
    pub(crate) pins: u32,
    /// Nodes in this subtree (itself included) with `refcount > 0 || pins > 0`.
    /// The node is live exactly when this is non-zero.
    pub(crate) active_in_subtree: usize,
    /// Use clock of the latest touch of this node or any descendant.
    pub(crate) last_use: u64,
    /// Whether the node is in the tree's set of evictable leaves.
    pub(crate) in_lru: bool,
    /// Tokens on the root→node path, own span included.
    pub(crate) path_len: u64,
    pub(crate) depth: usize,
    /// Creation order; key of this node in its parent's `children`.
    pub(crate) serial: u64,
    /// Children in creation order (serial → id), for deterministic iteration.
    pub(crate) children: BTreeMap<u64, NodeId>,
    /// Children by span, for dedupe on insert.
    pub(crate) by_span: HashMap<Arc<[u32]>, NodeId>,
}

impl<P> Node<P> {
    /// Referenced or pinned.
    pub(crate) fn is_active(&self) -> bool {
        self.refcount > 0 || self.pins > 0
    }

    /// Unreferenced, unpinned, childless and not the root.
    pub(crate) fn is_evictable(&self) -> bool {
        self.parent.is_some() && !self.is_active() && self.children.is_empty()
    }

    pub(crate) fn span_len(&self) -> u64 {
        self.tokens.len() as u64
    }
}

struct Slot<P> {
    generation: u32,
    node: Option<Node<P>>,
}

/// Generational arena of nodes; freed slots are reused with a bumped generation.
pub(crate) struct Slab<P> {
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
}

impl<P> Slab<P> {
    pub(crate) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The id the next `insert` will hand out.
    pub(crate) fn next_id(&self) -> NodeId {
        match self.free.last() {
            Some(&index) => NodeId {
                index,
                generation: self.slots[index as usize].generation,
            },
            None => NodeId {
                index: u32::try_from(self.slots.len()).expect("more than u32::MAX nodes"),
                generation: 0,
            },
        }
    }

    /// Stores `node` (whose `id` must be `self.next_id()`).
    pub(crate) fn insert(&mut self, node: Node<P>) -> NodeId {
        let id = node.id;
        debug_assert_eq!(id, self.next_id());
        if self.free.pop().is_some() {
            self.slots[id.index as usize].node = Some(node);
        } else {
            self.slots.push(Slot {
                generation: id.generation,
                node: Some(node),
            });
        }
        id
    }

    /// Removes the node in slot `index` and retires its generation.
    pub(crate) fn remove(&mut self, index: u32) -> Node<P> {
        let slot = &mut self.slots[index as usize];
        let node = slot.node.take().expect("removing a vacant slot");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        node
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&Node<P>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> Option<&mut Node<P>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_mut()
    }

    /// The node in slot `index`, which the caller knows to be occupied (e.g. a parent link).
    pub(crate) fn at(&self, index: u32) -> &Node<P> {
        self.slots[index as usize]
            .node
            .as_ref()
            .expect("internal link to a vacant slot")
    }

    pub(crate) fn at_mut(&mut self, index: u32) -> &mut Node<P> {
        self.slots[index as usize]
            .node
            .as_mut()
            .expect("internal link to a vacant slot")
    }

    /// Every resident node, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Node<P>> + '_ {
        self.slots.iter().filter_map(|slot| slot.node.as_ref())
    }
}
