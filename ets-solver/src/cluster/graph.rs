//! The threshold graph: which embeddings are joined by a chain of pairs within the threshold.
//!
//! Its connected components bound what average linkage can ever merge (see the module docs of
//! [`super`]). The edges are found exactly: every pair of non-zero vectors goes through the f32
//! prefilter ([`prefilter_cutoff`] proves it never rejects a pair within the threshold), and a
//! pair that passes, and whose ends are not yet connected, is decided by the exact distance in
//! units. Zero vectors are handled by rule, without arithmetic.
//!
//! [`prefilter_cutoff`]: super::distance::prefilter_cutoff

use super::distance::{dot32, to_units, Prepared};

/// Rows of the prefilter compared against one row at a time: they share each load of that row.
const ROW_BLOCK: usize = 4;

/// Disjoint sets over `0..n` whose root is always the smallest member.
pub(crate) struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    /// `n` singleton sets.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    /// The smallest member of `x`'s set.
    pub(crate) fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            let grandparent = self.parent[self.parent[x]];
            self.parent[x] = grandparent;
            x = grandparent;
        }
        x
    }

    /// Joins the sets of `a` and `b`.
    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[high] = low;
        }
    }
}

/// Connected components of the graph whose edges are the pairs `(i, j)` with
/// `to_units(distance(i, j)) ≤ threshold_units`. Each component lists its members in increasing
/// order; components come in order of their smallest member; singletons are included.
///
/// `cutoff` is [`super::distance::prefilter_cutoff`] for this dimension and threshold.
pub(crate) fn threshold_components(
    prepared: &Prepared<'_>,
    threshold_units: u64,
    cutoff: f64,
) -> Vec<Vec<usize>> {
    let n = prepared.len();
    let mut sets = UnionFind::new(n);
    join_zero_vectors(prepared, threshold_units, &mut sets);

    let rows = prepared.unit_rows();
    let dim = rows.len() / n.max(1);
    let nonzero: Vec<usize> = (0..n).filter(|&i| !prepared.is_zero(i)).collect();
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];
    // Decides one candidate pair exactly; pairs already connected need no decision.
    let consider = |sets: &mut UnionFind, i: usize, j: usize| {
        if sets.find(i) != sets.find(j) && prepared.units(i, j) <= threshold_units {
            sets.union(i, j);
        }
    };

    // Pairs (nonzero[a], nonzero[b]) with a < b, in blocks of ROW_BLOCK values of a.
    let mut start = 0;
    while start < nonzero.len() {
        let block = &nonzero[start..(start + ROW_BLOCK).min(nonzero.len())];
        // Pairs inside the block.
        for (x, &i) in block.iter().enumerate() {
            for &j in &block[x + 1..] {
                if f64::from(dot32(row(i), row(j))) >= cutoff {
                    consider(&mut sets, i, j);
                }
            }
        }
        // The block against every later row.
        let later = &nonzero[start + block.len()..];
        if let [i0, i1, i2, i3] = *block {
            for &j in later {
                let dots = dot32_x4([row(i0), row(i1), row(i2), row(i3)], row(j));
                for (&i, dot) in block.iter().zip(dots) {
                    if f64::from(dot) >= cutoff {
                        consider(&mut sets, i, j);
                    }
                }
            }
        } else {
            for &i in block {
                for &j in later {
                    if f64::from(dot32(row(i), row(j))) >= cutoff {
                        consider(&mut sets, i, j);
                    }
                }
            }
        }
        start += block.len();
    }

    let mut by_root: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        let root = sets.find(i);
        by_root[root].push(i);
    }
    by_root.retain(|members| !members.is_empty());
    by_root
}

/// Zero vectors are at distance 0 from each other and 1 from everything else: they form one
/// component, which takes in every other vector when a distance of 1 is within the threshold.
fn join_zero_vectors(prepared: &Prepared<'_>, threshold_units: u64, sets: &mut UnionFind) {
    let n = prepared.len();
    let Some(first_zero) = (0..n).find(|&i| prepared.is_zero(i)) else {
        return;
    };
    let joins_all = to_units(1.0) <= threshold_units;
    for i in first_zero + 1..n {
        if joins_all || prepared.is_zero(i) {
            sets.union(first_zero, i);
        }
    }
    if joins_all {
        for i in 0..first_zero {
            sets.union(first_zero, i);
        }
    }
}

/// Four f32 dot products against one shared row, which is loaded once for all four. The sums
/// run in another order than [`dot32`]'s, which the prefilter's margin allows (it holds for any
/// summation order).
#[inline]
fn dot32_x4(rows: [&[f32]; 4], other: &[f32]) -> [f32; 4] {
    const LANES: usize = 16;
    let [r0, r1, r2, r3] = rows;
    let (mut a0, mut a1, mut a2, mut a3) =
        ([0.0f32; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
    let chunks = other
        .chunks_exact(LANES)
        .zip(r0.chunks_exact(LANES))
        .zip(r1.chunks_exact(LANES))
        .zip(r2.chunks_exact(LANES))
        .zip(r3.chunks_exact(LANES));
    for ((((y, x0), x1), x2), x3) in chunks {
        for k in 0..LANES {
            a0[k] += x0[k] * y[k];
            a1[k] += x1[k] * y[k];
            a2[k] += x2[k] * y[k];
            a3[k] += x3[k] * y[k];
        }
    }
    let full = other.len() / LANES * LANES;
    let tail = |row: &[f32]| -> f32 {
        row[full..]
            .iter()
            .zip(&other[full..])
            .map(|(x, y)| x * y)
            .sum()
    };
    [
        a0.iter().sum::<f32>() + tail(r0),
        a1.iter().sum::<f32>() + tail(r1),
        a2.iter().sum::<f32>() + tail(r2),
        a3.iter().sum::<f32>() + tail(r3),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_find_keeps_smallest_root() {
        let mut sets = UnionFind::new(6);
        sets.union(4, 5);
        sets.union(5, 2);
        sets.union(3, 1);
        assert_eq!(sets.find(4), 2);
        assert_eq!(sets.find(3), 1);
        sets.union(4, 3);
        assert_eq!(
            (0..6).map(|i| sets.find(i)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 1, 1]
        );
    }

    #[test]
    fn block_dots_match_single_dots() {
        let rows: Vec<Vec<f32>> = (0..5)
            .map(|r| {
                (0..37)
                    .map(|k| ((r * 37 + k) as f32 * 0.37).sin())
                    .collect()
            })
            .collect();
        let four = dot32_x4([&rows[0], &rows[1], &rows[2], &rows[3]], &rows[4]);
        for (r, dot) in four.iter().enumerate() {
            assert!((dot - dot32(&rows[r], &rows[4])).abs() < 1e-5);
        }
    }
}
