//! Branch-and-bound over cluster decisions, for problems with clusters across parents.
//!
//! A node fixes some candidates in or out. Its bound is the Lagrangian bound of
//! [`super::bound`]. A child is first bounded with the multipliers its parent ended with (at
//! the root `μ = λ_s/K`, the cheap bound). When that neither prunes nor solves it, the node
//! takes up to `dual_steps` subgradient steps on the multipliers (each one run of the tree
//! program), and if it still stands, solves its LP relaxation with Clarabel ([`super::lp`]) and
//! bounds again with the LP duals. A node that still stands branches on the coupled cluster
//! with the largest gap: one child per free member `f_t` (in tie-ranking order) that keeps `f_t`
//! and drops `f_1..f_{t−1}`, and one child that drops them all. Every child decides its cluster,
//! so the tree is at most as deep as there are coupled clusters. Children are bounded when
//! created and explored depth-first, the highest bound first.
//!
//! Before a node branches, reduced-cost fixing ([`super::fixing`]) fixes out every candidate
//! whose forced-in bound cannot reach the incumbent and fixes in the last allowed member of a
//! coupled cluster every answer must cover; the node is then bounded again. On problems with
//! many clusters across parents this settles most cluster decisions at once instead of one
//! branching level each.
//!
//! Work is counted, not timed: a tree-program run or a fixing pass counts `N + M`, a local
//! search scan `N + M`, an LP its interior-point iterations times its matrix size. When the
//! count reaches the work limit the search stops and returns its incumbent unproven; the
//! order of the search is fixed, so the same problem gives the same set on any machine at any
//! load. An optional wall-clock deadline (off by default) is a safety valve only.
//!
//! Every relaxed set is a feasible kept set and is offered to the incumbent, which changes only
//! when [`ets_core::RetentionProblem::compare`] prefers the offer. A node is pruned when no set
//! in it can be preferred: its bound is below the incumbent by more than the tie tolerance, or
//! within it and the largest set the node allows is not ahead of the incumbent in the
//! tie-ranking order. A node whose relaxed set attains its bound is solved, and because the tree
//! program resolves ties the same way, that set is the one the tie-break prefers within the
//! node. So the answer is the tie-break's choice among the optimal sets, as brute force gives.
//!
//! Under a capacity the bound's tree part is the knapsack of [`super::knap`], so every relaxed
//! set fits and the argument above holds for the sets that fit. Reduced-cost fixing and the
//! LP read the tree program's subtree values, which the knapsack does not have, so a node
//! takes its subgradient steps and branches. There is no incumbent before the first set that
//! fits (keeping everything may not). Each set the knapsack forms counts one unit of work; a
//! knapsack run that would pass the work limit stops, and the search returns unproven.

use std::cmp::Ordering;
use std::rc::Rc;
use std::time::Instant;

use ets_core::retention::TIE_TOLERANCE;

use super::bound::{ClusterState, NodeBound, Relaxation};
use super::fixing::Fixing;
use super::heuristic::LocalSearch;
use super::lp;
use super::tree::{Fix, Instance};

/// Float error allowed between a bound and the objective of a set under it.
const BOUND_SLACK: f64 = 1e-12;

/// Float error allowed in a forced-in bound (a longer sum than a node bound's) before it may
/// fix a candidate.
const FIXING_SLACK: f64 = 1e-10;

/// Rounds of fixing and re-bounding per node, at most.
const FIXING_ROUNDS: usize = 4;

/// When a search stops before it proves optimality.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Work units (see the module doc) after which the incumbent is returned unproven.
    pub(crate) work: u64,
    /// Optional wall-clock deadline, off by default: a safety valve whose result depends on
    /// the machine's speed and load.
    pub(crate) deadline: Option<Instant>,
}

/// What the search ended with.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The best kept set found.
    pub(crate) keep: Vec<bool>,
    /// Its objective, as [`ets_core::RetentionProblem::objective`] computes it.
    pub(crate) objective: f64,
    /// False when the work limit (or the optional deadline) stopped the search.
    pub(crate) proven_optimal: bool,
    /// Nodes bounded, the root included.
    pub(crate) nodes: usize,
    /// LP relaxations solved.
    pub(crate) lp_solves: usize,
}

/// A node waiting on the stack, already bounded with its parent's multipliers.
#[derive(Debug)]
struct Node {
    fix: Vec<Fix>,
    mu: Rc<Vec<f64>>,
    bound: NodeBound,
}

/// The state of one branch-and-bound run.
struct Search<'i, 'p> {
    inst: &'i Instance<'p>,
    relax: Relaxation,
    settings: clarabel::solver::DefaultSettings<f64>,
    keep: Vec<bool>,
    objective: f64,
    nodes: usize,
    lp_solves: usize,
    dual_steps: usize,
    fixing: Fixing,
    /// Work done so far, in the units of the module doc.
    work: u64,
    /// Work of one tree-program run: `N + M`.
    run_work: u64,
    /// The work limit.
    work_limit: u64,
    /// Under a capacity: the bound is the knapsack's, and fixing and LPs (which read the tree
    /// program's values) are skipped.
    limited: bool,
}

/// What reduced-cost fixing found at a node.
enum Fixed {
    /// Nothing new.
    Nothing,
    /// Some candidates were fixed.
    Some,
    /// A cluster every answer covers has no allowed member left: no answer is in the node.
    NoAnswer,
}

impl Search<'_, '_> {
    /// Makes `keep` the incumbent if the tie-break rule prefers it; returns its objective.
    fn offer(&mut self, keep: &[bool]) -> f64 {
        let problem = self.inst.problem;
        let objective = problem.objective(keep);
        if problem.compare(
            &self.inst.ranking,
            keep,
            objective,
            &self.keep,
            self.objective,
        ) == Ordering::Greater
        {
            self.keep.copy_from_slice(keep);
            self.objective = objective;
        }
        objective
    }

    /// True when no set under `fix` with objective at most `bound` can beat the incumbent.
    fn prunable(&self, bound: f64, fix: &[Fix]) -> bool {
        if bound + BOUND_SLACK < self.objective - TIE_TOLERANCE {
            return true;
        }
        bound + BOUND_SLACK <= self.objective + TIE_TOLERANCE
            && !self.inst.node_may_beat(fix, &self.keep)
    }

    /// Bounds a node and offers its relaxed set. Returns the bound while the node needs more
    /// work: `None` when it allows no set, is pruned, or is solved (its relaxed set's objective
    /// is its bound, up to float noise, or no cluster is coupled any more).
    fn evaluate(&mut self, fix: &[Fix], mu: &[f64]) -> Option<NodeBound> {
        self.work += self.run_work;
        self.relax.budget = self.work_limit.saturating_sub(self.work);
        let bound = self.relax.bound(self.inst, fix, mu);
        self.work += std::mem::take(&mut self.relax.knap_work);
        let bound = bound?;
        let relaxed = std::mem::take(&mut self.relax.dp.keep);
        let objective = self.offer(&relaxed);
        self.relax.dp.keep = relaxed;
        let solved = bound.branch.is_none() || objective + BOUND_SLACK >= bound.value;
        (!solved && !self.prunable(bound.value, fix)).then_some(bound)
    }

    /// Subgradient steps on the multipliers (Polyak's rule towards the incumbent), keeping the
    /// best bound in `node`. Returns `None` as soon as the node is pruned or solved.
    fn ascend(&mut self, mut node: Node, iterations: usize) -> Option<Node> {
        let inst = self.inst;
        let v = inst.cluster_value;
        let mut mu = node.mu.as_ref().clone();
        let mut value = self.evaluate(&node.fix, &mu)?.value;
        let mut step = 1.0;
        let mut gradient = vec![0.0; inst.num_clusters()];
        for _ in 0..iterations {
            let mut norm = 0.0;
            for (k, g) in gradient.iter_mut().enumerate() {
                // ∂L/∂μ_k = (kept members of k) − 1 for a coupled cluster.
                *g = if self.relax.state[k] == ClusterState::Coupled {
                    let kept = inst
                        .members(k)
                        .iter()
                        .filter(|&&i| self.relax.dp.keep[i])
                        .count();
                    kept as f64 - 1.0
                } else {
                    0.0
                };
                norm += *g * *g;
            }
            if norm == 0.0 {
                break;
            }
            let target = self.objective - TIE_TOLERANCE;
            let t = step * (value - target).max(1e-9) / norm;
            for (mu_k, &g) in mu.iter_mut().zip(&gradient) {
                if g != 0.0 {
                    *mu_k = (*mu_k - t * g).clamp(0.0, v);
                }
            }
            let bound = self.evaluate(&node.fix, &mu)?;
            value = bound.value;
            if bound.value < node.bound.value - BOUND_SLACK {
                node.bound = bound;
                node.mu = Rc::new(mu.clone());
            } else {
                step *= 0.5;
            }
        }
        Some(node)
    }

    /// Reduced-cost fixing from the last tree-program run (which was for `fix`, with any
    /// multipliers): fixes out every free candidate whose forced-in bound falls short of the
    /// incumbent by more than the tie tolerance, then fixes in the last allowed member of each
    /// coupled cluster that every answer must cover.
    fn fix_by_bounds(&mut self, fix: &mut [Fix]) -> Fixed {
        let inst = self.inst;
        self.work += self.run_work;
        self.fixing.compute(inst, &self.relax);
        let threshold = self.objective - TIE_TOLERANCE - FIXING_SLACK;
        let mut fixed = Fixed::Nothing;
        for (i, f) in fix.iter_mut().enumerate() {
            if *f == Fix::Free && self.fixing.forced_in[i] < threshold {
                *f = Fix::Out;
                fixed = Fixed::Some;
            }
        }
        let v = inst.cluster_value;
        for k in 0..inst.num_clusters() {
            if self.relax.state[k] != ClusterState::Coupled
                || self.relax.value - (v - self.relax.mu[k]) >= threshold
            {
                continue;
            }
            // Every answer covers k.
            let mut allowed = inst.members(k).iter().filter(|&&i| fix[i] != Fix::Out);
            match (allowed.next(), allowed.next()) {
                (None, _) => return Fixed::NoAnswer,
                (Some(&i), None) if fix[i] == Fix::Free => {
                    fix[i] = Fix::In;
                    fixed = Fixed::Some;
                }
                _ => {}
            }
        }
        fixed
    }

    /// Fixes what the node's last bound allows and bounds it again, a few rounds while that
    /// changes something. Returns the node if it still stands.
    fn reduce(&mut self, mut node: Node) -> Option<Node> {
        for _ in 0..FIXING_ROUNDS {
            match self.fix_by_bounds(&mut node.fix) {
                Fixed::Nothing => break,
                Fixed::NoAnswer => return None,
                Fixed::Some => node.bound = self.evaluate(&node.fix, &node.mu)?,
            }
        }
        Some(node)
    }

    /// Tightens the bound of a node that its inherited multipliers neither prune nor solve:
    /// subgradient steps first, then reduced-cost fixing, then the LP multipliers (and fixing
    /// again). Returns the node if it still stands.
    fn tighten(&mut self, node: Node) -> Option<Node> {
        let node = self.ascend(node, self.dual_steps)?;
        if self.limited {
            return Some(node);
        }
        let mut node = self.reduce(node)?;
        if self.prunable(node.bound.value, &node.fix) {
            return None;
        }
        // The LP reads the tree program's values of the parts of this node that no coupled
        // cluster reaches: the last run of the program (in `ascend` or `reduce`) was for this
        // node's fixings.
        let mut mu = node.mu.as_ref().clone();
        self.lp_solves += 1;
        let run =
            lp::cluster_multipliers(self.inst, &node.fix, &self.relax, &self.settings, &mut mu);
        self.work += run.work;
        if !run.solved {
            return Some(node);
        }
        let bound = self.evaluate(&node.fix, &mu)?;
        if bound.value < node.bound.value {
            node.bound = bound;
            node.mu = Rc::new(mu);
        }
        self.reduce(node)
    }

    /// The children of `node`, bounded, without those that are pruned or solved, in the order
    /// they should be pushed (highest bound last).
    fn children(&mut self, node: &Node, cluster: usize) -> Vec<Node> {
        let free: Vec<usize> = self
            .inst
            .members(cluster)
            .iter()
            .copied()
            .filter(|&i| node.fix[i] == Fix::Free)
            .collect();
        let mut out = Vec::with_capacity(free.len() + 1);
        for t in 0..=free.len() {
            let mut fix = node.fix.clone();
            for &i in &free[..t] {
                fix[i] = Fix::Out;
            }
            if let Some(&i) = free.get(t) {
                fix[i] = Fix::In;
            }
            self.nodes += 1;
            if let Some(bound) = self.evaluate(&fix, &node.mu) {
                out.push(Node {
                    fix,
                    mu: Rc::clone(&node.mu),
                    bound,
                });
            }
        }
        out.sort_by(|a, b| a.bound.value.total_cmp(&b.bound.value));
        out
    }
}

/// Solves a problem with coupled clusters and a positive unit cost (any cost under a capacity)
/// to optimality, or returns the incumbent with `proven_optimal = false` when a limit is
/// reached. `dual_steps` is the number of subgradient steps a node takes before it solves its
/// LP (under a capacity, before it branches).
pub(crate) fn solve(inst: &Instance<'_>, limits: Limits, dual_steps: usize) -> Outcome {
    let n = inst.num_candidates();
    let limited = inst.capacity.is_some();
    // Under a capacity keeping everything may not fit: no incumbent until a set that fits.
    let (keep, objective) = match limited {
        false => (vec![true; n], inst.problem.objective(&vec![true; n])),
        true => (vec![false; n], f64::NEG_INFINITY),
    };
    let mut search = Search {
        inst,
        relax: Relaxation::new(inst),
        settings: lp::settings(),
        keep,
        objective,
        nodes: 0,
        lp_solves: 0,
        dual_steps,
        fixing: Fixing::new(inst),
        work: 0,
        run_work: (n + inst.num_ancestors()) as u64,
        work_limit: limits.work,
        limited,
    };
    let root_fix = vec![Fix::Free; n];
    // A first incumbent: the tree program (the knapsack under a capacity) with coupled
    // clusters ignored, improved locally; under a capacity, if the knapsack runs out of work,
    // the best single path that fits, improved locally.
    let zero = vec![0.0; inst.num_clusters()];
    search.relax.budget = limits.work;
    let first = search.relax.bound(inst, &root_fix, &zero).is_some();
    search.work += std::mem::take(&mut search.relax.knap_work);
    let local = match first {
        true => Some(LocalSearch::new(inst, &search.relax.dp.keep)),
        false => limited.then(|| LocalSearch::best_single(inst)),
    };
    if let Some(mut local) = local {
        let scans = local.improve(inst, 4 * n + 16);
        search.work += scans as u64 * search.run_work;
        let improved = local.keep().to_vec();
        search.offer(&improved);
    }
    let mu = Rc::new(vec![inst.cluster_value; inst.num_clusters()]);
    let mut stack = Vec::new();
    search.nodes += 1;
    if let Some(bound) = search.evaluate(&root_fix, &mu) {
        stack.push(Node {
            fix: root_fix,
            mu,
            bound,
        });
    }
    let mut proven_optimal = true;
    while let Some(node) = stack.pop() {
        if search.work >= limits.work
            || search.relax.aborted
            || limits.deadline.is_some_and(|d| Instant::now() >= d)
        {
            proven_optimal = false;
            break;
        }
        if search.prunable(node.bound.value, &node.fix) {
            continue;
        }
        let Some(node) = search.tighten(node) else {
            continue;
        };
        if search.prunable(node.bound.value, &node.fix) {
            continue;
        }
        let Some(cluster) = node.bound.branch else {
            continue;
        };
        stack.extend(search.children(&node, cluster));
    }
    if search.relax.aborted {
        // The knapsack ran out of work on a node that was then dropped unexplored.
        proven_optimal = false;
    }
    Outcome {
        keep: search.keep,
        objective: search.objective,
        proven_optimal,
        nodes: search.nodes,
        lp_solves: search.lp_solves,
    }
}
