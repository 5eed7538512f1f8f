//! The exact dynamic program over the tree for a separable objective.
//!
//! Given a weight per candidate (what keeping it is worth, its ancestors aside), some candidates
//! forced in and some excluded, it finds the kept set that maximises
//! `Σ weight_i x_i + bonus·(kept groups) − c·(live ancestors)` with at least one candidate kept.
//! A group is a set of sibling candidates (one parent) that share a cluster no other allowed
//! candidate is in: the cluster's value is earned once if any of them is kept, which is exact
//! inside the parent, so such clusters never need branching.
//!
//! Per ancestor, bottom up: the best value of its subtree given that it is live is `−c` plus
//! every child worth taking (a forced child, or one whose value is not negative), and when no
//! child qualifies, the single best child (a live ancestor needs a kept candidate below it).
//! Children are candidates, groups and ancestors; a group's value is the bonus plus its members
//! chosen the same way. The root must be live.
//!
//! Ties follow [`ets_core::retention`]'s rule: a child whose value is within the tie tolerance
//! of zero is taken (the larger set wins the first ranked difference), and among equally good
//! single children the one whose kept set holds the better-ranked candidate wins. Sets of
//! different subtrees are disjoint, so these local choices build the tie-break's preferred set
//! among the optimal ones. Taking a child worth a hair below zero makes the chosen set's value
//! a hair below the optimum, so the program also returns the optimum itself, computed without
//! tolerance (every child worth more than zero taken): that is the number bounds may rely on.

use ets_core::retention::TIE_TOLERANCE;

use super::tree::Instance;

/// `group[i]` of a candidate in no group.
pub(crate) const NO_GROUP: usize = usize::MAX;

/// One run's input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DpInput<'a> {
    /// Worth of keeping each candidate; `-inf` excludes it.
    pub(crate) weight: &'a [f64],
    /// Candidates that must be kept.
    pub(crate) forced: &'a [bool],
    /// Group (a cluster id) of each candidate, or [`NO_GROUP`]; a group's members share a parent.
    pub(crate) group: &'a [usize],
    /// Value of keeping at least one member of a group.
    pub(crate) group_bonus: f64,
}

/// Reusable buffers of the dynamic program; the last solution is in [`TreeDp::keep`].
#[derive(Debug, Clone)]
pub(crate) struct TreeDp {
    value: Vec<f64>,
    /// Optimum of each ancestor's subtree given that it is live (`-inf` when it cannot be).
    pub(crate) upper: Vec<f64>,
    /// Whether each ancestor's subtree holds a forced candidate (it must be live).
    pub(crate) forced: Vec<bool>,
    best_rank: Vec<usize>,
    take_ancestor: Vec<bool>,
    take_candidate: Vec<bool>,
    /// Per group (indexed by cluster id), its state in the last run.
    pub(crate) groups: Vec<Group>,
    live: Vec<bool>,
    /// `keep[i]`: candidate i is in the last solution.
    pub(crate) keep: Vec<bool>,
}

/// A group's accumulated choice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    sum: f64,
    any: bool,
    forced: bool,
    rank: usize,
    single: Fallback,
    upper_sum: f64,
    upper_any: bool,
    upper_best: f64,
    offered: bool,
    taken: bool,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            sum: 0.0,
            any: false,
            forced: false,
            rank: usize::MAX,
            single: Fallback {
                child: Child::Candidate(usize::MAX),
                value: f64::NEG_INFINITY,
                rank: usize::MAX,
            },
            upper_sum: 0.0,
            upper_any: false,
            upper_best: f64::NEG_INFINITY,
            offered: false,
            taken: false,
        }
    }
}

impl Group {
    fn add(&mut self, i: usize, w: f64, forced: bool, rank: usize) {
        if forced || w >= -TIE_TOLERANCE {
            self.sum += w;
            self.any = true;
            self.forced |= forced;
            self.rank = self.rank.min(rank);
        } else if self.single.beaten_by(w, rank) {
            self.single = Fallback {
                child: Child::Candidate(i),
                value: w,
                rank,
            };
        }
        if forced || w > 0.0 {
            self.upper_sum += w;
            self.upper_any = true;
        } else {
            self.upper_best = self.upper_best.max(w);
        }
    }

    /// Value, rank of the best kept member, and optimum of the group when kept.
    fn finish(&self, bonus: f64) -> (f64, usize, f64) {
        let (value, rank) = if self.any {
            (self.sum, self.rank)
        } else {
            (self.single.value, self.single.rank)
        };
        let upper = if self.upper_any {
            self.upper_sum
        } else {
            self.upper_best
        };
        (bonus + value, rank, bonus + upper)
    }

    /// Optimum of the group when kept, after the last run (`-inf` if it had no allowed member).
    pub(crate) fn upper(&self, bonus: f64) -> f64 {
        if self.offered {
            self.finish(bonus).2
        } else {
            f64::NEG_INFINITY
        }
    }

    /// Whether a member is forced in (the group must be kept), after the last run.
    pub(crate) fn is_forced(&self) -> bool {
        self.forced
    }

    /// Whether member `i` (worth `w`, forced or not) is kept when the group is.
    fn keeps(&self, i: usize, w: f64, forced: bool) -> bool {
        if self.any {
            forced || w >= -TIE_TOLERANCE
        } else {
            matches!(self.single.child, Child::Candidate(s) if s == i)
        }
    }
}

/// A child of an ancestor while the program runs.
#[derive(Debug, Clone, Copy)]
enum Child {
    Candidate(usize),
    Group(usize),
    Ancestor(usize),
}

/// The best child not taken so far: its value and the rank of its best kept candidate.
#[derive(Debug, Clone, Copy)]
struct Fallback {
    child: Child,
    value: f64,
    rank: usize,
}

impl Fallback {
    /// True when `(value, rank)` is preferred to this fallback.
    fn beaten_by(&self, value: f64, rank: usize) -> bool {
        value > self.value + TIE_TOLERANCE
            || (value >= self.value - TIE_TOLERANCE && rank < self.rank)
    }
}

/// The optimum of a live ancestor's subtree, accumulated without tolerance.
#[derive(Debug, Clone, Copy)]
struct Upper {
    sum: f64,
    taken: bool,
    best_single: f64,
}

impl Default for Upper {
    fn default() -> Self {
        Upper {
            sum: 0.0,
            taken: false,
            best_single: f64::NEG_INFINITY,
        }
    }
}

impl Upper {
    /// Adds a child worth `value` (`-inf` when it cannot be live).
    fn add(&mut self, value: f64, forced: bool) {
        if forced || value > 0.0 {
            self.sum += value;
            self.taken = true;
        } else {
            self.best_single = self.best_single.max(value);
        }
    }

    /// The subtree's optimum given that its root costs `cost`.
    fn value(&self, cost: f64) -> f64 {
        -cost
            + if self.taken {
                self.sum
            } else {
                self.best_single
            }
    }
}

/// The choice being built at one ancestor.
#[derive(Debug, Clone, Copy)]
struct Choice {
    sum: f64,
    taken: bool,
    forced: bool,
    rank: usize,
    fallback: Option<Fallback>,
    upper: Upper,
}

impl Choice {
    fn new(cost: f64) -> Self {
        Choice {
            sum: -cost,
            taken: false,
            forced: false,
            rank: usize::MAX,
            fallback: None,
            upper: Upper::default(),
        }
    }

    /// Offers a child; returns whether it is taken (a fallback may be taken later).
    fn offer(&mut self, child: Child, value: f64, upper: f64, forced: bool, rank: usize) -> bool {
        self.upper.add(upper, forced);
        if forced || value >= -TIE_TOLERANCE {
            self.sum += value;
            self.taken = true;
            self.forced |= forced;
            self.rank = self.rank.min(rank);
            true
        } else {
            if self.fallback.is_none_or(|f| f.beaten_by(value, rank)) {
                self.fallback = Some(Fallback { child, value, rank });
            }
            false
        }
    }
}

impl TreeDp {
    /// Buffers sized for `inst`.
    pub(crate) fn new(inst: &Instance<'_>) -> Self {
        let n = inst.num_candidates();
        let m = inst.num_ancestors();
        TreeDp {
            value: vec![0.0; m],
            upper: vec![0.0; m],
            forced: vec![false; m],
            best_rank: vec![usize::MAX; m],
            take_ancestor: vec![false; m],
            take_candidate: vec![false; n],
            groups: vec![Group::default(); inst.num_clusters()],
            live: vec![false; m],
            keep: vec![false; n],
        }
    }

    /// Solves the program. Returns the optimal value, or `None` when no candidate may be kept.
    /// The kept set, the tie-break's choice among the sets within the tie tolerance of optimal,
    /// is left in [`TreeDp::keep`].
    pub(crate) fn solve(&mut self, inst: &Instance<'_>, input: DpInput<'_>) -> Option<f64> {
        let DpInput {
            weight,
            forced,
            group,
            group_bonus,
        } = input;
        let m = inst.num_ancestors();
        for j in (0..m).rev() {
            let mut choice = Choice::new(inst.ancestor_cost(j));
            let candidates = inst.candidate_children(j);
            for &i in candidates {
                if group[i] != NO_GROUP {
                    self.groups[group[i]] = Group::default();
                }
            }
            for &i in candidates {
                let w = weight[i];
                self.take_candidate[i] = false;
                if w == f64::NEG_INFINITY {
                    continue;
                }
                match group[i] {
                    NO_GROUP => {
                        self.take_candidate[i] =
                            choice.offer(Child::Candidate(i), w, w, forced[i], inst.rank[i]);
                    }
                    g => self.groups[g].add(i, w, forced[i], inst.rank[i]),
                }
            }
            for &i in candidates {
                let g = group[i];
                if g == NO_GROUP || weight[i] == f64::NEG_INFINITY || self.groups[g].offered {
                    continue;
                }
                let (value, rank, upper) = self.groups[g].finish(group_bonus);
                let must = self.groups[g].forced;
                self.groups[g].offered = true;
                self.groups[g].taken = choice.offer(Child::Group(g), value, upper, must, rank);
            }
            for &a in inst.ancestor_children(j) {
                let v = self.value[a];
                self.take_ancestor[a] = v != f64::NEG_INFINITY
                    && choice.offer(
                        Child::Ancestor(a),
                        v,
                        self.upper[a],
                        self.forced[a],
                        self.best_rank[a],
                    );
            }
            if !choice.taken {
                match choice.fallback {
                    Some(f) => {
                        choice.sum += f.value;
                        choice.rank = f.rank;
                        match f.child {
                            Child::Candidate(i) => self.take_candidate[i] = true,
                            Child::Group(g) => self.groups[g].taken = true,
                            Child::Ancestor(a) => self.take_ancestor[a] = true,
                        }
                    }
                    None => choice.sum = f64::NEG_INFINITY,
                }
            }
            self.value[j] = choice.sum;
            self.upper[j] = if choice.sum == f64::NEG_INFINITY {
                f64::NEG_INFINITY
            } else {
                choice.upper.value(inst.ancestor_cost(j))
            };
            self.forced[j] = choice.forced;
            self.best_rank[j] = choice.rank;
        }
        let best = self.upper[0];
        let feasible = best != f64::NEG_INFINITY;
        for j in 0..m {
            self.live[j] = match inst.ancestor_parent(j) {
                None => feasible,
                Some(p) => self.live[p] && self.take_ancestor[j],
            };
        }
        for (i, keep) in self.keep.iter_mut().enumerate() {
            *keep = self.live[inst.candidate_parent(i)]
                && match group[i] {
                    NO_GROUP => self.take_candidate[i],
                    g => {
                        self.groups[g].taken
                            && weight[i] != f64::NEG_INFINITY
                            && self.groups[g].keeps(i, weight[i], forced[i])
                    }
                };
        }
        feasible.then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ets_core::{KvCost, RetentionProblem};

    fn problem(targets: Vec<f64>, lambda_b: f64) -> RetentionProblem {
        RetentionProblem {
            targets,
            candidate_parent: [1, 1, 1, 2, 2].map(Some).to_vec(),
            ancestor_parent: vec![None, Some(0), Some(0)],
            clusters: vec![0, 1, 2, 3, 4],
            num_clusters: 5,
            lambda_b,
            lambda_s: 0.0,
            scores: vec![0.9, 0.85, 0.4, 0.6, 0.55],
            node_ids: vec![3, 4, 5, 6, 7],
            kv_cost: KvCost::Nodes,
            candidate_tokens: vec![],
            ancestor_tokens: vec![],
            capacity: None,
        }
    }

    fn run(p: &RetentionProblem, exclude: &[usize], force: &[usize]) -> (Option<f64>, Vec<bool>) {
        let inst = Instance::new(p);
        let mut dp = TreeDp::new(&inst);
        let mut weight: Vec<f64> = (0..5).map(|i| inst.base_weight(i)).collect();
        for &i in exclude {
            weight[i] = f64::NEG_INFINITY;
        }
        let mut forced = vec![false; 5];
        for &i in force {
            forced[i] = true;
        }
        let group = vec![NO_GROUP; 5];
        let v = dp.solve(
            &inst,
            DpInput {
                weight: &weight,
                forced: &forced,
                group: &group,
                group_bonus: 0.0,
            },
        );
        (v, dp.keep.clone())
    }

    #[test]
    fn keeps_the_profitable_subtree() {
        let p = problem(vec![0.5, 0.3125, 0.0, 0.125, 0.0625], 1.0);
        let (v, keep) = run(&p, &[], &[]);
        assert_eq!(keep, vec![true, true, false, false, false]);
        assert!((v.unwrap() - p.objective(&keep)).abs() < 1e-12);
    }

    #[test]
    fn forced_and_excluded_candidates_are_respected() {
        let p = problem(vec![0.5, 0.3125, 0.0, 0.125, 0.0625], 1.0);
        let (v, keep) = run(&p, &[0], &[4]);
        // b1 is worth exactly nothing once B is live: a tie, and the larger set wins it.
        assert_eq!(keep, vec![false, true, false, true, true]);
        assert!((v.unwrap() - p.objective(&keep)).abs() < 1e-12);
        assert_eq!(run(&p, &[0, 1, 2, 3, 4], &[]).0, None);
    }

    #[test]
    fn a_lone_unprofitable_set_keeps_the_least_bad_candidate() {
        // Every candidate loses money: the best single one is kept.
        let p = problem(vec![0.0, 0.0, 0.0, 0.05, 0.0], 8.0);
        let (_, keep) = run(&p, &[], &[]);
        assert_eq!(keep, vec![false, false, false, true, false]);
        // Equal values: the better-ranked candidate wins.
        let p = problem(vec![0.0; 5], 8.0);
        let (_, keep) = run(&p, &[], &[]);
        assert_eq!(keep, vec![true, false, false, false, false]);
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;
    use ets_core::{KvCost, RetentionProblem};

    #[test]
    fn a_group_earns_its_bonus_once() {
        // r → {a1, a2, a3}; a1 and a2 share a cluster worth 0.3.
        let p = RetentionProblem {
            targets: vec![0.0, 0.1, 0.0],
            candidate_parent: vec![Some(0); 3],
            ancestor_parent: vec![None],
            clusters: vec![0, 0, 1],
            num_clusters: 2,
            lambda_b: 0.8,
            lambda_s: 0.6,
            scores: vec![0.9, 0.8, 0.7],
            node_ids: vec![1, 2, 3],
            kv_cost: KvCost::Nodes,
            candidate_tokens: vec![],
            ancestor_tokens: vec![],
            capacity: None,
        };
        let inst = Instance::new(&p);
        let mut dp = TreeDp::new(&inst);
        let v = inst.cluster_value;
        let weight = [
            inst.base_weight(0),
            inst.base_weight(1),
            inst.base_weight(2) + v,
        ];
        let group = [0, 0, NO_GROUP];
        let best = dp
            .solve(
                &inst,
                DpInput {
                    weight: &weight,
                    forced: &[false; 3],
                    group: &group,
                    group_bonus: v,
                },
            )
            .unwrap();
        // c = 0.2: a2 alone earns 0.1 − 0.2 + 0.3, a1 adds −0.2; a3 earns 0.1.
        assert_eq!(dp.keep, vec![false, true, true]);
        assert!((best - p.objective(&dp.keep)).abs() < 1e-12);
        assert!((dp.groups[0].upper(v) - 0.2).abs() < 1e-12);
    }
}
