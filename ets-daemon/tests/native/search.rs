//! An end-to-end ETS search on the native engine (policy and judge PRM), the same search as
//! the mistral.rs backend's test, with the tree's K/V in kvtree payloads.

use std::ops::ControlFlow;

use ets_core::search::{run_search, Backends, SearchEvent};
use ets_core::{
    BackendError, Continuation, ExpandRequest, Method, Policy, SamplingConfig, SearchConfig,
};
use ets_daemon::backend::{BertEmbedder, PrmProfile};
use ets_daemon::native::{NativePolicy, NativePolicyOptions, NativeReward};
use ets_daemon::store::MINILM_L6;
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;

use crate::support::{exclusive, gsm8k_questions, native};

/// The native policy, recording its resident K/V tokens after every `retain`.
struct Watched<'a> {
    inner: &'a mut NativePolicy,
    resident_after_retain: Vec<u64>,
}

impl Policy for Watched<'_> {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        self.inner.encode_prompt(problem)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        self.inner.expand(requests)
    }

    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        self.inner.retain(live)?;
        let stats = self.inner.kv_stats();
        assert_eq!(
            stats.resident_tokens, stats.live_tokens,
            "only live K/V stays"
        );
        self.resident_after_retain.push(stats.resident_tokens);
        Ok(())
    }
}

#[test]
fn ets_search_on_a_gsm8k_problem_finishes_on_the_native_engine() {
    let _g = exclusive();
    let problem = gsm8k_questions(2).remove(1);
    let engine = native();
    let mut policy = NativePolicy::new(engine.clone(), NativePolicyOptions::default());
    let mut reward = NativeReward::new(
        engine.clone(),
        &PrmProfile::builtin("judge").unwrap(),
        1 << 30,
    )
    .unwrap();
    let minilm = crate::support::store().model_dir(MINILM_L6).unwrap();
    let mut embedder = BertEmbedder::load(&minilm).unwrap();
    let solver = BranchAndBound::default();
    let clusterer = AverageLinkage::new();
    let config = SearchConfig {
        method: Method::Ets,
        width: 4,
        max_depth: 4,
        max_step_tokens: 48,
        max_total_tokens: 160,
        seed: 1,
        answer_markers: vec!["The answer is".into(), "####".into()],
        sampling: SamplingConfig {
            temperature: 0.7,
            ..SamplingConfig::default()
        },
        ..SearchConfig::default()
    };
    let mut kv = KvTree::new(engine.config().kv_bytes_per_token());
    let mut events = Vec::new();
    let mut observer = |e: &SearchEvent| {
        events.push(e.clone());
        ControlFlow::Continue(())
    };
    let mut watched = Watched {
        inner: &mut policy,
        resident_after_retain: Vec::new(),
    };
    let backends = Backends {
        policy: &mut watched,
        reward: &mut reward,
        embedder: Some(&mut embedder),
        solver: &solver,
        clusterer: &clusterer,
    };
    let started = std::time::Instant::now();
    let outcome = run_search(&problem, &config, backends, &mut kv, &mut observer).unwrap();
    // Between depths the policy's cache holds exactly the K/V of the nodes kept for the next
    // depth: the search's own count of their union.
    let kept: Vec<u64> = outcome.depths.iter().map(|d| d.kept_tokens).collect();
    let resident = watched.resident_after_retain;
    assert!(!resident.is_empty(), "the search went past depth 1");
    assert_eq!(resident, kept[..resident.len()], "kept per depth {kept:?}");
    let s = &outcome.stats;
    eprintln!(
        "native ETS width 4 in {:.1}s: end {:?}, {} finished, {} truncated, {} depths, {} nodes, \
         {} generated tokens, KV metric {} tokens, answer {:?}; policy cache {:?}",
        started.elapsed().as_secs_f64(),
        outcome.end,
        s.finished,
        s.truncated,
        s.depths,
        s.nodes,
        s.generated_tokens,
        s.kv_metric_tokens,
        outcome.answer,
        policy.kv_stats(),
    );
    assert!(s.finished + s.truncated >= 1, "{outcome:?}");
    assert!(s.depths >= 1 && s.nodes > 1);
    assert!(s.generated_tokens > 0 && s.prm_calls > 0);
    assert!(!outcome.trajectories.is_empty(), "{outcome:?}");
    for t in &outcome.trajectories {
        assert!(
            t.step_scores.iter().all(|s| (0.0..=1.0).contains(s)),
            "{t:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| matches!(e, SearchEvent::DepthDone { .. })));
    // Every generated step is a node of the policy's cache, its bytes those of its payloads.
    let tree = policy.tree();
    let payload: u64 = tree
        .nodes()
        .filter(|&id| id != tree.root())
        .map(|id| tree.payload(id).unwrap().bytes())
        .sum();
    assert_eq!(policy.kv_stats().resident_bytes, payload);
}
