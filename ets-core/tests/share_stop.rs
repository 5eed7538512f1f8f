//! `stop_at_share` on many random toy searches: it fires only when the leading answer holds the
//! share with enough trajectories finished, prunes what was open, saves tokens, and otherwise
//! leaves the search exactly as it was.

mod support;

use ets_core::answer::{vote, vote_share, Dataset, Grader, VoteCandidate};
use ets_core::search::{EndReason, NodeState, SearchOutcome, Trajectory};
use ets_core::{Method, SearchConfig};
use support::*;

/// The share of the vote the outcome's answer holds, recomputed from its trajectories.
fn final_share(outcome: &SearchOutcome, config: &SearchConfig) -> f64 {
    let candidates: Vec<VoteCandidate<'_>> = outcome
        .trajectories
        .iter()
        .map(Trajectory::vote_candidate)
        .collect();
    let v = vote(&candidates, config.vote, Dataset::Math, Grader::Lenient);
    vote_share(&v, config.vote).expect("a stopped search has a winner")
}

#[test]
fn a_share_stop_fires_only_at_the_share_and_otherwise_changes_nothing() {
    let (mut fired, mut saved, mut searches) = (0, 0u64, 0);
    for method in [Method::Ets, Method::Rebase, Method::Beam] {
        for width in [4, 8, 16] {
            for seed in 0..30 {
                let full = SearchConfig {
                    method,
                    width,
                    seed,
                    max_depth: 8,
                    ..SearchConfig::default()
                };
                let early = SearchConfig {
                    stop_at_share: Some(0.6),
                    min_finished: 2,
                    ..full.clone()
                };
                let (a, b) = (run_exact(&full), run_exact(&early));
                searches += 1;
                assert!(b.stats.generated_tokens <= a.stats.generated_tokens);
                if b.end == EndReason::ShareReached {
                    fired += 1;
                    saved += a.stats.generated_tokens - b.stats.generated_tokens;
                    assert!(b.stats.finished >= 2, "{method} w{width} seed {seed}");
                    assert!(b.stats.finished < width, "width left unspent");
                    let share = final_share(&b, &early);
                    assert!(share >= 0.6, "{method} w{width} seed {seed}: share {share}");
                    assert!(!b.end.is_partial());
                    assert_eq!(
                        b.nodes
                            .iter()
                            .filter(|n| n.state == NodeState::Open)
                            .count(),
                        0,
                        "the open nodes are pruned"
                    );
                } else {
                    assert_eq!(b.nodes, a.nodes, "{method} w{width} seed {seed}");
                    assert_eq!((b.end, &b.answer), (a.end, &a.answer));
                }
            }
        }
    }
    assert!(
        fired * 10 >= searches,
        "the stop should fire on a fair share of toy searches: {fired} of {searches}"
    );
    assert!(saved > 0);
}

#[test]
fn a_share_stop_waiting_for_the_whole_width_never_fires() {
    for seed in 0..20 {
        let c = SearchConfig {
            method: Method::Rebase,
            width: 6,
            seed,
            max_depth: 8,
            stop_at_share: Some(0.01),
            min_finished: 6,
            ..SearchConfig::default()
        };
        assert_ne!(run_exact(&c).end, EndReason::ShareReached, "seed {seed}");
    }
}
