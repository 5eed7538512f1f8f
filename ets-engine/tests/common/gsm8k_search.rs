//! The end-to-end ETS search both engines' model tests run: the same GSM8K problem, caps and
//! seed, and the checks every engine must pass. Included by the `backend` and `native` test
//! binaries (`#[path]`), which bring their own policy and PRM.

use std::ops::ControlFlow;

use ets_core::search::{run_search, Backends, SearchEvent, SearchOutcome};
use ets_core::{Embedder, Method, Policy, Reward, SamplingConfig, SearchConfig};
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;

/// The first `n` GSM8K test questions of the repository's `data/`.
pub fn gsm8k_questions(n: usize) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/gsm8k_test.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .take(n)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["question"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// ETS at width 4, depth cap 4, 48-token steps, 160 a trajectory, seed 1.
pub fn config() -> SearchConfig {
    SearchConfig {
        method: Method::Ets,
        width: 4,
        max_depth: 4,
        max_step_tokens: 48,
        max_total_tokens: 160,
        seed: 1,
        // SmolLM2 ends GSM8K answers the way its training data does: "#### 12".
        answer_markers: vec!["The answer is".into(), "####".into()],
        sampling: SamplingConfig {
            temperature: 0.7,
            ..SamplingConfig::default()
        },
        ..SearchConfig::default()
    }
}

/// Runs the search on the second GSM8K problem (a short one the small model can finish
/// within the caps), prints a summary under `label`, and checks what every engine must give:
/// a finished or truncated trajectory, scores in [0, 1], depth events, every KV reference
/// released.
pub fn run_and_check(
    label: &str,
    policy: &mut dyn Policy,
    reward: &mut dyn Reward,
    embedder: &mut dyn Embedder,
    kv: &mut KvTree<()>,
) -> SearchOutcome {
    let problem = gsm8k_questions(2).remove(1);
    let backends = Backends {
        policy,
        reward,
        embedder: Some(embedder),
        solver: &BranchAndBound::default(),
        clusterer: &AverageLinkage::new(),
    };
    let mut events = Vec::new();
    let mut observer = |e: &SearchEvent| {
        events.push(e.clone());
        ControlFlow::Continue(())
    };
    let started = std::time::Instant::now();
    let outcome = run_search(&problem, &config(), backends, kv, &mut observer).unwrap();
    let s = &outcome.stats;
    eprintln!(
        "{label} ETS width 4 in {:.1}s: end {:?}, {} finished, {} truncated, {} depths, {} nodes, \
         {} generated tokens, KV metric {} tokens, peak {} bytes, answer {:?}",
        started.elapsed().as_secs_f64(),
        outcome.end,
        s.finished,
        s.truncated,
        s.depths,
        s.nodes,
        s.generated_tokens,
        s.kv_metric_tokens,
        s.peak_live_bytes,
        outcome.answer,
    );
    assert!(s.finished + s.truncated >= 1, "{outcome:?}");
    assert!(s.depths >= 1 && s.nodes > 1);
    assert!(s.generated_tokens > 0 && s.prm_calls > 0);
    assert!(s.kv_metric_tokens > 0 && s.peak_live_bytes > 0);
    assert!(
        !outcome.trajectories.is_empty(),
        "no trajectory finished: {outcome:?}"
    );
    for t in &outcome.trajectories {
        assert!(!t.step_scores.is_empty());
        assert!(
            t.step_scores.iter().all(|s| (0.0..=1.0).contains(s)),
            "{t:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| matches!(e, SearchEvent::DepthDone { .. })));
    assert_eq!(
        kv.stats().live_tokens,
        0,
        "the search released every reference"
    );
    outcome
}
