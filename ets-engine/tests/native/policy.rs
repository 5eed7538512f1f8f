//! The native policy: seeded children, steps that end at the delimiter, a K/V cache whose
//! byte count is its payloads', and no prefill of cached contexts.

use ets_core::{ExpandRequest, FinishReason, Policy, SamplingConfig};
use ets_engine::mistralrs::MistralPolicy;
use ets_engine::native::{NativePolicy, NativePolicyOptions, PolicyStepEmbedder};
use ets_engine::PolicyOptions;

use crate::support::{exclusive, mistral, native, native_f32, PROBLEM};

fn sampling(temperature: f64) -> SamplingConfig {
    SamplingConfig {
        temperature,
        ..SamplingConfig::default()
    }
}

fn request<'a>(
    context: &'a [u32],
    n: usize,
    seed: u64,
    s: &'a SamplingConfig,
) -> ExpandRequest<'a> {
    ExpandRequest {
        context,
        num_children: n,
        max_tokens: 48,
        seed,
        sampling: s,
        step_delimiter: "\n\n",
    }
}

fn policy() -> NativePolicy {
    NativePolicy::new(native(), NativePolicyOptions::default())
}

#[test]
fn same_seed_same_children_whatever_the_batch() {
    let _g = exclusive();
    let mut p = policy();
    let root = p.encode_prompt(PROBLEM).unwrap();
    let other = p.encode_prompt("What is 7 times 8?").unwrap();
    let s = sampling(0.8);
    let alone = p.expand(&[request(&root, 3, 11, &s)]).unwrap();
    let mut fresh = policy();
    let batched = fresh
        .expand(&[request(&other, 2, 5, &s), request(&root, 3, 11, &s)])
        .unwrap();
    assert_eq!(
        alone[0], batched[1],
        "the same request gives the same children"
    );
    let reseeded = p.expand(&[request(&root, 3, 12, &s)]).unwrap();
    assert_ne!(alone[0], reseeded[0], "another seed, other children");
    for c in alone[0].iter().chain(&batched[0]) {
        assert_eq!(c.token_ids.len(), c.logprobs.len());
        match c.finish {
            FinishReason::Delimiter => {
                assert!(c.text.ends_with("\n\n"), "{:?}", c.text);
                assert_eq!(c.text.matches("\n\n").count(), 1, "{:?}", c.text);
            }
            FinishReason::Length => assert_eq!(c.token_ids.len(), 48),
            FinishReason::EndOfSequence => {}
        }
    }
}

#[test]
fn greedy_children_match_the_mistral_rs_policy_in_f32() {
    let _g = exclusive();
    let mut ours = NativePolicy::new(native_f32(), NativePolicyOptions::default());
    let mut theirs = MistralPolicy::new(mistral(), PolicyOptions::default());
    let root = ours.encode_prompt(PROBLEM).unwrap();
    assert_eq!(
        root,
        theirs.encode_prompt(PROBLEM).unwrap(),
        "same prompt ids"
    );
    let s = sampling(0.0);
    let a = ours.expand(&[request(&root, 1, 3, &s)]).unwrap();
    let b = theirs.expand(&[request(&root, 1, 3, &s)]).unwrap();
    assert_eq!(
        a[0][0].token_ids, b[0][0].token_ids,
        "{:?} vs {:?}",
        a[0][0].text, b[0][0].text
    );
    assert_eq!(a[0][0].finish, b[0][0].finish);
}

#[test]
fn the_cache_holds_each_step_once_and_counts_its_payload_bytes() {
    let _g = exclusive();
    let engine = native();
    // Without warm prompts from other tests' jobs: this job prefills its own prompt.
    engine.set_prompt_cache_bytes(0);
    let mut p = policy();
    let root = p.encode_prompt(PROBLEM).unwrap();
    let s = sampling(0.8);
    let before = engine.tokens_processed();
    let children = p.expand(&[request(&root, 4, 1, &s)]).unwrap().remove(0);
    let decoded: usize = children.iter().map(|c| c.token_ids.len()).sum();
    // The prompt once, then every step token once (a step's last token too, to complete its
    // K/V; an end-of-sequence token is never run).
    assert_eq!(
        (engine.tokens_processed() - before) as usize,
        root.len() + decoded
    );

    // Expanding a child prefills nothing: only its last token is re-read.
    let child = children.iter().find(|c| !c.token_ids.is_empty()).unwrap();
    let context: Vec<u32> = root.iter().chain(&child.token_ids).copied().collect();
    let before = engine.tokens_processed();
    let grandchildren = p.expand(&[request(&context, 2, 2, &s)]).unwrap().remove(0);
    let decoded: usize = grandchildren.iter().map(|c| c.token_ids.len()).sum();
    assert_eq!((engine.tokens_processed() - before) as usize, 1 + decoded);

    let tree = p.tree();
    let payload_bytes: u64 = tree
        .nodes()
        .filter(|&id| id != tree.root())
        .map(|id| tree.payload(id).unwrap().bytes())
        .sum();
    let stats = p.kv_stats();
    assert!(stats.resident_nodes >= 3);
    assert_eq!(stats.resident_bytes, payload_bytes);
    engine.set_prompt_cache_bytes(ets_engine::native::DEFAULT_PROMPT_CACHE_BYTES);
}

#[test]
fn steps_are_embedded_from_the_policys_own_hidden_states() {
    let _g = exclusive();
    let mut p = policy();
    let store = p.record_step_embeddings();
    let root = p.encode_prompt(PROBLEM).unwrap();
    let s = sampling(1.0);
    let children = p.expand(&[request(&root, 4, 3, &s)]).unwrap().remove(0);
    let texts: Vec<&str> = children.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        store.len(),
        texts
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    let mut embedder = PolicyStepEmbedder::new(p.engine().clone(), store);
    let vectors = embedder.embed_steps(&texts).unwrap();
    assert_eq!(
        embedder.computed_alone(),
        0,
        "every generated step was recorded"
    );
    let dim = p.engine().config().hidden;
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(v.len(), dim);
        assert!((cosine(v, v) - 1.0).abs() < 1e-4, "unit length");
        for (j, w) in vectors.iter().enumerate() {
            if texts[i] != texts[j] {
                assert!(
                    cosine(v, w) < 0.9999,
                    "different steps, different vectors: {texts:?}"
                );
            }
        }
    }
    // A text the policy never generated runs on its own.
    let alone = embedder.embed_steps(&["Some other step.\n\n"]).unwrap();
    assert_eq!((embedder.computed_alone(), alone[0].len()), (1, dim));
}

#[test]
fn a_second_job_with_the_same_prompt_starts_warm_and_samples_the_same_children() {
    let _g = exclusive();
    let engine = native();
    let s = sampling(0.8);
    // Each job's first expansion, its children and the tokens the engine ran for it.
    let job = || {
        let mut p = NativePolicy::new(engine.clone(), NativePolicyOptions::default());
        let root = p.encode_prompt(PROBLEM).unwrap();
        let before = engine.tokens_processed();
        let children = p.expand(&[request(&root, 3, 21, &s)]).unwrap();
        (
            root.len() as u64,
            children,
            engine.tokens_processed() - before,
        )
    };
    // Off: nothing kept, every job prefills.
    engine.set_prompt_cache_bytes(0);
    let (prompt, cold, cold_tokens) = job();
    let (_, again, again_tokens) = job();
    assert_eq!(cold, again);
    assert_eq!(
        again_tokens, cold_tokens,
        "no warm prompt with a 0-byte cache"
    );
    // On: the first job keeps its prompt, the second runs only its last token again.
    engine.set_prompt_cache_bytes(ets_engine::native::DEFAULT_PROMPT_CACHE_BYTES);
    let start = engine.prompt_cache_stats();
    let (_, first, first_tokens) = job();
    let (_, warm, warm_tokens) = job();
    assert_eq!(first, cold, "the same children with the cache on");
    assert_eq!(warm, cold, "a warm start changes no child");
    assert_eq!(first_tokens, cold_tokens);
    assert_eq!(
        first_tokens - warm_tokens,
        prompt - 1,
        "the warm job re-reads the prompt's last token only"
    );
    let stats = engine.prompt_cache_stats();
    assert_eq!(stats.hits - start.hits, 1);
    assert_eq!(stats.misses - start.misses, 1);
    assert_eq!(stats.tokens_reused - start.tokens_reused, prompt);
    assert_eq!(
        stats.bytes,
        prompt * engine.config().kv_bytes_per_token(),
        "one prompt kept, its exact bytes"
    );
}

#[test]
fn a_different_problem_computes_only_what_follows_the_shared_chat_header() {
    let _g = exclusive();
    let engine = native();
    let s = sampling(0.8);
    let other = "A farmer has 12 cows and buys 7 more. How many cows does the farmer have now?";
    let job = |problem: &str| {
        let mut p = NativePolicy::new(engine.clone(), NativePolicyOptions::default());
        let root = p.encode_prompt(problem).unwrap();
        let before = engine.tokens_processed();
        let children = p.expand(&[request(&root, 3, 21, &s)]).unwrap();
        (root, children, engine.tokens_processed() - before)
    };
    // Off: the other problem's own prefill and children.
    engine.set_prompt_cache_bytes(0);
    let (other_root, cold, cold_tokens) = job(other);
    // On: PROBLEM is kept, then the other problem shares its chat header.
    engine.set_prompt_cache_bytes(ets_engine::native::DEFAULT_PROMPT_CACHE_BYTES);
    let (first_root, _, _) = job(PROBLEM);
    let start = engine.prompt_cache_stats();
    let (_, warm, warm_tokens) = job(other);
    let shared = first_root
        .iter()
        .zip(&other_root)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        shared >= ets_engine::native::MIN_SHARED_TOKENS && shared < other_root.len(),
        "the two prompts share a header of {shared} tokens"
    );
    assert_eq!(warm, cold, "computing on a shared header changes no child");
    assert_eq!(
        cold_tokens - warm_tokens,
        shared as u64,
        "only the tokens after the shared header are computed"
    );
    let stats = engine.prompt_cache_stats();
    assert_eq!(stats.shared_hits - start.shared_hits, 1);
    assert_eq!(stats.hits, start.hits);
    assert_eq!(stats.tokens_reused - start.tokens_reused, shared as u64);
    assert_eq!(stats.entries, 2, "both prompts are kept whole");
    // The other problem again: now a whole hit, its last token re-read only.
    let (_, again, again_tokens) = job(other);
    assert_eq!(again, cold);
    assert_eq!(cold_tokens - again_tokens, other_root.len() as u64 - 1);
}
