//! Exact average linkage (UPGMA) inside one component of the threshold graph.
//!
//! Same rule as the naive reference, faster bookkeeping. A cluster lives in the slot of its
//! smallest member; the pair of slots `(a, b)`, `a < b`, has the link key
//! `(sum / count, a, b)`, where `sum` is the exact integer sum of the pairwise distances in units
//! over all `count = |A|·|B|` pairs, compared as rationals by cross-multiplication. Keys form a
//! total order that depends only on the two clusters, so the smallest key (the next merge) is the
//! same whatever bookkeeping finds it. Each step merges the pair with the smallest key while
//! `sum ≤ threshold·count`; merging `b` into `a` adds row `b` of the sum matrix to row `a`
//! (exact, so no Lance–Williams rounding), and each slot remembers its best partner, recomputed
//! only when that partner was merged away.
//!
//! Overflow: `sum ≤ count·2⁴¹` and `count ≤ m²/4`, so a cross product stays below `m⁴·2³⁷`, inside
//! u128 for components of up to 2²² members (whose sum matrix alone would need 2⁴⁸ bytes).

use super::distance::Prepared;

/// A candidate merge of slots `a < b`: the sum of the pairwise distances and the number of pairs.
#[derive(Clone, Copy)]
struct Link {
    sum: u128,
    count: u128,
    a: usize,
    b: usize,
}

impl Link {
    /// Whether `self` merges before `other`: smaller average, then smaller slots.
    fn precedes(&self, other: &Link) -> bool {
        let (lhs, rhs) = (self.sum * other.count, other.sum * self.count);
        lhs < rhs || (lhs == rhs && (self.a, self.b) < (other.a, other.b))
    }
}

/// The state of one component's clustering.
struct Linkage {
    /// Number of slots (component members).
    m: usize,
    /// `sums[i * m + j]`: sum of unit distances between the clusters in slots `i` and `j`.
    sums: Vec<u128>,
    /// Cluster size per slot.
    sizes: Vec<u64>,
    /// Whether a slot still holds a cluster.
    active: Vec<bool>,
    /// Per active slot, the slot whose link with it has the smallest key.
    partner: Vec<Option<usize>>,
    /// Per slot, the lower slot it was merged into (itself while active).
    merged_into: Vec<usize>,
}

impl Linkage {
    fn link(&self, i: usize, j: usize) -> Link {
        let (a, b) = if i < j { (i, j) } else { (j, i) };
        Link {
            sum: self.sums[a * self.m + b],
            count: u128::from(self.sizes[a]) * u128::from(self.sizes[b]),
            a,
            b,
        }
    }

    fn best_partner(&self, i: usize) -> Option<usize> {
        let mut best: Option<Link> = None;
        for j in (0..self.m).filter(|&j| j != i && self.active[j]) {
            let link = self.link(i, j);
            if best.is_none_or(|b| link.precedes(&b)) {
                best = Some(link);
            }
        }
        best.map(|b| if b.a == i { b.b } else { b.a })
    }

    fn next_merge(&self) -> Option<Link> {
        let mut best: Option<Link> = None;
        for i in (0..self.m).filter(|&i| self.active[i]) {
            if let Some(j) = self.partner[i] {
                let link = self.link(i, j);
                if best.is_none_or(|b| link.precedes(&b)) {
                    best = Some(link);
                }
            }
        }
        best
    }

    /// Merges slot `b` into slot `a` (`a < b`) and repairs the partners.
    fn merge(&mut self, a: usize, b: usize) {
        let m = self.m;
        for c in (0..m).filter(|&c| self.active[c] && c != a && c != b) {
            let sum = self.sums[a * m + c] + self.sums[b * m + c];
            self.sums[a * m + c] = sum;
            self.sums[c * m + a] = sum;
        }
        self.sizes[a] += self.sizes[b];
        self.active[b] = false;
        self.partner[b] = None;
        self.merged_into[b] = a;
        for c in (0..m).filter(|&c| self.active[c] && c != a) {
            self.partner[c] = match self.partner[c] {
                Some(p) if p != a && p != b => {
                    if self.link(c, a).precedes(&self.link(c, p)) {
                        Some(a)
                    } else {
                        Some(p)
                    }
                }
                _ => self.best_partner(c),
            };
        }
        self.partner[a] = self.best_partner(a);
    }
}

/// Average linkage over the embeddings `members` (increasing indices into `prepared`) with every
/// pairwise distance, merging while the smallest average is within `threshold_units`. Returns,
/// per member, the position in `members` of the smallest member of its final cluster.
pub(crate) fn link_component(
    prepared: &Prepared<'_>,
    members: &[usize],
    threshold_units: u64,
) -> Vec<usize> {
    let m = members.len();
    let mut sums = vec![0u128; m * m];
    for i in 0..m {
        for j in i + 1..m {
            let units = u128::from(prepared.units(members[i], members[j]));
            sums[i * m + j] = units;
            sums[j * m + i] = units;
        }
    }
    let mut state = Linkage {
        m,
        sums,
        sizes: vec![1; m],
        active: vec![true; m],
        partner: vec![None; m],
        merged_into: (0..m).collect(),
    };
    state.partner = (0..m).map(|i| state.best_partner(i)).collect();

    let threshold = u128::from(threshold_units);
    while let Some(link) = state.next_merge() {
        if link.sum > threshold * link.count {
            break;
        }
        state.merge(link.a, link.b);
    }

    // A slot is merged only into a lower slot, so one increasing pass resolves every chain.
    let mut representative = state.merged_into;
    for i in 0..m {
        representative[i] = representative[representative[i]];
    }
    representative
}
