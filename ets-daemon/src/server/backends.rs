//! A job's policy and PRM built from its model leases, on whichever engine each model was
//! loaded on (mistral.rs or native), and what their K/V costs.
//!
//! Backends are built per job: a native policy or PRM owns a K/V tree for that search alone,
//! freed with it; the engines (weights) stay shared in the registry.

use std::sync::Arc;

use ets_core::{BackendError, Embedder, Policy, Reward};

use super::registry::{Loaded, ModelLease};
use crate::backend::{BertEmbedder, MistralPolicy, MistralReward, PolicyOptions, PrmProfile};
use crate::native::{
    NativeEngine, NativePolicy, NativePolicyOptions, NativeReward, PolicyStepEmbedder,
};

/// The embedder name that means "the policy's own hidden states" (native engine only).
pub(super) const POLICY_EMBEDDER: &str = "policy";

/// Where a job's step embeddings come from.
#[derive(Debug)]
pub(super) enum JobEmbedder {
    /// None needed (not ETS, or no semantic term).
    None,
    /// An embedding model from the registry.
    Model(ModelLease),
    /// The native policy's mean hidden state over each step.
    Policy,
}

/// Bytes of K/V one token takes on the model of `lease` (0 when its files do not say).
pub(super) fn kv_bytes_per_token(lease: &ModelLease) -> u64 {
    match lease.loaded() {
        Loaded::Llm(engine) => engine.kv_bytes_per_token().unwrap_or(0),
        Loaded::Native(engine) => engine.config().kv_bytes_per_token(),
        Loaded::Embedder(_) => 0,
    }
}

/// Whether `lease` runs on the native engine. Its backends keep K/V across calls (mistral.rs
/// keeps none: its PRM re-prefills every trajectory) and run a call's requests as one batch
/// (mistral.rs runs them one after another, see `LlmEngine::run`).
pub(super) fn is_native(lease: &ModelLease) -> bool {
    matches!(lease.loaded(), Loaded::Native(_))
}

/// The policy on `lease`; a native one evicts its cache above `cache_bytes`.
pub(super) fn policy(lease: &ModelLease, cache_bytes: u64) -> Result<Box<dyn Policy>, String> {
    match lease.loaded() {
        Loaded::Llm(engine) => Ok(Box::new(MistralPolicy::new(
            engine.clone(),
            PolicyOptions::default(),
        ))),
        Loaded::Native(engine) => Ok(Box::new(native_policy(engine, cache_bytes))),
        Loaded::Embedder(_) => Err("the policy model is an embedder, not a causal LM".into()),
    }
}

fn native_policy(engine: &Arc<NativeEngine>, cache_bytes: u64) -> NativePolicy {
    NativePolicy::new(
        engine.clone(),
        NativePolicyOptions {
            prompt: PolicyOptions::default(),
            max_cached_bytes: cache_bytes,
        },
    )
}

/// The policy's engine when it can also embed steps (`--embedder policy`): native only.
pub(super) fn policy_embedder_engine(lease: &ModelLease) -> Result<&Arc<NativeEngine>, String> {
    match lease.loaded() {
        Loaded::Native(engine) => Ok(engine),
        _ => Err(format!(
            "the `{POLICY_EMBEDDER}` embedder reads the native engine's hidden states, but the \
             policy runs on mistral.rs; run it with --engine native or name an embedding model"
        )),
    }
}

/// A job's policy and, when it needs one, its step embedder.
pub(super) type PolicyAndEmbedder = (Box<dyn Policy>, Option<Box<dyn Embedder>>);

/// The policy on `lease` and the job's embedder.
pub(super) fn policy_and_embedder(
    lease: &ModelLease,
    embedder: &JobEmbedder,
    cache_bytes: u64,
) -> Result<PolicyAndEmbedder, String> {
    match embedder {
        JobEmbedder::None => Ok((policy(lease, cache_bytes)?, None)),
        JobEmbedder::Model(model) => {
            let bert = model
                .embedder()
                .ok_or("the embedder model is not an embedding model")?
                .clone();
            Ok((
                policy(lease, cache_bytes)?,
                Some(Box::new(SharedEmbedder(bert))),
            ))
        }
        JobEmbedder::Policy => {
            let engine = policy_embedder_engine(lease)?;
            let mut policy = native_policy(engine, cache_bytes);
            let store = policy.record_step_embeddings();
            let embedder = PolicyStepEmbedder::new(engine.clone(), store);
            Ok((Box::new(policy), Some(Box::new(embedder))))
        }
    }
}

/// The registry's shared embedder as ets-core's [`Embedder`].
struct SharedEmbedder(Arc<BertEmbedder>);

impl Embedder for SharedEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(self.0.embed_texts(texts)?)
    }
}

/// The PRM on `lease` with `profile`; a native one evicts its cache above `cache_bytes`.
pub(super) fn reward(
    lease: &ModelLease,
    profile: &PrmProfile,
    cache_bytes: u64,
) -> Result<Box<dyn Reward>, String> {
    match lease.loaded() {
        Loaded::Llm(engine) => Ok(Box::new(
            MistralReward::new(engine.clone(), profile).map_err(|e| e.to_string())?,
        )),
        Loaded::Native(engine) => Ok(Box::new(
            NativeReward::new(engine.clone(), profile, cache_bytes).map_err(|e| e.to_string())?,
        )),
        Loaded::Embedder(_) => Err("the PRM is an embedder, not a causal LM".into()),
    }
}

/// Token count of the root prompt the policy on `lease` builds for `problem`.
pub(super) fn prompt_tokens(lease: &ModelLease, problem: &str) -> Result<usize, String> {
    let mut policy = policy(lease, 0)?;
    policy
        .encode_prompt(problem)
        .map(|ids| ids.len())
        .map_err(|e| format!("encoding the problem: {e}"))
}
