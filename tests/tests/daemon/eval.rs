//! `ets eval` end to end (issue 5): the real `ets` binary on the shared real daemon runs every
//! method on two GSM8K problems at width 4 with small caps; every output file is written, each
//! results line's KV metric equals a recount from its recorded tree, a rerun skips the finished
//! cells, and a second output directory with the same seeds gives the same summary.

use std::path::{Path, PathBuf};
use std::process::Command;

use ets_core::eval::{recount_kv, summarize, EvalRecord, EvalSummary};
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
            "2",
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
    assert!(stdout.contains("| rebase | 4 | 2 |"), "{stdout}");
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
    assert_eq!(recs.len(), 2 * 5, "one line per problem × method");
    for r in &recs {
        let o = &r.outcome;
        let recount: u64 = recount_kv(&o.nodes, &o.depths).iter().sum();
        let cell = format!("{} {}", r.problem_id, r.method.name());
        assert_eq!(
            recount, o.stats.kv_metric_tokens,
            "{cell}: KV metric vs the tree"
        );
        assert_eq!(r.kv_recount_tokens, recount, "{cell}");
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
    let s = summary(&first);
    assert_eq!(
        s,
        summarize("gsm8k", ets_core::answer::Grader::default(), recs.clone()),
        "summary.json is the records' summary"
    );
    assert_eq!(s.cells.len(), 5);
    assert!(s
        .cells
        .iter()
        .all(|c| c.runs == 2 && c.kv_metric_tokens > 0.0));
    assert_eq!(s.comparisons.len(), 1);
    let md = std::fs::read_to_string(first.join("summary.md")).unwrap();
    assert_eq!(md, ets_core::eval::markdown_table(&s));

    // Rerun into the same directory: nothing runs again, nothing changes.
    let before = std::fs::read_to_string(first.join("results.jsonl")).unwrap();
    let stderr = eval(&first);
    assert!(stderr.contains("0 to run, 10 already"), "{stderr}");
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
