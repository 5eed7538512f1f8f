//! Answers: extraction from step text, MATH/GSM8K grading, voting over finished trajectories.
//!
//! A finished trajectory's text goes through [`extract_answer`] (last `\boxed{…}`, else "The
//! answer is: X", else GSM8K's `#### N`); [`answers_equal`] decides whether two answers are
//! the same under a [`Dataset`]'s conventions and a [`Grader`] (`prm800k`: PRM800K's grader;
//! `lenient`: mathematical equivalence); [`vote()`] groups the answers of many
//! trajectories by that equivalence and picks one by a [`VoteRule`] over PRM step scores
//! combined with a [`StepAggregate`].
//!
//! Layout:
//! - `extract`: [`extract_answer`], [`last_boxed`], [`answer_is`], [`gsm8k_hash`],
//!   [`gsm8k_reference`], [`strip_calculator_annotations`].
//! - `hendrycks`: [`math_normalize`] (Hendrycks' MATH normalizer, both graders' first test).
//! - `prm800k`: [`prm800k_equal`] and [`prm800k_normalize`], PRM800K's grader rule by rule
//!   (its `pylatexenc` rendering and sympy step emulated in `prm800k/`).
//! - `lenient_normalize`: [`lenient_normalize`], the lenient grader's normal form.
//! - `grade`: [`Grader`], [`lenient_equal`], [`gsm8k_equal`], [`answers_equal`].
//! - `expr` (private): the arithmetic parser and numeric evaluator behind `lenient_equal`.
//! - `vote`: [`aggregate`], [`vote()`].
//!
//! **Invariants**: every function here is pure and total — any string in, an answer out, no
//! panics, no I/O. Grading is not symbolic: where PRM800K calls sympy, [`prm800k_equal`] runs an
//! identity test that follows sympy's parsing and number semantics, and [`lenient_equal`]
//! evaluates numerically (see their documentation for what that covers and what it does not).
//!
//! **Must not**: depend on a model, a tokenizer or the search; the vote sees only answers and
//! step scores.

mod expr;
mod extract;
mod grade;
mod hendrycks;
mod lenient_normalize;
mod prm800k;
mod vote;

#[cfg(test)]
mod data_tests;

pub use extract::{
    answer_is, extract_answer, gsm8k_hash, gsm8k_reference, last_boxed,
    strip_calculator_annotations,
};
pub use grade::{answers_equal, gsm8k_equal, lenient_equal, Dataset, Grader};
pub use hendrycks::math_normalize;
pub use lenient_normalize::lenient_normalize;
pub use prm800k::{prm800k_equal, prm800k_normalize};
pub use vote::{
    aggregate, vote, vote_is_decided, vote_share, StepAggregate, VoteCandidate, VoteOutcome,
    VoteRule,
};
