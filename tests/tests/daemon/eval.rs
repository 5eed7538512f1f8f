//! `ets eval` end to end (issue 5): the real `ets` binary on the shared real daemon runs every
//! method on one GSM8K problem at width 4 with small caps; every output file is written, each
//! results line's KV metric equals a recount from its recorded tree, a rerun skips the finished
//! cells, and a second output directory with the same seeds gives the same summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ets_core::eval::{EvalRecord, EvalSummary};
use ets_core::search::NodeRecord;
use serde_json::Value;

const OUTPUTS: [&str; 5] = [
    "results.jsonl",
    "summary.json",
    "summary.md",
    "kv_per_depth_w4.svg",
    "accuracy_vs_kv.svg",
];

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ets-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `ets eval` into `out`; returns stderr after checking the exit code is 0.
fn eval(out: &Path) -> String {
    let (_, ets) = crate::support::binaries();
    let daemon = crate::shared();
    let output = Command::new(ets)
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--no-autostart")
        .args([
            "eval",
            "--dataset",
            "gsm8k",
            "--limit",
            "1",
            "--widths",
            "4",
        ])
        .args(["--methods", "ets,rebase,beam,dvts,bon", "--seeds", "7"])
        .args([
            "--max-depth",
            "3",
            "--max-step-tokens",
            "16",
            "--max-tokens",
            "48",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .expect("ets runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "ets eval failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| rebase | 4 | – | 1 |"), "{stdout}");
    stderr
}

fn records(out: &Path) -> Vec<EvalRecord> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a results line is a whole record"))
        .collect()
}

fn summary(out: &Path) -> EvalSummary {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// The summary without the columns that measure time.
fn deterministic(summary: &EvalSummary) -> Value {
    let mut v = serde_json::to_value(summary).unwrap();
    for cell in v["cells"].as_array_mut().unwrap() {
        for key in ["selection_time_s", "wall_time_s", "problems_per_minute"] {
            cell.as_object_mut().unwrap().remove(key);
        }
    }
    for c in v["comparisons"].as_array_mut().unwrap() {
        c.as_object_mut()
            .unwrap()
            .remove("throughput_ets_over_rebase");
    }
    v
}

/// The paper's KV of one depth counted here, not with `ets_core::eval::recount_kv` (what the
/// records' `kv_recount_tokens` come from): the tokens of every node on a root→candidate path,
/// each node once, the root (the prompt) included.
fn union_tokens(nodes: &[NodeRecord], candidates: &[u64]) -> u64 {
    let mut on_paths = BTreeSet::new();
    for &candidate in candidates {
        let mut at = Some(candidate);
        while let Some(id) = at {
            let node = nodes.iter().find(|n| n.id == id).expect("a recorded node");
            on_paths.insert(id);
            at = node.parent;
        }
    }
    nodes
        .iter()
        .filter(|n| on_paths.contains(&n.id))
        .map(|n| n.tokens as u64)
        .sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// A method's cell computed here from its records, not with `ets_core::eval::summarize`.
struct Expected {
    runs: usize,
    correct: usize,
    kv: f64,
    generated: f64,
    peak_live: u64,
    per_minute: f64,
}

fn expected_cells(records: &[EvalRecord]) -> BTreeMap<String, Expected> {
    let mut by_method: BTreeMap<String, Vec<&EvalRecord>> = BTreeMap::new();
    for r in records {
        by_method
            .entry(r.method.name().to_owned())
            .or_default()
            .push(r);
    }
    by_method
        .into_iter()
        .map(|(method, rs)| {
            let n = rs.len() as f64;
            let sum = |f: &dyn Fn(&EvalRecord) -> f64| rs.iter().map(|r| f(r)).sum::<f64>();
            let wall = sum(&|r| r.outcome.stats.wall_time.as_secs_f64());
            let cell = Expected {
                runs: rs.len(),
                correct: rs.iter().filter(|r| r.correct).count(),
                kv: sum(&|r| r.outcome.stats.kv_metric_tokens as f64) / n,
                generated: sum(&|r| r.outcome.stats.generated_tokens as f64) / n,
                peak_live: rs
                    .iter()
                    .map(|r| r.outcome.stats.peak_live_tokens)
                    .max()
                    .unwrap(),
                per_minute: n * 60.0 / wall,
            };
            (method, cell)
        })
        .collect()
}

#[test]
fn issue5_eval_of_all_methods_writes_consistent_resumable_reproducible_reports() {
    let first = out_dir("a");
    eval(&first);
    for name in OUTPUTS {
        let len = std::fs::metadata(first.join(name)).map(|m| m.len());
        assert!(len.is_ok_and(|l| l > 0), "{name} missing or empty");
    }
    for name in ["kv_per_depth_w4.svg", "accuracy_vs_kv.svg"] {
        let svg = std::fs::read_to_string(first.join(name)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("ets") && svg.contains("rebase"));
    }

    let recs = records(&first);
    assert_eq!(recs.len(), 5, "one line per problem × method");
    for r in &recs {
        let o = &r.outcome;
        let cell = format!("{} {}", r.problem_id, r.method.name());
        let mut recount = 0;
        for d in o.depths.iter().filter(|d| !d.candidates.is_empty()) {
            let tokens = union_tokens(&o.nodes, &d.candidates);
            assert_eq!(d.union_tokens, tokens, "{cell} depth {}", d.depth);
            recount += tokens;
        }
        assert_eq!(
            recount, o.stats.kv_metric_tokens,
            "{cell}: KV metric vs the tree"
        );
        assert_eq!(r.kv_recount_tokens, recount, "{cell}: the record's recount");
        assert!(
            recount > 0 && o.nodes.len() > 1,
            "{cell}: a tree was recorded"
        );
        let voters = o.trajectories.iter().filter(|t| t.answer.is_some()).count();
        assert_eq!(
            r.votes.iter().map(|v| v.count).sum::<usize>(),
            voters,
            "{cell}"
        );
        assert_eq!(r.answer.is_some(), voters > 0, "{cell}");
        assert_eq!((r.width, r.seed), (4, 7));
    }
    // summary.json and summary.md against the cells computed here from the records.
    let s = summary(&first);
    let expected = expected_cells(&recs);
    assert_eq!(
        (s.dataset.as_str(), s.problems, s.seeds.as_slice()),
        ("gsm8k", 1, [7].as_slice())
    );
    assert_eq!(s.grader, ets_core::answer::Grader::default());
    let methods: Vec<&str> = s.cells.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["ets", "rebase", "beam", "dvts", "bon"]);
    let md = std::fs::read_to_string(first.join("summary.md")).unwrap();
    for c in &s.cells {
        let e = &expected[&c.method];
        let m = &c.method;
        assert_eq!((c.width, c.runs, c.correct), (4, e.runs, e.correct), "{m}");
        assert!(close(c.accuracy, e.correct as f64 / e.runs as f64), "{m}");
        assert!(close(c.kv_metric_tokens, e.kv) && e.kv > 0.0, "{m}");
        assert!(close(c.generated_tokens, e.generated), "{m}");
        assert_eq!(c.peak_live_tokens, e.peak_live, "{m}");
        assert!(close(c.problems_per_minute, e.per_minute), "{m}");
        // Method, width, no KV limit, runs, accuracy; then answered, finished per run and the
        // KV metric.
        let start = format!(
            "| {m} | 4 | – | {} | {:.3} ({}/{}) |",
            e.runs,
            e.correct as f64 / e.runs as f64,
            e.correct,
            e.runs,
        );
        let row = md
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no row `{start}` in:\n{md}"));
        assert!(row.contains(&format!(" | {:.1} |", e.kv)), "{row}");
        assert_eq!(c.kv_limit, None, "{m}");
        assert_eq!(c.ends.values().sum::<usize>(), c.runs, "{m}");
    }
    assert_eq!(s.comparisons.len(), 1);
    let c = &s.comparisons[0];
    let (ets, rebase) = (&expected["ets"], &expected["rebase"]);
    let kv_ratio = rebase.kv / ets.kv;
    assert!(close(c.kv_rebase_over_ets.unwrap(), kv_ratio), "{c:?}");
    let accuracy_gap =
        ets.correct as f64 / ets.runs as f64 - rebase.correct as f64 / rebase.runs as f64;
    assert!(close(c.accuracy_ets_minus_rebase, accuracy_gap), "{c:?}");
    let row = format!("| 4 | – | {kv_ratio:.2}× |");
    assert!(md.contains(&row), "no row `{row}` in:\n{md}");

    // Rerun into the same directory: nothing runs again, nothing changes.
    let before = std::fs::read_to_string(first.join("results.jsonl")).unwrap();
    let stderr = eval(&first);
    assert!(stderr.contains("0 to run, 5 already"), "{stderr}");
    let after = std::fs::read_to_string(first.join("results.jsonl")).unwrap();
    assert_eq!(before, after);

    // Same seeds, fresh directory: the same summary, timings aside.
    let second = out_dir("b");
    eval(&second);
    assert_eq!(deterministic(&summary(&second)), deterministic(&s));

    for dir in [first, second] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Runs `ets eval` with `args` after the shared small caps (one GSM8K problem, width 4, seed 7);
/// returns stdout after checking the exit code is 0.
fn eval_with(args: &[&str]) -> String {
    let (_, ets) = crate::support::binaries();
    let daemon = crate::shared();
    let output = Command::new(ets)
        .arg("--socket")
        .arg(&daemon.socket)
        .args([
            "--no-autostart",
            "eval",
            "--dataset",
            "gsm8k",
            "--limit",
            "1",
        ])
        .args(["--widths", "4", "--seeds", "7", "--max-depth", "3"])
        .args(["--max-step-tokens", "16", "--max-tokens", "48"])
        .args(args)
        .output()
        .expect("ets runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ets eval failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_kv_limit_sweep_is_cells_of_their_own_and_a_baseline_compares_them() {
    let out = out_dir("kv-limits");
    let dir = out.to_str().unwrap();
    // Beam and DVTS under a limit (they ignored one before), and without.
    eval_with(&[
        "--methods",
        "beam,dvts",
        "--kv-limits",
        "250,none",
        "--out",
        dir,
    ]);
    let recs = records(&out);
    assert_eq!(recs.len(), 4, "2 methods × 2 limits");
    for r in recs.iter().filter(|r| r.kv_limit == Some(250)) {
        assert!(
            r.outcome.stats.peak_live_tokens <= 250,
            "{} peaked at {} over its limit",
            r.method.name(),
            r.outcome.stats.peak_live_tokens
        );
    }
    let s = summary(&out);
    let cells: Vec<(&str, Option<u64>)> = s
        .cells
        .iter()
        .map(|c| (c.method.as_str(), c.kv_limit))
        .collect();
    assert_eq!(
        cells,
        [
            ("beam", Some(250)),
            ("dvts", Some(250)),
            ("beam", None),
            ("dvts", None)
        ]
    );
    assert!(out.join("kv_per_depth_w4_limit250.svg").is_file());
    assert!(out.join("kv_per_depth_w4.svg").is_file());
    // The same cells again with a share stop, beside the first run: every cell is matched.
    let stopped = out_dir("kv-limits-share");
    let stdout = eval_with(&[
        "--methods",
        "beam,dvts",
        "--kv-limits",
        "250,none",
        "--stop-at-share",
        "0.5",
        "--baseline",
        dir,
        "--out",
        stopped.to_str().unwrap(),
    ]);
    assert!(stdout.contains("Against the baseline"), "{stdout}");
    let b = summary(&stopped).baseline;
    assert_eq!(b.len(), 4, "{b:?}");
    for c in &b {
        assert_eq!(c.runs, 1, "{c:?}");
        assert!(
            c.generated_tokens <= c.baseline_generated_tokens || c.ended_early == 0,
            "{c:?}"
        );
    }
}
