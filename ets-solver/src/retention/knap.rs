//! The tree program of [`super::dp`] under a token capacity: an exact tree knapsack.
//!
//! Same input (a weight per candidate, forced and excluded candidates, local groups with a
//! bonus), same objective, plus one constraint: the tokens of the live nodes (every kept
//! candidate and every ancestor above one, each counting its own span) must not exceed the
//! capacity. Per ancestor, bottom up, the program keeps a list of kept sets of its subtree
//! (given that it is live, at least one candidate kept below it), each with its tokens and its
//! value; a child (candidate, local group or ancestor) is merged in by trying every pair of a
//! set so far and one of the child's sets, plus the child alone and, unless it is forced, no
//! set of the child. Sets over the capacity are dropped as they appear (tokens only grow).
//!
//! A list holds only sets that no lighter one dominates. A set `e'` is dropped for a set `e`
//! with no more tokens when `e`'s value beats it by more than the tie tolerance, or when `e`'s
//! value is at least `e'`'s and `e` keeps the better-ranked candidate where the two differ.
//! Either way, completed by the same sets of the rest of the tree, `e` fits whenever `e'` does
//! and is preferred by [`ets_core::RetentionProblem::compare`] (the values differ by the same
//! amount, and the first ranked difference lies inside the subtree), so the lists keep a set
//! at least as preferred as any they drop, and the greatest value survives exactly: the
//! program's optimum is the relaxation's, a valid bound. At the root the set
//! [`ets_core::RetentionProblem::compare`] prefers among the survivors is the answer.
//!
//! Sets are bitsets over tie ranks (bit `r` is the candidate of rank `r`), so the tie-break's
//! comparison is the first differing bit. The work is the number of sets formed; past the
//! budget a run stops and reports [`Knap::Aborted`].

use std::cmp::Ordering;

use ets_core::retention::TIE_TOLERANCE;

use super::dp::{DpInput, NO_GROUP};
use super::tree::Instance;

/// How a run of the knapsack ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Knap {
    /// The optimal value; the preferred optimal set is in the `keep` passed in.
    Solved(f64),
    /// No kept set fits under the capacity (with the forced candidates).
    Infeasible,
    /// The work budget ran out first; `keep` is untouched.
    Aborted,
}

/// Kept sets of one subtree, each with its tokens and value.
#[derive(Debug, Clone, Default)]
struct List {
    tokens: Vec<u64>,
    value: Vec<f64>,
    /// `words` words per set.
    sets: Vec<u64>,
}

impl List {
    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn clear(&mut self) {
        self.tokens.clear();
        self.value.clear();
        self.sets.clear();
    }

    fn set(&self, e: usize, words: usize) -> &[u64] {
        &self.sets[e * words..(e + 1) * words]
    }

    fn push(&mut self, tokens: u64, value: f64, a: &[u64], b: Option<&[u64]>) {
        self.tokens.push(tokens);
        self.value.push(value);
        match b {
            None => self.sets.extend_from_slice(a),
            Some(b) => self.sets.extend(a.iter().zip(b).map(|(x, y)| x | y)),
        }
    }
}

/// `Greater` when set `a` keeps the best-ranked candidate where `a` and `b` differ.
fn lex(a: &[u64], b: &[u64]) -> Ordering {
    for (&x, &y) in a.iter().zip(b) {
        let d = x ^ y;
        if d != 0 {
            let low = d & d.wrapping_neg();
            return if x & low != 0 {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
    }
    Ordering::Equal
}

/// Reusable buffers of the knapsack.
#[derive(Debug, Clone)]
pub(crate) struct KnapDp {
    words: usize,
    /// Per ancestor: its subtree's list (given it is live) once computed.
    lists: Vec<List>,
    /// Per ancestor: whether a forced candidate is below it.
    forced: Vec<bool>,
    acc: List,
    next: List,
    group: List,
    single: List,
    order: Vec<usize>,
    bits: Vec<u64>,
    /// Sets formed in the last run.
    pub(crate) work: u64,
    /// Sets the current run may form.
    budget: u64,
}

/// A subtree's own tokens and value before any candidate below it is kept.
type Base = Option<(u64, f64)>;

impl KnapDp {
    /// Buffers sized for `inst`.
    pub(crate) fn new(inst: &Instance<'_>) -> Self {
        let words = inst.num_candidates().div_ceil(64).max(1);
        KnapDp {
            words,
            lists: vec![List::default(); inst.num_ancestors()],
            forced: vec![false; inst.num_ancestors()],
            acc: List::default(),
            next: List::default(),
            group: List::default(),
            single: List::default(),
            order: Vec::new(),
            bits: vec![0; words],
            work: 0,
            budget: u64::MAX,
        }
    }

    /// Solves the program under `capacity` tokens, writing the preferred optimal set into
    /// `keep`, unless more than `budget` sets would be formed.
    pub(crate) fn solve(
        &mut self,
        inst: &Instance<'_>,
        input: DpInput<'_>,
        capacity: u64,
        budget: u64,
        keep: &mut [bool],
    ) -> Knap {
        let DpInput {
            weight,
            forced,
            group,
            group_bonus,
        } = input;
        let words = self.words;
        self.work = 0;
        self.budget = budget;
        let m = inst.num_ancestors();
        for j in (0..m).rev() {
            let own = inst.ancestor_tokens(j);
            let mut base: Base = (own <= capacity).then(|| (own, -inst.ancestor_cost(j)));
            let mut any_forced = false;
            self.acc.clear();
            let candidates = inst.candidate_children(j);
            for (pos, &i) in candidates.iter().enumerate() {
                if weight[i] == f64::NEG_INFINITY {
                    continue;
                }
                let g = group[i];
                if g != NO_GROUP {
                    // A local group: merged once, at its first allowed member.
                    let first = candidates[..pos]
                        .iter()
                        .all(|&o| group[o] != g || weight[o] == f64::NEG_INFINITY);
                    if !first {
                        continue;
                    }
                    let mut group_base: Base = Some((0, group_bonus));
                    let mut group_forced = false;
                    let mut members = std::mem::take(&mut self.group);
                    members.clear();
                    for &o in &candidates[pos..] {
                        if group[o] != g || weight[o] == f64::NEG_INFINITY {
                            continue;
                        }
                        self.single_option(inst, o, weight[o]);
                        let single = std::mem::take(&mut self.single);
                        self.merge(&mut members, group_base, &single, forced[o], capacity);
                        self.single = single;
                        if forced[o] {
                            group_base = None;
                            group_forced = true;
                        }
                    }
                    let mut acc = std::mem::take(&mut self.acc);
                    self.merge(&mut acc, base, &members, group_forced, capacity);
                    self.acc = acc;
                    self.group = members;
                    if group_forced {
                        base = None;
                        any_forced = true;
                    }
                } else {
                    self.single_option(inst, i, weight[i]);
                    let single = std::mem::take(&mut self.single);
                    let mut acc = std::mem::take(&mut self.acc);
                    self.merge(&mut acc, base, &single, forced[i], capacity);
                    self.acc = acc;
                    self.single = single;
                    if forced[i] {
                        base = None;
                        any_forced = true;
                    }
                }
                if self.work > budget {
                    return Knap::Aborted;
                }
            }
            for &a in inst.ancestor_children(j) {
                let child = std::mem::take(&mut self.lists[a]);
                let child_forced = self.forced[a];
                if child.len() > 0 || child_forced {
                    let mut acc = std::mem::take(&mut self.acc);
                    self.merge(&mut acc, base, &child, child_forced, capacity);
                    self.acc = acc;
                }
                self.lists[a] = child;
                if child_forced {
                    base = None;
                    any_forced = true;
                }
                if self.work > budget {
                    return Knap::Aborted;
                }
            }
            std::mem::swap(&mut self.lists[j], &mut self.acc);
            self.forced[j] = any_forced;
        }
        let root = &self.lists[0];
        if root.len() == 0 {
            return Knap::Infeasible;
        }
        let mut best = 0;
        let mut max = f64::NEG_INFINITY;
        for e in 0..root.len() {
            max = max.max(root.value[e]);
            let (v, b) = (root.value[e], root.value[best]);
            let better = if (v - b).abs() > TIE_TOLERANCE {
                v > b
            } else {
                lex(root.set(e, words), root.set(best, words)) == Ordering::Greater
            };
            if better {
                best = e;
            }
        }
        let set = root.set(best, words);
        keep.fill(false);
        for (r, &i) in inst.ranking.iter().enumerate() {
            keep[i] = set[r / 64] & (1 << (r % 64)) != 0;
        }
        Knap::Solved(max)
    }

    /// Fills `single` with candidate `i` kept alone.
    fn single_option(&mut self, inst: &Instance<'_>, i: usize, w: f64) {
        let r = inst.rank[i];
        self.bits.fill(0);
        self.bits[r / 64] = 1 << (r % 64);
        self.single.clear();
        self.single
            .push(inst.candidate_tokens(i), w, &self.bits, None);
    }

    /// Merges a child's sets (`forced`: one must be kept) into `acc`, the subtree's sets with
    /// a kept candidate so far, whose own part with nothing kept is `base`. Once the run's work
    /// passes its budget, merging stops (leaving `acc` unusable) so that one large merge
    /// cannot run far past it; the caller then reports [`Knap::Aborted`].
    fn merge(&mut self, acc: &mut List, base: Base, child: &List, forced: bool, capacity: u64) {
        if self.work > self.budget {
            return;
        }
        let words = self.words;
        let next = &mut self.next;
        next.clear();
        if !forced {
            next.tokens.extend_from_slice(&acc.tokens);
            next.value.extend_from_slice(&acc.value);
            next.sets.extend_from_slice(&acc.sets);
        }
        for c in 0..child.len() {
            if self.work + next.len() as u64 > self.budget {
                break;
            }
            let (ct, cv, cs) = (child.tokens[c], child.value[c], child.set(c, words));
            if let Some((bt, bv)) = base {
                if bt + ct <= capacity {
                    next.push(bt + ct, bv + cv, cs, None);
                }
            }
            for a in 0..acc.len() {
                let t = acc.tokens[a] + ct;
                if t <= capacity {
                    next.push(t, acc.value[a] + cv, acc.set(a, words), Some(cs));
                }
            }
        }
        self.work += (next.len() + child.len()) as u64;
        if self.work > self.budget {
            return;
        }
        prune(next, words, &mut self.order, acc);
    }
}

/// Copies the sets of `list` that no lighter one dominates into `out`, lightest first.
fn prune(list: &List, words: usize, order: &mut Vec<usize>, out: &mut List) {
    order.clear();
    order.extend(0..list.len());
    order.sort_unstable_by(|&a, &b| {
        list.tokens[a]
            .cmp(&list.tokens[b])
            .then(list.value[b].total_cmp(&list.value[a]))
            .then(lex(list.set(b, words), list.set(a, words)))
    });
    out.clear();
    let mut top: Option<usize> = None;
    for &e in order.iter() {
        let (v, s) = (list.value[e], list.set(e, words));
        if let Some(t) = top {
            let (tv, ts) = (out.value[t], out.set(t, words));
            if tv > v + TIE_TOLERANCE || (tv >= v && lex(ts, s) == Ordering::Greater) {
                continue;
            }
        }
        out.push(list.tokens[e], v, s, None);
        let k = out.len() - 1;
        let replace = match top {
            None => true,
            Some(t) => {
                v > out.value[t]
                    || (v == out.value[t] && lex(s, out.set(t, words)) == Ordering::Greater)
            }
        };
        if replace {
            top = Some(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::bound::Relaxation;
    use crate::retention::dp::TreeDp;
    use crate::retention::tree::Fix;
    use ets_core::{KvCost, RetentionProblem};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random problem of 1–10 candidates under a random tree, token counts 0–12 per node
    /// and scores on a coarse grid (so tie-breaks matter).
    fn random_problem(rng: &mut ChaCha8Rng) -> RetentionProblem {
        let n = rng.gen_range(1..=10);
        let m = rng.gen_range(1..=6);
        let ancestor_parent = (0..m)
            .map(|j| (j > 0).then(|| rng.gen_range(0..j)))
            .collect();
        let num_clusters = rng.gen_range(1..=n);
        RetentionProblem {
            targets: (0..n).map(|_| rng.gen_range(0..4) as f64 / 8.0).collect(),
            candidate_parent: (0..n).map(|_| Some(rng.gen_range(0..m))).collect(),
            ancestor_parent,
            clusters: (0..n).map(|_| rng.gen_range(0..num_clusters)).collect(),
            num_clusters,
            lambda_b: [0.0, 0.5, 1.0, 2.0][rng.gen_range(0..4)],
            lambda_s: [0.0, 0.5, 1.5][rng.gen_range(0..3)],
            scores: (0..n).map(|_| rng.gen_range(0..3) as f64 / 3.0).collect(),
            node_ids: (0..n as u64).collect(),
            kv_cost: [KvCost::Nodes, KvCost::Tokens][rng.gen_range(0..2)],
            candidate_tokens: (0..n).map(|_| rng.gen_range(0..=12)).collect(),
            ancestor_tokens: (0..m).map(|_| rng.gen_range(0..=12)).collect(),
            capacity: None,
        }
    }

    /// The program's optimum by enumeration: every set that keeps the forced candidates, no
    /// excluded one and fits, valued as the program values it; the tie-break's choice among
    /// the best. `None` when no set qualifies.
    fn brute_force(
        inst: &Instance<'_>,
        input: DpInput<'_>,
        capacity: u64,
    ) -> Option<(f64, Vec<bool>)> {
        let n = inst.num_candidates();
        let m = inst.num_ancestors();
        let mut best: Option<(f64, Vec<bool>)> = None;
        for mask in 1u32..(1 << n) {
            let keep: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
            if (0..n).any(|i| {
                (keep[i] && input.weight[i] == f64::NEG_INFINITY) || (input.forced[i] && !keep[i])
            }) {
                continue;
            }
            let mut live = vec![false; m];
            let mut groups = Vec::new();
            let mut value = 0.0;
            let mut tokens = 0;
            for i in (0..n).filter(|&i| keep[i]) {
                value += input.weight[i];
                tokens += inst.candidate_tokens(i);
                if input.group[i] != NO_GROUP && !groups.contains(&input.group[i]) {
                    groups.push(input.group[i]);
                    value += input.group_bonus;
                }
                let mut a = Some(inst.candidate_parent(i));
                while let Some(j) = a.filter(|&j| !live[j]) {
                    live[j] = true;
                    value -= inst.ancestor_cost(j);
                    tokens += inst.ancestor_tokens(j);
                    a = inst.ancestor_parent(j);
                }
            }
            if tokens > capacity {
                continue;
            }
            let better = match &best {
                None => true,
                Some((v, _)) if (value - v).abs() > TIE_TOLERANCE => value > *v,
                Some((_, b)) => inst
                    .ranking
                    .iter()
                    .find(|&&i| keep[i] != b[i])
                    .is_some_and(|&i| keep[i]),
            };
            if better {
                best = Some((value, keep));
            }
        }
        best
    }

    /// Random fixings (each candidate free, in or out), the groups the relaxation forms for
    /// them, and weights on a coarse grid.
    fn random_input(rng: &mut ChaCha8Rng, inst: &Instance<'_>, relax: &mut Relaxation) -> Vec<f64> {
        let n = inst.num_candidates();
        let fix: Vec<Fix> = (0..n)
            .map(|_| match rng.gen_range(0..8) {
                0 => Fix::In,
                1 | 2 => Fix::Out,
                _ => Fix::Free,
            })
            .collect();
        relax.prepare(inst, &fix);
        (0..n)
            .map(|i| match fix[i] {
                Fix::Out => f64::NEG_INFINITY,
                _ => rng.gen_range(-3..=3) as f64 / 10.0,
            })
            .collect()
    }

    #[test]
    fn the_knapsack_matches_enumeration_with_fixings_groups_and_capacities() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x6b6e_6170);
        let (mut solved, mut infeasible, mut binding) = (0, 0, 0);
        for case in 0..6000 {
            let p = random_problem(&mut rng);
            let inst = Instance::new(&p);
            let mut relax = Relaxation::new(&inst);
            let weight = random_input(&mut rng, &inst, &mut relax);
            let input = DpInput {
                weight: &weight,
                forced: &relax.forced,
                group: &relax.group,
                group_bonus: inst.cluster_value,
            };
            let all: u64 = p.ancestor_tokens.iter().chain(&p.candidate_tokens).sum();
            // Mostly capacities that leave room for a few paths; some that may fit none.
            let capacity = match rng.gen_bool(0.2) {
                true => rng.gen_range(0..=all),
                false => rng.gen_range(all / 3..=all + 2),
            };
            let mut knap = KnapDp::new(&inst);
            let mut keep = vec![false; p.num_candidates()];
            let got = knap.solve(&inst, input, capacity, u64::MAX, &mut keep);
            match (got, brute_force(&inst, input, capacity)) {
                (Knap::Infeasible, None) => infeasible += 1,
                (Knap::Solved(value), Some((best, best_keep))) => {
                    solved += 1;
                    assert!(
                        (value - best).abs() <= 1e-9,
                        "case {case}: {value} vs {best}"
                    );
                    assert_eq!(keep, best_keep, "case {case}: {p:?} {weight:?}");
                    assert!(p.kept_tokens(&keep) <= capacity, "case {case}");
                    let free = brute_force(&inst, input, u64::MAX).map(|b| b.1);
                    binding += usize::from(free.is_some_and(|f| p.kept_tokens(&f) > capacity));
                }
                (got, want) => panic!("case {case}: {got:?} vs {want:?}: {p:?} {weight:?}"),
            }
        }
        eprintln!("{solved} solved ({binding} bound by the capacity), {infeasible} infeasible");
        assert!(solved >= 4000 && infeasible >= 300 && binding >= 1000);
    }

    #[test]
    fn without_a_binding_capacity_the_knapsack_is_the_tree_program() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x7472_6565);
        for case in 0..2000 {
            let p = random_problem(&mut rng);
            let inst = Instance::new(&p);
            let mut relax = Relaxation::new(&inst);
            let weight = random_input(&mut rng, &inst, &mut relax);
            let input = DpInput {
                weight: &weight,
                forced: &relax.forced,
                group: &relax.group,
                group_bonus: inst.cluster_value,
            };
            let mut dp = TreeDp::new(&inst);
            let tree = dp.solve(&inst, input);
            let mut knap = KnapDp::new(&inst);
            let mut keep = vec![false; p.num_candidates()];
            match (
                knap.solve(&inst, input, u64::MAX, u64::MAX, &mut keep),
                tree,
            ) {
                (Knap::Infeasible, None) => {}
                (Knap::Solved(value), Some(best)) => {
                    assert!(
                        (value - best).abs() <= 1e-9,
                        "case {case}: {value} vs {best}"
                    );
                    assert_eq!(keep, dp.keep, "case {case}: {p:?} {weight:?}");
                }
                (got, want) => panic!("case {case}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn a_run_past_its_budget_aborts_and_leaves_keep_alone() {
        let p = ets_core::retention::worked_example(16, 1.0, 0.0);
        let inst = Instance::new(&p);
        let mut relax = Relaxation::new(&inst);
        relax.prepare(&inst, &[Fix::Free; 5]);
        let input = DpInput {
            weight: &relax.exact_weight,
            forced: &relax.forced,
            group: &relax.group,
            group_bonus: inst.cluster_value,
        };
        let mut knap = KnapDp::new(&inst);
        let mut keep = vec![false; 5];
        assert!(matches!(
            knap.solve(&inst, input, 40, u64::MAX, &mut keep),
            Knap::Solved(_)
        ));
        assert_eq!(keep, [true, false, false, false, false]);
        let work = knap.work;
        let mut untouched = vec![false; 5];
        for budget in [0, 1, work / 2, work - 1] {
            let run = knap.solve(&inst, input, 40, budget, &mut untouched);
            assert_eq!(run, Knap::Aborted, "budget {budget} of {work}");
            assert_eq!(untouched, [false; 5]);
            assert!(knap.work <= budget + work, "the run stops near its budget");
        }
        assert!(matches!(
            knap.solve(&inst, input, 40, work, &mut untouched),
            Knap::Solved(_)
        ));
    }
}
