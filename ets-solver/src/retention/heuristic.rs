//! Local search that improves a kept set before and during branch-and-bound.
//!
//! Moves: add one candidate, drop one, or swap two members of a cluster; the best improving
//! move is applied until none improves by more than float noise. Each move's change of
//! objective is computed from live counts in O(depth): a node is live while some kept candidate
//! is below it, a cluster is covered while some member is kept. Under a capacity, a move that
//! would take the set's tokens over it is not made (the set must start within it).

use super::tree::Instance;

/// Improvements smaller than this are float noise.
const IMPROVEMENT: f64 = 1e-12;

/// Incremental evaluator of kept sets.
#[derive(Debug, Clone)]
pub(crate) struct LocalSearch {
    /// Kept candidates below each ancestor.
    below: Vec<usize>,
    /// Kept members of each cluster.
    covered: Vec<usize>,
    /// The current set.
    keep: Vec<bool>,
    kept: usize,
    /// Tokens of the current set's paths (counted only under a capacity).
    tokens: u64,
}

impl LocalSearch {
    /// Starts from `keep`, which must keep at least one candidate.
    pub(crate) fn new(inst: &Instance<'_>, keep: &[bool]) -> Self {
        let mut search = LocalSearch {
            below: vec![0; inst.num_ancestors()],
            covered: vec![0; inst.num_clusters()],
            keep: vec![false; inst.num_candidates()],
            kept: 0,
            tokens: 0,
        };
        for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            search.apply_add(inst, i);
        }
        search
    }

    /// The current set.
    pub(crate) fn keep(&self) -> &[bool] {
        &self.keep
    }

    /// The best single candidate whose path fits, improved: a first set under a capacity.
    pub(crate) fn best_single(inst: &Instance<'_>) -> Self {
        let n = inst.num_candidates();
        let mut search = LocalSearch::new(inst, &vec![false; n]);
        let mut best: Option<(usize, f64)> = None;
        for &i in &inst.ranking {
            let delta = search.add_delta(inst, i);
            if search.fits_add(inst, i) && best.is_none_or(|(_, b)| delta > b + IMPROVEMENT) {
                best = Some((i, delta));
            }
        }
        if let Some((i, _)) = best {
            search.apply_add(inst, i);
        }
        search
    }

    /// Whether adding candidate `i` keeps the set within the capacity (always true without).
    fn fits_add(&self, inst: &Instance<'_>, i: usize) -> bool {
        let Some(capacity) = inst.capacity else {
            return true;
        };
        let mut tokens = self.tokens + inst.candidate_tokens(i);
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            if self.below[j] > 0 {
                break;
            }
            tokens += inst.ancestor_tokens(j);
            a = inst.ancestor_parent(j);
        }
        tokens <= capacity
    }

    fn apply_add(&mut self, inst: &Instance<'_>, i: usize) {
        if inst.capacity.is_some() {
            self.tokens += inst.candidate_tokens(i);
            let mut a = Some(inst.candidate_parent(i));
            while let Some(j) = a {
                if self.below[j] > 0 {
                    break;
                }
                self.tokens += inst.ancestor_tokens(j);
                a = inst.ancestor_parent(j);
            }
        }
        self.keep[i] = true;
        self.kept += 1;
        self.covered[inst.cluster(i)] += 1;
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            self.below[j] += 1;
            a = inst.ancestor_parent(j);
        }
    }

    fn apply_drop(&mut self, inst: &Instance<'_>, i: usize) {
        self.keep[i] = false;
        self.kept -= 1;
        self.covered[inst.cluster(i)] -= 1;
        let counts_tokens = inst.capacity.is_some();
        if counts_tokens {
            self.tokens -= inst.candidate_tokens(i);
        }
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            self.below[j] -= 1;
            if counts_tokens && self.below[j] == 0 {
                self.tokens -= inst.ancestor_tokens(j);
            }
            a = inst.ancestor_parent(j);
        }
    }

    /// Change of objective when candidate `i` (not kept) is added.
    fn add_delta(&self, inst: &Instance<'_>, i: usize) -> f64 {
        let mut newly_live = 0u64;
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            if self.below[j] > 0 {
                break;
            }
            newly_live += inst.ancestor_weight(j);
            a = inst.ancestor_parent(j);
        }
        let cover = if self.covered[inst.cluster(i)] == 0 {
            inst.cluster_value
        } else {
            0.0
        };
        inst.base_weight(i) - inst.unit_cost * newly_live as f64 + cover
    }

    /// Change of objective when candidate `i` (kept, not the only one) is dropped.
    fn drop_delta(&self, inst: &Instance<'_>, i: usize) -> f64 {
        let mut dying = 0u64;
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            if self.below[j] > 1 {
                break;
            }
            dying += inst.ancestor_weight(j);
            a = inst.ancestor_parent(j);
        }
        let uncover = if self.covered[inst.cluster(i)] == 1 {
            inst.cluster_value
        } else {
            0.0
        };
        -inst.base_weight(i) + inst.unit_cost * dying as f64 - uncover
    }

    /// Applies improving moves until none is left (at most `max_moves`); returns the number of
    /// moves looked for (each a scan of every candidate).
    pub(crate) fn improve(&mut self, inst: &Instance<'_>, max_moves: usize) -> usize {
        for scans in 1..=max_moves {
            let mut best = IMPROVEMENT;
            let mut best_move = None;
            for i in 0..inst.num_candidates() {
                let delta = if !self.keep[i] {
                    if !self.fits_add(inst, i) {
                        continue;
                    }
                    self.add_delta(inst, i)
                } else if self.kept > 1 {
                    self.drop_delta(inst, i)
                } else {
                    continue;
                };
                if delta > best {
                    best = delta;
                    best_move = Some((i, None));
                }
            }
            if best_move.is_none() {
                best_move = self.best_swap(inst);
            }
            match best_move {
                Some((i, None)) if self.keep[i] => self.apply_drop(inst, i),
                Some((i, None)) => self.apply_add(inst, i),
                Some((out, Some(into))) => {
                    self.apply_drop(inst, out);
                    self.apply_add(inst, into);
                }
                None => return scans,
            }
        }
        max_moves
    }

    /// The best improving swap of a kept cluster member for an unkept one of the same cluster.
    fn best_swap(&mut self, inst: &Instance<'_>) -> Option<(usize, Option<usize>)> {
        let mut best = IMPROVEMENT;
        let mut best_move = None;
        for k in 0..inst.num_clusters() {
            let members = inst.members(k);
            if members.len() < 2 || self.covered[k] == 0 || self.covered[k] == members.len() {
                continue;
            }
            for &out in members {
                if !self.keep[out] {
                    continue;
                }
                let drop = self.drop_delta(inst, out);
                self.apply_drop(inst, out);
                for &into in members {
                    if into != out && !self.keep[into] && self.fits_add(inst, into) {
                        let delta = drop + self.add_delta(inst, into);
                        if delta > best {
                            best = delta;
                            best_move = Some((out, Some(into)));
                        }
                    }
                }
                self.apply_add(inst, out);
            }
        }
        best_move
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_match_the_objective() {
        let p = ets_core::retention::worked_example(16, 1.0, 1.5);
        let inst = Instance::new(&p);
        let start = [true, false, false, false, true];
        let search = LocalSearch::new(&inst, &start);
        let base = p.objective(&start);
        for i in 0..5 {
            let mut next = start;
            next[i] = !next[i];
            let delta = if start[i] {
                search.drop_delta(&inst, i)
            } else {
                search.add_delta(&inst, i)
            };
            assert!(
                (p.objective(&next) - base - delta).abs() < 1e-12,
                "move {i}"
            );
        }
        let mut search = search;
        search.improve(&inst, 100);
        assert_eq!(search.keep(), &[true, true, true, true, false]);
    }
}
