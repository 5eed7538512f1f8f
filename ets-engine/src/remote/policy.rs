//! ets-core's [`Policy`] on a remote model: the root prompt rendered and tokenized by the
//! server's own template and tokenizer; each child of an expansion one completion request from
//! the node's exact token ids (so the server's prefix cache sees the tree's shared prefixes),
//! with its own seed; the step's token ids come back from the server, so ets-kvtree keeps
//! counting exact tokens.

use std::sync::Arc;

use ets_core::{BackendError, Continuation, ExpandRequest, FinishReason, Policy, StopHandle};

use super::dialect::{StepReply, StepRequest};
use super::{run_parallel, PromptCounter, Remote};
use crate::error::Error;
use crate::prompt::PolicyOptions;
use crate::sampling::child_stream;

/// A job's policy on a remote model.
pub struct RemotePolicy {
    remote: Arc<Remote>,
    options: PolicyOptions,
    /// Rendezvous key: every request of this job goes to the same endpoint while it is up.
    job_key: u64,
    stop: Option<StopHandle>,
    prompts: PromptCounter,
}

impl std::fmt::Debug for RemotePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePolicy")
            .field("model", &self.remote.name)
            .field("job_key", &self.job_key)
            .finish_non_exhaustive()
    }
}

impl RemotePolicy {
    pub(super) fn new(remote: Arc<Remote>, options: PolicyOptions) -> Self {
        let job_key = remote.next_job_key();
        Self {
            remote,
            options,
            job_key,
            stop: None,
            prompts: PromptCounter::default(),
        }
    }

    /// [`Policy::encode_prompt`] with this crate's error type.
    pub fn encode_problem(&self, problem: &str) -> Result<Vec<u32>, Error> {
        let mut messages = Vec::new();
        if let Some(system) = &self.options.system_prompt {
            messages.push(("system", system.as_str()));
        }
        messages.push(("user", problem));
        self.remote
            .chat_ids(self.job_key, &messages, self.stop.as_ref())
    }

    /// [`Policy::expand`] with this crate's error type.
    pub fn expand_steps(
        &self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, Error> {
        let children: Vec<(usize, usize)> = requests
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (0..r.num_children).map(move |c| (i, c)))
            .collect();
        let remote = &self.remote;
        let replies = run_parallel(&children, remote.parallelism(), |&(i, c)| {
            let r = &requests[i];
            if r.max_tokens == 0 {
                return Ok(None);
            }
            let step = StepRequest {
                context: r.context,
                // The server's seed is 32 bits; a retry sends the same one.
                seed: (child_stream(r.seed, c) & 0xffff_ffff) as u32,
                max_tokens: r.max_tokens,
                sampling: r.sampling,
                delimiter: r.step_delimiter,
                model: &remote.served_name,
            };
            let reply = remote.complete(self.job_key, &step, self.stop.as_ref())?;
            self.prompts.add(reply.prompt_computed, reply.prompt_reused);
            Ok(Some(self.exact(reply, r.step_delimiter)?))
        })?;
        let mut out: Vec<Vec<Continuation>> = requests.iter().map(|_| Vec::new()).collect();
        for ((i, _), reply) in children.into_iter().zip(replies) {
            if let Some(c) = reply {
                out[i].push(c);
            }
        }
        Ok(out)
    }

    /// The step as a continuation whose ids decode to its text: a token that completed the
    /// delimiter and ran past it (`"\n\n\n"` for `"\n\n"`) leaves the ids longer than the text,
    /// so such a step's ids are the server's tokenization of its text instead.
    fn exact(&self, reply: StepReply, delimiter: &str) -> Result<Continuation, Error> {
        let StepReply {
            mut ids,
            text,
            finish,
            mut logprobs,
            ..
        } = reply;
        if finish == FinishReason::Delimiter && !ids.is_empty() {
            let decoded = self
                .remote
                .detokenize(self.job_key, &ids, self.stop.as_ref())?;
            if decoded != text {
                tracing::debug!(
                    ?decoded,
                    ?text,
                    "step ran past the delimiter inside a token: re-tokenized"
                );
                ids = self
                    .remote
                    .tokenize(self.job_key, &text, self.stop.as_ref())?;
                logprobs.clear();
            }
            debug_assert!(text.ends_with(delimiter));
        }
        Ok(Continuation {
            token_ids: ids,
            text,
            finish,
            logprobs,
        })
    }
}

impl Policy for RemotePolicy {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        Ok(self.encode_problem(problem)?)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        Ok(self.expand_steps(requests)?)
    }

    fn set_stop(&mut self, stop: StopHandle) {
        self.stop = Some(stop);
    }

    fn server_prompt_tokens(&self) -> Option<ets_core::ServerPromptTokens> {
        Some(self.prompts.get())
    }
}
