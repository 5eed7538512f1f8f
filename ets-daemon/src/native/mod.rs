//! The native engine: a llama-family GGUF forward pass written around the search tree, whose
//! K/V lives in ets-kvtree nodes, and ets-core's backend traits on it.
//!
//! Layout:
//! - `text`: [`GgufText`], tokenizer, chat template and stop ids from the GGUF metadata.
//! - `model`: [`ModelConfig`], the weights ([`WeightMode`]: quantized or f32 matmuls); RoPE.
//! - `kv`: [`KvSegment`] (a node's K/V for every layer, the kvtree payload) and [`PendingKv`]
//!   (K/V of tokens not in a node yet).
//! - `attention`: attention of many query rows over shared segments, read in place and
//!   merged through one log-sum-exp shift per row (bit-identical however a context is split).
//! - `engine`: [`NativeEngine`], one batched forward pass over any mix of prefill and decode
//!   rows.
//! - `policy`: [`NativePolicy`], ets-core's `Policy` with the K/V cache as a kvtree.
//! - `prm`: [`NativeReward`], ets-core's `Reward` scoring each new step incrementally.
//! - `embed`: [`PolicyStepEmbedder`], step embeddings from the policy's own hidden states.
//!
//! **Invariants**: a node's payload holds exactly its span's K/V (no spare capacity), so a
//! `KvTree<KvSegment>` built with [`ModelConfig::kv_bytes_per_token`] reports byte counts equal
//! to the sum of its payloads' tensor sizes. Segments are immutable once in the tree; a
//! sequence only ever appends to its own [`PendingKv`].

mod attention;
mod embed;
mod engine;
mod kv;
mod model;
mod policy;
mod prm;
mod text;

pub use embed::{PolicyStepEmbedder, StepEmbeddings};
pub use engine::{Logits, NativeEngine, SeqInput, SeqOutput};
pub use kv::{KvPrecision, KvSegment, PendingKv};
pub use model::{gguf_architecture, ModelConfig, RopeStyle, WeightMode, NATIVE_ARCHITECTURES};
pub use policy::{NativePolicy, NativePolicyOptions};
pub use prm::{NativeReward, ScoreLayout};
pub use text::{ChatRole, Encoded, GgufText};
