//! Request limits: the largest search a daemon accepts, as data. Every bound here guards a
//! resource a hostile or careless request could exhaust (width and depth: nodes, model calls
//! and KV; token caps: decode time; problem bytes: prefill time and memory). A request over a
//! limit is refused before it is queued, and the error names the limit and how to raise it.
//!
//! Defaults are sized so a 2-core laptop survives any accepted request: the paper's largest
//! width (256), twice the default depth cap, 16x the default step and trajectory budgets.

use serde::{Deserialize, Serialize};

use crate::config::SearchConfig;

/// The largest search a daemon accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLimits {
    /// Most trajectories a search may grow (`SearchConfig::width`).
    pub max_width: usize,
    /// Deepest depth cap (`SearchConfig::max_depth`).
    pub max_depth: usize,
    /// Most tokens of one step (`SearchConfig::max_step_tokens`).
    pub max_step_tokens: usize,
    /// Most tokens of one trajectory (`SearchConfig::max_total_tokens`).
    pub max_total_tokens: usize,
    /// Most bytes of the problem text (UTF-8).
    pub max_problem_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_width: 256,
            max_depth: 50,
            max_step_tokens: 4096,
            max_total_tokens: 16_384,
            max_problem_bytes: 64 * 1024,
        }
    }
}

/// A request over one of the [`RequestLimits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value} exceeds the limit {max} (the daemon's --{flag} raises it)")]
pub struct LimitError {
    /// The request field, as spelled in [`SearchConfig`] (or `problem bytes`).
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// The limit.
    pub max: u64,
    /// The daemon flag that sets the limit.
    pub flag: &'static str,
}

impl RequestLimits {
    /// Checks `config` and `problem` against every limit; the first one exceeded is the error.
    pub fn check(&self, config: &SearchConfig, problem: &str) -> Result<(), LimitError> {
        let checks = [
            ("width", config.width, self.max_width, "max-width"),
            ("max_depth", config.max_depth, self.max_depth, "max-depth"),
            (
                "max_step_tokens",
                config.max_step_tokens,
                self.max_step_tokens,
                "max-step-tokens",
            ),
            (
                "max_total_tokens",
                config.max_total_tokens,
                self.max_total_tokens,
                "max-total-tokens",
            ),
            (
                "problem bytes",
                problem.len(),
                self.max_problem_bytes,
                "max-problem-bytes",
            ),
        ];
        for (field, value, max, flag) in checks {
            if value > max {
                return Err(LimitError {
                    field,
                    value: value as u64,
                    max: max as u64,
                    flag,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_accept_the_default_config() {
        RequestLimits::default()
            .check(&SearchConfig::default(), "What is 7 * 6?")
            .unwrap();
    }

    #[test]
    fn each_limit_is_named_when_exceeded() {
        let limits = RequestLimits::default();
        let base = SearchConfig::default();
        let cases: [(SearchConfig, &str, &str); 4] = [
            (
                SearchConfig {
                    width: 1_000_000_000,
                    ..base.clone()
                },
                "width",
                "--max-width",
            ),
            (
                SearchConfig {
                    max_depth: usize::MAX,
                    ..base.clone()
                },
                "max_depth",
                "--max-depth",
            ),
            (
                SearchConfig {
                    max_step_tokens: 1 << 20,
                    ..base.clone()
                },
                "max_step_tokens",
                "--max-step-tokens",
            ),
            (
                SearchConfig {
                    max_total_tokens: 1 << 30,
                    ..base.clone()
                },
                "max_total_tokens",
                "--max-total-tokens",
            ),
        ];
        for (config, field, flag) in cases {
            let e = limits.check(&config, "p").unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.to_string().contains(flag), "{e}");
        }
        let long = "x".repeat(limits.max_problem_bytes + 1);
        let e = limits.check(&base, &long).unwrap_err();
        assert_eq!(e.field, "problem bytes");
    }

    #[test]
    fn a_value_at_the_limit_is_accepted() {
        let limits = RequestLimits::default();
        let config = SearchConfig {
            width: limits.max_width,
            max_depth: limits.max_depth,
            ..SearchConfig::default()
        };
        limits
            .check(&config, &"x".repeat(limits.max_problem_bytes))
            .unwrap();
    }
}
