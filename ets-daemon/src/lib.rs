//! The ETS daemon's library: model backends on mistral.rs and the local model store.
//!
//! **Owns**: loading policy and PRM models from local files through mistral.rs
//! ([`backend::LlmEngine`]), the implementations of ets-core's backend traits on them
//! ([`backend::MistralPolicy`], [`backend::MistralReward`], [`backend::BertEmbedder`]), PRM
//! profiles as data ([`backend::PrmProfile`]), the native engine for llama-family GGUF files
//! whose K/V cache is an ets-kvtree ([`native::NativeEngine`], [`native::NativePolicy`],
//! [`native::NativeReward`]), and the model store with `pull` ([`store::Store`]).
//!
//! **Must not**: reach a model hub at load time (a missing path is an error, never a hub id);
//! write into the user's Hugging Face cache (`HF_HOME` points inside the store); re-tokenize a
//! node's text (expansion requests carry exact token ids); leave a half-written model in the
//! store (downloads go to a temporary name, are verified, then renamed).
//!
//! **Entry points**: [`store::Store::open_default`] and [`store::Store::pull`] to get models;
//! [`backend::LlmEngine::load`] to load one; [`backend::MistralPolicy::new`],
//! [`backend::MistralReward::new`] and [`backend::BertEmbedder::load`] to build the backends a
//! search needs.
//!
//! **Invariants**:
//! - Sampling is ours, not mistral.rs': a controller logits processor on every request samples
//!   with a per-child seeded stream, so the same request with the same seed gives the same
//!   children, and it records the exact token ids and natural-log probabilities.
//! - A child that stops at the delimiter ends exactly at it: its text ends with the delimiter
//!   and contains it nowhere else.
//! - The prefix cacher is off on CPU (it never evicts there), so resident memory is bounded by
//!   the sequences in flight.
//! - A PRM score always takes the same compute path (a one-token prefill whose processor reads
//!   the full-vocabulary logits), so the same trajectory scores identically every time.
//! - Every label and tag of a PRM profile is exactly one token of its model's tokenizer.

pub mod backend;
mod error;
pub mod native;
pub mod server;
pub mod store;

pub use error::Error;
