//! The search driver with the real solvers (`BranchAndBound`, `AverageLinkage`) gives the same
//! trees as with the brute-force references, on the toy backends of `ets-core`'s driver tests.

#[path = "../../ets-core/tests/support/mod.rs"]
mod support;

use ets_core::retention::BruteForceRetention;
use ets_core::search::{run_search, Backends, IgnoreEvents, SearchOutcome};
use ets_core::{Method, RetentionSolver, SearchConfig};
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;
use support::{run_toy, ToyEmbedder, ToyPolicy, ToyReward};

fn with_real_solvers(config: &SearchConfig) -> SearchOutcome {
    let mut kv = KvTree::new(2);
    let mut policy = ToyPolicy::default();
    let mut reward = ToyReward::default();
    let mut embedder = ToyEmbedder::default();
    let solver = BranchAndBound::default();
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: Some(&mut embedder),
        solver: &solver as &dyn RetentionSolver,
        clusterer: &AverageLinkage::default(),
    };
    let outcome = run_search("what is 1+1?", config, backends, &mut kv, &mut IgnoreEvents).unwrap();
    assert_eq!(kv.stats().live_tokens, 0);
    outcome
}

#[test]
fn real_solvers_match_the_references() {
    // Width 16 at most: the brute-force reference handles up to 20 candidates.
    for width in [4, 8, 16] {
        for seed in 0..6 {
            let config = SearchConfig {
                method: Method::Ets,
                width,
                seed,
                max_depth: 6,
                ..SearchConfig::default()
            };
            let real = with_real_solvers(&config);
            let mut kv = KvTree::new(2);
            let reference = run_toy(&config, &BruteForceRetention, &mut kv).0.unwrap();
            assert_eq!(real.nodes, reference.nodes, "width {width} seed {seed}");
            let clusters = |o: &SearchOutcome| {
                o.depths
                    .iter()
                    .map(|d| d.clusters.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(clusters(&real), clusters(&reference));
        }
    }
}

#[test]
fn wide_searches_are_proven_optimal_at_every_depth() {
    for seed in 0..3 {
        let config = SearchConfig {
            method: Method::Ets,
            width: 64,
            seed,
            max_depth: 6,
            ..SearchConfig::default()
        };
        let o = with_real_solvers(&config);
        let solves: Vec<_> = o.depths.iter().filter_map(|d| d.retention).collect();
        assert!(!solves.is_empty());
        assert!(
            solves.iter().all(|r| r.proven_optimal),
            "seed {seed}: {solves:?}"
        );
        assert!(o.depths[0].candidates.len() > 20);
    }
}
