//! A job's policy and PRM built from its model leases, on whichever engine each model was
//! loaded on (mistral.rs or native), and what their K/V costs.
//!
//! Backends are built per job: a native policy or PRM owns a K/V tree for that search alone,
//! freed with it; the engines (weights) stay shared in the registry.

use ets_core::{Policy, Reward};

use super::registry::{Loaded, ModelLease};
use crate::backend::{MistralPolicy, MistralReward, PolicyOptions, PrmProfile};
use crate::native::{NativePolicy, NativePolicyOptions, NativeReward};

/// Bytes of K/V one token takes on the model of `lease` (0 when its files do not say).
pub(super) fn kv_bytes_per_token(lease: &ModelLease) -> u64 {
    match lease.loaded() {
        Loaded::Llm(engine) => engine.kv_bytes_per_token().unwrap_or(0),
        Loaded::Native(engine) => engine.config().kv_bytes_per_token(),
        Loaded::Embedder(_) => 0,
    }
}

/// Whether the PRM of `lease` keeps K/V across scores (the native engine does; mistral.rs
/// re-prefills every trajectory and keeps nothing).
pub(super) fn prm_keeps_kv(lease: &ModelLease) -> bool {
    matches!(lease.loaded(), Loaded::Native(_))
}

/// Whether the engine of `lease` runs a call's requests as one batch (native) rather than one
/// after another (mistral.rs, see `LlmEngine::run`).
pub(super) fn batches(lease: &ModelLease) -> bool {
    matches!(lease.loaded(), Loaded::Native(_))
}

/// The policy on `lease`; a native one evicts its cache above `cache_bytes`.
pub(super) fn policy(lease: &ModelLease, cache_bytes: u64) -> Result<Box<dyn Policy>, String> {
    match lease.loaded() {
        Loaded::Llm(engine) => Ok(Box::new(MistralPolicy::new(
            engine.clone(),
            PolicyOptions::default(),
        ))),
        Loaded::Native(engine) => Ok(Box::new(NativePolicy::new(
            engine.clone(),
            NativePolicyOptions {
                prompt: PolicyOptions::default(),
                max_cached_bytes: cache_bytes,
            },
        ))),
        Loaded::Embedder(_) => Err("the policy model is an embedder, not a causal LM".into()),
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
