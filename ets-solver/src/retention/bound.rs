//! The Lagrangian bound of a branch-and-bound node, computed with the tree dynamic program.
//!
//! Under a node's fixings each cluster is in one of four states. **Covered**: a member is forced
//! in, so its value is a constant. **Lost**: no member may be kept. **Local**: every member that
//! may be kept has the same parent; the tree program handles such a group exactly (its value is
//! earned once if any member is kept). **Coupled**: the allowed members have two or more
//! parents; only these need a relaxation. For a coupled cluster k and any multiplier
//! `μ_k ∈ [0, λ_s/K]`, `(λ_s/K)·z_k ≤ (λ_s/K − μ_k) + μ_k·Σ_{i∈k} x_i` holds for every kept set
//! (covered or not), so giving each member `μ_k` and adding the constant `λ_s/K − μ_k` bounds
//! the objective from above. The tree part is solved exactly by [`TreeDp`], so the bound is at
//! least as strong as the LP relaxation for the same `μ`, and it is computed in plain
//! arithmetic whatever `μ` came from (`μ = λ_s/K` everywhere is the cheap bound; [`super::lp`]
//! supplies LP duals).
//!
//! When the program's kept set keeps exactly one member of every coupled cluster, or none of a
//! cluster whose multiplier is `λ_s/K`, the bound is attained by that set up to the tree
//! program's tie tolerance; the caller checks the set's objective against the bound.
//!
//! Under a capacity the tree part is solved by the knapsack ([`super::knap`]) instead, which
//! keeps the capacity as a constraint: the multipliers relax the clusters only, so the same
//! argument gives a valid bound, and the relaxed set fits.

use super::dp::{DpInput, TreeDp, NO_GROUP};
use super::knap::{Knap, KnapDp};
use super::tree::{Fix, Instance};

/// How a node's fixings leave one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterState {
    /// A member is forced in: the cluster is covered whatever else happens.
    Covered,
    /// No member may be kept.
    Lost,
    /// The members that may be kept (at least one) share a parent and none is forced.
    Local,
    /// The members that may be kept have two or more parents and none is forced.
    Coupled,
}

/// The separable relaxation of one node, reused from node to node.
#[derive(Debug, Clone)]
pub(crate) struct Relaxation {
    /// Per cluster, how the node's fixings leave it.
    pub(crate) state: Vec<ClusterState>,
    /// Per candidate: its base weight, `-inf` when excluded.
    pub(crate) exact_weight: Vec<f64>,
    /// Per candidate: forced in.
    pub(crate) forced: Vec<bool>,
    /// Per candidate: its cluster when the cluster is local and the candidate allowed, else
    /// [`NO_GROUP`].
    pub(crate) group: Vec<usize>,
    /// Per candidate: the weight the last [`Relaxation::bound`] gave the tree program (the
    /// base weight plus its cluster's multiplier for a free member of a coupled cluster).
    pub(crate) weight: Vec<f64>,
    /// The constant of the last bound: covered clusters' value plus `λ_s/K − μ_k` per coupled
    /// cluster.
    pub(crate) constant: f64,
    /// The value of the last bound.
    pub(crate) value: f64,
    /// The multipliers of the last bound.
    pub(crate) mu: Vec<f64>,
    /// The tree program's buffers; after [`Relaxation::bound`], its `keep` is the relaxed set.
    pub(crate) dp: TreeDp,
    /// The knapsack's buffers, under a capacity (then it replaces the tree program).
    knap: Option<KnapDp>,
    /// Sets the knapsack may form in the next [`Relaxation::bound`].
    pub(crate) budget: u64,
    /// Knapsack work since the caller last took it.
    pub(crate) knap_work: u64,
    /// The knapsack ran out of budget: the last bound returned `None` without an answer.
    pub(crate) aborted: bool,
}

/// What [`Relaxation::bound`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NodeBound {
    /// Upper bound on the objective of every kept set the node allows.
    pub(crate) value: f64,
    /// The coupled cluster to branch on when the relaxed set does not attain the bound: the one
    /// that contributes most to the gap, or the first coupled one when no cluster does (the
    /// rest of the gap is then the tie tolerance of the tree program). `None` when no cluster is
    /// coupled: the relaxation is the problem itself and the relaxed set solves the node.
    pub(crate) branch: Option<usize>,
}

impl Relaxation {
    /// Buffers sized for `inst`.
    pub(crate) fn new(inst: &Instance<'_>) -> Self {
        let n = inst.num_candidates();
        Relaxation {
            state: vec![ClusterState::Lost; inst.num_clusters()],
            exact_weight: vec![0.0; n],
            forced: vec![false; n],
            group: vec![NO_GROUP; n],
            weight: vec![0.0; n],
            constant: 0.0,
            value: f64::NEG_INFINITY,
            mu: vec![0.0; inst.num_clusters()],
            dp: TreeDp::new(inst),
            knap: inst.capacity.map(|_| KnapDp::new(inst)),
            budget: u64::MAX,
            knap_work: 0,
            aborted: false,
        }
    }

    /// Classifies the clusters under `fix` and sets every candidate's base weight, forced flag
    /// and group. Returns the value of the covered clusters.
    pub(crate) fn prepare(&mut self, inst: &Instance<'_>, fix: &[Fix]) -> f64 {
        let v = inst.cluster_value;
        let mut constant = 0.0;
        for k in 0..inst.num_clusters() {
            let members = inst.members(k);
            let mut parent = None;
            let mut one_parent = true;
            let mut covered = false;
            for &i in members {
                match fix[i] {
                    Fix::In => covered = true,
                    Fix::Free => {
                        let p = inst.candidate_parent(i);
                        one_parent &= parent.is_none_or(|q| q == p);
                        parent = Some(p);
                    }
                    Fix::Out => {}
                }
            }
            let state = if covered {
                constant += v;
                ClusterState::Covered
            } else {
                match (parent, one_parent) {
                    (None, _) => ClusterState::Lost,
                    (Some(_), true) => ClusterState::Local,
                    (Some(_), false) => ClusterState::Coupled,
                }
            };
            self.state[k] = state;
            for &i in members {
                self.forced[i] = fix[i] == Fix::In;
                self.exact_weight[i] = match fix[i] {
                    Fix::Out => f64::NEG_INFINITY,
                    _ => inst.base_weight(i),
                };
                // Only allowed members join the group: an excluded member under another parent
                // would make the tree program reset the group's state when it reaches that
                // parent, and the fixing pass count the group there.
                self.group[i] = if state == ClusterState::Local && fix[i] != Fix::Out {
                    k
                } else {
                    NO_GROUP
                };
            }
        }
        constant
    }

    /// The Lagrangian bound under `fix` with multipliers `mu` (one per cluster, `K` of them;
    /// only coupled clusters read theirs, which must lie in `[0, λ_s/K]`). `None` when the node
    /// allows no kept set, or when the knapsack ran out of its budget (then `aborted` is set).
    pub(crate) fn bound(
        &mut self,
        inst: &Instance<'_>,
        fix: &[Fix],
        mu: &[f64],
    ) -> Option<NodeBound> {
        let v = inst.cluster_value;
        let mut constant = self.prepare(inst, fix);
        self.weight.copy_from_slice(&self.exact_weight);
        for (k, &mu_k) in mu.iter().enumerate() {
            if self.state[k] == ClusterState::Coupled {
                constant += v - mu_k;
                for &i in inst.members(k) {
                    if fix[i] == Fix::Free {
                        self.weight[i] += mu_k;
                    }
                }
            }
        }
        let input = DpInput {
            weight: &self.weight,
            forced: &self.forced,
            group: &self.group,
            group_bonus: v,
        };
        let tree = match (&mut self.knap, inst.capacity) {
            (Some(knap), Some(capacity)) => {
                let run = knap.solve(inst, input, capacity, self.budget, &mut self.dp.keep);
                self.knap_work += knap.work;
                match run {
                    Knap::Solved(value) => value,
                    Knap::Infeasible => return None,
                    Knap::Aborted => {
                        self.aborted = true;
                        return None;
                    }
                }
            }
            _ => self.dp.solve(inst, input)?,
        };
        let mut branch = None;
        let mut worst = 0.0;
        for (k, &mu_k) in mu.iter().enumerate() {
            if self.state[k] != ClusterState::Coupled {
                continue;
            }
            branch = branch.or(Some(k));
            let kept = inst.members(k).iter().filter(|&&i| self.dp.keep[i]).count();
            let gap = match kept {
                0 => v - mu_k,
                s => (s - 1) as f64 * mu_k,
            };
            if gap > worst {
                worst = gap;
                branch = Some(k);
            }
        }
        self.constant = constant;
        self.value = constant + tree;
        self.mu.copy_from_slice(mu);
        Some(NodeBound {
            value: self.value,
            branch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ets_core::{KvCost, RetentionProblem};

    fn worked(lambda_s: f64) -> RetentionProblem {
        RetentionProblem {
            targets: vec![0.5, 0.3125, 0.0, 0.125, 0.0625],
            candidate_parent: [1, 1, 1, 2, 2].map(Some).to_vec(),
            ancestor_parent: vec![None, Some(0), Some(0)],
            clusters: vec![0, 1, 2, 0, 2],
            num_clusters: 3,
            lambda_b: 1.0,
            lambda_s,
            scores: vec![0.9, 0.85, 0.4, 0.6, 0.55],
            node_ids: vec![3, 4, 5, 6, 7],
            kv_cost: KvCost::Nodes,
            candidate_tokens: vec![],
            ancestor_tokens: vec![],
            capacity: None,
        }
    }

    #[test]
    fn cheap_bound_overcounts_a_cluster_kept_twice() {
        let p = worked(1.5);
        let inst = Instance::new(&p);
        let mut relax = Relaxation::new(&inst);
        let fix = [Fix::Free; 5];
        let mu = [0.5; 3];
        let b = relax.bound(&inst, &fix, &mu).unwrap();
        // a1 and b1 share cluster 0, a3 and b2 cluster 2, across parents. Every candidate is
        // worth keeping with +0.5 each: the bound counts clusters 0 and 2 twice.
        assert_eq!(relax.dp.keep, vec![true; 5]);
        let truth = p.objective(&relax.dp.keep);
        assert!((b.value - truth - 1.0).abs() < 1e-12);
        assert!(b.branch.is_some());
    }

    #[test]
    fn decided_clusters_make_the_bound_exact() {
        let p = worked(1.5);
        let inst = Instance::new(&p);
        let mut relax = Relaxation::new(&inst);
        let fix = [Fix::In, Fix::Free, Fix::Free, Fix::In, Fix::Out];
        let b = relax.bound(&inst, &fix, &[0.5; 3]).unwrap();
        assert_eq!(b.branch, None);
        assert!((b.value - p.objective(&relax.dp.keep)).abs() < 1e-12);
        assert_eq!(relax.state[1], ClusterState::Local);
        assert_eq!(relax.state[0], ClusterState::Covered);
    }
}
