//! Local search that improves a kept set before and during branch-and-bound.
//!
//! Moves: add one candidate, drop one, or swap two members of a cluster; the best improving
//! move is applied until none improves by more than float noise. Each move's change of
//! objective is computed from live counts in O(depth): a node is live while some kept candidate
//! is below it, a cluster is covered while some member is kept.

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
}

impl LocalSearch {
    /// Starts from `keep`, which must keep at least one candidate.
    pub(crate) fn new(inst: &Instance<'_>, keep: &[bool]) -> Self {
        let mut search = LocalSearch {
            below: vec![0; inst.num_ancestors()],
            covered: vec![0; inst.num_clusters()],
            keep: vec![false; inst.num_candidates()],
            kept: 0,
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

    fn apply_add(&mut self, inst: &Instance<'_>, i: usize) {
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
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            self.below[j] -= 1;
            a = inst.ancestor_parent(j);
        }
    }

    /// Change of objective when candidate `i` (not kept) is added.
    fn add_delta(&self, inst: &Instance<'_>, i: usize) -> f64 {
        let mut newly_live = 0usize;
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            if self.below[j] > 0 {
                break;
            }
            newly_live += 1;
            a = inst.ancestor_parent(j);
        }
        let cover = if self.covered[inst.cluster(i)] == 0 {
            inst.cluster_value
        } else {
            0.0
        };
        inst.base_weight(i) - inst.cost * newly_live as f64 + cover
    }

    /// Change of objective when candidate `i` (kept, not the only one) is dropped.
    fn drop_delta(&self, inst: &Instance<'_>, i: usize) -> f64 {
        let mut dying = 0usize;
        let mut a = Some(inst.candidate_parent(i));
        while let Some(j) = a {
            if self.below[j] > 1 {
                break;
            }
            dying += 1;
            a = inst.ancestor_parent(j);
        }
        let uncover = if self.covered[inst.cluster(i)] == 1 {
            inst.cluster_value
        } else {
            0.0
        };
        -inst.base_weight(i) + inst.cost * dying as f64 - uncover
    }

    /// Applies improving moves until none is left (at most `max_moves`); returns the number of
    /// moves looked for (each a scan of every candidate).
    pub(crate) fn improve(&mut self, inst: &Instance<'_>, max_moves: usize) -> usize {
        for scans in 1..=max_moves {
            let mut best = IMPROVEMENT;
            let mut best_move = None;
            for i in 0..inst.num_candidates() {
                let delta = if !self.keep[i] {
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
                    if into != out && !self.keep[into] {
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
