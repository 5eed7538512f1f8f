//! Fitting beam, DVTS and best-of-N allocations under a KV limit.
//!
//! ETS and REBASE fit the limit through the retention problem (an exact knapsack over the kept
//! paths). The other methods keep their own rule for *whom* to expand and only learn *how much*
//! fits: candidates are taken in the method's order, each with the children the method wants for
//! it, while the union of the kept candidates' root paths plus the room of every planned child
//! stays within the limit. A candidate whose path fits with fewer children gets fewer; one whose
//! path does not fit at all is pruned. With a limit that never binds, every candidate gets what
//! the method wants, so the search is the method's own.

use std::collections::HashSet;

use super::driver::Node;

/// The KV a depth's plan may reach: `limit` tokens for the kept paths' union plus `room`
/// tokens for every planned child (the most one child may generate).
#[derive(Debug, Clone, Copy)]
pub(super) struct KvRoom {
    pub(super) limit: u64,
    pub(super) room: u64,
}

impl KvRoom {
    /// The union capacity left for the kept paths when `children` are planned.
    pub(super) fn capacity(self, children: usize) -> u64 {
        self.limit.saturating_sub(children as u64 * self.room)
    }
}

/// The union of root paths kept so far, grown one candidate at a time.
struct PathUnion<'n> {
    nodes: &'n [Node],
    seen: HashSet<usize>,
    tokens: u64,
}

impl<'n> PathUnion<'n> {
    fn new(nodes: &'n [Node]) -> Self {
        Self {
            nodes,
            seen: HashSet::new(),
            tokens: 0,
        }
    }

    /// Tokens `node`'s root path adds to the union (the nodes not in it yet).
    fn added_by(&self, node: usize) -> u64 {
        let mut added = 0;
        let mut at = Some(node);
        while let Some(i) = at.filter(|i| !self.seen.contains(i)) {
            let record = &self.nodes[i].record;
            added += record.tokens as u64;
            at = record.parent.map(|p| p as usize);
        }
        added
    }

    fn add(&mut self, node: usize) {
        let mut at = Some(node);
        while let Some(i) = at {
            if !self.seen.insert(i) {
                break;
            }
            let record = &self.nodes[i].record;
            self.tokens += record.tokens as u64;
            at = record.parent.map(|p| p as usize);
        }
    }
}

/// What [`fit`] planned.
pub(super) struct Fitted {
    /// Children per candidate, in the input order.
    pub(super) children: Vec<usize>,
    /// Whether some candidate got fewer children than it wanted because of the limit.
    pub(super) narrowed: bool,
}

/// What a method wants for the open candidates of one depth.
pub(super) struct Wish<'w> {
    /// Indices into the candidates, in the order the method prefers them.
    pub(super) order: &'w [usize],
    /// Children each candidate wants (input order); 0 never keeps it.
    pub(super) want: &'w [usize],
    /// The most children in all.
    pub(super) width: usize,
    /// The most candidates kept.
    pub(super) max_kept: usize,
    /// Whether children the limit still has room for after the pass (and `width` allows) go
    /// one at a time, in `order`, to the kept candidates: beam search splits its width among
    /// the candidates it keeps, so one it could not keep leaves its share to them.
    pub(super) share_left: bool,
}

/// Children per candidate of `open` (node indices) under `kv`, as `wish` asks, in the input
/// order.
pub(super) fn fit(nodes: &[Node], open: &[usize], wish: &Wish<'_>, kv: KvRoom) -> Fitted {
    let Wish {
        order,
        want,
        width,
        max_kept,
        share_left,
    } = *wish;
    let mut children = vec![0; open.len()];
    let mut union = PathUnion::new(nodes);
    let mut planned = 0usize;
    let mut kept = Vec::new();
    let mut narrowed = false;
    for &k in order {
        if want[k] == 0 {
            continue;
        }
        if kept.len() == max_kept || planned == width {
            break;
        }
        let with = union.tokens + union.added_by(open[k]);
        let fits = (kv.limit.saturating_sub(with) / kv.room.max(1)).saturating_sub(planned as u64);
        let n = (want[k] as u64).min((width - planned) as u64).min(fits) as usize;
        narrowed |= n < want[k].min(width - planned);
        if n == 0 {
            continue;
        }
        union.add(open[k]);
        children[k] = n;
        planned += n;
        kept.push(k);
    }
    if share_left && !kept.is_empty() {
        let fits = kv.limit.saturating_sub(union.tokens) / kv.room.max(1);
        let mut extra = (fits.min(width as u64) as usize).saturating_sub(planned);
        for &k in kept.iter().cycle() {
            if extra == 0 {
                break;
            }
            children[k] += 1;
            extra -= 1;
        }
    }
    Fitted { children, narrowed }
}
