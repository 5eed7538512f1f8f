//! Search configuration: what a caller may set, its defaults (the paper's), and validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::answer::{StepAggregate, VoteRule};
use crate::error::ConfigError;

/// The selection policy that decides how many children each frontier node gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// ETS: REBASE targets, then the retention problem prunes the frontier, then REBASE again.
    Ets,
    /// REBASE: children proportional to softmax(score / T), made exact by a sequential ceiling.
    Rebase,
    /// Beam search: the ceil(sqrt(W)) best nodes each get an equal share of the width.
    Beam,
    /// Diverse verifier tree search: ceil(sqrt(W)) independent greedy subtrees.
    Dvts,
    /// Best-of-N: W independent chains from the root.
    BestOfN,
}

impl Method {
    /// Every method, in the order reports list them.
    pub const ALL: [Method; 5] = [
        Method::Ets,
        Method::Rebase,
        Method::Beam,
        Method::Dvts,
        Method::BestOfN,
    ];

    /// The short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ets => "ets",
            Method::Rebase => "rebase",
            Method::Beam => "beam",
            Method::Dvts => "dvts",
            Method::BestOfN => "bon",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ets" => Ok(Method::Ets),
            "rebase" => Ok(Method::Rebase),
            "beam" => Ok(Method::Beam),
            "dvts" => Ok(Method::Dvts),
            "bon" | "best-of-n" | "best_of_n" => Ok(Method::BestOfN),
            _ => Err(ConfigError::new(
                "method",
                s,
                "expected one of ets, rebase, beam, dvts, bon",
            )),
        }
    }
}

/// What the KV term of ETS's retention problem counts.
///
/// The cost of keeping a node live is `λ_b·w/Σw`, with `w` the node's weight and `Σw` the
/// weight of all `M + N` nodes of the problem (ancestors and candidates), so keeping every node
/// costs `λ_b` under either count and `λ_b` keeps the paper's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvCost {
    /// Every node weighs 1: the cost is `λ_b/(M+N)` per live node, as in the paper.
    #[default]
    Nodes,
    /// A node weighs its own tokens (its step's; the prompt's for the root): the cost is
    /// `λ_b·t/T` per live node of `t` tokens, `T` the tokens of all `M + N` nodes.
    Tokens,
}

impl KvCost {
    /// Both counts, in the order the command line lists them.
    pub const ALL: [KvCost; 2] = [KvCost::Nodes, KvCost::Tokens];

    /// The short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            KvCost::Nodes => "nodes",
            KvCost::Tokens => "tokens",
        }
    }
}

impl std::fmt::Display for KvCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvCost {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nodes" => Ok(KvCost::Nodes),
            "tokens" => Ok(KvCost::Tokens),
            _ => Err(ConfigError::new(
                "kv_cost",
                s,
                "expected one of nodes, tokens",
            )),
        }
    }
}

/// How the policy samples tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Softmax temperature of the policy; 0 means greedy.
    pub temperature: f64,
    /// Nucleus mass kept, in (0, 1].
    pub top_p: f64,
    /// Keep only the k most likely tokens; `None` keeps all.
    pub top_k: Option<usize>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
        }
    }
}

/// Everything one tree search needs besides its backends.
///
/// Defaults follow the ETS paper: width 16, selection temperature 0.2, `lambda_b` 1.0,
/// `lambda_s` chosen by width (1.5 at 16, 1.4 at 64, 1.45 at 256), cluster cut 0.05.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchConfig {
    /// Selection policy.
    pub method: Method,
    /// Search width W: the number of trajectories the search may finish.
    pub width: usize,
    /// Temperature T of REBASE's softmax over PRM scores.
    pub selection_temperature: f64,
    /// ETS weight of the KV cost (nodes kept); 0 keeps everything.
    pub lambda_b: f64,
    /// ETS weight of semantic coverage; `None` picks the paper's value for the width.
    pub lambda_s: Option<f64>,
    /// Cosine distance under which two steps are the same cluster.
    pub cluster_threshold: f64,
    /// Deepest step the search expands; nodes still open there end as truncated.
    pub max_depth: usize,
    /// Most tokens one step may have.
    pub max_step_tokens: usize,
    /// Most tokens one trajectory may generate (the prompt is not counted).
    pub max_total_tokens: usize,
    /// Policy sampling.
    pub sampling: SamplingConfig,
    /// Seed of every random choice the search makes (policy sampling included).
    pub seed: u64,
    /// Text that ends a reasoning step.
    pub step_delimiter: String,
    /// A step whose text contains one of these finishes its trajectory.
    pub answer_markers: Vec<String>,
    /// Optional wall-clock cap of one retention solve, off (`None`) by default. The solver
    /// bounds its work deterministically, so a seeded search keeps the same sets on any
    /// machine; a cap set here trades that reproducibility for a bounded wait (past it the best
    /// incumbent is used).
    pub retention_time_limit: Option<Duration>,
    /// How finished trajectories vote for the answer.
    pub vote: VoteRule,
    /// Stop once the vote is decided: no outcome of the width still unspent could change its
    /// winner (each further trajectory adds at most 1, the top PRM score, to one answer, a new
    /// one included), so the answer is the one the full search would return. Width-based
    /// methods (ETS, REBASE, beam) with a majority or weighted-majority vote; off by default
    /// (the paper runs every search to its end). Ends with [`EndReason::Decided`].
    ///
    /// [`EndReason::Decided`]: crate::search::EndReason::Decided
    pub stop_when_decided: bool,
    /// Stop once one answer holds at least this share of the vote (its weight over the
    /// weight of every answer, under [`vote`](Self::vote); for a best-of vote, its share of the
    /// finished trajectories) and at least [`min_finished`](Self::min_finished) trajectories
    /// have finished. Unlike [`stop_when_decided`](Self::stop_when_decided) this may change the
    /// answer the full search would give; it ends with [`EndReason::ShareReached`] so results
    /// say which stop fired. Width-based methods (ETS, REBASE, beam); off (`None`) by default.
    ///
    /// [`EndReason::ShareReached`]: crate::search::EndReason::ShareReached
    pub stop_at_share: Option<f64>,
    /// Finished trajectories [`stop_at_share`](Self::stop_at_share) waits for (default 1).
    pub min_finished: usize,
    /// What the KV term of ETS's retention problem counts: nodes (the paper's, the default) or
    /// tokens. See [`KvCost`].
    pub kv_cost: KvCost,
    /// Hard limit on the search's live KV, in tokens (the union of the root paths of every node
    /// the search holds, the prompt included); `None` (the default) sets none. Every method
    /// enforces it. At each depth ETS and REBASE keep only retention sets whose paths, plus room
    /// for every child this depth will create at `max_step_tokens` each, fit under the limit;
    /// beam, DVTS and best-of-N keep their own choice of candidates and give them only the
    /// children that fit. The live KV never exceeds the limit; when not even one candidate and
    /// one child fit, the search ends with [`EndReason::KvLimit`]. See the driver's module doc.
    ///
    /// [`EndReason::KvLimit`]: crate::search::EndReason::KvLimit
    pub kv_limit: Option<u64>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            method: Method::Ets,
            width: 16,
            selection_temperature: 0.2,
            lambda_b: 1.0,
            lambda_s: None,
            cluster_threshold: 0.05,
            max_depth: 25,
            max_step_tokens: 256,
            max_total_tokens: 1024,
            sampling: SamplingConfig::default(),
            seed: 0,
            step_delimiter: "\n\n".to_owned(),
            answer_markers: vec!["The answer is".to_owned(), "\\boxed".to_owned()],
            retention_time_limit: None,
            vote: VoteRule::WeightedMajority(StepAggregate::Last),
            stop_when_decided: false,
            stop_at_share: None,
            min_finished: 1,
            kv_cost: KvCost::Nodes,
            kv_limit: None,
        }
    }
}

/// The paper's semantic-coverage weight for a search width: 1.5 at 16, 1.4 at 64, 1.45 at 256;
/// other widths take the value of the nearest of those on a log scale.
pub fn paper_lambda_s(width: usize) -> f64 {
    let w = (width.max(1) as f64).log2();
    // Midpoints between log2(16)=4, log2(64)=6 and log2(256)=8.
    if w < 5.0 {
        1.5
    } else if w < 7.0 {
        1.4
    } else {
        1.45
    }
}

impl SearchConfig {
    /// The semantic-coverage weight in force: the configured one or the paper's for the width.
    pub fn effective_lambda_s(&self) -> f64 {
        self.lambda_s.unwrap_or_else(|| paper_lambda_s(self.width))
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.width == 0 {
            return Err(ConfigError::new("width", self.width, "must be at least 1"));
        }
        positive_finite("selection_temperature", self.selection_temperature)?;
        non_negative_finite("lambda_b", self.lambda_b)?;
        if let Some(lambda_s) = self.lambda_s {
            non_negative_finite("lambda_s", lambda_s)?;
        }
        let t = self.cluster_threshold;
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(ConfigError::new(
                "cluster_threshold",
                t,
                "must be a cosine distance in [0, 2]",
            ));
        }
        if self.max_depth == 0 {
            return Err(ConfigError::new(
                "max_depth",
                self.max_depth,
                "must be at least 1",
            ));
        }
        if self.max_step_tokens == 0 {
            return Err(ConfigError::new(
                "max_step_tokens",
                self.max_step_tokens,
                "must be at least 1",
            ));
        }
        if self.max_total_tokens == 0 {
            return Err(ConfigError::new(
                "max_total_tokens",
                self.max_total_tokens,
                "must be at least 1",
            ));
        }
        non_negative_finite("sampling.temperature", self.sampling.temperature)?;
        let p = self.sampling.top_p;
        if !(p.is_finite() && p > 0.0 && p <= 1.0) {
            return Err(ConfigError::new("sampling.top_p", p, "must be in (0, 1]"));
        }
        if self.sampling.top_k == Some(0) {
            return Err(ConfigError::new(
                "sampling.top_k",
                0,
                "must be at least 1 when set",
            ));
        }
        if self.step_delimiter.is_empty() {
            return Err(ConfigError::new(
                "step_delimiter",
                &self.step_delimiter,
                "must not be empty",
            ));
        }
        if self.answer_markers.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "answer_markers",
                &self.answer_markers,
                "must not contain an empty marker",
            ));
        }
        if let Some(share) = self.stop_at_share {
            if !(share.is_finite() && share > 0.0 && share <= 1.0) {
                return Err(ConfigError::new(
                    "stop_at_share",
                    share,
                    "must be a share of the vote in (0, 1]",
                ));
            }
        }
        if self.min_finished == 0 || self.min_finished > self.width {
            return Err(ConfigError::new(
                "min_finished",
                self.min_finished,
                "must be between 1 and the width",
            ));
        }
        if let Some(limit) = self.kv_limit {
            if limit == 0 {
                return Err(ConfigError::new(
                    "kv_limit",
                    limit,
                    "must be at least 1 token when set",
                ));
            }
        }
        if let Some(limit) = self.retention_time_limit.filter(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "retention_time_limit",
                limit,
                "must be positive when set",
            ));
        }
        Ok(())
    }
}

fn positive_finite(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            v,
            "must be a finite number above 0",
        ))
    }
}

fn non_negative_finite(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            v,
            "must be a finite number, 0 or above",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(edit: impl FnOnce(&mut SearchConfig)) -> ConfigError {
        let mut c = SearchConfig::default();
        edit(&mut c);
        c.validate().expect_err("config should be rejected")
    }

    #[test]
    fn defaults_are_valid_and_follow_the_paper() {
        let c = SearchConfig::default();
        c.validate().unwrap();
        assert_eq!(c.width, 16);
        assert_eq!(c.selection_temperature, 0.2);
        assert_eq!(c.effective_lambda_s(), 1.5);
        assert_eq!(paper_lambda_s(64), 1.4);
        assert_eq!(paper_lambda_s(256), 1.45);
        assert_eq!(paper_lambda_s(4), 1.5);
        assert_eq!(paper_lambda_s(1024), 1.45);
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(rejected(|c| c.width = 0).field, "width");
        assert_eq!(
            rejected(|c| c.selection_temperature = f64::NAN).field,
            "selection_temperature"
        );
        assert_eq!(
            rejected(|c| c.selection_temperature = 0.0).field,
            "selection_temperature"
        );
        assert_eq!(rejected(|c| c.lambda_b = -1.0).field, "lambda_b");
        assert_eq!(
            rejected(|c| c.lambda_s = Some(f64::INFINITY)).field,
            "lambda_s"
        );
        assert_eq!(
            rejected(|c| c.cluster_threshold = -0.1).field,
            "cluster_threshold"
        );
        assert_eq!(rejected(|c| c.max_depth = 0).field, "max_depth");
        assert_eq!(rejected(|c| c.max_step_tokens = 0).field, "max_step_tokens");
        assert_eq!(
            rejected(|c| c.max_total_tokens = 0).field,
            "max_total_tokens"
        );
        assert_eq!(
            rejected(|c| c.sampling.temperature = -0.5).field,
            "sampling.temperature"
        );
        assert_eq!(rejected(|c| c.sampling.top_p = 0.0).field, "sampling.top_p");
        assert_eq!(
            rejected(|c| c.sampling.top_k = Some(0)).field,
            "sampling.top_k"
        );
        assert_eq!(
            rejected(|c| c.step_delimiter.clear()).field,
            "step_delimiter"
        );
        assert_eq!(
            rejected(|c| c.answer_markers.push(String::new())).field,
            "answer_markers"
        );
        assert_eq!(rejected(|c| c.kv_limit = Some(0)).field, "kv_limit");
        for method in [Method::Beam, Method::Dvts, Method::BestOfN] {
            let limited = SearchConfig {
                method,
                kv_limit: Some(4096),
                ..SearchConfig::default()
            };
            assert!(limited.validate().is_ok(), "{method:?} takes a KV limit");
        }
        let e = rejected(|c| c.lambda_b = f64::NAN);
        assert!(
            e.to_string().contains("lambda_b") && e.to_string().contains("NaN"),
            "{e}"
        );
    }

    #[test]
    fn methods_parse_by_name() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        let e = "greedy".parse::<Method>().unwrap_err();
        assert_eq!(e.field, "method");
        for k in KvCost::ALL {
            assert_eq!(k.name().parse::<KvCost>().unwrap(), k);
        }
        assert_eq!("bytes".parse::<KvCost>().unwrap_err().field, "kv_cost");
    }
}
