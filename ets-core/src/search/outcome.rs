//! What a search reports: the whole tree, per-depth records, finished trajectories and stats.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::FinishReason;

/// Where a node ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// On the frontier when the search ended (it was stopped).
    Open,
    /// Had children sampled from it.
    Expanded,
    /// Ends a finished trajectory (answer marker or end of sequence).
    Finished,
    /// Hit the token cap or the depth cap; never an answer.
    Truncated,
    /// Kept no children at a selection.
    Pruned,
    /// Had no reward score; dropped without spending budget.
    Dropped,
}

impl NodeState {
    /// The kebab-case name logs and the wire format use.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Open => "open",
            NodeState::Expanded => "expanded",
            NodeState::Finished => "finished",
            NodeState::Truncated => "truncated",
            NodeState::Pruned => "pruned",
            NodeState::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One node of the search tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Id within the search; the root (the prompt) is 0, children count up in creation order.
    pub id: u64,
    /// Parent id; `None` for the root.
    pub parent: Option<u64>,
    /// Depth; the root is 0.
    pub depth: usize,
    /// The step's text (empty for the root).
    pub text: String,
    /// Tokens of this step (the prompt's for the root).
    pub tokens: usize,
    /// Tokens generated from the root to this node, the prompt excluded.
    pub path_tokens: usize,
    /// Reward score of the step.
    pub score: Option<f64>,
    /// Why the policy stopped the step.
    pub finish: Option<FinishReason>,
    /// Final state.
    pub state: NodeState,
    /// DVTS subtree (0 for other methods).
    pub subtree: usize,
}

/// Summary of one retention solve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetentionSummary {
    /// Objective of the kept set.
    pub objective: f64,
    /// False when the solver's time cap ended it first.
    pub proven_optimal: bool,
    /// Branch-and-bound nodes.
    pub nodes_explored: usize,
    /// LP relaxations solved.
    pub lp_solves: usize,
}

/// What happened at one depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthRecord {
    /// Depth of the children created here (1 for the root's children).
    pub depth: usize,
    /// Nodes expanded.
    pub expanded: usize,
    /// Children created.
    pub children_created: usize,
    /// Children dropped for lack of a score.
    pub dropped: usize,
    /// Children that finished.
    pub finished: usize,
    /// Children truncated (token or depth cap).
    pub truncated: usize,
    /// Open candidates the selection saw, by node id.
    pub candidates: Vec<u64>,
    /// Cluster label per candidate (ETS with `lambda_s > 0` only; empty otherwise).
    pub clusters: Vec<usize>,
    /// Candidates that got children.
    pub kept: Vec<u64>,
    /// Children allocated to each candidate.
    pub allocation: Vec<usize>,
    /// Tokens in the union of the root→candidate paths before pruning, the prompt included:
    /// the paper's KV measure for this depth.
    pub union_tokens: u64,
    /// The same in bytes.
    pub union_bytes: u64,
    /// Tokens in the union of the root paths of the kept candidates (after pruning).
    pub kept_tokens: u64,
    /// The ETS retention solve of this depth.
    pub retention: Option<RetentionSummary>,
    /// Time spent selecting (clustering and retention included); JSON: `selection_time_s`.
    #[serde(with = "crate::serde_secs", rename = "selection_time_s")]
    pub selection_time: Duration,
}

impl DepthRecord {
    pub(crate) fn new(depth: usize, expanded: usize, children_created: usize) -> Self {
        Self {
            depth,
            expanded,
            children_created,
            dropped: 0,
            finished: 0,
            truncated: 0,
            candidates: Vec::new(),
            clusters: Vec::new(),
            kept: Vec::new(),
            allocation: Vec::new(),
            union_tokens: 0,
            union_bytes: 0,
            kept_tokens: 0,
            retention: None,
            selection_time: Duration::ZERO,
        }
    }
}

/// A finished trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// Id of its last node.
    pub leaf: u64,
    /// Every step's text, concatenated.
    pub text: String,
    /// Reward score of each step, oldest first.
    pub step_scores: Vec<f64>,
    /// Answer extracted from the text.
    pub answer: Option<String>,
    /// Tokens generated.
    pub tokens: usize,
}

impl Trajectory {
    /// This trajectory as one ballot of [`answer::vote`](crate::answer::vote).
    pub fn vote_candidate(&self) -> crate::answer::VoteCandidate<'_> {
        crate::answer::VoteCandidate {
            answer: self.answer.as_deref(),
            step_scores: &self.step_scores,
        }
    }
}

/// Why the search loop ended.
///
/// After each depth the driver either plans the next one or ends with exactly one reason,
/// checked in this order:
/// 1. [`Stopped`](EndReason::Stopped) when the observer asked to stop while work remained;
/// 2. [`DepthCap`](EndReason::DepthCap) when the last depth was `max_depth` and the cap
///    truncated a child there;
/// 3. [`WidthSpent`](EndReason::WidthSpent) when finished plus truncated trajectories reached
///    the width;
/// 4. [`Decided`](EndReason::Decided) when `stop_when_decided` pruned open nodes because the
///    vote could no longer change;
/// 5. [`ShareReached`](EndReason::ShareReached) when `stop_at_share` pruned open nodes because
///    one answer held that share of the vote;
/// 6. [`KvLimit`](EndReason::KvLimit) when `kv_limit` left no room for the cheapest open
///    candidate's path plus one child (checked before the root's expansion too), or when the
///    frontier ran out with width unspent after the limit had narrowed a depth;
/// 7. [`FrontierEmpty`](EndReason::FrontierEmpty) otherwise.
///
/// [`Deadline`](EndReason::Deadline) is never the driver's: the daemon puts it in place of
/// `Stopped` when the stop was the job's deadline, so the result says it is partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// The width budget is used up: finished plus truncated trajectories (the token cap's
    /// truncations included) reached the width, whether or not open nodes remained (those are
    /// pruned). DVTS does not stop on the width (its subtrees keep their own budgets); for it
    /// this says that its last subtree ended with at least `width` trajectories closed.
    WidthSpent,
    /// Nothing was left to expand while width remained: every new child finished, was
    /// truncated by the token cap or dropped for lack of a score, or the selection kept no
    /// node (every DVTS subtree ended).
    FrontierEmpty,
    /// The depth cap ended the search: the last depth was `max_depth` and at least one child
    /// there was truncated by the cap alone (it neither finished nor reached the token cap).
    DepthCap,
    /// The vote was decided (`SearchConfig::stop_when_decided`): no outcome of the unspent
    /// width could change the winner, so the open nodes were pruned.
    Decided,
    /// One answer held `SearchConfig::stop_at_share` of the vote with at least
    /// `min_finished` trajectories finished, so the open nodes were pruned. Unlike
    /// [`Decided`](EndReason::Decided) the full search might have answered otherwise.
    ShareReached,
    /// The KV limit (`SearchConfig::kv_limit`) ended the search with width left: not even the
    /// cheapest open candidate's root path plus one child of `max_step_tokens` fit under it, so
    /// the open nodes were pruned (before the root's expansion: the prompt plus one child did
    /// not fit, and the search ran no depth); or the limit had narrowed a depth (fewer children
    /// than the width left) and the frontier then ran out. The answer is the vote over the
    /// trajectories finished so far; the live KV never exceeded the limit.
    KvLimit,
    /// The observer asked the search to stop (cancel, deadline and shutdown in the daemon all
    /// arrive this way) while work remained: nodes are left [`NodeState::Open`]. A stop that
    /// arrives once nothing is left to do does not change the reason.
    Stopped,
    /// The job's deadline stopped the search while work remained: the result is partial, its
    /// answer the vote over the trajectories finished by then (set by the daemon, see above).
    Deadline,
}

impl EndReason {
    /// Every reason, in the order of the rules above (stop first), then the daemon's.
    pub const ALL: [EndReason; 8] = [
        EndReason::Stopped,
        EndReason::DepthCap,
        EndReason::WidthSpent,
        EndReason::Decided,
        EndReason::ShareReached,
        EndReason::KvLimit,
        EndReason::FrontierEmpty,
        EndReason::Deadline,
    ];

    /// Whether the search was cut short with work left: its answer may differ from the one
    /// the whole search would give.
    pub fn is_partial(self) -> bool {
        matches!(self, EndReason::Stopped | EndReason::Deadline)
    }

    /// The kebab-case name logs and the wire format use.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::WidthSpent => "width-spent",
            EndReason::FrontierEmpty => "frontier-empty",
            EndReason::DepthCap => "depth-cap",
            EndReason::Decided => "decided",
            EndReason::ShareReached => "share-reached",
            EndReason::KvLimit => "kv-limit",
            EndReason::Stopped => "stopped",
            EndReason::Deadline => "deadline",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of a whole search.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SearchStats {
    /// The paper's KV metric: union tokens of root→candidate paths, summed over depths.
    pub kv_metric_tokens: u64,
    /// Largest per-depth union (tokens).
    pub peak_live_tokens: u64,
    /// Largest per-depth union (bytes).
    pub peak_live_bytes: u64,
    /// Mean per-depth union (tokens).
    pub mean_live_tokens: f64,
    /// Mean per-depth union (bytes).
    pub mean_live_bytes: f64,
    /// Tokens of the root prompt.
    pub prompt_tokens: usize,
    /// Tokens the policy generated.
    pub generated_tokens: u64,
    /// Nodes the policy expanded (one request each).
    pub policy_calls: u64,
    /// Steps the reward model scored.
    pub prm_calls: u64,
    /// Texts embedded for clustering.
    pub embedded_texts: u64,
    /// Time spent in selection (clustering and retention included); JSON: `selection_time_s`.
    #[serde(with = "crate::serde_secs", rename = "selection_time_s")]
    pub selection_time: Duration,
    /// Depths run.
    pub depths: usize,
    /// Nodes created, the root included.
    pub nodes: usize,
    /// Finished trajectories.
    pub finished: usize,
    /// Truncated trajectories.
    pub truncated: usize,
    /// Children dropped for lack of a score.
    pub dropped: usize,
    /// Nodes pruned by selection.
    pub pruned: usize,
    /// Wall-clock time of the search; JSON: `wall_time_s`.
    #[serde(with = "crate::serde_secs", rename = "wall_time_s")]
    pub wall_time: Duration,
    /// Prompt tokens remote servers computed for this search's requests (0 in process).
    pub server_prompt_tokens_computed: u64,
    /// Prompt tokens remote servers reused from their prefix caches for this search.
    pub server_prompt_tokens_reused: u64,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// The answer chosen by the configured vote, if any trajectory has one.
    pub answer: Option<String>,
    /// Finished trajectories, in the order they finished.
    pub trajectories: Vec<Trajectory>,
    /// Every node of the tree, by id.
    pub nodes: Vec<NodeRecord>,
    /// One record per depth run.
    pub depths: Vec<DepthRecord>,
    /// Counters.
    pub stats: SearchStats,
    /// Why the search ended.
    pub end: EndReason,
}
