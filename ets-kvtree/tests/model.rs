//! Property tests: random operation sequences against a naive model that recounts everything
//! from scratch after every step.

use ets_kvtree::{Evicted, KvStats, KvTree, KvTreeError, NodeId};
use proptest::prelude::*;
use proptest::sample::Index;

/// One node the model has ever seen (evicted ones stay, marked non-resident).
#[derive(Debug, Clone)]
struct MNode {
    id: NodeId,
    parent: Option<usize>,
    tokens: Vec<u32>,
    refs: u32,
    pins: u32,
    last_use: u64,
    resident: bool,
}

/// Naive model of the tree: a Vec of nodes with parent pointers, in creation order.
struct Model {
    nodes: Vec<MNode>,
    clock: u64,
    peak: u64,
    bpt: u64,
}

impl Model {
    fn new(root: NodeId, bpt: u64) -> Self {
        let root = MNode {
            id: root,
            parent: None,
            tokens: vec![],
            refs: 0,
            pins: 0,
            last_use: 0,
            resident: true,
        };
        Model {
            nodes: vec![root],
            clock: 0,
            peak: 0,
            bpt,
        }
    }

    fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len())
            .filter(move |&c| self.nodes[c].resident && self.nodes[c].parent == Some(i))
    }

    fn path(&self, i: usize) -> Vec<usize> {
        let mut path = vec![i];
        while let Some(p) = self.nodes[*path.last().unwrap()].parent {
            path.push(p);
        }
        path.reverse();
        path
    }

    fn path_tokens(&self, i: usize) -> Vec<u32> {
        self.path(i)
            .iter()
            .flat_map(|&j| self.nodes[j].tokens.clone())
            .collect()
    }

    fn touch(&mut self, i: usize) {
        self.clock += 1;
        for j in self.path(i) {
            self.nodes[j].last_use = self.clock;
        }
    }

    fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            if n.resident && (n.refs > 0 || n.pins > 0) {
                for j in self.path(i) {
                    live[j] = true;
                }
            }
        }
        live
    }

    fn evictable(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.resident
            && n.parent.is_some()
            && n.refs == 0
            && n.pins == 0
            && self.children(i).next().is_none()
    }

    fn stats(&self) -> KvStats {
        let live = self.live();
        let mut s = KvStats::default();
        for (i, n) in self
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, n)| n.resident)
        {
            let len = n.tokens.len() as u64;
            s.resident_tokens += len;
            s.resident_nodes += 1;
            if live[i] {
                s.live_tokens += len;
                s.live_nodes += 1;
            }
        }
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.resident) {
            s.logical_tokens += u64::from(n.refs + n.pins) * self.path_tokens(i).len() as u64;
        }
        s.live_bytes = s.live_tokens * self.bpt;
        s.resident_bytes = s.resident_tokens * self.bpt;
        s.peak_live_tokens = self.peak;
        s.peak_live_bytes = self.peak * self.bpt;
        s.sharing_ratio = if s.live_tokens == 0 {
            1.0
        } else {
            s.logical_tokens as f64 / s.live_tokens as f64
        };
        s
    }

    fn resident_tokens(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.resident)
            .map(|n| n.tokens.len() as u64)
            .sum()
    }

    /// Evicts the least recently used evictable node while `over` says the tree is too big.
    fn evict(&mut self, over: impl Fn(u64) -> bool) -> Vec<usize> {
        let mut order = Vec::new();
        while over(self.resident_tokens()) {
            let Some(i) = (0..self.nodes.len())
                .filter(|&i| self.evictable(i))
                .min_by_key(|&i| self.nodes[i].last_use)
            else {
                break;
            };
            self.nodes[i].resident = false;
            order.push(i);
        }
        order
    }
}

/// A node choice: mostly among resident nodes, sometimes among every node ever made (stale ids).
#[derive(Debug, Clone)]
struct Sel {
    any: bool,
    ix: Index,
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Sel, Vec<u32>),
    Retain(Sel),
    Release(Sel),
    Pin(Sel),
    Unpin(Sel),
    EvictTokens(u64),
    EvictBytes(u64),
    EvictNode(Sel),
    ResetPeak,
    Union(Vec<Sel>),
}

fn sel() -> impl Strategy<Value = Sel> {
    (prop::bool::weighted(0.15), any::<Index>()).prop_map(|(any, ix)| Sel { any, ix })
}

/// Short spans over a 3-letter alphabet, so dedupe hits are frequent.
fn span() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0u32..3, 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (sel(), span()).prop_map(|(s, t)| Op::Insert(s, t)),
        2 => sel().prop_map(Op::Retain),
        4 => sel().prop_map(Op::Release),
        1 => sel().prop_map(Op::Pin),
        1 => sel().prop_map(Op::Unpin),
        1 => (0u64..24).prop_map(Op::EvictTokens),
        1 => (0u64..80).prop_map(Op::EvictBytes),
        1 => sel().prop_map(Op::EvictNode),
        1 => Just(Op::ResetPeak),
        1 => prop::collection::vec(sel(), 0..4).prop_map(Op::Union),
    ]
}

/// The real tree (payload = the model index of the node) beside its model.
struct Harness {
    tree: KvTree<usize>,
    model: Model,
}

impl Harness {
    fn new(bpt: u64) -> Self {
        let tree = KvTree::new(bpt);
        let model = Model::new(tree.root(), bpt);
        Harness { tree, model }
    }

    fn pick(&self, s: &Sel) -> usize {
        if s.any {
            s.ix.index(self.model.nodes.len())
        } else {
            let resident: Vec<usize> = (0..self.model.nodes.len())
                .filter(|&i| self.model.nodes[i].resident)
                .collect();
            resident[s.ix.index(resident.len())]
        }
    }

    fn apply(&mut self, op: &Op) {
        let before = self.tree.stats();
        let result: Result<(), KvTreeError> = match op {
            Op::Insert(s, tokens) => self.insert(self.pick(s), tokens),
            Op::Retain(s) | Op::Release(s) | Op::Pin(s) | Op::Unpin(s) => {
                self.count(op, self.pick(s))
            }
            Op::EvictTokens(budget) => {
                let order = self.model.evict(|t| t > *budget);
                self.check_eviction(order, |tree, f| tree.evict_to_tokens_with(*budget, f));
                Ok(())
            }
            Op::EvictBytes(budget) => {
                let bpt = self.model.bpt;
                let order = self.model.evict(|t| t * bpt > *budget);
                self.check_eviction(order, |tree, f| tree.evict_to_bytes_with(*budget, f));
                Ok(())
            }
            Op::EvictNode(s) => self.evict_node(self.pick(s)),
            Op::ResetPeak => {
                self.tree.reset_peak();
                self.model.peak = self.model.stats().live_tokens;
                Ok(())
            }
            Op::Union(sels) => {
                let picked: Vec<usize> = sels.iter().map(|s| self.pick(s)).collect();
                let ids: Vec<NodeId> = picked.iter().map(|&i| self.model.nodes[i].id).collect();
                let expected = match picked.iter().find(|&&i| !self.model.nodes[i].resident) {
                    Some(&i) => Err(KvTreeError::UnknownNode(self.model.nodes[i].id)),
                    None => {
                        let mut on_paths = vec![false; self.model.nodes.len()];
                        for &i in &picked {
                            for j in self.model.path(i) {
                                on_paths[j] = true;
                            }
                        }
                        Ok((0..on_paths.len())
                            .filter(|&j| on_paths[j])
                            .map(|j| self.model.nodes[j].tokens.len() as u64)
                            .sum())
                    }
                };
                assert_eq!(self.tree.union_tokens(&ids), expected);
                Ok(())
            }
        };
        if result.is_err() {
            assert_eq!(
                self.tree.stats(),
                before,
                "a refused {op:?} changed the stats"
            );
        }
        let live = self.model.stats().live_tokens;
        self.model.peak = self.model.peak.max(live);
        self.check();
    }

    fn insert(&mut self, parent: usize, tokens: &[u32]) -> Result<(), KvTreeError> {
        let m = &self.model;
        let pid = m.nodes[parent].id;
        let fresh = m.nodes.len();
        let got = self.tree.insert(pid, tokens, || fresh);
        if !m.nodes[parent].resident {
            assert_eq!(got, Err(KvTreeError::UnknownNode(pid)));
            return got.map(drop);
        }
        let id = got.expect("insert under a resident parent");
        let existing = m.children(parent).find(|&c| m.nodes[c].tokens == tokens);
        let i = match existing {
            Some(c) => {
                assert_eq!(id, m.nodes[c].id, "dedupe returns the existing child");
                c
            }
            None => {
                assert!(m.nodes.iter().all(|n| n.id != id), "ids are never reused");
                self.model.nodes.push(MNode {
                    id,
                    parent: Some(parent),
                    tokens: tokens.to_vec(),
                    refs: 0,
                    pins: 0,
                    last_use: 0,
                    resident: true,
                });
                fresh
            }
        };
        self.model.nodes[i].refs += 1;
        self.model.touch(i);
        Ok(())
    }

    fn count(&mut self, op: &Op, i: usize) -> Result<(), KvTreeError> {
        let id = self.model.nodes[i].id;
        let got = match op {
            Op::Retain(_) => self.tree.retain(id),
            Op::Release(_) => self.tree.release(id),
            Op::Pin(_) => self.tree.pin(id),
            _ => self.tree.unpin(id),
        };
        let n = &mut self.model.nodes[i];
        let (count, delta, refused) = match op {
            Op::Retain(_) => (&mut n.refs, 1, None),
            Op::Release(_) => (&mut n.refs, -1, Some(KvTreeError::NotReferenced(id))),
            Op::Pin(_) => (&mut n.pins, 1, None),
            _ => (&mut n.pins, -1, Some(KvTreeError::NotPinned(id))),
        };
        let expected = if !n.resident {
            Err(KvTreeError::UnknownNode(id))
        } else if delta < 0 && *count == 0 {
            Err(refused.unwrap())
        } else {
            *count = count.checked_add_signed(delta).unwrap();
            Ok(())
        };
        assert_eq!(got, expected, "{op:?} on {id}");
        if expected.is_ok() {
            self.model.touch(i);
        }
        got
    }

    fn evict_node(&mut self, i: usize) -> Result<(), KvTreeError> {
        let m = &self.model;
        let n = &m.nodes[i];
        let expected = if !n.resident {
            Err(KvTreeError::UnknownNode(n.id))
        } else if n.parent.is_none() {
            Err(KvTreeError::RootImmutable)
        } else if n.refs > 0 || n.pins > 0 {
            Err(KvTreeError::InUse(n.id))
        } else if m.children(i).next().is_some() {
            Err(KvTreeError::HasChildren(n.id))
        } else {
            Ok(i)
        };
        let got = self.tree.evict_node(n.id);
        assert_eq!(got, expected);
        if expected.is_ok() {
            self.model.nodes[i].resident = false;
        }
        got.map(drop)
    }

    /// Runs the real eviction, collecting `(id, payload)` in order, and compares it with the
    /// model's choice, which was made on the model state before the eviction.
    fn check_eviction(
        &mut self,
        order: Vec<usize>,
        run: impl FnOnce(&mut KvTree<usize>, &mut dyn FnMut(NodeId, usize)) -> Evicted,
    ) {
        // Everything the tree will remove must be unreferenced, unpinned and childless once
        // the nodes evicted before it are gone.
        let snapshot: Vec<(NodeId, Option<NodeId>, u32, u32)> = self
            .tree
            .nodes()
            .map(|id| {
                (
                    id,
                    self.tree.parent(id),
                    self.tree.refcount(id),
                    self.tree.pins(id),
                )
            })
            .collect();
        let mut removed = Vec::new();
        let ev = run(&mut self.tree, &mut |id, payload| {
            removed.push((id, payload))
        });
        let mut gone = std::collections::HashSet::new();
        for &(id, _) in &removed {
            let &(_, parent, refs, pins) = snapshot
                .iter()
                .find(|s| s.0 == id)
                .expect("evicted a resident node");
            assert!(parent.is_some(), "root evicted");
            assert_eq!((refs, pins), (0, 0), "evicted a held node");
            let kids_left = snapshot
                .iter()
                .filter(|s| s.1 == Some(id) && !gone.contains(&s.0))
                .count();
            assert_eq!(kids_left, 0, "evicted a node with children");
            gone.insert(id);
        }
        let expected: Vec<(NodeId, usize)> =
            order.iter().map(|&i| (self.model.nodes[i].id, i)).collect();
        assert_eq!(removed, expected, "LRU order");
        let tokens: u64 = order
            .iter()
            .map(|&i| self.model.nodes[i].tokens.len() as u64)
            .sum();
        assert_eq!(
            ev,
            Evicted {
                nodes: order.len(),
                tokens,
                bytes: tokens * self.model.bpt
            }
        );
    }

    /// The tree agrees with the model, node by node and in its stats.
    fn check(&self) {
        let m = &self.model;
        let t = &self.tree;
        let live = m.live();
        assert_eq!(t.stats(), m.stats());
        assert_eq!(
            t.nodes().count(),
            m.nodes.iter().filter(|n| n.resident).count()
        );
        assert_eq!(
            t.evictable_nodes(),
            (0..m.nodes.len()).filter(|&i| m.evictable(i)).count()
        );
        for (i, n) in m.nodes.iter().enumerate() {
            assert_eq!(t.contains(n.id), n.resident, "{}", n.id);
            if !n.resident {
                assert_eq!(t.refcount(n.id), 0);
                assert_eq!(t.payload(n.id), Err(KvTreeError::UnknownNode(n.id)));
                continue;
            }
            assert_eq!((t.refcount(n.id), t.pins(n.id)), (n.refs, n.pins));
            assert_eq!(t.tokens(n.id).unwrap(), &n.tokens[..]);
            assert_eq!(t.parent(n.id), n.parent.map(|p| m.nodes[p].id));
            let path = m.path_tokens(i);
            assert_eq!(t.path_len(n.id).unwrap(), path.len() as u64);
            assert_eq!(t.path_tokens(n.id).unwrap(), path);
            assert_eq!(t.depth(n.id).unwrap(), m.path(i).len() - 1);
            assert_eq!(t.is_live(n.id), live[i]);
            assert_eq!(t.is_evictable(n.id), m.evictable(i));
            let kids: Vec<NodeId> = m.children(i).map(|c| m.nodes[c].id).collect();
            assert_eq!(
                t.children(n.id).collect::<Vec<_>>(),
                kids,
                "children in creation order"
            );
            if i > 0 {
                assert_eq!(t.payload(n.id), Ok(&i));
            }
        }
    }
}

/// What a search does to the tree: take references (insert, retain) and sometimes drop one.
#[derive(Debug, Clone)]
enum SearchOp {
    Insert(Index, Vec<u32>),
    Retain(Index),
    ReleaseOwn(Index),
    PinOwn(Index),
}

fn search_op() -> impl Strategy<Value = SearchOp> {
    prop_oneof![
        4 => (any::<Index>(), span()).prop_map(|(ix, t)| SearchOp::Insert(ix, t)),
        2 => any::<Index>().prop_map(SearchOp::Retain),
        1 => any::<Index>().prop_map(SearchOp::ReleaseOwn),
        1 => any::<Index>().prop_map(SearchOp::PinOwn),
    ]
}

fn live_part(s: KvStats) -> (u64, u64, usize, u64, f64) {
    (
        s.live_tokens,
        s.live_bytes,
        s.live_nodes,
        s.logical_tokens,
        s.sharing_ratio,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_match_the_model(bpt in 0u64..5, ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::new(bpt);
        h.check();
        for op in &ops {
            h.apply(op);
        }
    }

    #[test]
    fn releasing_everything_a_search_held_restores_the_tree(
        bpt in 0u64..5,
        setup in prop::collection::vec(op(), 0..50),
        settle in any::<bool>(),
        search in prop::collection::vec(search_op(), 1..40),
    ) {
        let mut h = Harness::new(bpt);
        for op in &setup {
            h.apply(op);
        }
        let mut t = h.tree;
        if settle {
            // Drop every cached node, so that only live nodes remain.
            loop {
                let cached: Vec<NodeId> = t.nodes().filter(|&id| t.is_evictable(id)).collect();
                if cached.is_empty() {
                    break;
                }
                for id in cached {
                    t.evict_node(id).unwrap();
                }
            }
        }
        let before = t.stats();
        let old: Vec<(NodeId, u32, u32, bool)> =
            t.nodes().map(|id| (id, t.refcount(id), t.pins(id), t.is_live(id))).collect();

        let mut refs = Vec::new();
        let mut pins = Vec::new();
        for op in &search {
            let nodes: Vec<NodeId> = t.nodes().collect();
            match op {
                SearchOp::Insert(ix, tokens) => {
                    let parent = nodes[ix.index(nodes.len())];
                    refs.push(t.insert(parent, tokens, || usize::MAX).unwrap());
                }
                SearchOp::Retain(ix) => {
                    let id = nodes[ix.index(nodes.len())];
                    t.retain(id).unwrap();
                    refs.push(id);
                }
                SearchOp::ReleaseOwn(ix) if !refs.is_empty() => {
                    let id = refs.swap_remove(ix.index(refs.len()));
                    t.release(id).unwrap();
                }
                SearchOp::PinOwn(ix) if !refs.is_empty() => {
                    let id = refs[ix.index(refs.len())];
                    t.pin(id).unwrap();
                    pins.push(id);
                }
                _ => {}
            }
        }
        prop_assert!(t.stats().peak_live_tokens >= before.peak_live_tokens);
        for id in refs {
            t.release(id).unwrap();
        }
        for id in pins {
            t.unpin(id).unwrap();
        }
        prop_assert_eq!(live_part(t.stats()), live_part(before));
        for &(id, refs, pins, live) in &old {
            prop_assert!(t.contains(id));
            prop_assert_eq!((t.refcount(id), t.pins(id), t.is_live(id)), (refs, pins, live));
        }

        t.evict_to_tokens(before.resident_tokens);
        let after = t.stats();
        prop_assert_eq!(live_part(after), live_part(before));
        prop_assert!(after.resident_tokens <= before.resident_tokens);
        for &(id, _, _, live) in &old {
            prop_assert!(!live || t.contains(id), "a live node was evicted");
        }
        if settle {
            // Only the search's own nodes were evictable: all of them went, except empty spans
            // the token budget does not see.
            for &(id, ..) in &old {
                prop_assert!(t.contains(id));
            }
            prop_assert_eq!(after.resident_tokens, before.resident_tokens);
            for id in t.nodes().filter(|id| old.iter().all(|o| o.0 != *id)) {
                prop_assert!(t.tokens(id).unwrap().is_empty());
                prop_assert!(!t.is_live(id));
            }
        }
    }
}
