//! Data-driven tests over the shared evaluation files (`shared/data/`, beside the checkout) and
//! the rewrite table `ets-core/test_data/math500_rewrites.tsv`.
//!
//! Missing data files fail these tests with the path that was looked for; they never pass
//! silently.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{extract_answer, gsm8k_equal, gsm8k_reference, lenient_equal};

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The file at `relative` (to the crate directory), or an error naming the path looked for.
fn try_read(relative: &str) -> Result<String, String> {
    let path = crate_path(relative);
    std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}); the shared data sits beside the repository checkout, \
             see shared/data/README.md",
            path.display()
        )
    })
}

fn read(relative: &str) -> String {
    try_read(relative).unwrap_or_else(|msg| panic!("{msg}"))
}

/// The string field `field` of every line of a JSONL file.
fn jsonl_field(relative: &str, field: &str) -> Vec<(String, serde_json::Value)> {
    read(relative)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let row: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{relative} line {}: {e}", i + 1));
            let value = row[field]
                .as_str()
                .unwrap_or_else(|| panic!("{relative} line {}: no string `{field}`", i + 1));
            (value.to_string(), row)
        })
        .collect()
}

const MATH500: &str = "../../shared/data/math500.jsonl";
const GSM8K: &str = "../../shared/data/gsm8k_test.jsonl";
const REWRITES: &str = "test_data/math500_rewrites.tsv";

struct Rewrite {
    line: usize,
    equal: bool,
    reference: String,
    rewrite: String,
}

fn rewrites() -> Vec<Rewrite> {
    read(REWRITES)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            let [verdict, reference, rewrite] = cols[..] else {
                panic!("{REWRITES} line {}: want 3 tab-separated columns", i + 1);
            };
            let equal = match verdict {
                "=" => true,
                "!=" => false,
                v => panic!(
                    "{REWRITES} line {}: verdict {v:?} is neither = nor !=",
                    i + 1
                ),
            };
            Rewrite {
                line: i + 1,
                equal,
                reference: reference.to_string(),
                rewrite: rewrite.to_string(),
            }
        })
        .collect()
}

#[test]
fn a_missing_data_file_is_an_error_naming_its_path() {
    let err = try_read("../../shared/data/no_such_file.jsonl").unwrap_err();
    assert!(err.contains("shared/data/no_such_file.jsonl"), "{err}");
}

#[test]
fn rewrite_table_references_are_math500_answers() {
    let answers: HashSet<String> = jsonl_field(MATH500, "answer")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let table = rewrites();
    let missing: Vec<String> = table
        .iter()
        .filter(|r| !answers.contains(&r.reference))
        .map(|r| format!("line {}: {}", r.line, r.reference))
        .collect();
    assert!(
        missing.is_empty(),
        "not MATH500 answers:\n{}",
        missing.join("\n")
    );
    let covered: HashSet<&str> = table.iter().map(|r| r.reference.as_str()).collect();
    assert!(covered.len() >= 60, "only {} references", covered.len());
    assert!(table.iter().any(|r| !r.equal) && table.iter().any(|r| r.equal));
}

#[test]
fn rewrite_table_grades_as_marked() {
    let wrong: Vec<String> = rewrites()
        .iter()
        .filter(|r| lenient_equal(&r.rewrite, &r.reference) != r.equal)
        .map(|r| {
            let verdict = if r.equal { "=" } else { "!=" };
            format!("line {}: {} {verdict} {}", r.line, r.rewrite, r.reference)
        })
        .collect();
    assert!(wrong.is_empty(), "misgraded:\n{}", wrong.join("\n"));
}

#[test]
fn every_math500_answer_equals_itself_and_survives_boxing() {
    let rows = jsonl_field(MATH500, "answer");
    assert_eq!(rows.len(), 500, "{MATH500} should hold 500 rows");
    let mut failures = Vec::new();
    for (answer, row) in &rows {
        if !lenient_equal(answer, answer) {
            failures.push(format!("self: {answer}"));
        }
        let text = format!("Therefore the answer is $\\boxed{{{answer}}}$.");
        match extract_answer(&text) {
            Some(got) if lenient_equal(&got, answer) => {}
            got => failures.push(format!("boxed: {answer} -> {got:?}")),
        }
        // The reference solution's own box grades equal to the reference answer.
        let solution = row["solution"].as_str().unwrap_or_default();
        match extract_answer(solution) {
            Some(got) if lenient_equal(&got, answer) => {}
            got => failures.push(format!(
                "solution box: {got:?} vs {answer} ({})",
                row["unique_id"]
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_gsm8k_reference_parses_and_equals_itself() {
    let rows = jsonl_field(GSM8K, "answer");
    assert_eq!(rows.len(), 1319, "{GSM8K} should hold 1319 rows");
    let mut failures = Vec::new();
    for (solution, _) in &rows {
        let Some(n) = gsm8k_reference(solution) else {
            failures.push(format!("no #### in: {solution}"));
            continue;
        };
        if !gsm8k_equal(&n, &n) || !gsm8k_equal(&format!("{n}.0"), &n) {
            failures.push(format!("not equal to itself: {n}"));
        }
        if extract_answer(solution).is_none_or(|a| !gsm8k_equal(&a, &n)) {
            failures.push(format!("extraction disagrees: {n}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
