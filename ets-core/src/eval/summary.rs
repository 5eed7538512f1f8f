//! One evaluated cell ([`EvalRecord`]: a problem × method × width × seed, voted and graded), the
//! KV recount from a recorded tree, and the aggregation into a per method × width summary with
//! the REBASE/ETS ratios and its markdown table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::answer::{answers_equal, vote, Dataset, Grader, StepAggregate, VoteCandidate, VoteRule};
use crate::config::Method;
use crate::search::{DepthRecord, NodeRecord, SearchOutcome, Trajectory};

use super::dataset::Problem;

/// How the eval picks a final answer: weighted majority vote, each trajectory weighted by its
/// last step's PRM score.
pub const EVAL_VOTE: VoteRule = VoteRule::WeightedMajority(StepAggregate::Last);

/// One answer group of the vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteGroup {
    /// The group's answer (its first member's).
    pub answer: String,
    /// Sum of the members' last-step scores.
    pub weight: f64,
    /// Members.
    pub count: usize,
}

/// Identifies one cell of an eval; two records with the same key are the same work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    /// Problem id.
    pub problem_id: String,
    /// Method name (`Method::name`).
    pub method: &'static str,
    /// Width.
    pub width: usize,
    /// Seed.
    pub seed: u64,
    /// The search's KV limit in tokens (`--kv-limit`), if any.
    pub kv_limit: Option<u64>,
}

/// What one cell produced: the voted, graded answer and the whole search outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Problem id.
    pub problem_id: String,
    /// Method.
    pub method: Method,
    /// Width.
    pub width: usize,
    /// Seed.
    pub seed: u64,
    /// The search's KV limit in tokens, if any (records written before limits read back as
    /// none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_limit: Option<u64>,
    /// Answer conventions graded under (MATH or GSM8K; named `grader` for compatibility).
    pub grader: Dataset,
    /// The grader that decided `correct` and grouped `votes`. Records written before graders
    /// could be chosen read back as `lenient`, the rules they were graded by then.
    #[serde(default = "grader_before_choice")]
    pub math_grader: Grader,
    /// Reference answer.
    pub reference: String,
    /// The answer chosen by [`EVAL_VOTE`].
    pub answer: Option<String>,
    /// Whether `answer` equals `reference` under `grader`.
    pub correct: bool,
    /// Every answer group of the vote.
    pub votes: Vec<VoteGroup>,
    /// The paper's KV metric recounted from `outcome.nodes` and `outcome.depths`
    /// ([`recount_kv`]); equals `outcome.stats.kv_metric_tokens`.
    pub kv_recount_tokens: u64,
    /// The daemon's job id.
    pub job: u64,
    /// The full search: nodes, token counts, scores, cluster labels, kept sets, trajectories.
    pub outcome: SearchOutcome,
}

fn grader_before_choice() -> Grader {
    Grader::Lenient
}

/// The cell's voted answer, whether it is correct, and the vote's groups.
fn vote_and_grade(
    outcome: &SearchOutcome,
    reference: &str,
    dataset: Dataset,
    grader: Grader,
) -> (Option<String>, bool, Vec<VoteGroup>) {
    let candidates: Vec<VoteCandidate<'_>> = outcome
        .trajectories
        .iter()
        .map(Trajectory::vote_candidate)
        .collect();
    let voted = vote(&candidates, EVAL_VOTE, dataset, grader);
    let correct = voted
        .answer
        .as_deref()
        .is_some_and(|a| answers_equal(dataset, grader, a, reference));
    let votes = voted
        .groups
        .into_iter()
        .map(|(answer, weight, count)| VoteGroup {
            answer,
            weight,
            count,
        })
        .collect();
    (voted.answer, correct, votes)
}

impl EvalRecord {
    /// Votes over `outcome`'s trajectories, grades the winner with `dataset`'s conventions and
    /// `grader`, and recounts the KV metric.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        problem: &Problem,
        method: Method,
        width: usize,
        seed: u64,
        dataset: Dataset,
        grader: Grader,
        job: u64,
        outcome: SearchOutcome,
    ) -> Self {
        let (answer, correct, votes) =
            vote_and_grade(&outcome, &problem.reference, dataset, grader);
        let kv_recount_tokens = recount_kv(&outcome.nodes, &outcome.depths).iter().sum();
        Self {
            problem_id: problem.id.clone(),
            method,
            width,
            seed,
            kv_limit: None,
            grader: dataset,
            math_grader: grader,
            reference: problem.reference.clone(),
            answer,
            correct,
            votes,
            kv_recount_tokens,
            job,
            outcome,
        }
    }

    /// The same record for a search run under a KV limit of `kv_limit` tokens.
    pub fn limited_to(mut self, kv_limit: Option<u64>) -> Self {
        self.kv_limit = kv_limit;
        self
    }

    /// The same record voted and graded again under `grader` (from its recorded trajectories;
    /// nothing is searched again).
    pub fn regraded(mut self, grader: Grader) -> Self {
        if self.math_grader != grader {
            let (answer, correct, votes) =
                vote_and_grade(&self.outcome, &self.reference, self.grader, grader);
            (self.answer, self.correct, self.votes) = (answer, correct, votes);
            self.math_grader = grader;
        }
        self
    }

    /// The cell this record fills.
    pub fn key(&self) -> CellKey {
        CellKey {
            problem_id: self.problem_id.clone(),
            method: self.method.name(),
            width: self.width,
            seed: self.seed,
            kv_limit: self.kv_limit,
        }
    }
}

/// The paper's per-depth KV measure recounted from a recorded tree: for each depth with
/// candidates, the tokens of the distinct nodes on the root→candidate paths, the root (the
/// prompt) included. Its sum is the KV metric. Siblings with the same text and token count
/// are one node, as in the search's KV tree (which keeps one node for a span sampled twice
/// under the same parent). A candidate or parent missing from `nodes` ends that path there.
pub fn recount_kv(nodes: &[NodeRecord], depths: &[DepthRecord]) -> Vec<u64> {
    let by_id: HashMap<u64, &NodeRecord> = nodes.iter().map(|n| (n.id, n)).collect();
    // Each node's representative: the first sibling with its text and length.
    let mut same: HashMap<u64, u64> = HashMap::new();
    let mut first: HashMap<(u64, &str, usize), u64> = HashMap::new();
    let mut ordered: Vec<&NodeRecord> = nodes.iter().collect();
    ordered.sort_by_key(|n| (n.depth, n.id));
    for n in ordered {
        let rep = match n.parent {
            None => n.id,
            Some(p) => {
                let parent = same.get(&p).copied().unwrap_or(p);
                *first
                    .entry((parent, n.text.as_str(), n.tokens))
                    .or_insert(n.id)
            }
        };
        same.insert(n.id, rep);
    }
    let rep = |id: u64| same.get(&id).copied().unwrap_or(id);
    depths
        .iter()
        .filter(|d| !d.candidates.is_empty())
        .map(|d| {
            let mut seen = HashSet::new();
            let mut tokens = 0u64;
            for &candidate in &d.candidates {
                let mut at = Some(rep(candidate));
                while let Some(id) = at {
                    if !seen.insert(id) {
                        break;
                    }
                    let Some(node) = by_id.get(&id) else { break };
                    tokens += node.tokens as u64;
                    at = node.parent.map(rep);
                }
            }
            tokens
        })
        .collect()
}

/// Aggregates of one method × width × KV limit over every problem and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    /// Method name.
    pub method: String,
    /// Width.
    pub width: usize,
    /// KV limit in tokens, if the searches ran under one.
    #[serde(default)]
    pub kv_limit: Option<u64>,
    /// Searches (problems × seeds).
    pub runs: usize,
    /// Correct answers.
    pub correct: usize,
    /// Searches that voted an answer (some trajectory finished with one).
    #[serde(default)]
    pub answered: usize,
    /// Mean finished trajectories per run.
    #[serde(default)]
    pub finished_trajectories: f64,
    /// How the runs ended: end reason (`width-spent`, `kv-limit`, `decided`, ...) → runs.
    #[serde(default)]
    pub ends: BTreeMap<String, usize>,
    /// `correct / runs`.
    pub accuracy: f64,
    /// Mean per run of the paper's KV metric (union tokens summed over depths).
    pub kv_metric_tokens: f64,
    /// Mean per run of the mean per-depth live tokens.
    pub mean_live_tokens: f64,
    /// Largest per-depth live tokens of any run.
    pub peak_live_tokens: u64,
    /// Mean per run of the mean per-depth live bytes.
    pub mean_live_bytes: f64,
    /// Largest per-depth live bytes of any run.
    pub peak_live_bytes: u64,
    /// Mean generated tokens per run.
    pub generated_tokens: f64,
    /// Mean policy calls per run.
    pub policy_calls: f64,
    /// Mean PRM calls per run.
    pub prm_calls: f64,
    /// Mean selection time per run, seconds.
    pub selection_time_s: f64,
    /// Mean search wall time per run, seconds.
    pub wall_time_s: f64,
    /// Runs per minute of search wall time.
    pub problems_per_minute: f64,
    /// Live tokens at each depth (index 0 = depth 1), averaged over the runs that reached it.
    pub live_tokens_per_depth: Vec<f64>,
}

/// ETS against REBASE at one width and KV limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Width.
    pub width: usize,
    /// KV limit in tokens, if any.
    #[serde(default)]
    pub kv_limit: Option<u64>,
    /// REBASE's KV metric over ETS's (the paper: about 1.8).
    pub kv_rebase_over_ets: Option<f64>,
    /// REBASE's mean live tokens over ETS's.
    pub mean_live_rebase_over_ets: Option<f64>,
    /// ETS's problems per minute over REBASE's (the paper: about 1.4).
    pub throughput_ets_over_rebase: Option<f64>,
    /// ETS's accuracy minus REBASE's.
    pub accuracy_ets_minus_rebase: f64,
}

/// The summary of an eval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// Dataset name.
    pub dataset: String,
    /// The grader behind every accuracy (summaries written before graders could be chosen read
    /// back as `lenient`).
    #[serde(default = "grader_before_choice")]
    pub grader: Grader,
    /// Distinct problems.
    pub problems: usize,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// One entry per method × width × KV limit: widths ascending, then limits ascending (none
    /// last), then methods in `Method::ALL` order.
    pub cells: Vec<CellSummary>,
    /// One entry per width and KV limit that ran both ETS and REBASE.
    pub comparisons: Vec<Comparison>,
    /// With `ets eval --baseline DIR`: every method × width × KV limit against the same cells
    /// of that eval (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<super::BaselineComparison>,
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && numerator.is_finite()).then(|| numerator / denominator)
}

pub(super) fn method_rank(name: &str) -> usize {
    Method::ALL
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or(Method::ALL.len())
}

/// Orders KV limits ascending with no limit last.
fn limit_rank(limit: Option<u64>) -> (bool, u64) {
    (limit.is_none(), limit.unwrap_or(0))
}

/// Aggregates records into per method × width × KV limit cells and the ETS/REBASE comparisons. Records
/// graded otherwise than by `grader` are first [regraded](EvalRecord::regraded), so that every
/// accuracy in the summary is `grader`'s.
pub fn summarize(dataset: &str, grader: Grader, records: Vec<EvalRecord>) -> EvalSummary {
    let records: Vec<EvalRecord> = records.into_iter().map(|r| r.regraded(grader)).collect();
    let records = &records[..];
    type Group = (usize, (bool, u64), usize);
    let mut groups: BTreeMap<Group, Vec<&EvalRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((
                r.width,
                limit_rank(r.kv_limit),
                method_rank(r.method.name()),
            ))
            .or_default()
            .push(r);
    }
    let cells: Vec<CellSummary> = groups.into_values().map(|rs| cell(&rs)).collect();
    let mut comparisons = Vec::new();
    let settings: std::collections::BTreeSet<(usize, (bool, u64), Option<u64>)> = cells
        .iter()
        .map(|c| (c.width, limit_rank(c.kv_limit), c.kv_limit))
        .collect();
    for (width, _, kv_limit) in settings {
        let find = |m: Method| {
            cells
                .iter()
                .find(|c| c.width == width && c.kv_limit == kv_limit && c.method == m.name())
        };
        if let (Some(ets), Some(rebase)) = (find(Method::Ets), find(Method::Rebase)) {
            comparisons.push(Comparison {
                width,
                kv_limit,
                kv_rebase_over_ets: ratio(rebase.kv_metric_tokens, ets.kv_metric_tokens),
                mean_live_rebase_over_ets: ratio(rebase.mean_live_tokens, ets.mean_live_tokens),
                throughput_ets_over_rebase: ratio(
                    ets.problems_per_minute,
                    rebase.problems_per_minute,
                ),
                accuracy_ets_minus_rebase: ets.accuracy - rebase.accuracy,
            });
        }
    }
    let problems: HashSet<&str> = records.iter().map(|r| r.problem_id.as_str()).collect();
    let mut seeds: Vec<u64> = records.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    EvalSummary {
        dataset: dataset.to_owned(),
        grader,
        problems: problems.len(),
        seeds,
        cells,
        comparisons,
        baseline: Vec::new(),
    }
}

fn cell(records: &[&EvalRecord]) -> CellSummary {
    let runs = records.len();
    let n = runs as f64;
    let mean = |f: &dyn Fn(&EvalRecord) -> f64| records.iter().map(|r| f(r)).sum::<f64>() / n;
    let correct = records.iter().filter(|r| r.correct).count();
    let wall_total: f64 = records
        .iter()
        .map(|r| r.outcome.stats.wall_time.as_secs_f64())
        .sum();
    let mut per_depth: Vec<(f64, usize)> = Vec::new();
    for r in records {
        let live = r.outcome.depths.iter().filter(|d| !d.candidates.is_empty());
        for (i, d) in live.enumerate() {
            if per_depth.len() <= i {
                per_depth.push((0.0, 0));
            }
            per_depth[i].0 += d.union_tokens as f64;
            per_depth[i].1 += 1;
        }
    }
    let mut ends = BTreeMap::new();
    for r in records {
        *ends.entry(r.outcome.end.to_string()).or_insert(0) += 1;
    }
    CellSummary {
        method: records[0].method.name().to_owned(),
        width: records[0].width,
        kv_limit: records[0].kv_limit,
        runs,
        correct,
        answered: records.iter().filter(|r| r.answer.is_some()).count(),
        finished_trajectories: mean(&|r| r.outcome.trajectories.len() as f64),
        ends,
        accuracy: correct as f64 / n,
        kv_metric_tokens: mean(&|r| r.outcome.stats.kv_metric_tokens as f64),
        mean_live_tokens: mean(&|r| r.outcome.stats.mean_live_tokens),
        peak_live_tokens: records
            .iter()
            .map(|r| r.outcome.stats.peak_live_tokens)
            .max()
            .unwrap_or(0),
        mean_live_bytes: mean(&|r| r.outcome.stats.mean_live_bytes),
        peak_live_bytes: records
            .iter()
            .map(|r| r.outcome.stats.peak_live_bytes)
            .max()
            .unwrap_or(0),
        generated_tokens: mean(&|r| r.outcome.stats.generated_tokens as f64),
        policy_calls: mean(&|r| r.outcome.stats.policy_calls as f64),
        prm_calls: mean(&|r| r.outcome.stats.prm_calls as f64),
        selection_time_s: mean(&|r| r.outcome.stats.selection_time.as_secs_f64()),
        wall_time_s: wall_total / n,
        problems_per_minute: if wall_total > 0.0 {
            n * 60.0 / wall_total
        } else {
            0.0
        },
        live_tokens_per_depth: per_depth.iter().map(|(s, c)| s / *c as f64).collect(),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×"))
}

fn limit(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// The summary as a markdown table, then the ETS/REBASE ratios per width.
pub fn markdown_table(summary: &EvalSummary) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Dataset `{}`: {} problems × seeds {:?}, graded by `{}`.\n",
        summary.dataset, summary.problems, summary.seeds, summary.grader
    );
    md.push_str(
        "| method | width | KV limit | runs | accuracy | answered | finished/run | KV metric (tok) \
         | mean live tok | peak live tok | mean live MiB | peak live MiB | generated tok \
         | policy calls | PRM calls | selection s | wall s | problems/min | ends |\n",
    );
    md.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for c in &summary.cells {
        let ends: Vec<String> = c.ends.iter().map(|(e, n)| format!("{e} {n}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.3} ({}/{}) | {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} \
             | {:.1} | {:.1} | {:.1} | {:.3} | {:.2} | {:.2} | {} |",
            c.method,
            c.width,
            limit(c.kv_limit),
            c.runs,
            c.accuracy,
            c.correct,
            c.runs,
            c.answered,
            c.finished_trajectories,
            c.kv_metric_tokens,
            c.mean_live_tokens,
            c.peak_live_tokens,
            c.mean_live_bytes / MIB,
            c.peak_live_bytes as f64 / MIB,
            c.generated_tokens,
            c.policy_calls,
            c.prm_calls,
            c.selection_time_s,
            c.wall_time_s,
            c.problems_per_minute,
            ends.join(", "),
        );
    }
    if !summary.comparisons.is_empty() {
        md.push_str(
            "\n| width | KV limit | KV metric REBASE/ETS | mean live REBASE/ETS \
             | throughput ETS/REBASE | accuracy ETS − REBASE |\n|--:|--:|--:|--:|--:|--:|\n",
        );
        for c in &summary.comparisons {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:+.3} |",
                c.width,
                limit(c.kv_limit),
                opt(c.kv_rebase_over_ets),
                opt(c.mean_live_rebase_over_ets),
                opt(c.throughput_ets_over_rebase),
                c.accuracy_ets_minus_rebase,
            );
        }
    }
    if !summary.baseline.is_empty() {
        md.push_str("\nAgainst the baseline (the same cells of `--baseline`):\n\n");
        md.push_str(&super::baseline_table(&summary.baseline));
    }
    md
}
