//! The preprocessed form of a retention problem that every part of the solver shares: the tree
//! as child lists, the tie ranking, cluster membership and the constants of the objective.

use ets_core::RetentionProblem;

/// What a branch-and-bound node says about one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fix {
    /// Not decided yet.
    Free,
    /// Must be kept.
    In,
    /// Must not be kept.
    Out,
}

/// A validated [`RetentionProblem`] with the lookups the solver needs.
///
/// Candidate and ancestor indices are the problem's own; every list is in a fixed order so the
/// solver is deterministic. Cluster members are listed in tie-ranking order.
#[derive(Debug)]
pub(crate) struct Instance<'a> {
    /// The problem itself.
    pub(crate) problem: &'a RetentionProblem,
    /// Cost `c` of one unit of KV weight (negative when `λ_b = 0`); see
    /// [`RetentionProblem::unit_cost`].
    pub(crate) unit_cost: f64,
    /// Per ancestor: its KV weight (1, or its tokens with the token cost) and cost `c·w`.
    anc_weight: Vec<u64>,
    anc_cost: Vec<f64>,
    /// Per candidate: its cost `c·w`.
    cand_cost: Vec<f64>,
    /// Token counts (empty when the problem has none), and the capacity.
    anc_tokens: Vec<u64>,
    cand_tokens: Vec<u64>,
    /// Most tokens the kept paths may hold.
    pub(crate) capacity: Option<u64>,
    /// Value `λ_s/K` of covering one cluster.
    pub(crate) cluster_value: f64,
    /// Candidates in tie-ranking order.
    pub(crate) ranking: Vec<usize>,
    /// Position of each candidate in `ranking`.
    pub(crate) rank: Vec<usize>,
    parent: Vec<usize>,
    cand_start: Vec<usize>,
    cand_list: Vec<usize>,
    anc_start: Vec<usize>,
    anc_list: Vec<usize>,
    member_start: Vec<usize>,
    member_list: Vec<usize>,
}

/// Groups `items` by `key` (in `0..groups`) into compressed lists, keeping the input order.
fn group_by(groups: usize, items: impl Iterator<Item = (usize, usize)> + Clone) -> Compressed {
    let mut start = vec![0; groups + 1];
    for (key, _) in items.clone() {
        start[key + 1] += 1;
    }
    for g in 0..groups {
        start[g + 1] += start[g];
    }
    let mut next = start.clone();
    let mut list = vec![0; start[groups]];
    for (key, item) in items {
        list[next[key]] = item;
        next[key] += 1;
    }
    (start, list)
}

type Compressed = (Vec<usize>, Vec<usize>);

impl<'a> Instance<'a> {
    /// Preprocesses a problem that passed [`RetentionProblem::validate`] and has an ancestor
    /// (so every candidate has a parent: the root alone is solved without an instance).
    pub(crate) fn new(problem: &'a RetentionProblem) -> Self {
        let n = problem.num_candidates();
        let parent: Vec<usize> = problem
            .candidate_parent
            .iter()
            .map(|p| p.expect("below an ancestor every candidate has a parent"))
            .collect();
        let m = problem.num_ancestors();
        let ranking = problem.tie_ranking();
        let mut rank = vec![0; n];
        for (r, &i) in ranking.iter().enumerate() {
            rank[i] = r;
        }
        let (cand_start, cand_list) = group_by(m, parent.iter().copied().zip(0..n));
        let (anc_start, anc_list) = group_by(
            m,
            problem
                .ancestor_parent
                .iter()
                .enumerate()
                .filter_map(|(j, p)| p.map(|p| (p, j))),
        );
        let (member_start, member_list) = group_by(
            problem.num_clusters,
            ranking.iter().map(|&i| (problem.clusters[i], i)),
        );
        let unit_cost = problem.unit_cost();
        let anc_weight: Vec<u64> = (0..m).map(|j| problem.ancestor_weight(j)).collect();
        Instance {
            problem,
            unit_cost,
            anc_cost: anc_weight.iter().map(|&w| unit_cost * w as f64).collect(),
            cand_cost: (0..n)
                .map(|i| unit_cost * problem.candidate_weight(i) as f64)
                .collect(),
            anc_weight,
            anc_tokens: problem.ancestor_tokens.clone(),
            cand_tokens: problem.candidate_tokens.clone(),
            capacity: problem.capacity,
            cluster_value: problem.cluster_value(),
            ranking,
            rank,
            parent,
            cand_start,
            cand_list,
            anc_start,
            anc_list,
            member_start,
            member_list,
        }
    }

    /// Number of candidates N.
    pub(crate) fn num_candidates(&self) -> usize {
        self.rank.len()
    }

    /// Number of ancestors M.
    pub(crate) fn num_ancestors(&self) -> usize {
        self.cand_start.len() - 1
    }

    /// Number of clusters K.
    pub(crate) fn num_clusters(&self) -> usize {
        self.member_start.len() - 1
    }

    /// Candidates whose direct parent is ancestor `j`.
    pub(crate) fn candidate_children(&self, j: usize) -> &[usize] {
        &self.cand_list[self.cand_start[j]..self.cand_start[j + 1]]
    }

    /// Ancestors whose parent is ancestor `j`.
    pub(crate) fn ancestor_children(&self, j: usize) -> &[usize] {
        &self.anc_list[self.anc_start[j]..self.anc_start[j + 1]]
    }

    /// Members of cluster `k`, in tie-ranking order.
    pub(crate) fn members(&self, k: usize) -> &[usize] {
        &self.member_list[self.member_start[k]..self.member_start[k + 1]]
    }

    /// Direct parent of candidate `i`.
    pub(crate) fn candidate_parent(&self, i: usize) -> usize {
        self.parent[i]
    }

    /// Parent of ancestor `j` (`None` for the root).
    pub(crate) fn ancestor_parent(&self, j: usize) -> Option<usize> {
        self.problem.ancestor_parent[j]
    }

    /// Cluster of candidate `i`.
    pub(crate) fn cluster(&self, i: usize) -> usize {
        self.problem.clusters[i]
    }

    /// `O_i − c·w_i`: what keeping candidate `i` is worth before its cluster and ancestors.
    pub(crate) fn base_weight(&self, i: usize) -> f64 {
        self.problem.targets[i] - self.cand_cost[i]
    }

    /// `c·w_j`: what ancestor `j` costs when live.
    pub(crate) fn ancestor_cost(&self, j: usize) -> f64 {
        self.anc_cost[j]
    }

    /// KV weight of ancestor `j` (1, or its tokens with the token cost).
    pub(crate) fn ancestor_weight(&self, j: usize) -> u64 {
        self.anc_weight[j]
    }

    /// Tokens of ancestor `j`'s own span (only with token counts).
    pub(crate) fn ancestor_tokens(&self, j: usize) -> u64 {
        self.anc_tokens[j]
    }

    /// Tokens of candidate `i`'s own step (only with token counts).
    pub(crate) fn candidate_tokens(&self, i: usize) -> u64 {
        self.cand_tokens[i]
    }

    /// True when some cluster has members under two or more parents, the only case where the
    /// cluster term couples candidates and the tree dynamic program alone is not exact.
    pub(crate) fn has_coupled_clusters(&self) -> bool {
        (0..self.num_clusters()).any(|k| {
            let members = self.members(k);
            members
                .iter()
                .any(|&i| self.candidate_parent(i) != self.candidate_parent(members[0]))
        })
    }

    /// Lexicographic comparison in tie-ranking order of the largest set a node allows (every
    /// non-excluded candidate kept) with `keep`: `Greater` when the node may hold a set the
    /// tie-break prefers to `keep`.
    pub(crate) fn node_may_beat(&self, fix: &[Fix], keep: &[bool]) -> bool {
        for &i in &self.ranking {
            let allowed = fix[i] != Fix::Out;
            if allowed != keep[i] {
                return allowed;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worked() -> RetentionProblem {
        ets_core::retention::worked_example(16, 1.0, 1.5)
    }

    #[test]
    fn lists_follow_the_tree_and_the_ranking() {
        let p = worked();
        let inst = Instance::new(&p);
        assert_eq!(inst.candidate_children(1), &[0, 1, 2]);
        assert_eq!(inst.candidate_children(2), &[3, 4]);
        assert_eq!(inst.ancestor_children(0), &[1, 2]);
        assert_eq!(inst.ranking, vec![0, 1, 3, 4, 2]);
        assert_eq!(inst.members(2), &[3, 4]);
        assert_eq!(inst.members(1), &[2]);
        // Clusters 0 and 2 are siblings only.
        assert!(!inst.has_coupled_clusters());
        assert!((inst.unit_cost - 1.0 / 8.0).abs() < 1e-15);
        assert_eq!(inst.ancestor_cost(2), inst.unit_cost);
        assert!((inst.cluster_value - 0.5).abs() < 1e-15);
    }

    #[test]
    fn node_may_beat_compares_the_largest_allowed_set() {
        let p = worked();
        let inst = Instance::new(&p);
        let keep = [true, true, false, false, false];
        let mut fix = [Fix::Free; 5];
        assert!(inst.node_may_beat(&fix, &keep));
        fix[3] = Fix::Out;
        fix[4] = Fix::Out;
        fix[2] = Fix::Out;
        assert!(!inst.node_may_beat(&fix, &keep));
        fix[1] = Fix::Out;
        assert!(!inst.node_may_beat(&fix, &keep));
    }
}
