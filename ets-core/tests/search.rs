//! The search driver against deterministic toy backends: budgets, KV accounting, selection
//! shapes of every method, events, stopping and errors.

mod support;

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use ets_core::retention::BruteForceRetention;
use ets_core::search::{run_search, Backends, EndReason, NodeState, SearchEvent, SearchOutcome};
use ets_core::{Method, SearchConfig, SearchError};
use ets_kvtree::KvTree;
use support::*;

fn config(method: Method, width: usize, seed: u64) -> SearchConfig {
    SearchConfig {
        method,
        width,
        seed,
        max_depth: 8,
        ..SearchConfig::default()
    }
}

fn search(config: &SearchConfig) -> SearchOutcome {
    let mut kv = KvTree::new(4);
    let (outcome, _) = run_toy(config, &BruteForceRetention, &mut kv);
    let outcome = outcome.expect("toy search runs");
    assert_eq!(
        kv.stats().live_tokens,
        0,
        "the search released every KV reference"
    );
    outcome
}

/// Recounts the paper's KV metric of a depth from the node records: tokens of the distinct
/// root paths (identical sibling steps share KV) over the candidates, the prompt included.
fn recount_union(outcome: &SearchOutcome, candidates: &[u64]) -> u64 {
    let by_id: HashMap<u64, &ets_core::search::NodeRecord> =
        outcome.nodes.iter().map(|n| (n.id, n)).collect();
    let path = |mut id: u64| {
        let mut texts = Vec::new();
        loop {
            let n = by_id[&id];
            texts.push(n.text.clone());
            match n.parent {
                Some(p) => id = p,
                None => break,
            }
        }
        texts.reverse();
        texts
    };
    let mut seen = HashSet::new();
    let mut tokens = outcome.nodes[0].tokens as u64;
    for &c in candidates {
        let p = path(c);
        for k in 2..=p.len() {
            if seen.insert(p[..k].to_vec()) {
                tokens += p[k - 1].len() as u64;
            }
        }
    }
    tokens
}

/// Runs a search with the toy policy and reward and no embedder.
fn run_without_embedder(
    c: &SearchConfig,
    policy: &mut ToyPolicy,
    reward: &mut ToyReward,
    kv: &mut KvTree<()>,
) -> Result<SearchOutcome, SearchError> {
    let backends = Backends {
        policy,
        reward,
        embedder: None,
        solver: &BruteForceRetention,
        clusterer: &ToyClusterer,
    };
    run_search("q", c, backends, kv, &mut ets_core::search::IgnoreEvents)
}

#[test]
fn every_method_completes_within_its_budget() {
    for method in Method::ALL {
        for seed in 0..6 {
            let c = config(method, 16, seed);
            let o = search(&c);
            assert!(
                !o.trajectories.is_empty() || o.stats.truncated > 0,
                "{method} seed {seed}"
            );
            let mut closed = 0;
            for d in &o.depths {
                assert!(
                    d.children_created <= 16,
                    "{method} depth {} creates {}",
                    d.depth,
                    d.children_created
                );
                closed += d.finished + d.truncated;
                let children: usize = d.allocation.iter().sum();
                if method == Method::Dvts {
                    // DVTS: each subtree spends at most its own budget.
                    let budgets = ets_core::select::dvts::subtree_budgets(16);
                    let mut spent = vec![0; budgets.len()];
                    for (&id, &n) in d.candidates.iter().zip(&d.allocation) {
                        spent[o.nodes[id as usize].subtree] += n;
                    }
                    assert!(
                        spent.iter().zip(&budgets).all(|(s, b)| s <= b),
                        "{method} depth {}: {spent:?} over {budgets:?}",
                        d.depth
                    );
                } else {
                    // The rest: never more children than the width left after the trajectories
                    // closed so far.
                    assert!(
                        children + closed <= 16,
                        "{method} seed {seed} depth {} allocates {children} with {closed} closed",
                        d.depth
                    );
                }
            }
            if method != Method::Dvts {
                assert!(
                    o.stats.finished + o.stats.truncated <= 16,
                    "{method}: {:?}",
                    o.stats
                );
            }
            assert_eq!(o.stats.nodes, o.nodes.len());
            assert!(
                o.nodes.iter().all(|n| n.state != NodeState::Open),
                "{method}: open node left"
            );
            for t in &o.trajectories {
                let leaf = &o.nodes[t.leaf as usize];
                assert_eq!(leaf.state, NodeState::Finished);
                assert_eq!(t.step_scores.len(), leaf.depth);
            }
        }
    }
}

#[test]
fn width_spent_counts_finished_and_truncated_only() {
    // REBASE: at every depth the allocation is exactly the width left after finished and
    // truncated trajectories; dropped children spend nothing.
    for seed in 0..10 {
        let o = search(&config(Method::Rebase, 16, seed));
        let mut closed = 0;
        for d in &o.depths {
            closed += d.finished + d.truncated;
            if !d.candidates.is_empty() && closed < 16 {
                assert_eq!(
                    d.allocation.iter().sum::<usize>(),
                    16 - closed,
                    "seed {seed} depth {}",
                    d.depth
                );
            }
        }
    }
}

#[test]
fn kv_metric_equals_a_recount_from_the_tree() {
    for method in [Method::Ets, Method::Rebase, Method::Beam] {
        let o = search(&config(method, 16, 3));
        let mut total = 0;
        for d in &o.depths {
            if d.candidates.is_empty() {
                continue;
            }
            let recount = recount_union(&o, &d.candidates);
            assert_eq!(d.union_tokens, recount, "{method} depth {}", d.depth);
            assert_eq!(d.union_bytes, 4 * recount);
            assert!(d.kept_tokens <= d.union_tokens);
            total += recount;
        }
        assert_eq!(o.stats.kv_metric_tokens, total);
        assert!(o.stats.peak_live_tokens <= total && o.stats.peak_live_tokens > 0);
    }
}

#[test]
fn same_seed_same_tree_and_different_seeds_differ() {
    let a = search(&config(Method::Ets, 16, 7));
    let b = search(&config(Method::Ets, 16, 7));
    assert_eq!(a.nodes, b.nodes);
    assert_eq!(a.trajectories, b.trajectories);
    let c = search(&config(Method::Ets, 16, 8));
    assert_ne!(a.nodes, c.nodes);
}

#[test]
fn ets_without_costs_is_rebase() {
    for seed in 0..8 {
        let mut ets = config(Method::Ets, 16, seed);
        ets.lambda_b = 0.0;
        ets.lambda_s = Some(0.0);
        let a = search(&ets);
        let b = search(&config(Method::Rebase, 16, seed));
        assert_eq!(a.nodes, b.nodes, "seed {seed}");
        let alloc = |o: &SearchOutcome| {
            o.depths
                .iter()
                .map(|d| d.allocation.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(alloc(&a), alloc(&b));
    }
}

#[test]
fn ets_prunes_and_clusters() {
    let mut pruned_more = 0;
    for seed in 0..8 {
        let ets = search(&config(Method::Ets, 16, seed));
        let rebase = search(&config(Method::Rebase, 16, seed));
        let first_selection = |o: &SearchOutcome| o.depths[0].kept.len();
        if first_selection(&ets) < first_selection(&rebase) {
            pruned_more += 1;
        }
        let d = &ets.depths[0];
        assert_eq!(d.clusters.len(), d.candidates.len());
        assert!(d.retention.is_some(), "ETS records its retention solve");
        // Same-prefix steps (`s<a>…`) share a cluster, different prefixes never do.
        for (i, &a) in d.candidates.iter().enumerate() {
            for (j, &b) in d.candidates.iter().enumerate() {
                let (ta, tb) = (&ets.nodes[a as usize].text, &ets.nodes[b as usize].text);
                if ta.starts_with('s') && tb.starts_with('s') {
                    assert_eq!(
                        ta.as_bytes()[1] == tb.as_bytes()[1],
                        d.clusters[i] == d.clusters[j]
                    );
                }
            }
        }
    }
    assert!(
        pruned_more >= 4,
        "ETS kept fewer nodes than REBASE in only {pruned_more} of 8 searches"
    );
}

#[test]
fn beam_dvts_and_best_of_n_have_their_shapes() {
    for seed in 0..5 {
        let beam = search(&config(Method::Beam, 16, seed));
        let mut closed = 0;
        let mut selections = 0;
        for d in &beam.depths {
            closed += d.finished + d.truncated;
            if d.candidates.is_empty() || closed >= 16 {
                continue;
            }
            selections += 1;
            // The ceil(sqrt(W_rem)) best candidates (score, then lower id) share all of W_rem.
            let remaining = 16 - closed;
            let beam_width = ((remaining as f64).sqrt().ceil() as usize).min(d.candidates.len());
            let mut ranked = d.candidates.clone();
            let score = |id: u64| beam.nodes[id as usize].score.unwrap();
            ranked.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
            let mut kept = d.kept.clone();
            kept.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
            assert_eq!(kept, ranked[..beam_width], "seed {seed} depth {}", d.depth);
            assert_eq!(d.allocation.iter().sum::<usize>(), remaining);
        }
        assert!(
            selections >= 2,
            "seed {seed}: beam selected {selections} times"
        );
        let dvts = search(&config(Method::Dvts, 16, seed));
        let subtrees: HashSet<usize> = dvts.nodes.iter().skip(1).map(|n| n.subtree).collect();
        assert!(subtrees.len() <= 4);
        for d in &dvts.depths {
            let mut per_subtree = HashMap::new();
            for &k in &d.kept {
                *per_subtree
                    .entry(dvts.nodes[k as usize].subtree)
                    .or_insert(0) += 1;
            }
            assert!(
                per_subtree.values().all(|&n| n == 1),
                "one node per subtree per depth"
            );
            assert!(d.allocation.iter().all(|&n| n == 0 || n == 4));
        }
        let bon = search(&config(Method::BestOfN, 16, seed));
        for n in bon.nodes.iter().filter(|n| n.depth >= 1) {
            let children = bon.nodes.iter().filter(|c| c.parent == Some(n.id)).count();
            assert!(children <= 1, "best-of-N chains never branch");
        }
        assert_eq!(bon.nodes.iter().filter(|n| n.depth == 1).count(), 16);
    }
}

#[test]
fn unscored_children_are_dropped_without_spending_budget() {
    let c = config(Method::Rebase, 16, 1);
    let mut kv = KvTree::new(1);
    let mut policy = ToyPolicy::default();
    let mut reward = ToyReward {
        drop_marker: Some("sa".into()),
        ..Default::default()
    };
    let o = run_without_embedder(&c, &mut policy, &mut reward, &mut kv).unwrap();
    assert!(o.stats.dropped > 0);
    assert!(o
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Dropped)
        .all(|n| n.text.starts_with("sa")));
    assert!(o.stats.finished + o.stats.truncated <= 16);
    assert_eq!(kv.stats().live_tokens, 0);
}

#[test]
fn events_arrive_in_order_and_a_stop_ends_the_search() {
    let c = config(Method::Ets, 16, 2);
    let mut kv = KvTree::new(1);
    let (o, events) = run_toy(&c, &BruteForceRetention, &mut kv);
    let o = o.unwrap();
    assert!(matches!(events[0], SearchEvent::Started { .. }));
    let depths: Vec<usize> = events
        .iter()
        .filter_map(|e| {
            if let SearchEvent::DepthDone { depth, .. } = e {
                Some(*depth)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(depths, (1..=o.depths.len()).collect::<Vec<_>>());
    if o.answer.is_some() {
        assert!(events
            .iter()
            .any(|e| matches!(e, SearchEvent::BestAnswer { .. })));
    }
    // The best answer so far follows its depth's DepthDone, with a share of the vote; the
    // last one is the search's answer.
    let mut last_best = None;
    for (i, e) in events.iter().enumerate() {
        if let SearchEvent::BestAnswer {
            depth,
            answer,
            share,
            votes,
            ..
        } = e
        {
            assert!(
                matches!(events[i - 1], SearchEvent::DepthDone { depth: d, .. } if d == *depth),
                "BestAnswer at depth {depth} right after that depth's DepthDone"
            );
            assert!((0.0..=1.0).contains(share) && *share > 0.0, "share {share}");
            assert!(*votes >= 1);
            last_best = Some(answer.clone());
        }
    }
    assert_eq!(last_best, o.answer);

    // Stop after the first depth: the search ends as stopped and lets go of all its KV.
    let mut policy = ToyPolicy::default();
    let mut reward = ToyReward::default();
    let mut embedder = ToyEmbedder::default();
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: Some(&mut embedder),
        solver: &BruteForceRetention,
        clusterer: &ToyClusterer,
    };
    let mut stop_after_depth = |e: &SearchEvent| match e {
        SearchEvent::DepthDone { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let o = run_search("q", &c, backends, &mut kv, &mut stop_after_depth).unwrap();
    assert_eq!(o.end, EndReason::Stopped);
    assert_eq!(o.depths.len(), 1);
    assert_eq!(policy.calls, 1);
    assert_eq!(kv.stats().live_tokens, 0);
}

#[test]
fn backend_errors_name_the_backend_and_release_kv() {
    let c = config(Method::Rebase, 8, 0);
    let mut kv = KvTree::new(1);
    let mut policy = ToyPolicy {
        fail_on_call: Some(2),
        ..Default::default()
    };
    let mut reward = ToyReward::default();
    let err = run_without_embedder(&c, &mut policy, &mut reward, &mut kv).unwrap_err();
    assert!(
        matches!(err, SearchError::Backend { depth: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("policy failed at depth 2: toy policy out of memory"),
        "{err}"
    );
    assert_eq!(kv.stats().live_tokens, 0);
}

#[test]
fn ets_with_coverage_needs_an_embedder() {
    let c = config(Method::Ets, 16, 0);
    let mut kv = KvTree::new(1);
    let mut policy = ToyPolicy::default();
    let mut reward = ToyReward::default();
    let err = run_without_embedder(&c, &mut policy, &mut reward, &mut kv).unwrap_err();
    assert!(matches!(err, SearchError::MissingEmbedder { .. }));
    assert!(err.to_string().contains("embedder"), "{err}");
    assert_eq!(policy.calls, 0, "nothing ran");
}

#[test]
fn token_caps_truncate_and_truncated_nodes_are_never_answers() {
    let mut c = config(Method::Rebase, 8, 4);
    c.max_total_tokens = 12;
    let o = search(&c);
    assert!(o.stats.truncated > 0);
    for n in o.nodes.iter().filter(|n| n.state == NodeState::Truncated) {
        assert!(n.path_tokens >= 12 || n.depth == c.max_depth);
        assert!(o.trajectories.iter().all(|t| t.leaf != n.id));
    }
    assert!(
        o.nodes.iter().all(|n| n.path_tokens <= 12),
        "steps are cut at the remaining budget"
    );
}

#[test]
fn backends_hear_which_nodes_the_next_depth_expands() {
    let mut c = config(Method::Rebase, 8, 3);
    c.lambda_s = Some(0.0);
    let mut kv = KvTree::new(1);
    let mut policy = ToyPolicy::default();
    let mut reward = ToyReward::default();
    let outcome = run_without_embedder(&c, &mut policy, &mut reward, &mut kv).unwrap();
    assert!(outcome.stats.depths >= 2, "the toy search goes deeper");
    // After every depth but the last, the policy hears exactly the contexts expanded next.
    assert_eq!(policy.retained.len(), policy.expanded.len() - 1);
    for (retained, next) in policy.retained.iter().zip(&policy.expanded[1..]) {
        assert_eq!(retained, next);
    }
    // The reward hears the same nodes as step lists: each context is the prompt plus its steps.
    assert_eq!(reward.retained.len(), policy.retained.len());
    let prompt: String = "Q: q\n\n".into();
    for (steps, contexts) in reward.retained.iter().zip(&policy.retained) {
        let rendered: Vec<String> = steps
            .iter()
            .map(|s| format!("{prompt}{}", s.concat()))
            .collect();
        let decoded: Vec<String> = contexts
            .iter()
            .map(|c| c.iter().map(|&t| t as u8 as char).collect())
            .collect();
        assert_eq!(rendered, decoded);
    }
}

/// Brute force that numbers its solves and reports each as unproven with that number as its
/// work, so a test can tell whether the driver records the solver's own answer.
#[derive(Default)]
struct NumberedSolver {
    calls: std::sync::Mutex<usize>,
}

impl ets_core::RetentionSolver for NumberedSolver {
    fn solve(&self, problem: &ets_core::RetentionProblem) -> ets_core::Retention {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let mut r = ets_core::RetentionSolver::solve(&BruteForceRetention, problem);
        r.proven_optimal = *calls % 2 == 0;
        r.nodes_explored = 100 + *calls;
        r.lp_solves = *calls;
        r
    }
}

#[test]
fn ets_records_each_retention_solve_as_the_solver_returned_it() {
    let c = config(Method::Ets, 16, 5);
    let solver = NumberedSolver::default();
    let mut kv = KvTree::new(1);
    let (o, _) = run_toy(&c, &solver, &mut kv);
    let o = o.unwrap();
    let solves: Vec<_> = o.depths.iter().filter_map(|d| d.retention).collect();
    assert!(solves.len() >= 2, "{} solves", solves.len());
    assert_eq!(solves.len(), *solver.calls.lock().unwrap());
    for (k, r) in solves.iter().enumerate() {
        let call = k + 1;
        assert_eq!(r.lp_solves, call);
        assert_eq!(r.nodes_explored, 100 + call);
        assert_eq!(r.proven_optimal, call % 2 == 0);
    }
}
