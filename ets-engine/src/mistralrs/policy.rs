//! The policy: ets-core's [`Policy`] on a mistral.rs engine, with exact tokens and seeded
//! children.

use std::sync::Arc;

use ets_core::{BackendError, Continuation, ExpandRequest, FinishReason, Policy};

use super::controller::StepController;
use super::load::LlmEngine;
use crate::error::Error;
use crate::gguf_text::ChatRole;
use crate::prompt::PolicyOptions;
use crate::sampling;
use crate::sampling::StepSpec;

/// ets-core's [`Policy`] on an [`LlmEngine`].
///
/// Child `c` of a request with seed `s` samples from its own stream (a hash of `s` and `c`), so
/// the same request with the same seed gives the same children whatever else runs beside it.
/// Children run one at a time (see [`LlmEngine`]'s note on in-flight requests).
#[derive(Debug, Clone)]
pub struct MistralPolicy {
    engine: Arc<LlmEngine>,
    options: PolicyOptions,
}

impl MistralPolicy {
    /// A policy on `engine`.
    pub fn new(engine: Arc<LlmEngine>, options: PolicyOptions) -> Self {
        Self { engine, options }
    }

    /// The engine it runs on.
    pub fn engine(&self) -> &Arc<LlmEngine> {
        &self.engine
    }

    /// [`Policy::expand`] with this crate's error type.
    pub fn expand_steps(
        &self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, Error> {
        let engine = &self.engine;
        engine.block_on(async {
            let mut out = Vec::with_capacity(requests.len());
            for r in requests {
                let spec = Arc::new(StepSpec {
                    prompt_len: r.context.len(),
                    max_tokens: r.max_tokens,
                    sampling: r.sampling.clone(),
                    eos: engine.eos().clone(),
                    tokenizer: engine.tokenizer().clone(),
                    guard: engine.guard(r.step_delimiter),
                });
                let mut children = Vec::with_capacity(r.num_children);
                for c in 0..r.num_children {
                    let stream = sampling::child_stream(r.seed, c);
                    let controller = Arc::new(StepController::new(spec.clone(), stream));
                    if r.max_tokens > 0 {
                        engine
                            .run(r.context.to_vec(), r.max_tokens, controller.clone())
                            .await?;
                    }
                    let rec = controller.record();
                    if let Some(e) = rec.error {
                        return Err(Error::engine(e));
                    }
                    children.push(Continuation {
                        token_ids: rec.ids,
                        text: rec.text,
                        finish: rec.finish.unwrap_or(FinishReason::Length),
                        logprobs: rec.logprobs,
                    });
                }
                out.push(children);
            }
            Ok(out)
        })
    }
}

impl Policy for MistralPolicy {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        let mut turns = Vec::with_capacity(2);
        if let Some(system) = &self.options.system_prompt {
            turns.push((ChatRole::System, system.clone()));
        }
        turns.push((ChatRole::User, problem.to_owned()));
        Ok(self.engine.encode_chat(&turns)?)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        Ok(self.expand_steps(requests)?)
    }
}
