//! An end-to-end ETS search on the native engine (policy and judge PRM), the same search as
//! the mistral.rs backend's test, with the tree's K/V in kvtree payloads.

use ets_core::{BackendError, Continuation, ExpandRequest, Policy};
use ets_engine::native::{NativePolicy, NativePolicyOptions, NativeReward};
use ets_engine::store::MINILM_L6;
use ets_engine::{BertEmbedder, PrmProfile};
use ets_kvtree::KvTree;

use crate::gsm8k_search::run_and_check;
use crate::support::{exclusive, native};

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
    let mut kv = KvTree::new(engine.config().kv_bytes_per_token());
    let mut watched = Watched {
        inner: &mut policy,
        resident_after_retain: Vec::new(),
    };
    let outcome = run_and_check("native", &mut watched, &mut reward, &mut embedder, &mut kv);
    // Between depths the policy's cache holds exactly the K/V of the nodes kept for the next
    // depth: the search's own count of their union.
    let kept: Vec<u64> = outcome.depths.iter().map(|d| d.kept_tokens).collect();
    let resident = watched.resident_after_retain;
    assert!(!resident.is_empty(), "the search went past depth 1");
    assert_eq!(resident, kept[..resident.len()], "kept per depth {kept:?}");
    eprintln!(
        "native policy cache after the search: {:?}",
        policy.kv_stats()
    );
    // Every generated step is a node of the policy's cache, its bytes those of its payloads.
    let tree = policy.tree();
    let payload: u64 = tree
        .nodes()
        .filter(|&id| id != tree.root())
        .map(|id| tree.payload(id).unwrap().bytes())
        .sum();
    assert_eq!(policy.kv_stats().resident_bytes, payload);
}
