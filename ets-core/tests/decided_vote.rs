//! `stop_when_decided` on many random toy searches: the answer is always the one the full
//! search returns, the stop happens (and saves tokens) on some of them, and the end reason says
//! so.

mod support;

use ets_core::search::{EndReason, NodeState};
use ets_core::{Method, SearchConfig};
use support::*;

#[test]
fn a_decided_stop_never_changes_the_answer_and_saves_tokens() {
    let (mut stopped, mut saved, mut searches) = (0, 0u64, 0);
    for method in [Method::Ets, Method::Rebase, Method::Beam] {
        for width in [4, 8, 16] {
            for seed in 0..40 {
                let full = SearchConfig {
                    method,
                    width,
                    seed,
                    max_depth: 8,
                    ..SearchConfig::default()
                };
                let early = SearchConfig {
                    stop_when_decided: true,
                    ..full.clone()
                };
                let (a, b) = (run_exact(&full), run_exact(&early));
                searches += 1;
                assert_eq!(
                    b.answer, a.answer,
                    "{method} w{width} seed {seed}: the decided stop changed the answer"
                );
                assert!(b.stats.generated_tokens <= a.stats.generated_tokens);
                if b.end == EndReason::Decided {
                    stopped += 1;
                    saved += a.stats.generated_tokens - b.stats.generated_tokens;
                    assert!(b.stats.generated_tokens < a.stats.generated_tokens);
                    assert!(
                        b.stats.finished < width,
                        "a decided stop leaves width unspent"
                    );
                    assert_eq!(
                        b.nodes
                            .iter()
                            .filter(|n| n.state == NodeState::Open)
                            .count(),
                        0,
                        "a decided search prunes its open nodes"
                    );
                } else {
                    // Without a decision the two searches are the same search.
                    assert_eq!(b.nodes, a.nodes, "{method} w{width} seed {seed}");
                    assert_eq!(b.end, a.end);
                }
            }
        }
    }
    assert!(
        stopped * 10 >= searches,
        "the stop should fire on a fair share of toy searches: {stopped} of {searches}"
    );
    assert!(saved > 0);
}

#[test]
fn methods_without_a_width_budget_and_best_of_votes_never_stop_early() {
    for method in [Method::Dvts, Method::BestOfN] {
        for seed in 0..10 {
            let c = SearchConfig {
                method,
                width: 8,
                seed,
                max_depth: 8,
                stop_when_decided: true,
                ..SearchConfig::default()
            };
            assert_ne!(
                run_exact(&c).end,
                EndReason::Decided,
                "{method} seed {seed}"
            );
        }
    }
    let c = SearchConfig {
        method: Method::Rebase,
        width: 8,
        max_depth: 8,
        stop_when_decided: true,
        vote: ets_core::answer::VoteRule::BestOf(ets_core::answer::StepAggregate::Last),
        ..SearchConfig::default()
    };
    for seed in 0..10 {
        assert_ne!(
            run_exact(&SearchConfig { seed, ..c.clone() }).end,
            EndReason::Decided
        );
    }
}
