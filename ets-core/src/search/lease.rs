//! The references one search holds in the KV tree, released on every way out.

use std::collections::BTreeMap;

use ets_kvtree::{KvTree, KvTreeError, NodeId};

/// A search's view of the shared KV tree: every reference it takes is recorded and released
/// when the lease drops, so a search that fails or is stopped leaves the tree as it found it
/// (apart from unreferenced nodes kept cached until the tree's owner evicts them).
pub(crate) struct KvLease<'t> {
    tree: &'t mut KvTree<()>,
    held: BTreeMap<NodeId, u32>,
}

impl<'t> KvLease<'t> {
    pub(crate) fn new(tree: &'t mut KvTree<()>) -> Self {
        Self {
            tree,
            held: BTreeMap::new(),
        }
    }

    pub(crate) fn tree(&self) -> &KvTree<()> {
        self.tree
    }

    /// Inserts (or finds) a child span and holds one reference to it.
    pub(crate) fn insert(&mut self, parent: NodeId, tokens: &[u32]) -> Result<NodeId, KvTreeError> {
        let id = self.tree.insert(parent, tokens, || ())?;
        *self.held.entry(id).or_default() += 1;
        Ok(id)
    }

    /// Gives back one reference this lease holds.
    pub(crate) fn release(&mut self, id: NodeId) -> Result<(), KvTreeError> {
        match self.held.get_mut(&id) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.held.remove(&id);
            }
            None => return Err(KvTreeError::NotReferenced(id)),
        }
        self.tree.release(id)
    }

    /// Tokens in the union of the root paths of `ids`, and their bytes.
    pub(crate) fn union(&self, ids: &[NodeId]) -> Result<(u64, u64), KvTreeError> {
        let tokens = self.tree.union_tokens(ids)?;
        Ok((tokens, tokens * self.tree.bytes_per_token()))
    }
}

impl Drop for KvLease<'_> {
    fn drop(&mut self) {
        for (id, n) in std::mem::take(&mut self.held) {
            for _ in 0..n {
                // Every id here was referenced by this lease, so release cannot fail.
                let _ = self.tree.release(id);
            }
        }
    }
}
