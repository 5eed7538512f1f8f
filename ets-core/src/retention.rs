//! The ETS retention problem: which frontier candidates to keep at a depth.
//!
//! Maximise `Σ O_i x_i − c·(Σ w_j y_j + Σ w_i x_i) + (λ_s/K)·Σ z_k` over binary `x` (keep
//! candidate i), `y` (ancestor j is live) and `z` (cluster k is covered), subject to `y_j ≥ x_i`
//! for every candidate i below j, `y_j ≤ Σ x_i` below j, `z_k ≤ Σ x_i` over cluster k, `Σ x ≥ 1`
//! and, when a capacity `C` is set, `Σ t_j y_j + Σ t_i x_i ≤ C` (the tokens of the union of the
//! kept root→candidate paths). The weight `w` of a node is 1 ([`KvCost::Nodes`], the paper's)
//! or its own tokens `t` ([`KvCost::Tokens`]), and `c = λ_b/Σw` over all M distinct ancestors
//! (the root included) and N candidates: `λ_b/(M+N)` with nodes, `λ_b/T` with tokens (`T` the
//! tokens of all M+N nodes), so keeping every node costs `λ_b` either way. `λ_b = 0` stands for a
//! reward of [`KEEP_ALL_REWARD`] per node (per `(M+N)/T` of a token with tokens): keep
//! everything that fits. Given `x`, the best `y` and `z` follow (a node is live iff a kept
//! candidate is below it, a cluster covered iff a kept candidate is in it), so
//! [`RetentionProblem::objective`] is a function of the kept set alone, `-inf` for a set over
//! the capacity.
//!
//! Ties (objectives within [`TIE_TOLERANCE`]) break deterministically: candidates are ranked by
//! score (higher first), then node id (lower first), and the preferred set is the one that keeps
//! the first candidate in that ranking where the two sets differ.

use std::cmp::Ordering;

use crate::config::KvCost;
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
    /// What the KV term counts: nodes (the paper's) or tokens.
    pub kv_cost: KvCost,
    /// Tokens of each candidate's own step. Needed (one per candidate) with
    /// [`KvCost::Tokens`] or a capacity; may be empty otherwise.
    pub candidate_tokens: Vec<u64>,
    /// Tokens of each ancestor's own span (the root's: the prompt). Needed (one per ancestor)
    /// with [`KvCost::Tokens`] or a capacity; may be empty otherwise.
    pub ancestor_tokens: Vec<u64>,
    /// Most tokens the union of the kept root→candidate paths may hold; `None`: no limit.
    pub capacity: Option<u64>,
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

    /// Whether the problem reads token counts: with [`KvCost::Tokens`] or a capacity.
    pub fn needs_tokens(&self) -> bool {
        self.kv_cost == KvCost::Tokens || self.capacity.is_some()
    }

    /// The KV weight of candidate `i`: 1, or its tokens with [`KvCost::Tokens`].
    pub fn candidate_weight(&self, i: usize) -> u64 {
        match self.kv_cost {
            KvCost::Nodes => 1,
            KvCost::Tokens => self.candidate_tokens[i],
        }
    }

    /// The KV weight of ancestor `j`: 1, or its tokens with [`KvCost::Tokens`].
    pub fn ancestor_weight(&self, j: usize) -> u64 {
        match self.kv_cost {
            KvCost::Nodes => 1,
            KvCost::Tokens => self.ancestor_tokens[j],
        }
    }

    /// The cost of one unit of KV weight, `c`: [`RetentionProblem::node_cost`] with
    /// [`KvCost::Nodes`]; with [`KvCost::Tokens`], `λ_b/T` with `T` the tokens of all M+N
    /// nodes, or `−KEEP_ALL_REWARD·(M+N)/T` when `λ_b = 0` (0 when `T = 0`: nothing costs).
    pub fn unit_cost(&self) -> f64 {
        match self.kv_cost {
            KvCost::Nodes => self.node_cost(),
            KvCost::Tokens => {
                let total: u64 = self.candidate_tokens.iter().sum::<u64>()
                    + self.ancestor_tokens.iter().sum::<u64>();
                if total == 0 {
                    0.0
                } else if self.lambda_b == 0.0 {
                    -KEEP_ALL_REWARD * (self.num_ancestors() + self.num_candidates()) as f64
                        / total as f64
                } else {
                    self.lambda_b / total as f64
                }
            }
        }
    }

    /// Tokens of the union of the root→candidate paths of the kept candidates.
    ///
    /// # Panics
    /// When the problem has no token counts ([`RetentionProblem::needs_tokens`] is false and
    /// they were left empty).
    pub fn kept_tokens(&self, keep: &[bool]) -> u64 {
        let mut live = vec![false; self.num_ancestors()];
        let mut tokens = 0;
        for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            tokens += self.candidate_tokens[i];
            let mut a = self.candidate_parent[i];
            while let Some(j) = a {
                if live[j] {
                    break;
                }
                live[j] = true;
                tokens += self.ancestor_tokens[j];
                a = self.ancestor_parent[j];
            }
        }
        tokens
    }

    /// Tokens of each candidate's root path alone (its own, its ancestors', the root's).
    ///
    /// # Panics
    /// As [`RetentionProblem::kept_tokens`].
    pub fn path_tokens(&self) -> Vec<u64> {
        let mut above = vec![0u64; self.num_ancestors()];
        for j in 0..self.num_ancestors() {
            above[j] = self.ancestor_tokens[j] + self.ancestor_parent[j].map_or(0, |p| above[p]);
        }
        (0..self.num_candidates())
            .map(|i| self.candidate_tokens[i] + self.candidate_parent[i].map_or(0, |p| above[p]))
            .collect()
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
        for (field, expected, got) in [
            ("candidate_tokens", n, self.candidate_tokens.len()),
            ("ancestor_tokens", m, self.ancestor_tokens.len()),
        ] {
            if got != expected && (got != 0 || self.needs_tokens()) {
                return Err(RetentionError::Length {
                    field,
                    expected,
                    got,
                });
            }
        }
        if let Some(capacity) = self.capacity {
            let cheapest = self.path_tokens().into_iter().min().unwrap_or(0);
            if cheapest > capacity {
                return Err(RetentionError::Capacity { capacity, cheapest });
            }
        }
        Ok(())
    }

    /// The objective of keeping exactly the candidates marked in `keep`, with the best `y` and
    /// `z` for that set. An empty set, or one whose paths hold more tokens than the capacity,
    /// is infeasible and scores `-inf`.
    pub fn objective(&self, keep: &[bool]) -> f64 {
        debug_assert_eq!(keep.len(), self.num_candidates());
        let mut live = vec![false; self.num_ancestors()];
        let mut covered = vec![false; self.num_clusters];
        let mut value = 0.0;
        let mut weight = 0u64;
        let mut tokens = 0u64;
        let counts_tokens = self.capacity.is_some();
        let mut kept_any = false;
        for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            kept_any = true;
            value += self.targets[i];
            weight += self.candidate_weight(i);
            if counts_tokens {
                tokens += self.candidate_tokens[i];
            }
            covered[self.clusters[i]] = true;
            let mut a = self.candidate_parent[i];
            while let Some(j) = a {
                if live[j] {
                    break;
                }
                live[j] = true;
                weight += self.ancestor_weight(j);
                if counts_tokens {
                    tokens += self.ancestor_tokens[j];
                }
                a = self.ancestor_parent[j];
            }
        }
        if !kept_any || self.capacity.is_some_and(|c| tokens > c) {
            return f64::NEG_INFINITY;
        }
        let clusters_covered = covered.iter().filter(|&&c| c).count();
        value - self.unit_cost() * weight as f64 + self.cluster_value() * clusters_covered as f64
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
/// targets from REBASE (T = 0.2) at `width`; node counts as the KV cost, no capacity. Token
/// counts for the token cost and capacities: r 20 (the prompt), A 8, B 5, a1..b2 6, 9, 4, 7, 3.
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
        kv_cost: KvCost::Nodes,
        candidate_tokens: vec![6, 9, 4, 7, 3],
        ancestor_tokens: vec![20, 8, 5],
        capacity: None,
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

    #[test]
    fn token_cost_and_capacity() {
        let mut p = worked_example(16, 1.0, 0.0);
        // Keep a1 and a2: r, A, a1, a2 are live, 20 + 8 + 6 + 9 = 43 of the 62 tokens.
        let keep = [true, true, false, false, false];
        assert_eq!(p.kept_tokens(&keep), 43);
        assert_eq!(p.path_tokens(), vec![34, 37, 32, 32, 28]);
        assert!((p.objective(&keep) - (0.8125 - 4.0 / 8.0)).abs() < 1e-12);
        p.kv_cost = KvCost::Tokens;
        assert!((p.unit_cost() - 1.0 / 62.0).abs() < 1e-15);
        assert!((p.objective(&keep) - (0.8125 - 43.0 / 62.0)).abs() < 1e-12);
        // Keeping everything costs λ_b under either count.
        assert!((p.objective(&[true; 5]) - (1.0 - 1.0)).abs() < 1e-12);
        // Over the capacity a set is infeasible.
        p.capacity = Some(42);
        assert_eq!(p.objective(&keep), f64::NEG_INFINITY);
        p.capacity = Some(43);
        assert!(p.objective(&keep).is_finite());
        // λ_b = 0 with tokens: a reward of KEEP_ALL_REWARD per node on average.
        p.lambda_b = 0.0;
        assert!((p.unit_cost() + KEEP_ALL_REWARD * 8.0 / 62.0).abs() < 1e-18);
    }

    #[test]
    fn brute_force_keeps_the_best_set_that_fits() {
        let mut p = worked_example(16, 1.0, 0.0);
        p.capacity = Some(40);
        // {a1, a2} (43 tokens) no longer fits; {a1} (34) is the best set that does, ahead of
        // {a1, a3} (38) whose objective is 0.
        let r = BruteForceRetention.solve(&p);
        assert_eq!(r.keep, vec![true, false, false, false, false]);
        assert!((r.objective - (0.5 - 3.0 / 8.0)).abs() < 1e-12);
        assert!(p.kept_tokens(&r.keep) <= 40);
    }

    #[test]
    fn capacity_and_token_counts_are_validated() {
        let mut p = worked_example(16, 1.0, 0.0);
        p.capacity = Some(27); // the cheapest path, r → B → b2, holds 28
        assert_eq!(
            p.validate(),
            Err(RetentionError::Capacity {
                capacity: 27,
                cheapest: 28
            })
        );
        p.capacity = Some(28);
        p.validate().unwrap();
        p.candidate_tokens.clear();
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Length {
                field: "candidate_tokens",
                ..
            })
        ));
        // Node counts without a capacity need no token counts.
        p.capacity = None;
        p.ancestor_tokens.clear();
        p.validate().unwrap();
        p.kv_cost = KvCost::Tokens;
        assert!(matches!(
            p.validate(),
            Err(RetentionError::Length {
                field: "candidate_tokens",
                ..
            })
        ));
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
            kv_cost: KvCost::Nodes,
            candidate_tokens: vec![12],
            ancestor_tokens: vec![],
            capacity: None,
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
