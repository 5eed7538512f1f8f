//! The one boundary between the daemon and the engines: load a model on an engine
//! ([`load_causal_lm`], [`load_embedder`]) and get ets-core's [`Policy`], [`Reward`] and
//! [`Embedder`] from it ([`CausalLm`]). The daemon's registry names no engine type.
//!
//! Engines are compiled in by Cargo feature (`native`, `mistralrs`); asking for one that is
//! not built is an error naming the feature, never a panic.

use std::path::Path;
use std::sync::Arc;

use ets_core::{Embedder, Policy, Reward};

use crate::error::Error;
use crate::files::ModelFiles;
use crate::profile::PrmProfile;
use crate::prompt::PolicyOptions;

/// Which engine runs a causal LM, once `auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// The native tree-attention engine (feature `native`).
    Native,
    /// mistral.rs (feature `mistralrs`).
    MistralRs,
    /// Serving engines elsewhere over HTTP (feature `remote`).
    Remote,
}

impl EngineKind {
    /// The name used on the command line and in status.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::MistralRs => "mistralrs",
            EngineKind::Remote => "remote",
        }
    }

    /// Whether this build has the engine.
    pub fn is_built(self) -> bool {
        match self {
            EngineKind::Native => cfg!(feature = "native"),
            EngineKind::MistralRs => cfg!(feature = "mistralrs"),
            EngineKind::Remote => cfg!(feature = "remote"),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A job's policy and the embedder reading that policy's own hidden states.
pub type PolicyWithEmbedder = (Box<dyn Policy>, Box<dyn Embedder>);

/// A causal LM loaded on some engine, shared by every job and role that uses it; builds the
/// per-job backends a search runs on.
pub trait CausalLm: Send + Sync + std::fmt::Debug {
    /// The engine it runs on.
    fn engine(&self) -> EngineKind;

    /// Bytes of K/V one token takes on this model (0 when its files do not say).
    fn kv_bytes_per_token(&self) -> u64;

    /// Whether its backends keep a job's K/V across calls (so the job's PRM K/V counts against
    /// the daemon's KV budget too) and run a call's requests as one batch.
    fn keeps_job_kv(&self) -> bool;

    /// Whether [`CausalLm::policy_with_step_embedder`] is supported.
    fn embeds_steps(&self) -> bool {
        false
    }

    /// A policy for one job; an engine that caches K/V evicts above `cache_bytes`.
    fn policy(&self, options: &PolicyOptions, cache_bytes: u64) -> Result<Box<dyn Policy>, Error>;

    /// A policy that also embeds each step from its own hidden states, and that embedder.
    fn policy_with_step_embedder(
        &self,
        options: &PolicyOptions,
        cache_bytes: u64,
    ) -> Result<PolicyWithEmbedder, Error> {
        let _ = (options, cache_bytes);
        Err(Error::Unsupported {
            path: Default::default(),
            message: format!(
                "step embeddings from the policy need the native engine's hidden states, but \
                 this policy runs on {}",
                self.engine()
            ),
        })
    }

    /// A PRM for one job with `profile`; an engine that caches K/V evicts above `cache_bytes`.
    fn reward(&self, profile: &PrmProfile, cache_bytes: u64) -> Result<Box<dyn Reward>, Error>;

    /// Its endpoints' health and counters, for a remote model (empty otherwise).
    fn endpoints(&self) -> Vec<ets_core::protocol::EndpointInfo> {
        Vec::new()
    }

    /// What it is, for status (empty: the files say it).
    fn description(&self) -> String {
        String::new()
    }

    /// Its warm prompts across jobs, on an engine that keeps them (the native one).
    fn prompt_cache(&self) -> Option<PromptCacheStats> {
        None
    }

    /// Evicts warm prompts, least recently used first, until they hold at most `max_bytes`
    /// (their cap is unchanged: they may grow again).
    fn trim_prompt_cache(&self, max_bytes: u64) {
        let _ = max_bytes;
    }
}

pub use ets_core::protocol::PromptCacheStats;

/// Default byte cap of a native engine's warm prompts across jobs (`etsd --prompt-cache`).
pub const DEFAULT_PROMPT_CACHE_BYTES: u64 = 256 << 20;

/// A sentence embedder shared by every job that names it.
pub trait TextEmbedder: Send + Sync + std::fmt::Debug {
    /// One unit-length vector per text.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error>;

    /// A remote embedder's endpoints with their health (none for a local one).
    fn endpoints(&self) -> Vec<ets_core::protocol::EndpointInfo> {
        Vec::new()
    }
}

/// What loading needs besides the model's files.
#[derive(Debug, Clone)]
pub struct LoadContext<'a> {
    /// The private `HF_HOME` mistral.rs writes to (the store's).
    pub hf_home: &'a Path,
    /// Byte cap of the native engine's warm prompts across jobs (0 keeps none).
    pub prompt_cache_bytes: u64,
}

/// Loads a causal LM on `engine`.
pub fn load_causal_lm(
    engine: EngineKind,
    files: &ModelFiles,
    context: &LoadContext<'_>,
) -> Result<Arc<dyn CausalLm>, Error> {
    if !engine.is_built() {
        return Err(Error::EngineNotBuilt {
            engine: engine.name(),
        });
    }
    match engine {
        #[cfg(feature = "native")]
        EngineKind::Native => {
            let Some(path) = files.gguf_path() else {
                return Err(Error::Unsupported {
                    path: files.dir().to_path_buf(),
                    message: "the native engine runs GGUF files only, and this is a \
                              safetensors folder; use the mistralrs engine for it"
                        .into(),
                });
            };
            let engine =
                crate::native::NativeEngine::load(&path, crate::native::WeightMode::Quantized)?;
            engine.set_prompt_cache_bytes(context.prompt_cache_bytes);
            Ok(Arc::new(crate::native::NativeLm::new(Arc::new(engine))))
        }
        #[cfg(feature = "mistralrs")]
        EngineKind::MistralRs => {
            let _ = context;
            let engine = crate::mistralrs::LlmEngine::load(
                files,
                &crate::mistralrs::LoadOptions::new(context.hf_home),
            )?;
            Ok(Arc::new(crate::mistralrs::MistralLm::new(Arc::new(engine))))
        }
        EngineKind::Remote => Err(Error::Unsupported {
            path: files.dir().to_path_buf(),
            message: "the remote engine runs remote models added by name (etsd.toml, \
                      --remote, `ets models add`), not model files"
                .into(),
        }),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (files, context);
            Err(Error::EngineNotBuilt {
                engine: engine.name(),
            })
        }
    }
}

/// Loads a remote model from its spec (endpoints, served name, dialect).
pub fn load_remote_model(
    spec: &ets_core::protocol::RemoteModelSpec,
) -> Result<Arc<dyn CausalLm>, Error> {
    #[cfg(feature = "remote")]
    {
        crate::remote::load_remote(spec)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = spec;
        Err(Error::EngineNotBuilt { engine: "remote" })
    }
}

/// The engine `auto` picks: native for one GGUF file of a llama-family architecture when the
/// build has the native engine and no GPU, else mistral.rs (else native, in a build without
/// mistral.rs).
pub fn auto_engine(files: &ModelFiles) -> Result<EngineKind, Error> {
    let fallback = if EngineKind::MistralRs.is_built() {
        EngineKind::MistralRs
    } else {
        EngineKind::Native
    };
    if cfg!(feature = "cuda") || !EngineKind::Native.is_built() {
        return Ok(fallback);
    }
    let Some(path) = files.gguf_path() else {
        return Ok(fallback);
    };
    let arch = crate::gguf::GgufHeader::read(&path)?.architecture()?;
    #[cfg(feature = "native")]
    if crate::native::NATIVE_ARCHITECTURES.contains(&arch.as_str()) {
        return Ok(EngineKind::Native);
    }
    let _ = arch;
    Ok(fallback)
}

/// Loads a remote model as the step embedder (`/v1/embeddings`).
pub fn load_remote_embedder(
    spec: &ets_core::protocol::RemoteModelSpec,
) -> Result<Arc<dyn TextEmbedder>, Error> {
    #[cfg(feature = "remote")]
    {
        Ok(Arc::new(crate::remote::load_remote_embedder(spec)?))
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = spec;
        Err(Error::EngineNotBuilt { engine: "remote" })
    }
}

/// Loads the sentence embedder in `dir` (a BERT folder: `config.json`, `tokenizer.json`,
/// `model.safetensors`).
pub fn load_embedder(dir: &Path) -> Result<Arc<dyn TextEmbedder>, Error> {
    Ok(Arc::new(crate::embedder::BertEmbedder::load(dir)?))
}

impl TextEmbedder for crate::embedder::BertEmbedder {
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        crate::embedder::BertEmbedder::embed_texts(self, texts)
    }
}

/// ets-core's [`Embedder`] on a shared [`TextEmbedder`], for one job.
#[derive(Debug, Clone)]
pub struct SharedEmbedder(pub Arc<dyn TextEmbedder>);

impl Embedder for SharedEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ets_core::BackendError> {
        Ok(self.0.embed_texts(texts)?)
    }
}
