//! The retention solver against the worked vectors and against brute force on random
//! problems, plus the work it does, its work limit and optional time cap, and its validation.
//! No test relies on a wall-clock cap: the solver's default has none.

use std::time::Duration;

use ets_core::retention::BruteForceRetention;
use ets_core::select::rebase::allocate;
use ets_core::{KvCost, RetentionError, RetentionProblem, RetentionSolver};
use ets_solver::retention::BranchAndBound;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// REBASE targets `O_i = n_i / Σn` at `width`, temperature 0.2.
fn targets(scores: &[f64], width: usize) -> Vec<f64> {
    let n = allocate(scores, width, 0.2);
    let total = n.iter().sum::<usize>().max(1) as f64;
    n.iter().map(|&k| k as f64 / total).collect()
}

/// The tree: r→A→{a1,a2,a3}, r→B→{b1,b2}.
fn worked(width: usize, lambda_b: f64, lambda_s: f64) -> RetentionProblem {
    ets_core::retention::worked_example(width, lambda_b, lambda_s)
}

/// Names of the kept candidates of the worked tree.
fn kept_names(keep: &[bool]) -> Vec<&'static str> {
    ["a1", "a2", "a3", "b1", "b2"]
        .into_iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn worked_vectors() {
    let cases: [(usize, f64, f64, &[&str]); 4] = [
        (16, 1.0, 0.0, &["a1", "a2"]),
        (16, 1.0, 1.5, &["a1", "a2", "a3", "b1"]),
        (8, 1.0, 1.5, &["a1", "a2", "a3", "b1"]),
        (16, 0.0, 0.0, &["a1", "a2", "a3", "b1", "b2"]),
    ];
    for (width, lambda_b, lambda_s, expected) in cases {
        let p = worked(width, lambda_b, lambda_s);
        let got = BranchAndBound::default().solve(&p);
        assert_eq!(
            kept_names(&got.keep),
            expected,
            "width {width}, λ_b {lambda_b}, λ_s {lambda_s}"
        );
        assert!(got.proven_optimal);
        assert!((got.objective - p.objective(&got.keep)).abs() < 1e-15);
        assert_eq!(got.keep, BruteForceRetention.solve(&p).keep);
    }
}

/// A random problem of at most 14 candidates: a random tree 1–5 deep, scores that sometimes
/// repeat (so targets and objectives tie), REBASE targets at a random width, clusters from all
/// singletons to one big cluster, and the grid of weights.
fn random_problem(rng: &mut ChaCha8Rng) -> RetentionProblem {
    let n = rng.gen_range(1..=14);
    let depth = rng.gen_range(1..=5);
    // Ancestors level by level; level 0 is the root.
    let mut ancestor_parent = vec![None];
    let mut level = vec![0usize];
    for _ in 1..depth {
        let start = ancestor_parent.len();
        for _ in 0..rng.gen_range(1..=4) {
            let parent = level[rng.gen_range(0..level.len())];
            ancestor_parent.push(Some(parent));
        }
        level = (start..ancestor_parent.len()).collect();
    }
    let m = ancestor_parent.len();
    let candidate_parent: Vec<Option<usize>> = (0..n)
        .map(|_| {
            Some(if rng.gen_bool(0.85) {
                level[rng.gen_range(0..level.len())]
            } else {
                rng.gen_range(0..m)
            })
        })
        .collect();
    let scores: Vec<f64> = if rng.gen_bool(0.3) {
        (0..n).map(|_| rng.gen_range(0..5) as f64 / 5.0).collect()
    } else {
        (0..n).map(|_| rng.gen()).collect()
    };
    let width = [4, 8, 16, 64][rng.gen_range(0..4)];
    let num_clusters = match rng.gen_range(0..4) {
        0 => n,
        1 => 1,
        _ => rng.gen_range(1..=n),
    };
    let clusters: Vec<usize> = if num_clusters == n && rng.gen_bool(0.5) {
        (0..n).collect()
    } else {
        (0..n).map(|_| rng.gen_range(0..num_clusters)).collect()
    };
    let mut node_ids: Vec<u64> = (0..n as u64).map(|i| 10 + 3 * i).collect();
    node_ids.shuffle(rng);
    RetentionProblem {
        targets: targets(&scores, width),
        candidate_parent,
        ancestor_parent,
        clusters,
        num_clusters,
        lambda_b: [0.0, 0.5, 1.0, 2.0][rng.gen_range(0..4)],
        lambda_s: [0.0, 0.5, 1.4, 1.5, 3.0][rng.gen_range(0..5)],
        scores,
        node_ids,
        kv_cost: KvCost::Nodes,
        candidate_tokens: vec![],
        ancestor_tokens: vec![],
        capacity: None,
    }
}

/// Solves 1500 random problems with `solver` and checks each against brute force: same
/// objective, same kept set (ties included), proven optimal. Returns (problems that needed
/// branch-and-bound, LP solves in all).
fn check_against_brute_force(solver: BranchAndBound) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(2502_13575);
    let mut branched = 0;
    let mut lp_solves = 0;
    for case in 0..1500 {
        let p = random_problem(&mut rng);
        let bf = BruteForceRetention.solve(&p);
        let bb = solver.solve(&p);
        assert!(bb.proven_optimal, "case {case}: {p:?}");
        assert!(
            (bb.objective - bf.objective).abs() <= 1e-9,
            "case {case}: {} vs {}: {p:?}",
            bb.objective,
            bf.objective
        );
        assert_eq!(bb.keep, bf.keep, "case {case}: tie sets differ: {p:?}");
        assert_eq!(bb.objective, p.objective(&bb.keep), "case {case}");
        branched += usize::from(bb.nodes_explored > 0);
        lp_solves += bb.lp_solves;
    }
    (branched, lp_solves)
}

#[test]
fn random_problems_match_brute_force() {
    let (branched, _) = check_against_brute_force(BranchAndBound::default());
    assert!(
        branched >= 300,
        "only {branched} problems needed branch-and-bound"
    );
}

#[test]
fn random_problems_match_brute_force_with_lp_bounds_only() {
    let (branched, lp_solves) = check_against_brute_force(BranchAndBound {
        dual_steps: 0,
        ..BranchAndBound::default()
    });
    assert!(
        branched >= 300,
        "only {branched} problems needed branch-and-bound"
    );
    assert!(lp_solves >= 300, "only {lp_solves} LP solves");
}

#[test]
fn separable_problems_need_no_lp() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..200 {
        let mut p = random_problem(&mut rng);
        if p.lambda_b == 0.0 {
            p.lambda_b = 1.0;
        }
        let mut singletons = p.clone();
        singletons.clusters = (0..p.num_candidates()).collect();
        singletons.num_clusters = p.num_candidates();
        p.lambda_s = 0.0;
        for q in [p, singletons] {
            let got = BranchAndBound::default().solve(&q);
            assert_eq!((got.lp_solves, got.nodes_explored), (0, 0));
            assert!(got.proven_optimal);
            assert_eq!(got.keep, BruteForceRetention.solve(&q).keep);
        }
    }
}

#[test]
fn keeping_everything_needs_no_search() {
    let p = worked(16, 0.0, 1.5);
    let got = BranchAndBound::default().solve(&p);
    assert_eq!(got.keep, vec![true; 5]);
    assert_eq!((got.lp_solves, got.nodes_explored), (0, 0));
}

/// The worked tree with clusters across parents: a1 with b1, a3 with b2.
fn crossed(width: usize, lambda_b: f64, lambda_s: f64) -> RetentionProblem {
    RetentionProblem {
        clusters: vec![0, 1, 2, 0, 2],
        ..worked(width, lambda_b, lambda_s)
    }
}

#[test]
fn sibling_clusters_need_no_search() {
    // The worked tree's clusters each sit under one parent: exact in the tree program.
    let got = BranchAndBound::default().solve(&worked(16, 1.0, 1.5));
    assert_eq!((got.lp_solves, got.nodes_explored), (0, 0));
}

#[test]
fn clusters_across_parents_are_searched() {
    let p = crossed(16, 1.0, 1.5);
    let got = BranchAndBound::default().solve(&p);
    assert!(got.nodes_explored >= 1);
    assert!(got.proven_optimal);
    assert_eq!(got.keep, BruteForceRetention.solve(&p).keep);
}

#[test]
fn work_limit_returns_the_incumbent_unproven() {
    let p = crossed(16, 1.0, 1.5);
    // Enough work for the root and the first incumbent, not for the proof.
    let solver = BranchAndBound {
        work_limit: 0,
        ..BranchAndBound::default()
    };
    let got = solver.solve(&p);
    assert!(!got.proven_optimal);
    assert!(got.keep.contains(&true));
    assert_eq!(got.objective, p.objective(&got.keep));
    // The same limit gives the same set every time, and the default limit proves it.
    assert_eq!(solver.solve(&p), got);
    assert!(BranchAndBound::default().solve(&p).proven_optimal);
}

#[test]
fn the_optional_time_cap_returns_the_incumbent_unproven() {
    let p = crossed(16, 1.0, 1.5);
    let solver = BranchAndBound {
        time_limit: Some(Duration::ZERO),
        ..BranchAndBound::default()
    };
    let got = solver.solve(&p);
    assert!(!got.proven_optimal);
    assert_eq!(got.objective, p.objective(&got.keep));
    assert_eq!(BranchAndBound::default().time_limit, None, "off by default");
}

#[test]
fn invalid_problems_are_errors() {
    let mut p = worked(16, 1.0, 1.5);
    p.clusters[0] = 7;
    assert!(matches!(
        BranchAndBound::default().try_solve(&p),
        Err(RetentionError::Index {
            field: "clusters",
            ..
        })
    ));
    p.targets.clear();
    assert!(BranchAndBound::default().try_solve(&p).is_err());
}
