//! The ETS retention problem: which frontier candidates to keep at a depth.
//!
//! Maximise `Σ O_i x_i − c·(Σ y_j + Σ x_i) + (λ_s/K)·Σ z_k` over binary `x` (keep candidate i),
//! `y` (ancestor j is live) and `z` (cluster k is covered), subject to `y_j ≥ x_i` for every
//! candidate i below j, `y_j ≤ Σ x_i` below j, `z_k ≤ Σ x_i` over cluster k and `Σ x ≥ 1`,
//! where `c = λ_b/(M+N)` (M distinct ancestors with the root, N candidates) and `λ_b = 0` stands
//! for a reward of [`KEEP_ALL_REWARD`] per node (keep everything). Given `x`, the best `y` and `z`
//! follow (a node is live iff a kept candidate is below it, a cluster covered iff a kept
//! candidate is in it), so [`RetentionProblem::objective`] is a function of the kept set alone.
//!
//! Ties (objectives within [`TIE_TOLERANCE`]) break deterministically: candidates are ranked by
//! score (higher first), then node id (lower first), and the preferred set is the one that keeps
//! the first candidate in that ranking where the two sets differ.

use std::cmp::Ordering;

use crate::error::RetentionError;

/// Per-node reward that stands in for `λ_b = 0`: every node kept is worth a little.
pub const KEEP_ALL_REWARD: f64 = 1e-4;

/// Two objectives closer than this are a tie.
pub const TIE_TOLERANCE: f64 = 1e-9;

/// One retention problem: the candidates of a depth and the tree above them.
///
/// Ancestors are numbered `0..M` in topological order: `ancestor_parent[0]` is `None` (the root)
/// and every other ancestor's parent has a smaller index.
///
/// The frontier of depth 0 is the root alone: one candidate without a parent (`None`) and no
/// ancestors. It is a valid problem whose only feasible, hence optimal, set keeps the root, so
/// callers build every depth's problem the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionProblem {
    /// REBASE target share `O_i` of each candidate (they sum to 1 over all candidates).
    pub targets: Vec<f64>,
    /// Direct parent of each candidate, an index into the ancestors; `None` only for the root
    /// as the lone candidate of depth 0 (then there are no ancestors).
    pub candidate_parent: Vec<Option<usize>>,
    /// Parent of each ancestor; the root (index 0) has none.
    pub ancestor_parent: Vec<Option<usize>>,
    /// Cluster label of each candidate, in `0..num_clusters`.
    pub clusters: Vec<usize>,
    /// Number of clusters K.
    pub num_clusters: usize,
    /// KV-cost weight λ_b.
    pub lambda_b: f64,
    /// Semantic-coverage weight λ_s.
    pub lambda_s: f64,
    /// PRM score of each candidate (tie-breaks only).
    pub scores: Vec<f64>,
    /// Node id of each candidate (tie-breaks only).
    pub node_ids: Vec<u64>,
}

/// A solution of a [`RetentionProblem`].
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// `keep[i]`: candidate i is kept.
    pub keep: Vec<bool>,
    /// The objective of `keep`.
    pub objective: f64,
    /// False when a time cap stopped the solver before it proved optimality.
    pub proven_optimal: bool,
    /// Branch-and-bound nodes explored (0 for solvers without one).
    pub nodes_explored: usize,
    /// LP relaxations solved.
    pub lp_solves: usize,
}

impl RetentionProblem {
    /// Number of candidates N.
    pub fn num_candidates(&self) -> usize {
        self.targets.len()
    }

    /// Number of distinct ancestors M, the root included.
    pub fn num_ancestors(&self) -> usize {
        self.ancestor_parent.len()
    }

    /// The cost of keeping one node: `λ_b/(M+N)`, or `−KEEP_ALL_REWARD` when `λ_b = 0`.
    pub fn node_cost(&self) -> f64 {
        if self.lambda_b == 0.0 {
            -KEEP_ALL_REWARD
        } else {
            self.lambda_b / (self.num_ancestors() + self.num_candidates()) as f64
        }
    }

    /// The value of covering one cluster: `λ_s/K`.
    pub fn cluster_value(&self) -> f64 {
        if self.num_clusters == 0 {
            0.0
        } else {
            self.lambda_s / self.num_clusters as f64
        }
    }

    /// Checks lengths, indices, topological order and numbers.
    pub fn validate(&self) -> Result<(), RetentionError> {
        let n = self.num_candidates();
        if n == 0 {
            return Err(RetentionError::Empty);
        }
        for (field, got) in [
            ("candidate_parent", self.candidate_parent.len()),
            ("clusters", self.clusters.len()),
            ("scores", self.scores.len()),
            ("node_ids", self.node_ids.len()),
        ] {
            if got != n {
                return Err(RetentionError::Length {
                    field,
                    expected: n,
                    got,
                });
            }
        }
        let m = self.num_ancestors();
        if m == 0 {
            // Depth 0: the root is the only candidate and has no parent.
            if n != 1 || self.candidate_parent[0].is_some() {
                return Err(RetentionError::RootFrontier { candidates: n });
            }
        } else if let Some(p) = self.ancestor_parent[0] {
            return Err(RetentionError::Index {
                field: "ancestor_parent",
                index: p,
                bound: 0,
            });
        }
        for (j, parent) in self.ancestor_parent.iter().enumerate().skip(1) {
            match *parent {
                Some(p) if p < j => {}
                Some(p) => {
                    return Err(RetentionError::Index {
                        field: "ancestor_parent",
                        index: p,
                        bound: j,
                    })
                }
                None => {
                    return Err(RetentionError::Index {
                        field: "ancestor_parent",
                        index: usize::MAX,
                        bound: j,
                    })
                }
            }
        }
        if m > 0 {
            if let Some(&p) = self
                .candidate_parent
                .iter()
                .find(|p| p.is_none_or(|p| p >= m))
            {
                return Err(RetentionError::Index {
                    field: "candidate_parent",
                    index: p.unwrap_or(usize::MAX),
                    bound: m,
                });
            }
        }
        if let Some(&k) = self.clusters.iter().find(|&&k| k >= self.num_clusters) {
            return Err(RetentionError::Index {
                field: "clusters",
                index: k,
                bound: self.num_clusters,
            });
        }
        for (field, v) in self
            .targets
            .iter()
            .map(|&v| ("targets", v))
            .chain([("lambda_b", self.lambda_b), ("lambda_s", self.lambda_s)])
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(RetentionError::Value { field, value: v });
            }
        }
        if let Some(&v) = self.scores.iter().find(|v| !v.is_finite()) {
            return Err(RetentionError::Value {
                field: "scores",
                value: v,
            });
        }
        Ok(())
    }

    /// The objective of keeping exactly the candidates marked in `keep`, with the best `y` and
    /// `z` for that set. An empty set is infeasible and scores `-inf`.
    pub fn objective(&self, keep: &[bool]) -> f64 {
        debug_assert_eq!(keep.len(), self.num_candidates());
        let mut live = vec![false; self.num_ancestors()];
        let mut covered = vec![false; self.num_clusters];
        let mut value = 0.0;
        let mut nodes = 0usize;
        let mut kept_any = false;
        for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            kept_any = true;
            value += self.targets[i];
            nodes += 1;
            covered[self.clusters[i]] = true;
            let mut a = self.candidate_parent[i];
            while let Some(j) = a {
                if live[j] {
                    break;
                }
                live[j] = true;
                nodes += 1;
                a = self.ancestor_parent[j];
            }
        }
        if !kept_any {
            return f64::NEG_INFINITY;
        }
        let clusters_covered = covered.iter().filter(|&&c| c).count();
        value - self.node_cost() * nodes as f64 + self.cluster_value() * clusters_covered as f64
    }

    /// Candidates ranked for tie-breaks: score descending, then node id ascending.
    pub fn tie_ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.num_candidates()).collect();
        order.sort_by(|&a, &b| {
            self.scores[b]
                .total_cmp(&self.scores[a])
                .then(self.node_ids[a].cmp(&self.node_ids[b]))
        });
        order
    }

    /// Compares two solutions: `Greater` when `(a, a_objective)` is preferred to `b`'s.
    pub fn compare(
        &self,
        ranking: &[usize],
        a: &[bool],
        a_objective: f64,
        b: &[bool],
        b_objective: f64,
    ) -> Ordering {
        if (a_objective - b_objective).abs() > TIE_TOLERANCE {
            return a_objective.total_cmp(&b_objective);
        }
        for &i in ranking {
            match (a[i], b[i]) {
                (true, false) => return Ordering::Greater,
                (false, true) => return Ordering::Less,
                _ => {}
            }
        }
        Ordering::Equal
    }
}

/// The worked example of the ETS issue, a fixture for tests and docs: tree r→A→{a1,a2,a3},
/// r→B→{b1,b2}; scores [0.9, 0.85, 0.4, 0.6, 0.55]; clusters [0,0,1,2,2]; node ids 3..=7;
/// targets from REBASE (T = 0.2) at `width`.
pub fn worked_example(width: usize, lambda_b: f64, lambda_s: f64) -> RetentionProblem {
    let scores = vec![0.9, 0.85, 0.4, 0.6, 0.55];
    let children = crate::select::rebase::allocate(&scores, width, 0.2);
    let total = children.iter().sum::<usize>().max(1) as f64;
    RetentionProblem {
        targets: children.iter().map(|&n| n as f64 / total).collect(),
        candidate_parent: [1, 1, 1, 2, 2].map(Some).to_vec(),
        ancestor_parent: vec![None, Some(0), Some(0)],
        clusters: vec![0, 0, 1, 2, 2],
        num_clusters: 3,
        lambda_b,
        lambda_s,
        scores,
        node_ids: vec![3, 4, 5, 6, 7],
    }
}

/// Exhaustive search over every non-empty kept set: exact, for at most
/// [`BruteForceRetention::MAX_CANDIDATES`] candidates. The reference the real solver is tested
/// against.
#[derive(Debug, Clone, Copy, Default)]
pub struct BruteForceRetention;

impl BruteForceRetention {
    /// Largest problem it accepts.
    pub const MAX_CANDIDATES: usize = 20;
}

impl crate::backend::RetentionSolver for BruteForceRetention {
    fn solve(&self, problem: &RetentionProblem) -> Retention {
        let n = problem.num_candidates();
        assert!(
            (1..=Self::MAX_CANDIDATES).contains(&n),
            "brute force handles 1..={} candidates, got {n}",
            Self::MAX_CANDIDATES
        );
        let ranking = problem.tie_ranking();
        let mut best = vec![true; n];
        let mut best_objective = problem.objective(&best);
        let mut keep = vec![false; n];
        for mask in 1u32..(1u32 << n) {
            for (i, k) in keep.iter_mut().enumerate() {
                *k = mask & (1 << i) != 0;
            }
            let objective = problem.objective(&keep);
            if problem.compare(&ranking, &keep, objective, &best, best_objective)
                == Ordering::Greater
            {
                best.copy_from_slice(&keep);
                best_objective = objective;
            }
        }
        Retention {
            keep: best,
            objective: best_objective,
            proven_optimal: true,
            nodes_explored: 1 << n,
            lp_solves: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RetentionSolver;

    #[test]
    fn objective_counts_nodes_and_clusters() {
        let p = worked_example(16, 1.0, 1.5);
        assert_eq!(p.targets, vec![0.5, 0.3125, 0.0, 0.125, 0.0625]);
        // Keep a1, a2, a3, b1: r, A, B and four candidates are live, all three clusters covered.
        let o = p.objective(&[true, true, true, true, false]);
        assert!((o - (0.9375 - 7.0 / 8.0 + 1.5)).abs() < 1e-12, "{o}");
        assert_eq!(p.objective(&[false; 5]), f64::NEG_INFINITY);
    }

    #[test]
    fn brute_force_keeps_the_worked_sets() {
        let keep = |lb, ls| BruteForceRetention.solve(&worked_example(16, lb, ls)).keep;
        assert_eq!(keep(0.0, 0.0), vec![true; 5]);
        assert_eq!(keep(1.0, 0.0), vec![true, true, false, false, false]);
        assert_eq!(keep(1.0, 1.5), vec![true, true, true, true, false]);
    }

    /// The depth-0 frontier: the root alone, no ancestors.
    fn root_only(lambda_b: f64, lambda_s: f64) -> RetentionProblem {
        RetentionProblem {
            targets: vec![1.0],
            candidate_parent: vec![None],
            ancestor_parent: vec![],
            clusters: vec![0],
            num_clusters: 1,
            lambda_b,
            lambda_s,
            scores: vec![0.5],
            node_ids: vec![0],
        }
    }

    #[test]
    fn the_root_alone_is_a_valid_problem_kept_whole() {
        for (lambda_b, lambda_s) in [(0.0, 0.0), (1.0, 0.0), (1.0, 1.5), (8.0, 0.0)] {
            let p = root_only(lambda_b, lambda_s);
            p.validate().unwrap();
            let r = BruteForceRetention.solve(&p);
            assert_eq!(r.keep, vec![true]);
            // One node live (the root itself), one cluster covered.
            let expected = 1.0 - p.node_cost() + lambda_s;
            assert!((r.objective - expected).abs() < 1e-12, "{}", r.objective);
        }
    }

    #[test]
    fn parentless_candidates_are_only_the_lone_root() {
        let mut p = root_only(1.0, 1.5);
        p.candidate_parent = vec![Some(0)];
        assert_eq!(
            p.validate(),
            Err(RetentionError::RootFrontier { candidates: 1 })
        );
        let mut p = root_only(1.0, 1.5);
        p.targets = vec![0.5, 0.5];
        p.candidate_parent = vec![None, None];
        p.clusters = vec![0, 0];
        p.scores = vec![0.5, 0.4];
        p.node_ids = vec![0, 1];
        assert_eq!(
            p.validate(),
            Err(RetentionError::RootFrontier { candidates: 2 })
        );
        // Below a root, a candidate without a parent is a bad index.
        let mut p = worked_example(16, 1.0, 0.0);
        p.candidate_parent[3] = None;
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Index {
                field: "candidate_parent",
                ..
            })
        ));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut p = worked_example(16, 1.0, 0.0);
        p.validate().unwrap();
        p.clusters[2] = 9;
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Index {
                field: "clusters",
                index: 9,
                ..
            })
        ));
        let mut p = worked_example(16, 1.0, 0.0);
        p.targets.pop();
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Length {
                field: "candidate_parent",
                ..
            })
        ));
        p.targets.push(f64::NAN);
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Value {
                field: "targets",
                ..
            })
        ));
        let mut p = worked_example(16, 1.0, 0.0);
        p.ancestor_parent[1] = Some(2);
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Index {
                field: "ancestor_parent",
                ..
            })
        ));
    }
}
