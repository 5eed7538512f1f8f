//! ETS selection: REBASE targets, the retention problem, then REBASE again over the kept set.
//!
//! 1. REBASE over all N candidates with the remaining width gives `n_i`; targets `O_i = n_i / Σn`.
//! 2. The retention problem ([`crate::retention`]) chooses the kept set.
//! 3. REBASE over the kept candidates only, with the full remaining width; kept candidates may
//!    still get 0 children, pruned ones always get 0.
//!
//! With `λ_b = λ_s = 0` the retention problem keeps everything and ETS equals REBASE.
//!
//! Under a KV limit the caller passes the retention problem a token `capacity` for the kept
//! paths and the width it reserved room for (see the driver); both REBASE passes use that
//! width, so the children allocated sum to it exactly.

use crate::backend::RetentionSolver;
use crate::config::KvCost;
use crate::error::RetentionError;
use crate::retention::{Retention, RetentionProblem};
use crate::select::rebase;

/// The frontier of one depth as ETS sees it.
#[derive(Debug, Clone, Copy)]
pub struct EtsFrontier<'a> {
    /// PRM score of each candidate.
    pub scores: &'a [f64],
    /// Direct parent of each candidate, an index into `ancestor_parent`; `None` for the root
    /// as the lone candidate of depth 0.
    pub candidate_parent: &'a [Option<usize>],
    /// Parent of each ancestor (root first, topological order).
    pub ancestor_parent: &'a [Option<usize>],
    /// Cluster label of each candidate.
    pub clusters: &'a [usize],
    /// Number of clusters.
    pub num_clusters: usize,
    /// Node id of each candidate (tie-breaks).
    pub node_ids: &'a [u64],
    /// Tokens of each candidate's own step (may be empty when neither the token cost nor a
    /// capacity is used).
    pub candidate_tokens: &'a [u64],
    /// Tokens of each ancestor's own span, the root's prompt included (may be empty likewise).
    pub ancestor_tokens: &'a [u64],
}

/// ETS weights and width for one selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtsParams {
    /// Remaining width to distribute.
    pub width: usize,
    /// REBASE softmax temperature.
    pub temperature: f64,
    /// KV-cost weight.
    pub lambda_b: f64,
    /// Semantic-coverage weight.
    pub lambda_s: f64,
    /// What the KV term counts.
    pub kv_cost: KvCost,
    /// Most tokens the kept paths may hold, if limited.
    pub capacity: Option<u64>,
}

/// What ETS decided at one depth.
#[derive(Debug, Clone, PartialEq)]
pub struct EtsSelection {
    /// First-pass REBASE allocation over every candidate (the targets' numerators).
    pub targets: Vec<usize>,
    /// The retention solution (kept set, objective, proof status).
    pub retention: Retention,
    /// Children per candidate after the second REBASE pass.
    pub children: Vec<usize>,
}

/// Runs ETS selection for one depth.
pub fn allocate(
    frontier: EtsFrontier<'_>,
    params: EtsParams,
    solver: &dyn RetentionSolver,
) -> Result<EtsSelection, RetentionError> {
    let targets = rebase::allocate(frontier.scores, params.width, params.temperature);
    let total = targets.iter().sum::<usize>().max(1) as f64;
    let problem = RetentionProblem {
        targets: targets.iter().map(|&n| n as f64 / total).collect(),
        candidate_parent: frontier.candidate_parent.to_vec(),
        ancestor_parent: frontier.ancestor_parent.to_vec(),
        clusters: frontier.clusters.to_vec(),
        num_clusters: frontier.num_clusters,
        lambda_b: params.lambda_b,
        lambda_s: params.lambda_s,
        scores: frontier.scores.to_vec(),
        node_ids: frontier.node_ids.to_vec(),
        kv_cost: params.kv_cost,
        candidate_tokens: frontier.candidate_tokens.to_vec(),
        ancestor_tokens: frontier.ancestor_tokens.to_vec(),
        capacity: params.capacity,
    };
    problem.validate()?;
    let retention = solver.solve(&problem);
    let kept: Vec<usize> = (0..problem.num_candidates())
        .filter(|&i| retention.keep[i])
        .collect();
    let kept_scores: Vec<f64> = kept.iter().map(|&i| frontier.scores[i]).collect();
    let mut children = vec![0; problem.num_candidates()];
    for (&i, n) in kept.iter().zip(rebase::allocate(
        &kept_scores,
        params.width,
        params.temperature,
    )) {
        children[i] = n;
    }
    Ok(EtsSelection {
        targets,
        retention,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::BruteForceRetention;

    const SCORES: [f64; 5] = [0.9, 0.85, 0.4, 0.6, 0.55];

    /// r→A→{a1,a2,a3}, r→B→{b1,b2}; clusters [0,0,1,2,2].
    fn worked(width: usize, lambda_b: f64, lambda_s: f64) -> EtsSelection {
        let frontier = EtsFrontier {
            scores: &SCORES,
            candidate_parent: &[Some(1), Some(1), Some(1), Some(2), Some(2)],
            ancestor_parent: &[None, Some(0), Some(0)],
            clusters: &[0, 0, 1, 2, 2],
            num_clusters: 3,
            node_ids: &[3, 4, 5, 6, 7],
            candidate_tokens: &[],
            ancestor_tokens: &[],
        };
        allocate(
            frontier,
            EtsParams {
                width,
                temperature: 0.2,
                lambda_b,
                lambda_s,
                kv_cost: KvCost::Nodes,
                capacity: None,
            },
            &BruteForceRetention,
        )
        .unwrap()
    }

    fn kept(s: &EtsSelection) -> Vec<&'static str> {
        let names = ["a1", "a2", "a3", "b1", "b2"];
        (0..5)
            .filter(|&i| s.retention.keep[i])
            .map(|i| names[i])
            .collect()
    }

    #[test]
    fn the_root_alone_gets_the_whole_width() {
        // Depth 0: the frontier is the root, with no ancestors; no special case needed.
        let frontier = EtsFrontier {
            scores: &[0.5],
            candidate_parent: &[None],
            ancestor_parent: &[],
            clusters: &[0],
            num_clusters: 1,
            node_ids: &[0],
            candidate_tokens: &[],
            ancestor_tokens: &[],
        };
        let params = EtsParams {
            width: 16,
            temperature: 0.2,
            lambda_b: 1.0,
            lambda_s: 1.5,
            kv_cost: KvCost::Nodes,
            capacity: None,
        };
        let s = allocate(frontier, params, &BruteForceRetention).unwrap();
        assert_eq!(s.retention.keep, vec![true]);
        assert_eq!(s.children, vec![16]);
    }

    #[test]
    fn worked_vectors_of_the_issue() {
        let s = worked(16, 0.0, 0.0);
        assert_eq!(s.children, vec![8, 5, 0, 2, 1]);
        let s = worked(16, 1.0, 0.0);
        assert_eq!(
            (kept(&s), s.children),
            (vec!["a1", "a2"], vec![9, 7, 0, 0, 0])
        );
        let s = worked(16, 1.0, 1.5);
        assert_eq!(
            (kept(&s), s.children),
            (vec!["a1", "a2", "a3", "b1"], vec![8, 6, 0, 2, 0])
        );
        let s = worked(8, 1.0, 1.5);
        assert_eq!(
            (kept(&s), s.children),
            (vec!["a1", "a2", "a3", "b1"], vec![4, 3, 0, 1, 0])
        );
    }

    #[test]
    fn without_costs_ets_equals_rebase() {
        // Random-ish trees: ETS with λ_b = λ_s = 0 must give REBASE's allocation exactly.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for trial in 0..200 {
            let n = 1 + (next() % 12) as usize;
            let m = 1 + (next() % 5) as usize;
            let ancestor_parent: Vec<Option<usize>> = (0..m)
                .map(|j| {
                    if j == 0 {
                        None
                    } else {
                        Some((next() % j as u64) as usize)
                    }
                })
                .collect();
            let candidate_parent: Vec<Option<usize>> =
                (0..n).map(|_| Some((next() % m as u64) as usize)).collect();
            let scores: Vec<f64> = (0..n).map(|_| (next() % 1000) as f64 / 1000.0).collect();
            let clusters: Vec<usize> = (0..n).map(|_| (next() % 3) as usize).collect();
            let node_ids: Vec<u64> = (0..n as u64).collect();
            let width = [1, 4, 8, 16, 64][trial % 5];
            let frontier = EtsFrontier {
                scores: &scores,
                candidate_parent: &candidate_parent,
                ancestor_parent: &ancestor_parent,
                clusters: &clusters,
                num_clusters: 3,
                node_ids: &node_ids,
                candidate_tokens: &[],
                ancestor_tokens: &[],
            };
            let params = EtsParams {
                width,
                temperature: 0.2,
                lambda_b: 0.0,
                lambda_s: 0.0,
                kv_cost: KvCost::Nodes,
                capacity: None,
            };
            let s = allocate(frontier, params, &BruteForceRetention).unwrap();
            assert_eq!(
                s.children,
                rebase::allocate(&scores, width, 0.2),
                "trial {trial}"
            );
            assert!(s.retention.keep.iter().all(|&k| k));
        }
    }
}
