//! Reduced-cost fixing from a node's Lagrangian relaxation.
//!
//! After the tree program ran for a node (weights `w_i` with the multipliers folded in, and
//! the bound's constant `C`), an outside pass gives, for every allowed candidate `i` at once,
//! the relaxation's optimum over the sets that keep `i`: `C` plus the best value of the rest of
//! the tree given that `i`'s path is live. Restricting the relaxation to `x_i = 1` keeps it a
//! relaxation, so that number bounds every set of the node that keeps `i`; when it falls short
//! of the incumbent by more than the tie tolerance, no set keeping `i` can be the answer and `i`
//! is fixed out. Likewise a coupled cluster `k` left uncovered loses its share `λ_s/K − μ_k` of
//! the bound, so when the bound minus that share falls short, every answer covers `k`; if one
//! allowed member is left, it is fixed in.
//!
//! The pass, top down over ancestors in topological order: with `S_j` the sum over `j`'s
//! children of what each adds when `j` is live (a forced child its value, any other its value
//! when positive; the tree program's subtree optima for ancestors and groups), a child `a` of
//! `j` sees `out(a) = out(j) − c + S_j − add(a)` outside its subtree (`j` is live through `a`,
//! so `j`'s need for a kept child is met), `out(root) = 0`. A candidate's forced-in value is
//! `out(parent) − c + S_parent − add(i) + w_i`; a member of a local group is kept with its
//! group, which then earns its bonus and its other members' positive weights.

use super::bound::Relaxation;
use super::dp::NO_GROUP;
use super::tree::Instance;

/// Buffers of the outside pass.
#[derive(Debug, Clone)]
pub(crate) struct Fixing {
    /// Per ancestor: the best value outside its subtree given that it is live.
    outside: Vec<f64>,
    /// Per ancestor: the sum of what its children add when it is live.
    children_sum: Vec<f64>,
    /// Per cluster: the sum of what a local group's members add.
    group_sum: Vec<f64>,
    /// Per cluster: its group was added to its parent's sum in this pass.
    group_counted: Vec<bool>,
    /// Per candidate: the relaxation's optimum over sets keeping it (`-inf` when excluded).
    pub(crate) forced_in: Vec<f64>,
}

/// What a child with optimum `value` adds to a live parent.
fn adds(value: f64, forced: bool) -> f64 {
    if value == f64::NEG_INFINITY {
        0.0
    } else if forced {
        value
    } else {
        value.max(0.0)
    }
}

impl Fixing {
    /// Buffers sized for `inst`.
    pub(crate) fn new(inst: &Instance<'_>) -> Self {
        Fixing {
            outside: vec![0.0; inst.num_ancestors()],
            children_sum: vec![0.0; inst.num_ancestors()],
            group_sum: vec![0.0; inst.num_clusters()],
            group_counted: vec![false; inst.num_clusters()],
            forced_in: vec![f64::NEG_INFINITY; inst.num_candidates()],
        }
    }

    /// Fills [`Fixing::forced_in`] from the last run of `relax` (its weights, groups, constant
    /// and the tree program's subtree optima).
    pub(crate) fn compute(&mut self, inst: &Instance<'_>, relax: &Relaxation) {
        let dp = &relax.dp;
        let bonus = inst.cluster_value;
        let m = inst.num_ancestors();
        self.group_counted.fill(false);
        // What each kind of child adds.
        let candidate_adds = |i: usize| adds(relax.weight[i], relax.forced[i]);
        for j in 0..m {
            let mut sum = 0.0;
            for &i in inst.candidate_children(j) {
                match relax.group[i] {
                    NO_GROUP => sum += candidate_adds(i),
                    g => self.group_sum[g] = 0.0,
                }
            }
            for &i in inst.candidate_children(j) {
                let g = relax.group[i];
                if g != NO_GROUP {
                    self.group_sum[g] += candidate_adds(i);
                }
            }
            for &i in inst.candidate_children(j) {
                let g = relax.group[i];
                // A local group's members all sit under `j`: add the group once.
                if g != NO_GROUP && !self.group_counted[g] {
                    self.group_counted[g] = true;
                    sum += adds(dp.groups[g].upper(bonus), dp.groups[g].is_forced());
                }
            }
            for &a in inst.ancestor_children(j) {
                sum += adds(dp.upper[a], dp.forced[a]);
            }
            self.children_sum[j] = sum;
        }
        for j in 0..m {
            let base = match inst.ancestor_parent(j) {
                None => 0.0,
                Some(p) => {
                    self.outside[p] - inst.ancestor_cost(p) + self.children_sum[p]
                        - adds(dp.upper[j], dp.forced[j])
                }
            };
            self.outside[j] = base;
        }
        for i in 0..inst.num_candidates() {
            let w = relax.weight[i];
            if w == f64::NEG_INFINITY {
                self.forced_in[i] = f64::NEG_INFINITY;
                continue;
            }
            let j = inst.candidate_parent(i);
            let around = self.outside[j] - inst.ancestor_cost(j) + self.children_sum[j];
            self.forced_in[i] = relax.constant
                + match relax.group[i] {
                    NO_GROUP => around - candidate_adds(i) + w,
                    g => {
                        let group = adds(dp.groups[g].upper(bonus), dp.groups[g].is_forced());
                        around - group + bonus + w + self.group_sum[g] - candidate_adds(i)
                    }
                };
        }
    }
}
