//! The LP relaxation of a branch-and-bound node, solved with Clarabel, used for its cluster
//! multipliers.
//!
//! Only the part of the tree that coupled clusters reach is modelled. Variables in `[0, 1]`:
//! `x_i` for every free member of a coupled cluster, `y_j` for every ancestor above such a
//! member that has no forced candidate below it (an ancestor above a forced one is live: a
//! constant), and `z_k` for every coupled cluster. Everything else hanging under a modelled
//! ancestor (other candidates, local groups, subtrees without coupled members) does not depend
//! on the multipliers: the tree program has already priced it exactly, so its value, when
//! positive, is added to the ancestor's `y` coefficient. Rows, all `≤`: `x_i − y_parent ≤ 0`,
//! `y_j − y_parent ≤ 0`, `z_k − Σ_{i∈k} x_i ≤ 0`, `−x ≤ 0`, `z ≤ 1`, and `x ≤ 1`, `y ≤ 1`
//! where there is no modelled parent (below one, `≤ y_parent ≤ 1` implies it). Every modelled
//! ancestor has a modelled member below it, so `y ≥ x ≥ 0` needs no row. Clarabel minimises,
//! so the objective is negated.
//!
//! The LP value is never used as a bound (an interior-point answer is only accurate to its
//! tolerance, and this LP drops the rule that a live node needs a kept candidate below it).
//! Instead the duals of the `z_k` rows, clamped to `[0, λ_s/K]`, are the multipliers of the
//! Lagrangian bound in [`super::bound`], which is valid for any multipliers.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettings, DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus,
    SupportedConeT::NonnegativeConeT,
};

use super::bound::{ClusterState, Relaxation};
use super::dp::NO_GROUP;
use super::tree::{Fix, Instance};

/// Clarabel settings for the node LPs: silent, no presolve (there are no infinite bounds), a
/// single thread, no time limit (a result must not depend on the machine's speed; the
/// iteration cap bounds the work), and no iterative refinement (it costs a third of the solve time and the
/// multipliers only guide the bound, which is computed exactly whatever they are).
pub(crate) fn settings() -> DefaultSettings<f64> {
    DefaultSettingsBuilder::default()
        .verbose(false)
        .presolve_enable(false)
        .max_iter(100)
        .tol_gap_abs(1e-7)
        .tol_gap_rel(1e-7)
        .tol_feas(1e-7)
        .iterative_refinement_enable(false)
        .direct_solve_method("qdldl".to_string())
        .max_threads(1)
        .build()
        .expect("the LP settings are valid")
}

/// Builds the triplets of the node LP row by row.
#[derive(Debug, Default)]
struct Rows {
    row: Vec<usize>,
    col: Vec<usize>,
    val: Vec<f64>,
    rhs: Vec<f64>,
}

impl Rows {
    fn push(&mut self, entries: &[(usize, f64)], rhs: f64) -> usize {
        let r = self.rhs.len();
        for &(c, v) in entries {
            self.row.push(r);
            self.col.push(c);
            self.val.push(v);
        }
        self.rhs.push(rhs);
        r
    }
}

/// Work per matrix entry and interior-point iteration, relative to a tree-program step:
/// measured, one LP iteration costs about five times a tree-program run over as many entries.
const LP_WEIGHT: u64 = 5;

/// No variable.
const NONE: usize = usize::MAX;

/// What one node LP did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LpRun {
    /// Clarabel solved it and the multipliers were written.
    pub(crate) solved: bool,
    /// Its work: [`LP_WEIGHT`] times interior-point iterations times the size of the
    /// constraint matrix (rows, columns and nonzeros), a machine-independent measure of its
    /// cost.
    pub(crate) work: u64,
}

/// Solves the LP relaxation of the node whose fixings are `fix`, right after
/// [`Relaxation::bound`] ran for that node, and writes the clamped duals of the coupled
/// clusters' rows into `mu`. Leaves `mu` alone when Clarabel does not solve it.
pub(crate) fn cluster_multipliers(
    inst: &Instance<'_>,
    fix: &[Fix],
    relax: &Relaxation,
    settings: &DefaultSettings<f64>,
    mu: &mut [f64],
) -> LpRun {
    let n = inst.num_candidates();
    let m = inst.num_ancestors();
    let v = inst.cluster_value;
    let coupled = |i: usize| relax.state[inst.cluster(i)] == ClusterState::Coupled;
    // Modelled ancestors: a free coupled member below and nothing forced below.
    let mut marked = vec![false; m];
    let mut forced_below = vec![false; m];
    for (i, &f) in fix.iter().enumerate() {
        let p = inst.candidate_parent(i);
        match f {
            Fix::Free if coupled(i) => marked[p] = true,
            Fix::In => forced_below[p] = true,
            _ => {}
        }
    }
    for j in (1..m).rev() {
        if let Some(p) = inst.ancestor_parent(j) {
            marked[p] |= marked[j];
            forced_below[p] |= forced_below[j];
        }
    }
    let mut q = Vec::new();
    let mut x_column = vec![NONE; n];
    for i in 0..n {
        if fix[i] == Fix::Free && coupled(i) {
            x_column[i] = q.len();
            q.push(-relax.exact_weight[i]);
        }
    }
    let mut y_column = vec![NONE; m];
    let mut group_seen = vec![false; inst.num_clusters()];
    for j in 0..m {
        if !marked[j] || forced_below[j] {
            continue;
        }
        let mut worth = -inst.ancestor_cost(j);
        for &i in inst.candidate_children(j) {
            let w = relax.exact_weight[i];
            match relax.group[i] {
                _ if x_column[i] != NONE || w == f64::NEG_INFINITY => {}
                NO_GROUP => worth += w.max(0.0),
                g if !group_seen[g] => {
                    group_seen[g] = true;
                    worth += relax.dp.groups[g].upper(v).max(0.0);
                }
                _ => {}
            }
        }
        for &a in inst.ancestor_children(j) {
            if !marked[a] && relax.dp.upper[a] > 0.0 {
                worth += relax.dp.upper[a];
            }
        }
        y_column[j] = q.len();
        q.push(-worth);
    }
    let mut rows = Rows::default();
    for i in 0..n {
        if x_column[i] != NONE {
            let p = y_column[inst.candidate_parent(i)];
            if p == NONE {
                rows.push(&[(x_column[i], 1.0)], 1.0);
            } else {
                rows.push(&[(x_column[i], 1.0), (p, -1.0)], 0.0);
            }
            rows.push(&[(x_column[i], -1.0)], 0.0);
        }
    }
    for j in 0..m {
        if y_column[j] == NONE {
            continue;
        }
        match inst.ancestor_parent(j).map(|p| y_column[p]) {
            Some(p) if p != NONE => rows.push(&[(y_column[j], 1.0), (p, -1.0)], 0.0),
            _ => rows.push(&[(y_column[j], 1.0)], 1.0),
        };
    }
    let mut cluster_rows = Vec::new();
    let mut entries = Vec::new();
    for k in 0..inst.num_clusters() {
        if relax.state[k] != ClusterState::Coupled {
            continue;
        }
        let z = q.len();
        q.push(-v);
        entries.clear();
        entries.push((z, 1.0));
        entries.extend(
            inst.members(k)
                .iter()
                .filter(|&&i| x_column[i] != NONE)
                .map(|&i| (x_column[i], -1.0)),
        );
        cluster_rows.push((k, rows.push(&entries, 0.0)));
        rows.push(&[(z, 1.0)], 1.0);
    }
    let num_vars = q.len();
    let num_rows = rows.rhs.len();
    let size = (num_vars + num_rows + rows.val.len()) as u64;
    let failed = LpRun {
        solved: false,
        work: size,
    };
    let a = CscMatrix::new_from_triplets(num_rows, num_vars, rows.row, rows.col, rows.val);
    let p = CscMatrix::zeros((num_vars, num_vars));
    let cones = [NonnegativeConeT(num_rows)];
    let Ok(mut solver) = DefaultSolver::new(&p, &q, &a, &rows.rhs, &cones, settings.clone()) else {
        return failed;
    };
    solver.solve();
    let work = LP_WEIGHT * size * (1 + u64::from(solver.info.iterations));
    if !matches!(
        solver.solution.status,
        SolverStatus::Solved | SolverStatus::AlmostSolved
    ) {
        return LpRun {
            solved: false,
            work,
        };
    }
    for (k, r) in cluster_rows {
        let dual = solver.solution.z[r];
        mu[k] = if dual.is_finite() {
            dual.clamp(0.0, v)
        } else {
            v
        };
    }
    LpRun { solved: true, work }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clarabel_is_silent() {
        assert!(!settings().verbose);
    }
}
