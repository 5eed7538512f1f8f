//! # ets-core — the search core of ETS
//!
//! **Owns**: search configuration and its validation ([`config`]), the backend traits the search
//! calls ([`backend`]: `Policy`, `Reward`, `Embedder`, `RetentionSolver`, `Clusterer`), the ETS
//! retention problem's definition ([`retention`]), selection policies ([`select`]: REBASE, ETS,
//! beam, DVTS, best-of-N), the search driver ([`search`]), and answers ([`answer`]: extraction,
//! MATH/GSM8K grading, voting), and the wire protocol between client and daemon ([`protocol`]:
//! messages and the one length-prefixed bincode codec).
//!
//! **Must not**: depend on a model engine (mistralrs, candle), an async runtime (tokio), the LP
//! solver (clarabel) or the neighbour index (hnsw_rs). Those sit behind the traits in
//! [`backend`], implemented by `ets-solver` and `ets-daemon`.
//!
//! **Entry points**: [`search::run_search`] runs one tree search; [`select::rebase::allocate`]
//! and [`select::ets::allocate`] are the selection rules; [`answer`] grades and votes.
//!
//! **Invariants**: every random choice is derived from [`config::SearchConfig::seed`]; a search
//! releases every `ets-kvtree` reference it took, whether it finishes, fails or is stopped.

pub mod answer;
pub mod backend;
pub mod config;
pub mod error;
pub mod eval;
pub mod limits;
pub mod protocol;
pub mod retention;
pub mod search;
pub mod select;
pub mod serde_secs;

pub use backend::{
    Clusterer, Continuation, Embedder, ExpandRequest, FinishReason, Policy, RetentionSolver,
    Reward, ScoreRequest, ServerPromptTokens, StopCheck, StopHandle,
};
pub use config::{KvCost, Method, SamplingConfig, SearchConfig};
pub use error::{BackendError, ConfigError, EvalError, RetentionError, SearchError};
pub use limits::{LimitError, RequestLimits};
pub use retention::{Retention, RetentionProblem};
