//! An eval against a baseline eval: the same cells (problem, method, width, seed, KV limit) run
//! with other settings, typically an early stop (`--stop-when-decided`, `--stop-at-share`), to
//! measure what the change saved and whether it changed answers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::summary::{method_rank, CellKey, EvalRecord};
use crate::search::EndReason;

/// One method × width × KV limit of an eval against the same cells of a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// Method name.
    pub method: String,
    /// Width.
    pub width: usize,
    /// KV limit in tokens of this eval's cells, if any.
    pub kv_limit: Option<u64>,
    /// Cells found in both evals.
    pub runs: usize,
    /// Of those, cells that voted the same answer (or none in both).
    pub same_answer: usize,
    /// Correct answers here and in the baseline.
    pub correct: usize,
    /// Correct answers of the baseline's cells.
    pub baseline_correct: usize,
    /// Searches here that ended early: `decided` or `share-reached`.
    pub ended_early: usize,
    /// Mean generated tokens per run, here and in the baseline.
    pub generated_tokens: f64,
    /// The baseline's.
    pub baseline_generated_tokens: f64,
    /// Mean search wall time per run, seconds, here.
    pub wall_time_s: f64,
    /// The baseline's.
    pub baseline_wall_time_s: f64,
}

impl BaselineComparison {
    /// The share of the baseline's generated tokens this eval did not generate (negative when
    /// it generated more); 0 when the baseline generated none.
    pub fn tokens_saved(&self) -> f64 {
        match self.baseline_generated_tokens {
            b if b > 0.0 => 1.0 - self.generated_tokens / b,
            _ => 0.0,
        }
    }

    /// The same for search wall time.
    pub fn time_saved(&self) -> f64 {
        match self.baseline_wall_time_s {
            b if b > 0.0 => 1.0 - self.wall_time_s / b,
            _ => 0.0,
        }
    }
}

/// Compares `records` with the same cells of `baseline`: each record is matched with the
/// baseline's cell of the same problem, method, width, seed and KV limit, else (for a limit
/// the baseline did not run) the baseline's cell without a limit. Records without a match are
/// left out. Grade both sides with the same grader first.
pub fn compare_with_baseline(
    records: &[EvalRecord],
    baseline: &[EvalRecord],
) -> Vec<BaselineComparison> {
    let base: HashMap<CellKey, &EvalRecord> = baseline.iter().map(|r| (r.key(), r)).collect();
    /// Width, KV limit (ascending, none last), method: the summary's order.
    type Order = (usize, (bool, u64), usize);
    let mut groups: BTreeMap<Order, Vec<(&EvalRecord, &EvalRecord)>> = BTreeMap::new();
    for r in records {
        let key = r.key();
        let unlimited = CellKey {
            kv_limit: None,
            ..key.clone()
        };
        let Some(b) = base.get(&key).or_else(|| base.get(&unlimited)) else {
            continue;
        };
        let rank = (r.kv_limit.is_none(), r.kv_limit.unwrap_or(0));
        groups
            .entry((r.width, rank, method_rank(r.method.name())))
            .or_default()
            .push((r, b));
    }
    groups
        .into_values()
        .map(|pairs| {
            let n = pairs.len() as f64;
            let ours: Vec<&EvalRecord> = pairs.iter().map(|p| p.0).collect();
            let theirs: Vec<&EvalRecord> = pairs.iter().map(|p| p.1).collect();
            let mean = |f: &dyn Fn(&EvalRecord) -> f64, side: &[&EvalRecord]| {
                side.iter().map(|r| f(r)).sum::<f64>() / n
            };
            let generated = |r: &EvalRecord| r.outcome.stats.generated_tokens as f64;
            let wall = |r: &EvalRecord| r.outcome.stats.wall_time.as_secs_f64();
            let first = pairs[0].0;
            BaselineComparison {
                method: first.method.name().to_owned(),
                width: first.width,
                kv_limit: first.kv_limit,
                runs: pairs.len(),
                same_answer: pairs.iter().filter(|(r, b)| r.answer == b.answer).count(),
                correct: pairs.iter().filter(|(r, _)| r.correct).count(),
                baseline_correct: pairs.iter().filter(|(_, b)| b.correct).count(),
                ended_early: pairs
                    .iter()
                    .filter(|(r, _)| {
                        matches!(r.outcome.end, EndReason::Decided | EndReason::ShareReached)
                    })
                    .count(),
                generated_tokens: mean(&generated, &ours),
                baseline_generated_tokens: mean(&generated, &theirs),
                wall_time_s: mean(&wall, &ours),
                baseline_wall_time_s: mean(&wall, &theirs),
            }
        })
        .collect()
}

/// The comparisons as a markdown table.
pub fn baseline_table(comparisons: &[BaselineComparison]) -> String {
    let mut md = String::from(
        "| method | width | KV limit | runs | same answer | correct (baseline) | ended early \
         | generated tok (baseline) | tokens saved | wall s (baseline) | time saved |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for c in comparisons {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {}/{} | {} ({}) | {} | {:.1} ({:.1}) | {:.1}% | {:.2} ({:.2}) \
             | {:.1}% |",
            c.method,
            c.width,
            c.kv_limit.map_or_else(|| "–".to_owned(), |l| l.to_string()),
            c.runs,
            c.same_answer,
            c.runs,
            c.correct,
            c.baseline_correct,
            c.ended_early,
            c.generated_tokens,
            c.baseline_generated_tokens,
            100.0 * c.tokens_saved(),
            c.wall_time_s,
            c.baseline_wall_time_s,
            100.0 * c.time_saved(),
        );
    }
    md
}
