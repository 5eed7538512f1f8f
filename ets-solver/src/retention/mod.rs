//! The exact solver of the ETS retention problem ([`ets_core::retention`]).
//!
//! [`BranchAndBound`] answers in three ways, cheapest first:
//! - **Keep everything** when the node cost is negative (`λ_b = 0`): every term of the objective
//!   then grows with the kept set, so the full set is optimal and, being the largest, is also
//!   the one the tie-break prefers.
//! - **Tree dynamic program** (`dp.rs`) when `λ_s = 0` or every cluster's members share one
//!   parent (singletons included): a cluster inside one parent is a group the program prices
//!   exactly (its value is earned once if any member is kept), so the program is exact. No LP
//!   is solved and no branch-and-bound node is counted.
//! - **Branch-and-bound** (`branch.rs`) when clusters span parents: Lagrangian bounds computed
//!   by the tree program, with multipliers improved by subgradient steps and, where those do not
//!   settle a node, taken from a Clarabel LP relaxation; branching on cluster decisions.
//!
//! The KV term weighs each live node 1 or its own tokens ([`ets_core::KvCost`]); the tree
//! program and the bounds take a cost per node, so both counts go the same ways above. A
//! **capacity** (most tokens of the union of the kept paths) is handled after them:
//! - the problem is first solved without it; when that optimum fits, it is the answer (it is
//!   also the tie-break's choice among the sets that fit);
//! - otherwise the tree program is replaced by an exact **tree knapsack** (`knap.rs`), which
//!   keeps only sets that fit: alone when no cluster couples parents, else as the bound of the
//!   same branch-and-bound (subgradient steps only: reduced-cost fixing and the LP read the
//!   tree program's values and are skipped). The first incumbent is the knapsack's set (or,
//!   when it runs out of work, the best single path that fits), improved by a local search
//!   that never leaves the capacity.
//!
//! Layout: `tree.rs` preprocesses the problem, `dp.rs` is the tree program, `knap.rs` the tree
//! knapsack, `bound.rs` the node relaxation, `lp.rs` the Clarabel LP, `heuristic.rs` the local
//! search for a first incumbent, `branch.rs` the search.
//!
//! Ties: every path resolves ties as [`ets_core::RetentionProblem::compare`] does, so the kept
//! set is the one [`ets_core::retention::BruteForceRetention`] returns (up to objectives that
//! differ by about the tie tolerance itself, where "tie" stops being transitive).

mod bound;
mod branch;
mod dp;
mod fixing;
mod heuristic;
mod knap;
mod lp;
mod tree;

use std::time::{Duration, Instant};

use ets_core::{Retention, RetentionError, RetentionProblem, RetentionSolver};

use bound::Relaxation;
use heuristic::LocalSearch;
use tree::{Fix, Instance};

/// Exact retention solver: a tree dynamic program, and branch-and-bound with Clarabel LP
/// relaxations when clusters couple candidates.
///
/// Deterministic: the branch-and-bound counts its work (tree-program runs, fixing passes and
/// LP iterations, weighted by problem size) instead of timing itself, so the same problem
/// gives the same kept set on any machine at any load. `work_limit` bounds a solve; the
/// default settles the hard family of the bench (256 candidates, up to ~80 clusters across
/// parents) within it and ends any solve in tens of milliseconds on the dev machines.
///
/// ```
/// use ets_core::{KvCost, RetentionProblem, RetentionSolver};
/// use ets_solver::retention::BranchAndBound;
///
/// // r → A → {a1, a2}, r → B → {b1}; a1 and a2 say the same thing.
/// let problem = RetentionProblem {
///     targets: vec![0.8, 0.1, 0.1],
///     candidate_parent: vec![Some(1), Some(1), Some(2)],
///     ancestor_parent: vec![None, Some(0), Some(0)],
///     clusters: vec![0, 0, 1],
///     num_clusters: 2,
///     lambda_b: 1.0,
///     lambda_s: 1.5,
///     scores: vec![0.9, 0.8, 0.5],
///     node_ids: vec![3, 4, 5],
///     kv_cost: KvCost::Nodes,
///     candidate_tokens: vec![],
///     ancestor_tokens: vec![],
///     capacity: None,
/// };
/// let retention = BranchAndBound::default().solve(&problem);
/// assert_eq!(retention.keep, vec![true, false, true]);
/// assert!(retention.proven_optimal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchAndBound {
    /// Work bound of one solve, in units of about one tree-program step (see `branch.rs`);
    /// under a binding capacity, each set the knapsack forms counts one more unit, and the
    /// solve without the capacity that comes first has a bound of its own, so such a solve
    /// may do up to twice this work. When it is reached the best set found so far is returned
    /// with `proven_optimal = false` (under a capacity, a set that fits); which set that is
    /// depends only on the problem.
    pub work_limit: u64,
    /// Optional wall-clock cap of one solve, off (`None`) by default: a safety valve for
    /// callers that prefer a bounded wait to a reproducible result. When it ends a solve, the
    /// set returned depends on the machine's speed and load.
    pub time_limit: Option<Duration>,
    /// Subgradient steps on the cluster multipliers a node takes, each one run of the tree
    /// program, before it falls back to its LP relaxation. 0 solves an LP at every node the
    /// inherited multipliers do not settle.
    pub dual_steps: usize,
}

impl BranchAndBound {
    /// The default work limit, [`BranchAndBound::work_limit`].
    pub const DEFAULT_WORK_LIMIT: u64 = 4_000_000;
}

impl Default for BranchAndBound {
    /// [`BranchAndBound::DEFAULT_WORK_LIMIT`], no wall-clock cap, and 40 subgradient steps.
    fn default() -> Self {
        BranchAndBound {
            work_limit: Self::DEFAULT_WORK_LIMIT,
            time_limit: None,
            dual_steps: 40,
        }
    }
}

impl BranchAndBound {
    /// Validates `problem` and solves it.
    ///
    /// # Errors
    /// The problem's [`RetentionProblem::validate`] error, when it is malformed.
    pub fn try_solve(&self, problem: &RetentionProblem) -> Result<Retention, RetentionError> {
        problem.validate()?;
        if problem.num_candidates() == 1 {
            // The only feasible set keeps the lone candidate: the root alone at depth 0, or
            // one child.
            let keep = vec![true];
            return Ok(without_search(problem, keep, true));
        }
        let Some(capacity) = problem.capacity else {
            return Ok(self.solve_unlimited(problem));
        };
        // The optimum without the capacity is the answer whenever it fits (it is then the
        // tie-break's choice among the sets that fit, too); only a binding capacity needs the
        // knapsack.
        let unlimited = RetentionProblem {
            capacity: None,
            ..problem.clone()
        };
        let free = self.solve_unlimited(&unlimited);
        if problem.kept_tokens(&free.keep) <= capacity {
            return Ok(free);
        }
        let limited = self.solve_limited(problem);
        Ok(Retention {
            nodes_explored: free.nodes_explored + limited.nodes_explored,
            lp_solves: free.lp_solves + limited.lp_solves,
            ..limited
        })
    }

    /// Solves a problem without a capacity.
    fn solve_unlimited(&self, problem: &RetentionProblem) -> Retention {
        let inst = Instance::new(problem);
        let n = inst.num_candidates();
        if inst.unit_cost <= 0.0 {
            let keep = vec![true; n];
            return without_search(problem, keep, true);
        }
        if inst.cluster_value == 0.0 || !inst.has_coupled_clusters() {
            // Clusters within one parent are exact groups; with λ_s = 0 the zero multipliers
            // are exact too.
            let mut relax = Relaxation::new(&inst);
            let zero = vec![0.0; inst.num_clusters()];
            let keep = match relax.bound(&inst, &vec![Fix::Free; n], &zero) {
                Some(_) => relax.dp.keep,
                None => unreachable!("a validated problem has a candidate, so a feasible set"),
            };
            return without_search(problem, keep, true);
        }
        self.branch_and_bound(&inst)
    }

    /// Solves a problem whose capacity binds: the knapsack alone when no cluster couples
    /// candidates, branch-and-bound over the knapsack's bounds otherwise.
    fn solve_limited(&self, problem: &RetentionProblem) -> Retention {
        let inst = Instance::new(problem);
        let n = inst.num_candidates();
        if inst.cluster_value == 0.0 || !inst.has_coupled_clusters() {
            let mut relax = Relaxation::new(&inst);
            relax.budget = self.work_limit;
            let zero = vec![0.0; inst.num_clusters()];
            if relax.bound(&inst, &vec![Fix::Free; n], &zero).is_some() {
                let keep = relax.dp.keep;
                return without_search(problem, keep, true);
            }
            assert!(relax.aborted, "a validated capacity admits a kept set");
            // Out of work: the best single path that fits, improved locally.
            let mut local = LocalSearch::best_single(&inst);
            local.improve(&inst, 4 * n + 16);
            let keep = local.keep().to_vec();
            return without_search(problem, keep, false);
        }
        self.branch_and_bound(&inst)
    }

    fn branch_and_bound(&self, inst: &Instance<'_>) -> Retention {
        let limits = branch::Limits {
            work: self.work_limit,
            deadline: self.time_limit.map(|t| Instant::now() + t),
        };
        let outcome = branch::solve(inst, limits, self.dual_steps);
        Retention {
            keep: outcome.keep,
            objective: outcome.objective,
            proven_optimal: outcome.proven_optimal,
            nodes_explored: outcome.nodes,
            lp_solves: outcome.lp_solves,
        }
    }
}

impl RetentionSolver for BranchAndBound {
    /// Solves a problem the caller has validated.
    ///
    /// # Panics
    /// When the problem is malformed: the search driver validates every problem before it calls
    /// the solver, so this is a caller bug. Use [`BranchAndBound::try_solve`] to get the error.
    fn solve(&self, problem: &RetentionProblem) -> Retention {
        match self.try_solve(problem) {
            Ok(retention) => retention,
            Err(e) => panic!("invalid retention problem (validate before solving): {e}"),
        }
    }
}

/// The answer of a solve that needed no branch-and-bound (no node bounded, no LP).
fn without_search(problem: &RetentionProblem, keep: Vec<bool>, proven_optimal: bool) -> Retention {
    Retention {
        objective: problem.objective(&keep),
        keep,
        proven_optimal,
        nodes_explored: 0,
        lp_solves: 0,
    }
}
