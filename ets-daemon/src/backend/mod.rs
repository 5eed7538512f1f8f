//! Model backends: ets-core's [`Policy`](ets_core::Policy), [`Reward`](ets_core::Reward) and
//! [`Embedder`](ets_core::Embedder) on real models.
//!
//! Layout:
//! - `load`: [`LlmEngine`], a causal LM from local files kept warm in mistral.rs, and the
//!   request plumbing (exact token ids in, one logits processor per request).
//! - `controller`: the logits processors: [`StepController`](controller) samples, records and
//!   stops each child step itself; `ScoreProbe` reads a PRM's verdict logits.
//! - `sample`: temperature / top-k / top-p draws from a seeded stream.
//! - `policy`: [`MistralPolicy`]. `prm` + `profile`: [`MistralReward`] and [`PrmProfile`].
//! - `embedder`: [`BertEmbedder`] (candle-transformers BERT, the candle mistral.rs uses).

pub(crate) mod controller;
mod embedder;
mod load;
mod policy;
mod prm;
pub(crate) mod profile;
pub(crate) mod sample;

pub use embedder::{BertEmbedder, MAX_TOKENS as EMBEDDER_MAX_TOKENS};
pub use load::{LlmEngine, LoadOptions, ModelFiles};
pub use policy::{MistralPolicy, PolicyOptions, DEFAULT_SYSTEM_PROMPT};
pub use prm::MistralReward;
pub use profile::{PrmFormat, PrmProfile, ResolvedProfile, BUILTIN_PROFILES};
