//! The native engine: a llama-family GGUF forward pass written around the search tree, whose
//! K/V lives in ets-kvtree nodes, and ets-core's backend traits on it.
//!
//! Layout:
//! - `text`: [`GgufText`], tokenizer, chat template and stop ids from the GGUF metadata.
//! - `model`: [`ModelConfig`], the weights ([`WeightMode`]: quantized or f32 matmuls); RoPE.
//! - `kernels`: the tiled Q8_0 GEMM (weights repacked at load, AVX2 microkernel chosen at
//!   run time, scalar fallback) and `Projection`, stacked weight matrices run as one product.
//! - `kv`: [`KvSegment`] (a node's K/V for every layer, the kvtree payload) and [`PendingKv`]
//!   (K/V of tokens not in a node yet).
//! - `attention`: attention of many query rows over shared segments, read in place and
//!   merged through one log-sum-exp shift per row (bit-identical however a context is split).
//! - `engine`: [`NativeEngine`], one batched forward pass over any mix of prefill and decode
//!   rows.
//! - `policy`: [`NativePolicy`], ets-core's `Policy` with the K/V cache as a kvtree.
//! - `prm`: [`NativeReward`], ets-core's `Reward` scoring each new step incrementally.
//! - `embed`: [`PolicyStepEmbedder`], step embeddings from the policy's own hidden states.
//! - [`NativeLm`]: the engine behind the crate's [`CausalLm`](crate::CausalLm) boundary.
//!
//! **Invariants**: a node's payload holds exactly its span's K/V (no spare capacity), so a
//! `KvTree<KvSegment>` built with [`ModelConfig::kv_bytes_per_token`] reports byte counts equal
//! to the sum of its payloads' tensor sizes. Segments are immutable once in the tree; a
//! sequence only ever appends to its own [`PendingKv`].

mod attention;
mod attention_math;
mod embed;
mod engine;
mod kernels;
mod kv;
mod model;
mod policy;
mod prm;
mod prompt_cache;

pub use crate::gguf_text::{ChatRole, Encoded, GgufText};
pub use embed::{PolicyStepEmbedder, StepEmbeddings};
pub use engine::{Logits, NativeEngine, SeqInput, SeqOutput};
pub use kv::{KvPrecision, KvSegment, PendingKv};
pub use model::{ModelConfig, RopeStyle, WeightMode, NATIVE_ARCHITECTURES};
pub use policy::{NativePolicy, NativePolicyOptions};
pub use prm::{NativeReward, ScoreLayout};
pub use prompt_cache::{PromptCacheStats, DEFAULT_PROMPT_CACHE_BYTES, MIN_SHARED_TOKENS};

use std::sync::Arc;

use ets_core::{Policy, Reward};

use crate::engines::{CausalLm, EngineKind};
use crate::error::Error;
use crate::profile::PrmProfile;
use crate::prompt::PolicyOptions;

/// A model on the native engine behind the [`CausalLm`] boundary: each job's policy and PRM own
/// a K/V tree for that search, and a call's requests run as one batch.
#[derive(Debug, Clone)]
pub struct NativeLm(Arc<NativeEngine>);

impl NativeLm {
    /// Wraps a loaded engine.
    pub fn new(engine: Arc<NativeEngine>) -> Self {
        Self(engine)
    }

    fn native_policy(&self, options: &PolicyOptions, cache_bytes: u64) -> NativePolicy {
        NativePolicy::new(
            self.0.clone(),
            NativePolicyOptions {
                prompt: options.clone(),
                max_cached_bytes: cache_bytes,
            },
        )
    }
}

impl CausalLm for NativeLm {
    fn engine(&self) -> EngineKind {
        EngineKind::Native
    }

    fn kv_bytes_per_token(&self) -> u64 {
        self.0.config().kv_bytes_per_token()
    }

    fn keeps_job_kv(&self) -> bool {
        true
    }

    fn embeds_steps(&self) -> bool {
        true
    }

    fn policy(&self, options: &PolicyOptions, cache_bytes: u64) -> Result<Box<dyn Policy>, Error> {
        Ok(Box::new(self.native_policy(options, cache_bytes)))
    }

    fn policy_with_step_embedder(
        &self,
        options: &PolicyOptions,
        cache_bytes: u64,
    ) -> Result<crate::engines::PolicyWithEmbedder, Error> {
        let mut policy = self.native_policy(options, cache_bytes);
        let known = policy.record_step_embeddings();
        let embedder = PolicyStepEmbedder::new(self.0.clone(), known);
        Ok((Box::new(policy), Box::new(embedder)))
    }

    fn prompt_cache(&self) -> Option<PromptCacheStats> {
        Some(self.0.prompt_cache_stats())
    }

    fn trim_prompt_cache(&self, max_bytes: u64) {
        self.0.trim_prompt_cache(max_bytes);
    }

    fn reward(&self, profile: &PrmProfile, cache_bytes: u64) -> Result<Box<dyn Reward>, Error> {
        Ok(Box::new(NativeReward::new(
            self.0.clone(),
            profile,
            cache_bytes,
        )?))
    }
}
