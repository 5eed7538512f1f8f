//! Eval tests: loaders and graders on the repository's real data files, and the aggregation
//! (KV recount, vote, summary, ratios, table) on hand-built search outcomes.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::answer::{answers_equal, extract_answer, Dataset, Grader};
use crate::config::Method;
use crate::search::{
    DepthRecord, EndReason, NodeRecord, NodeState, SearchOutcome, SearchStats, Trajectory,
};

fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e})", path.display()))
}

#[test]
fn gsm8k_test_split_loads_and_its_solutions_grade_correct() {
    let text = data("gsm8k_test.jsonl");
    let problems = load_problems("gsm8k", &text, Layout::Gsm8k).unwrap();
    assert_eq!(problems.len(), 1319);
    assert_eq!(problems[0].id, "gsm8k/1");
    assert!(problems[0].problem.starts_with("Janet"));
    assert_eq!(problems[0].reference, "18");
    assert_eq!(infer_grader(&text), Dataset::Gsm8k);
    for p in &problems {
        assert!(!p.solution.contains("<<"), "{}: annotations left", p.id);
        // The stripped worked solution, as a model would write it, grades correct.
        let answer = extract_answer(&p.solution).unwrap();
        assert!(
            answers_equal(Dataset::Gsm8k, Grader::Prm800k, &answer, &p.reference),
            "{}",
            p.id
        );
        assert!(!answers_equal(
            Dataset::Gsm8k,
            Grader::Prm800k,
            "-123456789",
            &p.reference
        ));
    }
}

#[test]
fn math500_loads_with_ids_and_references_that_grade_against_themselves() {
    let text = data("math500.jsonl");
    let problems = load_problems("math500", &text, Layout::Math500).unwrap();
    assert_eq!(problems.len(), 500);
    assert_eq!(problems[0].id, "test/precalculus/807.json");
    assert_eq!(problems[0].reference, "\\left( 3, \\frac{\\pi}{2} \\right)");
    assert_eq!(infer_grader(&text), Dataset::Math);
    for p in &problems {
        assert!(
            answers_equal(Dataset::Math, Grader::Prm800k, &p.reference, &p.reference),
            "{}",
            p.id
        );
    }
    let boxed_ok = problems
        .iter()
        .filter(|p| {
            extract_answer(&p.solution)
                .is_some_and(|a| answers_equal(Dataset::Math, Grader::Prm800k, &a, &p.reference))
        })
        .count();
    assert!(
        boxed_ok >= 490,
        "only {boxed_ok} boxed solutions grade correct"
    );
    let ids = [problems[3].id.clone(), problems[1].id.clone()];
    let chosen = select_problems(problems.clone(), &ids, Some(1)).unwrap();
    assert_eq!(chosen, [problems[1].clone()], "file order, then the limit");
}

fn node(id: u64, parent: Option<u64>, depth: usize, tokens: usize) -> NodeRecord {
    NodeRecord {
        id,
        parent,
        depth,
        text: String::new(),
        tokens,
        path_tokens: 0,
        score: Some(0.5),
        finish: None,
        state: NodeState::Expanded,
        subtree: 0,
    }
}

fn depth(d: usize, candidates: Vec<u64>, union_tokens: u64) -> DepthRecord {
    DepthRecord {
        depth: d,
        expanded: 1,
        children_created: 2,
        dropped: 0,
        finished: 0,
        truncated: 0,
        candidates,
        clusters: Vec::new(),
        kept: Vec::new(),
        allocation: Vec::new(),
        union_tokens,
        union_bytes: union_tokens * 10,
        kept_tokens: 0,
        retention: None,
        selection_time: Duration::from_millis(1),
    }
}

/// Root (10 prompt tokens) → 1 (4), 2 (6); 1 → 3 (5), 4 (7). Depth 1 sees {1, 2}: 10+4+6 = 20;
/// depth 2 sees {3, 4}: 10+4+5+7 = 26.
fn outcome(union_scale: u64, answers: &[(&str, f64)], wall_ms: u64) -> SearchOutcome {
    let nodes = vec![
        node(0, None, 0, 10),
        node(1, Some(0), 1, 4),
        node(2, Some(0), 1, 6),
        node(3, Some(1), 2, 5),
        node(4, Some(1), 2, 7),
    ];
    let depths = vec![
        depth(1, vec![1, 2], 20 * union_scale),
        depth(2, vec![3, 4], 26 * union_scale),
        depth(3, vec![], 0),
    ];
    let trajectories = answers
        .iter()
        .map(|&(a, s)| Trajectory {
            leaf: 3,
            text: String::new(),
            step_scores: vec![0.1, s],
            answer: Some(a.to_owned()),
            tokens: 9,
        })
        .collect();
    let kv = 46 * union_scale;
    SearchOutcome {
        answer: None,
        trajectories,
        nodes,
        depths,
        stats: SearchStats {
            kv_metric_tokens: kv,
            peak_live_tokens: 26 * union_scale,
            peak_live_bytes: 260 * union_scale,
            mean_live_tokens: kv as f64 / 2.0,
            mean_live_bytes: kv as f64 * 5.0,
            generated_tokens: 22,
            policy_calls: 3,
            prm_calls: 4,
            selection_time: Duration::from_millis(2),
            wall_time: Duration::from_millis(wall_ms),
            ..SearchStats::default()
        },
        end: EndReason::WidthSpent,
    }
}

fn problem(reference: &str) -> Problem {
    Problem {
        id: "p1".into(),
        problem: "q".into(),
        reference: reference.into(),
        solution: String::new(),
    }
}

#[test]
fn kv_recount_walks_the_recorded_tree() {
    let o = outcome(1, &[], 1000);
    assert_eq!(recount_kv(&o.nodes, &o.depths), [20, 26]);
    let r = EvalRecord::new(
        &problem("1"),
        Method::Ets,
        4,
        0,
        Dataset::Gsm8k,
        Grader::Prm800k,
        1,
        o,
    );
    assert_eq!(r.kv_recount_tokens, r.outcome.stats.kv_metric_tokens);
}

#[test]
fn the_vote_is_weighted_by_last_step_scores_and_graded() {
    // "7" twice (0.3 + 0.3) loses to "8" once (0.9): weights, not counts.
    let o = outcome(1, &[("7", 0.3), ("8", 0.9), ("7.0", 0.3)], 1000);
    let r = EvalRecord::new(
        &problem("8"),
        Method::Rebase,
        4,
        0,
        Dataset::Gsm8k,
        Grader::Prm800k,
        1,
        o,
    );
    assert_eq!(r.answer.as_deref(), Some("8"));
    assert!(r.correct);
    assert_eq!(r.votes.len(), 2);
    assert_eq!((r.votes[0].count, r.votes[0].weight), (2, 0.6));
    let line = serde_json::to_string(&r).unwrap();
    let back: EvalRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, r, "results lines read back unchanged");
}

#[test]
fn summary_aggregates_cells_and_ratios() {
    let p = problem("8");
    let rec = |m, scale, ans: &str, wall| {
        EvalRecord::new(
            &p,
            m,
            4,
            0,
            Dataset::Gsm8k,
            Grader::Prm800k,
            1,
            outcome(scale, &[(ans, 0.9)], wall),
        )
    };
    let records = vec![
        rec(Method::Rebase, 2, "8", 3000),
        rec(Method::Ets, 1, "8", 2000),
        rec(Method::Beam, 1, "9", 1000),
    ];
    let s = summarize("gsm8k", Grader::Prm800k, records);
    let names: Vec<&str> = s.cells.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(names, ["ets", "rebase", "beam"], "Method::ALL order");
    let ets = &s.cells[0];
    assert_eq!((ets.runs, ets.correct, ets.accuracy), (1, 1, 1.0));
    assert_eq!(ets.kv_metric_tokens, 46.0);
    assert_eq!(ets.live_tokens_per_depth, [20.0, 26.0]);
    assert_eq!(ets.problems_per_minute, 30.0);
    assert_eq!(s.cells[2].accuracy, 0.0);
    let c = &s.comparisons[0];
    assert_eq!(c.kv_rebase_over_ets, Some(2.0));
    assert_eq!(c.throughput_ets_over_rebase, Some(1.5));
    assert_eq!(c.accuracy_ets_minus_rebase, 0.0);
    let md = markdown_table(&s);
    assert!(
        md.contains("| ets | 4 | – | 1 | 1.000 (1/1) | 1 | 1.0 | 46.0 |"),
        "{md}"
    );
    assert!(
        md.contains("| 4 | – | 2.00× | 2.00× | 1.50× | +0.000 |"),
        "{md}"
    );
}

#[test]
fn kv_limits_are_cells_of_their_own_ordered_with_no_limit_last() {
    let p = problem("8");
    let rec = |m, scale, limit| {
        EvalRecord::new(
            &p,
            m,
            4,
            0,
            Dataset::Gsm8k,
            Grader::Prm800k,
            1,
            outcome(scale, &[("8", 0.9)], 1000),
        )
        .limited_to(limit)
    };
    let records = vec![
        rec(Method::Ets, 1, None),
        rec(Method::Rebase, 2, Some(400)),
        rec(Method::Ets, 1, Some(400)),
        rec(Method::Rebase, 1, None),
        rec(Method::Ets, 1, Some(90)),
    ];
    assert_ne!(
        records[0].key(),
        records[2].key(),
        "the limit is part of the key"
    );
    let line = serde_json::to_string(&records[2]).unwrap();
    let back: EvalRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back.kv_limit, Some(400));
    assert!(!serde_json::to_string(&records[0])
        .unwrap()
        .contains("kv_limit"));
    let s = summarize("gsm8k", Grader::Prm800k, records);
    let cells: Vec<(&str, Option<u64>)> = s
        .cells
        .iter()
        .map(|c| (c.method.as_str(), c.kv_limit))
        .collect();
    assert_eq!(
        cells,
        [
            ("ets", Some(90)),
            ("ets", Some(400)),
            ("rebase", Some(400)),
            ("ets", None),
            ("rebase", None)
        ]
    );
    assert!(s.cells.iter().all(|c| c.runs == 1 && c.answered == 1));
    assert_eq!(s.cells[0].ends.values().sum::<usize>(), 1);
    let limits: Vec<Option<u64>> = s.comparisons.iter().map(|c| c.kv_limit).collect();
    assert_eq!(
        limits,
        [Some(400), None],
        "ETS against REBASE at equal limits"
    );
    assert_eq!(s.comparisons[0].kv_rebase_over_ets, Some(2.0));
    assert_eq!(s.comparisons[1].kv_rebase_over_ets, Some(1.0));
    let md = markdown_table(&s);
    assert!(md.contains("| ets | 4 | 90 | 1 |"), "{md}");
    assert!(md.contains("| 4 | 400 | 2.00× |"), "{md}");
}

#[test]
fn records_and_summaries_written_before_graders_read_back_as_lenient() {
    let o = outcome(1, &[("8", 0.9)], 1000);
    let r = EvalRecord::new(
        &problem("8"),
        Method::Ets,
        4,
        0,
        Dataset::Gsm8k,
        Grader::Prm800k,
        1,
        o,
    );
    assert_eq!(
        serde_json::to_value(&r).unwrap()["math_grader"],
        "prm800k",
        "new lines record their grader"
    );
    let mut old = serde_json::to_value(&r).unwrap();
    old.as_object_mut().unwrap().remove("math_grader");
    let back: EvalRecord = serde_json::from_value(old).unwrap();
    assert_eq!(back.math_grader, Grader::Lenient);
    let mut old = serde_json::to_value(summarize("gsm8k", Grader::Prm800k, vec![r])).unwrap();
    assert_eq!(old["grader"], "prm800k");
    old.as_object_mut().unwrap().remove("grader");
    let back: EvalSummary = serde_json::from_value(old).unwrap();
    assert_eq!(back.grader, Grader::Lenient);
}

#[test]
fn the_summary_regrades_records_under_its_grader() {
    // PRM800K does not know `\INFTY`; the lenient grader lowercases it.
    let p = problem("(-\\infty, 0]");
    let o = outcome(1, &[("(-\\INFTY, 0]", 0.9)], 1000);
    let r = EvalRecord::new(&p, Method::Ets, 4, 0, Dataset::Math, Grader::Lenient, 1, o);
    assert!(r.correct);
    let strict = summarize("math500", Grader::Prm800k, vec![r.clone()]);
    assert_eq!(
        (strict.grader, strict.cells[0].correct),
        (Grader::Prm800k, 0)
    );
    assert!(markdown_table(&strict).contains("graded by `prm800k`"));
    let regraded = r.clone().regraded(Grader::Prm800k);
    assert_eq!(
        (regraded.math_grader, regraded.correct),
        (Grader::Prm800k, false)
    );
    let lenient = summarize("math500", Grader::Lenient, vec![r]);
    assert_eq!(lenient.cells[0].correct, 1);
}

#[test]
fn a_baseline_comparison_matches_cells_and_measures_what_an_early_stop_saved() {
    let p = problem("8");
    let rec = |m, answer: &str, generated, wall, end, limit| {
        let mut o = outcome(1, &[(answer, 0.9)], wall);
        o.stats.generated_tokens = generated;
        o.end = end;
        EvalRecord::new(&p, m, 4, 0, Dataset::Gsm8k, Grader::Prm800k, 1, o).limited_to(limit)
    };
    let baseline = vec![
        rec(Method::Ets, "8", 100, 4000, EndReason::WidthSpent, None),
        rec(Method::Rebase, "8", 80, 2000, EndReason::WidthSpent, None),
    ];
    let stopped = vec![
        // Decided early, same answer, a quarter of the tokens.
        rec(Method::Ets, "8", 25, 1000, EndReason::Decided, None),
        // Under a limit the baseline did not run: compared with its unlimited cell.
        rec(Method::Ets, "9", 60, 3000, EndReason::KvLimit, Some(300)),
        // No baseline cell: left out.
        rec(Method::Beam, "8", 10, 100, EndReason::WidthSpent, None),
    ];
    let c = compare_with_baseline(&stopped, &baseline);
    assert_eq!(c.len(), 2, "{c:?}");
    let (limited, decided) = (&c[0], &c[1]);
    assert_eq!((limited.kv_limit, decided.kv_limit), (Some(300), None));
    assert_eq!(
        (decided.runs, decided.same_answer, decided.ended_early),
        (1, 1, 1)
    );
    assert_eq!((decided.correct, decided.baseline_correct), (1, 1));
    assert!((decided.tokens_saved() - 0.75).abs() < 1e-12);
    assert!((decided.time_saved() - 0.75).abs() < 1e-12);
    assert_eq!(
        (limited.same_answer, limited.correct, limited.ended_early),
        (0, 0, 0)
    );
    assert!((limited.tokens_saved() - 0.4).abs() < 1e-12);
    let table = baseline_table(&c);
    assert!(
        table.contains("| ets | 4 | – | 1 | 1/1 | 1 (1) | 1 | 25.0 (100.0) | 75.0% |"),
        "{table}"
    );
    let mut s = summarize("gsm8k", Grader::Prm800k, stopped);
    s.baseline = c;
    assert!(markdown_table(&s).contains("Against the baseline"));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<EvalSummary>(&json).unwrap(), s);
}

#[test]
fn kv_recount_counts_a_span_sampled_twice_under_one_parent_once() {
    // Like the search's KV tree: siblings 1 and 2 are the same span, so 2's child 4 hangs
    // under the same node as 1's child 3. A sibling with other text (5) is its own node.
    let mut nodes = vec![
        node(0, None, 0, 10),
        node(1, Some(0), 1, 2),
        node(2, Some(0), 1, 2),
        node(3, Some(1), 2, 5),
        node(4, Some(2), 2, 5),
        node(5, Some(0), 1, 2),
    ];
    for (i, text) in [(1, "\n\n"), (2, "\n\n"), (3, "a"), (4, "a"), (5, "b")] {
        nodes[i].text = text.into();
    }
    let depths = vec![depth(1, vec![1, 2, 5], 0), depth(2, vec![3, 4], 0)];
    assert_eq!(recount_kv(&nodes, &depths), [10 + 2 + 2, 10 + 2 + 5]);
}
