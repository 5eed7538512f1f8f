//! Data-driven tests over the repository's evaluation files (`data/math500.jsonl`,
//! `data/gsm8k_test.jsonl`, at the root of the checkout) and the grader table
//! `ets-core/test_data/grader_pairs.tsv`: MATH500 answers and rewrites of them, each with the
//! verdict PRM800K's own grader gives (`prm800k`) and the one the `lenient` rules call for.
//!
//! Missing data files fail these tests with the path that was looked for; they never pass
//! silently.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{extract_answer, gsm8k_equal, gsm8k_reference, Grader};

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The file at `relative` (to the crate directory), or an error naming the path looked for.
fn try_read(relative: &str) -> Result<String, String> {
    let path = crate_path(relative);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {} ({e})", path.display()))
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

const MATH500: &str = "../data/math500.jsonl";
const GSM8K: &str = "../data/gsm8k_test.jsonl";
const PAIRS: &str = "test_data/grader_pairs.tsv";

/// One row of the grader table.
struct Pair {
    line: usize,
    /// Expected verdicts, in [`Grader::ALL`] order (`prm800k`, `lenient`).
    verdicts: [bool; 2],
    reference: String,
    given: String,
}

fn verdict(text: &str, line: usize) -> bool {
    match text {
        "=" => true,
        "!=" => false,
        v => panic!("{PAIRS} line {line}: verdict {v:?} is neither = nor !="),
    }
}

fn pairs() -> Vec<Pair> {
    read(PAIRS)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            let [prm800k, lenient, reference, given] = cols[..] else {
                panic!("{PAIRS} line {}: want 4 tab-separated columns", i + 1);
            };
            Pair {
                line: i + 1,
                verdicts: [verdict(prm800k, i + 1), verdict(lenient, i + 1)],
                reference: reference.to_string(),
                given: given.to_string(),
            }
        })
        .collect()
}

/// The rows `grader` grades otherwise than the table says, one line each.
fn misgraded(grader: Grader) -> Vec<String> {
    let column = Grader::ALL.iter().position(|g| *g == grader).unwrap();
    pairs()
        .iter()
        .filter(|p| grader.math_equal(&p.given, &p.reference) != p.verdicts[column])
        .map(|p| {
            let want = if p.verdicts[column] { "=" } else { "!=" };
            format!("line {}: want {} {want} {}", p.line, p.given, p.reference)
        })
        .collect()
}

#[test]
fn a_missing_data_file_is_an_error_naming_its_path() {
    let err = try_read("../data/no_such_file.jsonl").unwrap_err();
    assert!(err.contains("data/no_such_file.jsonl"), "{err}");
}

#[test]
fn grader_table_references_are_math500_answers() {
    let answers: HashSet<String> = jsonl_field(MATH500, "answer")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let table = pairs();
    let missing: Vec<String> = table
        .iter()
        .filter(|p| !answers.contains(&p.reference))
        .map(|p| format!("line {}: {}", p.line, p.reference))
        .collect();
    assert!(
        missing.is_empty(),
        "not MATH500 answers:\n{}",
        missing.join("\n")
    );
    let covered: HashSet<&str> = table.iter().map(|p| p.reference.as_str()).collect();
    assert!(table.len() >= 300, "only {} pairs", table.len());
    assert!(covered.len() >= 60, "only {} references", covered.len());
}

#[test]
fn grader_table_covers_both_verdicts_and_the_disagreements() {
    let table = pairs();
    for column in 0..2 {
        assert!(table.iter().any(|p| p.verdicts[column]));
        assert!(table.iter().any(|p| !p.verdicts[column]));
    }
    let disagree = |a: bool, b: bool| table.iter().filter(|p| p.verdicts == [a, b]).count();
    assert!(disagree(false, true) >= 20, "lenient-only rows");
    assert!(disagree(true, false) >= 1, "prm800k-only rows");
}

#[test]
fn grader_table_holds_every_class_of_issue_15() {
    let givens: HashSet<String> = pairs().into_iter().map(|p| p.given).collect();
    let classes = [
        "10{,}080",
        "\\{-2, 1\\}",
        "1 ± \\sqrt{19}",
        "\\frac{\\sqrt{3}}{3}.",
        "52_8.",
        "(-\\INFTY, 0]",
        "137 \\FRAC{1}{2}",
        "(-∞, 0]",
        "864 square inches",
        "x = 5.0",
        "y=3+2x",
        "-3^{1/2}",
        "10\\,080",
    ];
    let missing: Vec<&str> = classes
        .into_iter()
        .filter(|c| !givens.contains(*c))
        .collect();
    assert!(missing.is_empty(), "no row for {missing:?}");
}

#[test]
fn prm800k_grades_the_table_as_the_prm800k_grader_does() {
    let wrong = misgraded(Grader::Prm800k);
    assert!(wrong.is_empty(), "misgraded:\n{}", wrong.join("\n"));
}

#[test]
fn lenient_grades_the_table_as_labelled() {
    let wrong = misgraded(Grader::Lenient);
    assert!(wrong.is_empty(), "misgraded:\n{}", wrong.join("\n"));
}

#[test]
fn every_math500_answer_equals_itself_and_survives_boxing() {
    let rows = jsonl_field(MATH500, "answer");
    assert_eq!(rows.len(), 500, "{MATH500} should hold 500 rows");
    let mut failures = Vec::new();
    for grader in Grader::ALL {
        for (answer, row) in &rows {
            if !grader.math_equal(answer, answer) {
                failures.push(format!("{grader} self: {answer}"));
            }
            let text = format!("Therefore the answer is $\\boxed{{{answer}}}$.");
            match extract_answer(&text) {
                Some(got) if grader.math_equal(&got, answer) => {}
                got => failures.push(format!("{grader} boxed: {answer} -> {got:?}")),
            }
            // The reference solution's own box grades equal to the reference answer.
            let solution = row["solution"].as_str().unwrap_or_default();
            match extract_answer(solution) {
                Some(got) if grader.math_equal(&got, answer) => {}
                got => failures.push(format!(
                    "{grader} solution box: {got:?} vs {answer} ({})",
                    row["unique_id"]
                )),
            }
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
