//! The traits the search driver calls: a policy that expands nodes, a reward model that scores
//! steps, an embedder that turns step text into vectors, plus the two solver traits ETS needs.
//!
//! They are synchronous and take `&mut self`: a backend owns its engine state. The daemon adapts
//! them to its async runtime (one task owns each engine); tests implement them with plain structs.

use crate::config::SamplingConfig;
use crate::error::BackendError;
use crate::retention::{Retention, RetentionProblem};

/// Why a sampled continuation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    /// The step delimiter was generated; it is the last text of the step.
    Delimiter,
    /// The model's end-of-sequence token was generated.
    EndOfSequence,
    /// The step reached its token cap.
    Length,
}

impl FinishReason {
    /// The kebab-case name logs and the wire format use.
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Delimiter => "delimiter",
            FinishReason::EndOfSequence => "end-of-sequence",
            FinishReason::Length => "length",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One node to expand: its exact context and how many children to sample from it.
#[derive(Debug, Clone)]
pub struct ExpandRequest<'a> {
    /// Token ids from the start of the prompt through the node's last step.
    pub context: &'a [u32],
    /// Number of children to sample.
    pub num_children: usize,
    /// Most tokens each child may have.
    pub max_tokens: usize,
    /// Seed of this request's sampling: the same request with the same seed gives the same children.
    pub seed: u64,
    /// How to sample.
    pub sampling: &'a SamplingConfig,
    /// Text that ends a step; a child stops right after it.
    pub step_delimiter: &'a str,
}

/// One sampled child step.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// The step's own token ids (the context is not repeated).
    pub token_ids: Vec<u32>,
    /// The step's text.
    pub text: String,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Natural-log probability of each sampled token under the sampling distribution, if known.
    pub logprobs: Vec<f32>,
}

/// The policy model.
pub trait Policy: Send {
    /// Token ids of the root prompt for a problem (chat template applied here, once).
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError>;

    /// Expands several nodes; the answer holds, per request, exactly `num_children` children
    /// (fewer only if the backend could not produce them, which the driver records).
    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError>;

    /// Says which contexts the search may still expand: after each depth's selection, the
    /// driver passes the full token context of every node it will expand next. A backend that
    /// caches per-context state (K/V) may free everything else; the default keeps nothing
    /// extra and does nothing.
    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        let _ = live;
        Ok(())
    }

    /// Hands the backend its job's stop check. A backend whose one call can run long (many
    /// decode steps in one batched call) asks it between forward passes and returns an error
    /// once it says stop, so a cancel or deadline lands within one forward pass; the default
    /// ignores it (the caller then checks between calls).
    fn set_stop(&mut self, stop: StopHandle) {
        let _ = stop;
    }

    /// Prompt tokens a serving engine reported computing and reusing from its prefix cache for
    /// this backend's requests so far; `None` for engines in this process.
    fn server_prompt_tokens(&self) -> Option<ServerPromptTokens> {
        None
    }
}

/// What a serving engine reported about the prompts of a backend's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerPromptTokens {
    /// Prompt tokens it computed.
    pub computed: u64,
    /// Prompt tokens it reused from its prefix cache.
    pub reused: u64,
}

/// Whether the job a backend works for should stop (cancelled, deadline passed, client gone,
/// shutdown). Cheap enough to ask before every forward pass.
pub trait StopCheck: Send + Sync {
    /// True once the job should stop.
    fn should_stop(&self) -> bool;
}

/// A shared [`StopCheck`].
pub type StopHandle = std::sync::Arc<dyn StopCheck>;

/// A trajectory to score: the problem and every step text from the root to the newest step.
#[derive(Debug, Clone, Copy)]
pub struct ScoreRequest<'a> {
    /// The problem as the user gave it.
    pub problem: &'a str,
    /// Step texts, oldest first; the last one is the step being scored.
    pub steps: &'a [&'a str],
}

/// The process reward model.
pub trait Reward: Send {
    /// One score in [0, 1] per request for its newest step, or `None` where the model has no
    /// score (the driver drops such a child without spending budget).
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError>;

    /// Says which trajectories the next scores will extend: after each depth's selection, the
    /// driver passes every node it will expand next (its children are scored next). A backend
    /// that caches per-trajectory state may free everything else; the default does nothing.
    fn retain(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), BackendError> {
        let _ = live;
        Ok(())
    }

    /// Hands the backend its job's stop check (see [`Policy::set_stop`]).
    fn set_stop(&mut self, stop: StopHandle) {
        let _ = stop;
    }

    /// What a serving engine reported about this backend's prompts (see
    /// [`Policy::server_prompt_tokens`]).
    fn server_prompt_tokens(&self) -> Option<ServerPromptTokens> {
        None
    }
}

/// Turns step texts into vectors for semantic clustering.
pub trait Embedder: Send {
    /// One vector per text, all of the same dimension.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError>;
}

/// Solves the ETS retention problem (see [`crate::retention`]).
pub trait RetentionSolver: Send + Sync {
    /// The kept set. Implementations return their best solution and say whether it is proven
    /// optimal.
    fn solve(&self, problem: &RetentionProblem) -> Retention;
}

/// Groups embeddings into clusters.
pub trait Clusterer: Send + Sync {
    /// One cluster label per embedding, labels dense in `0..k`, numbered by first appearance.
    /// Two embeddings share a label when average linkage over cosine distance joins them below
    /// `threshold`.
    fn cluster(&self, embeddings: &[Vec<f32>], threshold: f64) -> Vec<usize>;
}
