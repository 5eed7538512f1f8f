//! ets-core's [`Reward`] on a remote model with a PRM profile: the trajectory is rendered as the
//! profile says (`judge`, `chat`, or `step-tag` text ending with the newest step's tag), tokenized
//! by the server, and the server's top next-token log-probabilities (full softmax, no sampling
//! filters) give P(good) / (P(good) + P(bad)) — the same two-way softmax the native and
//! mistral.rs engines compute from the label logits. Math-Shepherd is such a language-model
//! PRM: its `+`/`-` verdict is the next token after the tag.
//!
//! Not served: PRMs with a classification head instead of label tokens (Qwen2.5-Math-PRM's
//! two-class head, read through vLLM's `/pooling`); no profile layout describes them on any
//! engine yet.

use std::sync::Arc;

use ets_core::{BackendError, Reward, ScoreRequest, StopHandle};

use super::{run_parallel, PromptCounter, Remote};
use crate::error::Error;
use crate::profile::{PrmProfile, Rendered, ResolvedProfile};

/// Next-token candidates asked for; a label outside them counts as no more likely than the
/// least likely one listed.
const TOP_CANDIDATES: usize = 100;

/// A job's PRM on a remote model.
pub struct RemoteReward {
    remote: Arc<Remote>,
    profile: ResolvedProfile,
    job_key: u64,
    stop: Option<StopHandle>,
    prompts: PromptCounter,
}

impl std::fmt::Debug for RemoteReward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReward")
            .field("model", &self.remote.name)
            .field("profile", &self.profile.profile.name)
            .finish_non_exhaustive()
    }
}

impl RemoteReward {
    pub(super) fn new(remote: Arc<Remote>, profile: &PrmProfile) -> Result<Self, Error> {
        let job_key = remote.next_job_key();
        let resolved = profile.resolve_with(|text| {
            let ids = remote.tokenize(job_key, text, None)?;
            Ok((ids.clone(), ids.iter().map(|i| i.to_string()).collect()))
        })?;
        Ok(Self {
            remote,
            profile: resolved,
            job_key,
            stop: None,
            prompts: PromptCounter::default(),
        })
    }

    /// Token ids the trajectory is scored on.
    pub fn score_input(&self, problem: &str, steps: &[&str]) -> Result<Vec<u32>, Error> {
        let stop = self.stop.as_ref();
        match self.profile.render(problem, steps) {
            Rendered::Text(text) => {
                let ids = self.remote.tokenize_special(self.job_key, &text, stop)?;
                // A step-tag PRM (Math-Shepherd) reads its verdict right after the newest tag:
                // the server's tokenization must end with it.
                if let Some(tag) = self.profile.step_tag {
                    if ids.last() != Some(&tag) {
                        return Err(Error::Profile {
                            origin: self.profile.profile.name.clone(),
                            message: format!(
                                "the server tokenizes the trajectory to end with token {:?}, \
                                 not the step tag {tag}",
                                ids.last()
                            ),
                        });
                    }
                }
                Ok(ids)
            }
            Rendered::Chat(turns) => {
                let turns: Vec<(&str, &str)> = turns
                    .iter()
                    .map(|(role, content)| (role.as_str(), content.as_str()))
                    .collect();
                self.remote.chat_ids(self.job_key, &turns, stop)
            }
        }
    }

    /// [`Reward::score`] with this crate's error type.
    pub fn score_steps(&self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, Error> {
        run_parallel(requests, self.remote.parallelism(), |r| {
            if r.steps.is_empty() {
                return Ok(None);
            }
            let ids = self.score_input(r.problem, r.steps)?;
            let next = self.remote.next_token_logprobs(
                self.job_key,
                &ids,
                TOP_CANDIDATES,
                self.stop.as_ref(),
            )?;
            self.prompts.add(next.prompt_computed, next.prompt_reused);
            Ok(verdict(&next.top, self.profile.good, self.profile.bad))
        })
    }
}

/// P(good) / (P(good) + P(bad)) from top next-token log-probabilities; a label not listed gets
/// the least listed log-probability (an upper bound); `None` when neither label is listed.
pub(crate) fn verdict(top: &[(u32, f32)], good: u32, bad: u32) -> Option<f64> {
    let find = |id: u32| top.iter().find(|t| t.0 == id).map(|t| f64::from(t.1));
    let floor = top
        .iter()
        .map(|t| f64::from(t.1))
        .fold(f64::INFINITY, f64::min);
    let (g, b) = match (find(good), find(bad)) {
        (None, None) => return None,
        (g, b) => (g.unwrap_or(floor), b.unwrap_or(floor)),
    };
    Some(1.0 / (1.0 + (b - g).exp()))
}

impl Reward for RemoteReward {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        Ok(self.score_steps(requests)?)
    }

    fn set_stop(&mut self, stop: StopHandle) {
        self.stop = Some(stop);
    }

    fn server_prompt_tokens(&self) -> Option<ets_core::ServerPromptTokens> {
        Some(self.prompts.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_two_way_softmax_of_the_label_logprobs() {
        let top = [(7, -0.2f32), (9, -1.9), (3, -4.0)];
        let s = verdict(&top, 7, 9).unwrap();
        let expect = 1.0 / (1.0 + (f64::from(-1.9f32) - f64::from(-0.2f32)).exp());
        assert!((s - expect).abs() < 1e-12);
        // A label outside the list is bounded by the least listed one.
        let s = verdict(&top, 7, 42).unwrap();
        assert!(s > 0.97, "{s}");
        assert_eq!(verdict(&top, 41, 42), None);
    }
}
