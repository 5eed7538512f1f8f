//! A job's policy and PRM built from its model leases through ets-engine's [`CausalLm`]
//! boundary, whichever engine each model was loaded on, and what their K/V costs.
//!
//! Backends are built per job: a native policy or PRM owns a K/V tree for that search alone,
//! freed with it; the engines (weights) stay shared in the registry.

use std::sync::Arc;

use ets_core::{Embedder, Policy, Reward};
use ets_engine::{CausalLm, PolicyOptions, PrmProfile, SharedEmbedder};

use super::registry::{Loaded, ModelLease};

/// The embedder name that means "the policy's own hidden states" (native engine only).
pub(super) const POLICY_EMBEDDER: &str = "policy";

/// Where a job's step embeddings come from.
#[derive(Debug)]
pub(super) enum JobEmbedder {
    /// None needed (not ETS, or no semantic term).
    None,
    /// An embedding model from the registry.
    Model(ModelLease),
    /// The policy's mean hidden state over each step.
    Policy,
}

/// The causal LM of a policy or PRM lease.
fn causal_lm<'a>(lease: &'a ModelLease, role: &str) -> Result<&'a Arc<dyn CausalLm>, String> {
    match lease.loaded() {
        Loaded::Lm(lm) => Ok(lm),
        Loaded::Embedder(_) => Err(format!("the {role} model is an embedder, not a causal LM")),
    }
}

/// Bytes of K/V one token takes on the model of `lease` (0 when its files do not say).
pub(super) fn kv_bytes_per_token(lease: &ModelLease) -> u64 {
    match lease.loaded() {
        Loaded::Lm(lm) => lm.kv_bytes_per_token(),
        Loaded::Embedder(_) => 0,
    }
}

/// Whether the backends on `lease` keep a job's K/V across calls and run a call's requests as
/// one batch (native); mistral.rs keeps none (its PRM re-prefills every trajectory) and runs
/// requests one after another.
pub(super) fn keeps_job_kv(lease: &ModelLease) -> bool {
    matches!(lease.loaded(), Loaded::Lm(lm) if lm.keeps_job_kv())
}

/// Checks that the policy on `lease` can embed steps itself (`--embedder policy`).
pub(super) fn check_policy_embeds_steps(lease: &ModelLease) -> Result<(), String> {
    let lm = causal_lm(lease, "policy")?;
    if lm.embeds_steps() {
        Ok(())
    } else {
        Err(format!(
            "the `{POLICY_EMBEDDER}` embedder reads the native engine's hidden states, but the \
             policy runs on {}; run it with --engine native or name an embedding model",
            lm.engine()
        ))
    }
}

/// The policy on `lease`; one that caches K/V evicts above `cache_bytes`.
fn policy(lease: &ModelLease, cache_bytes: u64) -> Result<Box<dyn Policy>, String> {
    causal_lm(lease, "policy")?
        .policy(&PolicyOptions::default(), cache_bytes)
        .map_err(|e| e.to_string())
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
            let shared = model
                .embedder()
                .ok_or("the embedder model is not an embedding model")?
                .clone();
            Ok((
                policy(lease, cache_bytes)?,
                Some(Box::new(SharedEmbedder(shared))),
            ))
        }
        JobEmbedder::Policy => {
            check_policy_embeds_steps(lease)?;
            let (policy, embedder) = causal_lm(lease, "policy")?
                .policy_with_step_embedder(&PolicyOptions::default(), cache_bytes)
                .map_err(|e| e.to_string())?;
            Ok((policy, Some(embedder)))
        }
    }
}

/// The PRM on `lease` with `profile`; one that caches K/V evicts above `cache_bytes`.
pub(super) fn reward(
    lease: &ModelLease,
    profile: &PrmProfile,
    cache_bytes: u64,
) -> Result<Box<dyn Reward>, String> {
    causal_lm(lease, "PRM")?
        .reward(profile, cache_bytes)
        .map_err(|e| e.to_string())
}

/// Token count of the root prompt the policy on `lease` builds for `problem`.
pub(super) fn prompt_tokens(lease: &ModelLease, problem: &str) -> Result<usize, String> {
    let mut policy = policy(lease, 0)?;
    policy
        .encode_prompt(problem)
        .map(|ids| ids.len())
        .map_err(|e| format!("encoding the problem: {e}"))
}
