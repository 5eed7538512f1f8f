//! The KV limit on many random toy searches: the live KV (the KV tree's peak live tokens, which
//! counts the union of the root paths of every node the search holds, at every insertion) never
//! exceeds `kv_limit`, every reference is released, and a limit that never binds changes
//! nothing, for every method.

mod support;

use ets_core::retention::BruteForceRetention;
use ets_core::search::{EndReason, SearchOutcome};
use ets_core::{KvCost, Method, SearchConfig};
use ets_kvtree::KvTree;
use proptest::prelude::*;
use support::run_toy;

/// Tokens of the toy prompt, `Q: what is 1+1?\n\n`.
const PROMPT: u64 = 17;

/// Runs a toy search; returns its outcome and the KV tree's peak live tokens.
fn run(config: &SearchConfig) -> (SearchOutcome, u64) {
    let mut kv = KvTree::new(2);
    let (outcome, _) = run_toy(config, &BruteForceRetention, &mut kv);
    let outcome = outcome.expect("toy search runs");
    assert_eq!(kv.stats().live_tokens, 0, "every KV reference is released");
    (outcome, kv.stats().peak_live_tokens)
}

fn config_strategy() -> impl Strategy<Value = SearchConfig> {
    (
        prop_oneof![
            Just(Method::Ets),
            Just(Method::Rebase),
            Just(Method::Beam),
            Just(Method::Dvts),
            Just(Method::BestOfN),
        ],
        1usize..=12,
        1usize..=6,
        4usize..=20,
        prop_oneof![Just(KvCost::Nodes), Just(KvCost::Tokens)],
        prop_oneof![Just(0.0), Just(0.5), Just(1.0), Just(3.0)],
        prop_oneof![Just(0.0), Just(1.5)],
        any::<u64>(),
        0u64..=240,
    )
        .prop_map(
            |(method, width, max_depth, step, kv_cost, lambda_b, lambda_s, seed, extra)| {
                SearchConfig {
                    method,
                    width,
                    max_depth,
                    max_step_tokens: step,
                    max_total_tokens: 60,
                    kv_cost,
                    lambda_b,
                    lambda_s: Some(lambda_s),
                    seed,
                    kv_limit: Some(PROMPT - 4 + extra),
                    ..SearchConfig::default()
                }
            },
        )
}

/// Whether some depth of `o` spent less width than remained (the root's included).
fn narrowed(o: &SearchOutcome, config: &SearchConfig) -> bool {
    let root = o.depths.first().map(|d| d.children_created);
    if root.is_some_and(|created| created < config.width) {
        return true;
    }
    let mut closed = 0;
    o.depths.iter().any(|d| {
        closed += d.finished + d.truncated;
        let allocated: usize = d.allocation.iter().sum();
        !d.kept.is_empty() && allocated < config.width.saturating_sub(closed)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn live_kv_never_exceeds_the_limit(config in config_strategy()) {
        let limit = config.kv_limit.unwrap();
        let (o, peak) = run(&config);
        prop_assert!(peak <= limit, "peak {peak} over the limit {limit}: {config:?}");
        for d in &o.depths {
            prop_assert!(d.union_tokens <= limit);
            prop_assert!(d.kept_tokens <= limit);
            // The width spent at a depth fits beside the kept paths, each child given the most
            // it may grow: a step, or what its parent's trajectory has left of its token cap.
            let next = o.depths.iter().find(|n| n.depth == d.depth + 1);
            if let Some(next) = next {
                let step = |id: &u64| {
                    let left = config.max_total_tokens - o.nodes[*id as usize].path_tokens;
                    config.max_step_tokens.min(left) as u64
                };
                let room = d.kept.iter().map(step).max().unwrap_or(0);
                prop_assert!(d.kept_tokens + next.children_created as u64 * room <= limit);
                // And no child grew past that room.
                for child in o.nodes.iter().filter(|c| c.depth == next.depth) {
                    prop_assert!(child.tokens as u64 <= room);
                }
            }
        }
        if o.end == EndReason::KvLimit {
            // Only because not even the cheapest open path and one child fit, or because the
            // frontier ran out, width unspent, after the limit narrowed a depth.
            let step = config.max_step_tokens as u64;
            match o.depths.last() {
                None => prop_assert!(PROMPT + step > limit),
                Some(last) => {
                    let cheapest = last
                        .candidates
                        .iter()
                        .map(|&id| PROMPT + o.nodes[id as usize].path_tokens as u64)
                        .min();
                    match cheapest {
                        // DVTS also ends at the limit when its subtrees run out after the
                        // limit narrowed a depth, candidates left that would fit.
                        Some(cheapest) if config.method == Method::Dvts => prop_assert!(
                            cheapest + step > limit
                                || (last.kept.is_empty()
                                    && o.stats.finished + o.stats.truncated < config.width)
                        ),
                        Some(cheapest) => prop_assert!(cheapest + step > limit),
                        None => {
                            prop_assert!(o.stats.finished + o.stats.truncated < config.width);
                            // DVTS spends subtree budgets, not the width left, so only its
                            // fitting knows whether the limit narrowed it.
                            if config.method != Method::Dvts {
                                prop_assert!(
                                    narrowed(&o, &config),
                                    "the limit never narrowed a depth"
                                );
                            }
                        }
                    }
                }
            }
        } else if o.end == EndReason::FrontierEmpty
            && matches!(config.method, Method::Ets | Method::Rebase | Method::Beam)
        {
            prop_assert!(!narrowed(&o, &config), "a narrowed search ends at the limit");
        }
        prop_assert_eq!(o.trajectories.len(), o.stats.finished);
    }

    #[test]
    fn a_limit_that_never_binds_changes_nothing(config in config_strategy()) {
        let free = SearchConfig { kv_limit: None, ..config.clone() };
        let roomy = SearchConfig { kv_limit: Some(u64::MAX / 2), ..config };
        let (a, _) = run(&free);
        let (b, _) = run(&roomy);
        prop_assert_eq!(&a.nodes, &b.nodes);
        prop_assert_eq!(&a.trajectories, &b.trajectories);
        prop_assert_eq!(a.end, b.end);
        let kept = |o: &SearchOutcome| -> Vec<(Vec<u64>, Vec<usize>)> {
            o.depths.iter().map(|d| (d.kept.clone(), d.allocation.clone())).collect()
        };
        prop_assert_eq!(kept(&a), kept(&b));
    }
}

#[test]
fn tight_limits_end_searches_cleanly_and_loose_ones_bind_less() {
    // One config per method, limits from below the prompt to far above: the search always ends,
    // never over its limit, and some limits in between bind (fewer children than without one).
    for method in [
        Method::Ets,
        Method::Rebase,
        Method::Beam,
        Method::Dvts,
        Method::BestOfN,
    ] {
        let base = SearchConfig {
            method,
            width: 8,
            max_depth: 6,
            max_step_tokens: 20,
            max_total_tokens: 120,
            lambda_s: Some(1.5),
            seed: 7,
            ..SearchConfig::default()
        };
        let (free, _) = run(&base);
        let free_children: usize = free.depths.iter().map(|d| d.children_created).sum();
        let mut ended_by_limit = 0;
        let mut bound = 0;
        for limit in (0..=400).step_by(10) {
            let c = SearchConfig {
                kv_limit: Some(limit.max(1)),
                ..base.clone()
            };
            let (o, peak) = run(&c);
            assert!(
                peak <= limit.max(1),
                "{method:?}, limit {limit}: peak {peak}"
            );
            ended_by_limit += usize::from(o.end == EndReason::KvLimit);
            let children: usize = o.depths.iter().map(|d| d.children_created).sum();
            bound += usize::from(children < free_children);
        }
        assert!(
            ended_by_limit >= 3,
            "{method:?}: {ended_by_limit} searches ended by the limit"
        );
        assert!(
            bound >= 5,
            "{method:?}: {bound} searches were bound by the limit"
        );
    }
}
