//! The process reward model: ets-core's [`Reward`] on a mistral.rs engine and a PRM profile.
//!
//! Every score is a one-token completion of the rendered trajectory whose [`ScoreProbe`] reads
//! the good and bad logits at the first generated position. That is always mistral.rs' prefill
//! path (the prefix cacher is off, so nothing is reused from an earlier request), and the
//! prefill and decode paths differ by up to 0.04 in probability: one path, one value, so the same
//! trajectory scores identically every time. No raw-logit requests are used (two of those in one
//! batch fail in 0.8.1); requests run one at a time like every request of an [`LlmEngine`].

use std::sync::Arc;

use ets_core::{BackendError, Reward, ScoreRequest};

use super::controller::ScoreProbe;
use super::load::LlmEngine;
use crate::error::Error;
use crate::profile::{PrmProfile, Rendered, ResolvedProfile};

/// ets-core's [`Reward`] on an [`LlmEngine`] and a [`PrmProfile`].
#[derive(Debug, Clone)]
pub struct MistralReward {
    engine: Arc<LlmEngine>,
    profile: ResolvedProfile,
}

impl MistralReward {
    /// A PRM; fails if a tag or label of `profile` is not exactly one token of the engine's
    /// tokenizer (the error names the string and how it tokenizes).
    pub fn new(engine: Arc<LlmEngine>, profile: &PrmProfile) -> Result<Self, Error> {
        let profile = profile.resolve(engine.tokenizer())?;
        Ok(Self { engine, profile })
    }

    /// The profile with its token ids.
    pub fn profile(&self) -> &ResolvedProfile {
        &self.profile
    }

    /// The exact token ids a trajectory is scored on (the verdict is read after the last one).
    pub fn score_input(&self, problem: &str, steps: &[&str]) -> Result<Vec<u32>, Error> {
        self.engine.block_on(self.input_async(problem, steps))
    }

    async fn input_async(&self, problem: &str, steps: &[&str]) -> Result<Vec<u32>, Error> {
        match self.profile.render(problem, steps) {
            Rendered::Text(text) => {
                let ids = self.engine.encode(&text, true)?;
                let tag = self.profile.step_tag;
                if tag.is_some() && ids.last().copied() != tag {
                    return Err(Error::Profile {
                        origin: self.profile.profile.name.clone(),
                        message: format!(
                            "the rendered trajectory does not end with the step tag token \
                             (it ends with {:?})",
                            ids.last()
                                .map(|&id| self.engine.token_text(id).unwrap_or("?"))
                        ),
                    });
                }
                Ok(ids)
            }
            Rendered::Chat(turns) => self.engine.encode_chat_async(&turns).await,
        }
    }

    /// [`Reward::score`] with this crate's error type.
    pub fn score_steps(&self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, Error> {
        self.engine.block_on(async {
            // Render everything before queueing anything: a tokenize request waits behind any
            // forward pass the engine is running.
            let mut inputs = Vec::with_capacity(requests.len());
            for r in requests {
                inputs.push(match r.steps.is_empty() {
                    true => None,
                    false => Some(self.input_async(r.problem, r.steps).await?),
                });
            }
            let mut scores = Vec::with_capacity(inputs.len());
            for ids in inputs {
                scores.push(match ids {
                    Some(ids) => {
                        let probe = Arc::new(ScoreProbe::new(self.profile.good, self.profile.bad));
                        self.engine.run(ids, 1, probe.clone()).await?;
                        probe.score()
                    }
                    None => None,
                });
            }
            Ok(scores)
        })
    }
}

impl Reward for MistralReward {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        Ok(self.score_steps(requests)?)
    }
}
