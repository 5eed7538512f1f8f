//! The mistral.rs engine: ets-core's [`Policy`](ets_core::Policy) and
//! [`Reward`](ets_core::Reward) on a causal LM kept warm in mistral.rs (feature `mistralrs`).
//!
//! Layout:
//! - `load`: [`LlmEngine`], a causal LM from local files kept warm in mistral.rs, and the
//!   request plumbing (exact token ids in, one logits processor per request).
//! - `controller`: the logits processors: `StepController` runs the shared sampling rule
//!   (`crate::sampling`) inside mistral.rs and forces its draw; `ScoreProbe` reads a PRM's
//!   verdict logits.
//! - `policy`: [`MistralPolicy`]. `prm`: [`MistralReward`] on a [`PrmProfile`](crate::PrmProfile).
//! - [`MistralLm`]: the engine behind the crate's [`CausalLm`] boundary.

mod controller;
mod load;
mod policy;
mod prm;

use std::sync::Arc;

use ets_core::{Policy, Reward};

pub use load::{LlmEngine, LoadOptions};
pub use policy::MistralPolicy;
pub use prm::MistralReward;

use crate::engines::{CausalLm, EngineKind};
use crate::error::Error;
use crate::profile::PrmProfile;
use crate::prompt::PolicyOptions;

/// A model on mistral.rs behind the [`CausalLm`] boundary. mistral.rs keeps no K/V between
/// requests (its PRM re-prefills every trajectory) and runs one request at a time.
#[derive(Debug, Clone)]
pub struct MistralLm(Arc<LlmEngine>);

impl MistralLm {
    /// Wraps a loaded engine.
    pub fn new(engine: Arc<LlmEngine>) -> Self {
        Self(engine)
    }
}

impl CausalLm for MistralLm {
    fn engine(&self) -> EngineKind {
        EngineKind::MistralRs
    }

    fn kv_bytes_per_token(&self) -> u64 {
        self.0.kv_bytes_per_token().unwrap_or(0)
    }

    fn keeps_job_kv(&self) -> bool {
        false
    }

    fn policy(&self, options: &PolicyOptions, _cache_bytes: u64) -> Result<Box<dyn Policy>, Error> {
        Ok(Box::new(MistralPolicy::new(
            self.0.clone(),
            options.clone(),
        )))
    }

    fn reward(&self, profile: &PrmProfile, _cache_bytes: u64) -> Result<Box<dyn Reward>, Error> {
        Ok(Box::new(MistralReward::new(self.0.clone(), profile)?))
    }
}
