//! An end-to-end ETS search with the small model as policy and judge PRM.

use std::ops::ControlFlow;
use std::path::PathBuf;

use ets_core::search::{run_search, Backends, SearchEvent};
use ets_core::{Method, SamplingConfig, SearchConfig};
use ets_daemon::backend::{BertEmbedder, MistralPolicy, MistralReward, PolicyOptions, PrmProfile};
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;

use crate::support::{engine, exclusive, minilm_dir};

/// The second GSM8K test problem (a short one the small model can finish within the caps),
/// from the shared data folder.
fn gsm8k_problem() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/gsm8k_test.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let problem: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    problem["question"].as_str().unwrap().to_owned()
}

#[test]
fn ets_search_on_a_gsm8k_problem_finishes() {
    let _g = exclusive();
    let problem = gsm8k_problem();
    let engine = engine();
    let mut policy = MistralPolicy::new(engine.clone(), PolicyOptions::default());
    let mut reward =
        MistralReward::new(engine.clone(), &PrmProfile::builtin("judge").unwrap()).unwrap();
    let mut embedder = BertEmbedder::load(&minilm_dir()).unwrap();
    let solver = BranchAndBound::default();
    let clusterer = AverageLinkage::new();
    let config = SearchConfig {
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
    };
    let mut kv = KvTree::new(
        engine
            .kv_bytes_per_token()
            .expect("GGUF models know their KV size"),
    );
    let mut events = Vec::new();
    let mut observer = |e: &SearchEvent| {
        events.push(e.clone());
        ControlFlow::Continue(())
    };
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: Some(&mut embedder),
        solver: &solver,
        clusterer: &clusterer,
    };
    let started = std::time::Instant::now();
    let outcome = run_search(&problem, &config, backends, &mut kv, &mut observer).unwrap();
    let s = &outcome.stats;
    eprintln!(
        "ETS width 4 in {:.1}s: end {:?}, {} finished, {} truncated, {} depths, {} nodes, \
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
}
