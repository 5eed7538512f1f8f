//! ets-engine: every engine that runs models for ETS, and the local model store.
//!
//! **Owns**: the boundary the daemon loads models through ([`load_causal_lm`],
//! [`load_embedder`], [`CausalLm`] → ets-core's `Policy`, `Reward`, `Embedder`); the engines
//! behind it, each a Cargo feature: `native` (the tree-attention engine on candle whose K/V
//! cache is an ets-kvtree, [`native`]), `mistralrs` (mistral.rs, [`mistralrs`]) and `remote`
//! (llama.cpp server or vLLM over HTTP, many endpoints, `remote`); what they
//! share: our seeded sampling rule (`sampling`), prompts ([`PolicyOptions`]), PRM profiles as
//! data ([`PrmProfile`]), the MiniLM sentence embedder ([`BertEmbedder`]), model files
//! ([`ModelFiles`]) and the bounded GGUF header reader ([`gguf`]); and the model store with
//! `pull` ([`store::Store`]).
//!
//! **Must not**: know about sockets, jobs or the daemon (that is `ets-daemon`); let one engine
//! import another (the native engine shares sampling with the mistral.rs controller through
//! `sampling`, never through the mistral.rs module); reach a model hub at load time (a missing
//! path is an error, never a hub id); write into the user's Hugging Face cache (`HF_HOME` points
//! inside the store); re-tokenize a node's text (expansion requests carry exact token ids);
//! leave a half-written model in the store; hand a file to a third-party parser before its
//! sizes were checked against the file ([`gguf::GgufHeader::read`]).
//!
//! **Invariants**:
//! - Sampling is ours on every engine: each child samples from its own seeded stream, so the
//!   same request with the same seed gives the same children whatever else runs beside it, and
//!   the exact token ids and natural-log probabilities are recorded.
//! - A child that stops at the delimiter ends exactly at it: its text ends with the delimiter
//!   and contains it nowhere else.
//! - A PRM score always takes the same compute path, so the same trajectory scores identically
//!   every time.
//! - Every label and tag of a PRM profile is exactly one token of its model's tokenizer.

mod embedder;
mod engines;
mod error;
mod files;
pub mod gguf;
mod gguf_text;
#[cfg(feature = "mistralrs")]
pub mod mistralrs;
#[cfg(feature = "native")]
pub mod native;
mod profile;
mod prompt;
#[cfg(feature = "remote")]
pub mod remote;
mod sampling;
pub mod store;

pub use embedder::{BertEmbedder, MAX_TOKENS as EMBEDDER_MAX_TOKENS};
pub use engines::{
    auto_engine, load_causal_lm, load_embedder, load_remote_embedder, load_remote_model, CausalLm,
    EngineKind, LoadContext, PromptCacheStats, SharedEmbedder, TextEmbedder,
    DEFAULT_PROMPT_CACHE_BYTES,
};
pub use error::Error;
pub use files::{disk_bytes, ModelFiles};
pub use gguf_text::{ChatRole, Encoded, GgufText};
pub use profile::{PrmFormat, PrmProfile, ResolvedProfile, BUILTIN_PROFILES};
pub use prompt::{PolicyOptions, DEFAULT_SYSTEM_PROMPT};
