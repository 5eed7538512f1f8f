//! Evaluation: benchmark problems in, a per method × width summary out. Pure and I/O-free, so
//! the `ets eval` command, scripts and tests share one definition of every number.
//!
//! Layout:
//! - `dataset`: [`load_problems`] reads MATH500, GSM8K or a user's JSONL text into [`Problem`]s
//!   (problem text, reference answer); [`select_problems`] applies `--ids` and `--limit`.
//! - `summary`: [`EvalRecord::new`] votes ([`EVAL_VOTE`]: weighted majority, last-step score
//!   weights) and grades one search with the `answer` grader and recounts its KV metric
//!   ([`recount_kv`]); [`summarize`] aggregates records into [`EvalSummary`] (accuracy, KV
//!   metric, live tokens and bytes, tokens, calls, times, problems per minute, and the
//!   REBASE/ETS ratios); [`markdown_table`] renders it.
//! - `baseline`: [`compare_with_baseline`] sets an eval's cells beside the same cells of
//!   another (an early stop against the full search): answers kept, tokens and time saved.
//!
//! **Must not**: read files, talk to the daemon or draw plots; the CLI does those.

mod baseline;
mod dataset;
mod summary;

#[cfg(test)]
mod tests;

pub use baseline::{baseline_table, compare_with_baseline, BaselineComparison};
pub use dataset::{infer_grader, load_problems, select_problems, Layout, Problem};
pub use summary::{
    markdown_table, recount_kv, summarize, CellKey, CellSummary, Comparison, EvalRecord,
    EvalSummary, VoteGroup, EVAL_VOTE,
};
