//! Errors of the search core: configuration, retention problems and searches.

use thiserror::Error;

/// A search configuration field holds a value the search cannot run with.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid search configuration: `{field}` = {value}: {reason}")]
pub struct ConfigError {
    /// The configuration field, as spelled in [`crate::config::SearchConfig`].
    pub field: &'static str,
    /// The rejected value, formatted with `Debug`.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl ConfigError {
    pub(crate) fn new(
        field: &'static str,
        value: impl std::fmt::Debug,
        reason: &'static str,
    ) -> Self {
        Self {
            field,
            value: format!("{value:?}"),
            reason,
        }
    }
}

/// The boxed error a backend (policy, reward model, embedder) returns.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The policy model (expansion or prompt encoding).
    Policy,
    /// The process reward model.
    Reward,
    /// The step embedder used for clustering.
    Embedder,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Policy => "policy",
            BackendKind::Reward => "reward model",
            BackendKind::Embedder => "embedder",
        })
    }
}

/// A search could not run to its end.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The configuration was rejected before anything ran.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// ETS with `lambda_s > 0` needs an embedder to cluster steps.
    #[error("ETS with lambda_s = {lambda_s} needs an embedder to cluster steps; configure one or set lambda_s = 0")]
    MissingEmbedder {
        /// The semantic-coverage weight that asked for clustering.
        lambda_s: f64,
    },
    /// A backend call failed.
    #[error("{kind} failed at depth {depth}: {source}")]
    Backend {
        /// Which backend.
        kind: BackendKind,
        /// Search depth at which it failed.
        depth: usize,
        /// The backend's own error.
        #[source]
        source: BackendError,
    },
    /// A backend answered with the wrong number of results.
    #[error("{kind} returned {got} results for {expected} requests at depth {depth}")]
    BackendShape {
        /// Which backend.
        kind: BackendKind,
        /// Search depth.
        depth: usize,
        /// Results expected.
        expected: usize,
        /// Results received.
        got: usize,
    },
    /// Under a KV limit, the policy returned a step longer than its request's `max_tokens`,
    /// which the limit's room for the depth's children relies on.
    #[error(
        "policy returned a step of {got} tokens at depth {depth}, over the request's max_tokens \
         {max_tokens} that the KV limit relies on"
    )]
    StepTooLong {
        /// Search depth.
        depth: usize,
        /// The request's cap.
        max_tokens: usize,
        /// Tokens of the step returned.
        got: usize,
    },
    /// The retention problem built at a depth was malformed (a bug in the driver or solver).
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// The KV tree refused an operation (a bug: the driver holds only references it took).
    #[error("kv tree: {0}")]
    KvTree(#[from] ets_kvtree::KvTreeError),
}

/// A retention problem is malformed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RetentionError {
    /// There are no candidates.
    #[error("retention problem has no candidates")]
    Empty,
    /// There are no ancestors, but the candidates are not the root alone.
    #[error(
        "retention problem has no ancestors, so its candidates must be the root alone (one \
         candidate without a parent), but it has {candidates} candidates or a parent index"
    )]
    RootFrontier {
        /// Candidates given.
        candidates: usize,
    },
    /// Per-candidate vectors disagree in length.
    #[error("retention problem field `{field}` has {got} entries for {expected} candidates")]
    Length {
        /// Field name.
        field: &'static str,
        /// Entries expected (the candidate count).
        expected: usize,
        /// Entries present.
        got: usize,
    },
    /// An index points outside its range.
    #[error("retention problem field `{field}` holds index {index}, outside 0..{bound}")]
    Index {
        /// Field name.
        field: &'static str,
        /// Bad index.
        index: usize,
        /// Exclusive bound.
        bound: usize,
    },
    /// A number is NaN, infinite or negative where it must not be.
    #[error("retention problem field `{field}` holds {value}, which is not a finite non-negative number")]
    Value {
        /// Field name.
        field: &'static str,
        /// Bad value.
        value: f64,
    },
    /// No candidate's root path fits in the capacity, so no kept set is feasible.
    #[error(
        "retention problem `capacity` is {capacity} tokens, but the cheapest candidate path \
         holds {cheapest}"
    )]
    Capacity {
        /// The capacity.
        capacity: u64,
        /// Tokens of the cheapest candidate's root path.
        cheapest: u64,
    },
}

/// An evaluation input that cannot be used: a bad dataset line, an empty file, an unknown id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A line of a dataset file is not a usable record.
    #[error("{file}: line {line}: {reason}")]
    BadLine {
        /// The file (or built-in dataset) name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A dataset file holds no problem.
    #[error("{file}: no problems in the file")]
    NoProblems {
        /// The file (or built-in dataset) name.
        file: String,
    },
    /// `--ids` named a problem the dataset does not have.
    #[error("no problem with id `{0}` in the dataset")]
    UnknownProblem(String),
}
