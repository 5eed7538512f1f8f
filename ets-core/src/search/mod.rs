//! The search driver: expand, score, select, depth after depth.
//!
//! Per depth the driver expands every node that was allocated children (one batched
//! [`Policy::expand`] call), scores every new child (one batched [`Reward::score`] call), drops
//! children without a score (they spend no budget), closes finished and truncated trajectories,
//! and lets the method's selection policy ([`crate::select`]) allocate the remaining width
//! `W − (finished + truncated)` over the open frontier. Every node is recorded in the caller's
//! [`KvTree`]: an open node holds one reference, which it gives back when it is expanded,
//! pruned, finished or dropped, so the tree's live tokens are exactly the search's live KV.
//! All references are released when the search returns, however it ends.
//!
//! # The KV limit
//!
//! With [`SearchConfig::kv_limit`] = `L` tokens (every method), the search's live KV, the
//! tokens of the union of the root paths of every node it holds (what the caller's [`KvTree`]
//! counts as live, the prompt included), never exceeds `L`. Enforcement, per depth:
//! - The driver picks the depth's width `w = min(W_rem, ⌊(L − p_min)/s⌋)`, where `W_rem` is
//!   the width left, `p_min` the tokens of the cheapest open candidate's root path and `s` the
//!   most tokens a child of any open candidate may get: `max_step_tokens`, or less when every
//!   open path is within a step of `max_total_tokens` (a child's request asks for
//!   `min(max_step_tokens, max_total_tokens − generated)`): the full width whenever it fits,
//!   fewer children otherwise. If
//!   `w = 0` (not even that path and one child fit) the open nodes are pruned and the search
//!   ends with [`EndReason::KvLimit`], keeping its finished trajectories. Before the root's
//!   expansion `p_min` is the prompt; if the prompt and one child do not fit, the prompt never
//!   enters the tree and the search ends at once with the same reason.
//! - The retention problem gets the capacity `C = L − w·s` for the union of the kept paths
//!   (solved exactly: the solver's knapsack), and both REBASE passes allocate exactly `w`
//!   children. REBASE under a limit solves the same problem with `λ_b = λ_s = 0` (the most
//!   target mass that fits); without a limit it is plain REBASE.
//! - Beam, DVTS and best-of-N keep their own choice and order of candidates (beam's top
//!   `⌈√w⌉` and their share of `w`, each DVTS subtree's best child with the subtree's budget,
//!   every best-of-N trajectory with one child), taken in score order while the union of the
//!   kept paths plus `s` per planned child fits `L`; a candidate that fits with fewer children
//!   gets fewer, one that does not fit is pruned (a DVTS subtree then ends). Beam hands the
//!   share of a candidate it could not keep to those it kept, as far as `L` allows.
//! - Every request's `max_tokens` is at most `s`, and under a limit a step longer than its
//!   request allowed is an error ([`SearchError::StepTooLong`]) before it enters the tree.
//!
//! Why it holds: after the selection the search holds only the planned nodes, whose paths hold
//! at most `C` tokens (for beam, DVTS and best-of-N, `C = L − s` × the children planned) (nodes the tree deduplicates only lower the real count). The expansion
//! adds at most `w` children of at most `s` tokens each, and releases a parent only after its
//! children are in, so at every moment of the expansion the live KV is at most `C + w·s = L`;
//! scoring, closing and pruning only release references. The next depth starts from the
//! planned nodes again. Without a limit nothing of this runs and searches are unchanged.

mod driver;
mod kv_fit;
mod lease;
mod outcome;
mod selection;

use std::ops::ControlFlow;

use ets_kvtree::KvTree;
use serde::{Deserialize, Serialize};

use crate::backend::{Clusterer, Embedder, Policy, RetentionSolver, Reward};
use crate::config::SearchConfig;
use crate::error::SearchError;

pub use outcome::{
    DepthRecord, EndReason, NodeRecord, NodeState, RetentionSummary, SearchOutcome, SearchStats,
    Trajectory,
};

/// The engines and solvers one search uses.
pub struct Backends<'a> {
    /// Expands nodes.
    pub policy: &'a mut dyn Policy,
    /// Scores steps.
    pub reward: &'a mut dyn Reward,
    /// Embeds step texts for ETS clustering; required when ETS runs with `lambda_s > 0`.
    pub embedder: Option<&'a mut dyn Embedder>,
    /// Solves ETS retention problems.
    pub solver: &'a dyn RetentionSolver,
    /// Clusters step embeddings.
    pub clusterer: &'a dyn Clusterer,
}

/// Progress of a running search, reported as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchEvent {
    /// The prompt was encoded.
    Started {
        /// Tokens of the root prompt.
        prompt_tokens: usize,
    },
    /// Nodes were expanded.
    Expanded {
        /// Depth of the new children.
        depth: usize,
        /// Nodes expanded.
        parents: usize,
        /// Children created.
        children: usize,
        /// Tokens generated at this depth.
        generated_tokens: u64,
    },
    /// New children were scored.
    Scored {
        /// Depth.
        depth: usize,
        /// Children with a score.
        scored: usize,
        /// Children dropped for lack of one.
        dropped: usize,
    },
    /// A trajectory finished.
    Finished {
        /// Depth of its last step.
        depth: usize,
        /// Its leaf.
        node: u64,
        /// Score of its last step.
        score: f64,
        /// The answer extracted from it.
        answer: Option<String>,
    },
    /// The selection pruned the frontier.
    Pruned {
        /// Depth.
        depth: usize,
        /// Open candidates before pruning.
        candidates: usize,
        /// Candidates that got children.
        kept: Vec<u64>,
    },
    /// A depth is complete.
    DepthDone {
        /// Depth.
        depth: usize,
        /// Open candidates at this depth.
        frontier: usize,
        /// Finished trajectories so far.
        finished: usize,
        /// Truncated trajectories so far.
        truncated: usize,
        /// Union tokens of the root→candidate paths (the paper's per-depth KV).
        live_tokens: u64,
        /// The same in bytes.
        live_bytes: u64,
    },
    /// The answer the vote over the finished trajectories gives so far: sent after every
    /// depth's [`DepthDone`](SearchEvent::DepthDone) once some trajectory has an answer.
    BestAnswer {
        /// The depth just completed.
        depth: usize,
        /// The answer.
        answer: String,
        /// Weight of its group of votes.
        support: f64,
        /// Its share of the vote, in [0, 1] (see `answer::vote_share`).
        share: f64,
        /// Trajectories voting for it.
        votes: usize,
    },
}

/// Receives [`SearchEvent`]s; returning `Break` stops the search at the next step boundary.
pub trait SearchObserver {
    /// Called for every event, in order.
    fn on_event(&mut self, event: &SearchEvent) -> ControlFlow<()>;

    /// Whether the search should stop now. Asked when a backend call fails: a backend that
    /// stops in the middle of a call for its job (a cancel or deadline landing between forward
    /// passes) answers with an error, and the search then ends as
    /// [`Stopped`](EndReason::Stopped) with what it has instead of failing. The default never
    /// stops.
    fn should_stop(&mut self) -> bool {
        false
    }
}

impl<F: FnMut(&SearchEvent) -> ControlFlow<()>> SearchObserver for F {
    fn on_event(&mut self, event: &SearchEvent) -> ControlFlow<()> {
        self(event)
    }
}

/// An observer that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreEvents;

impl SearchObserver for IgnoreEvents {
    fn on_event(&mut self, _: &SearchEvent) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Runs one tree search for `problem`.
///
/// Nodes are recorded in `kv` (the caller chooses its bytes per token and may share it between
/// searches); every reference the search takes is released before this returns.
pub fn run_search<'a>(
    problem: &'a str,
    config: &'a SearchConfig,
    backends: Backends<'a>,
    kv: &mut KvTree<()>,
    observer: &'a mut dyn SearchObserver,
) -> Result<SearchOutcome, SearchError> {
    config.validate()?;
    let lambda_s = config.effective_lambda_s();
    if config.method == crate::config::Method::Ets && lambda_s > 0.0 && backends.embedder.is_none()
    {
        return Err(SearchError::MissingEmbedder { lambda_s });
    }
    driver::Driver::new(problem, config, backends, kv, observer).run()
}

/// Seed of one expansion request, derived from the search seed and the node id.
pub fn request_seed(search_seed: u64, node_id: u64) -> u64 {
    splitmix64(search_seed ^ splitmix64(node_id.wrapping_add(0x5851_f42d_4c95_7f2d)))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
