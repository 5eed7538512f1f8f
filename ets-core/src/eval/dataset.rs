//! Benchmark problems: MATH500 and GSM8K JSONL files (or a user's own) read into a problem text,
//! a reference answer and the grader that applies.

use serde_json::{Map, Value};

use crate::answer::{gsm8k_reference, strip_calculator_annotations, Dataset};
use crate::error::EvalError;

/// One benchmark problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Stable id: MATH500's `unique_id`, `gsm8k/<line>` for GSM8K, a line's `id` or
    /// `line-<n>` for other files.
    pub id: String,
    /// The problem text sent to the policy.
    pub problem: String,
    /// The reference final answer.
    pub reference: String,
    /// The reference solution with GSM8K calculator annotations (`<<…>>`) stripped; empty when
    /// the file has none.
    pub solution: String,
}

/// Which file layout a JSONL file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// MATH500: `problem`, `solution`, `answer` (LaTeX), `unique_id`.
    Math500,
    /// GSM8K: `question` and `answer` (the solution, ending in `#### N`).
    Gsm8k,
    /// Any file: `problem` or `question`; the reference in `answer` (a GSM8K solution's
    /// `#### N` is taken when present), else `reference`; optional `id`.
    Generic,
}

impl Layout {
    /// The grader a layout implies: GSM8K's numeric one for GSM8K, MATH's otherwise.
    pub fn grader(self) -> Dataset {
        match self {
            Layout::Gsm8k => Dataset::Gsm8k,
            Layout::Math500 | Layout::Generic => Dataset::Math,
        }
    }
}

/// Reads a JSONL file's text in `layout`; `source` names the file in errors. Blank lines are
/// skipped; any other line that is not a usable record is an error naming the line.
pub fn load_problems(source: &str, text: &str, layout: Layout) -> Result<Vec<Problem>, EvalError> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let bad = |reason: String| EvalError::BadLine {
            file: source.to_owned(),
            line: number,
            reason,
        };
        let map = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(bad(format!("expected a JSON object, got {other}"))),
            Err(e) => return Err(bad(format!("not JSON: {e}"))),
        };
        let problem = parse_record(&map, number, layout).map_err(bad)?;
        problems.push(problem);
    }
    if problems.is_empty() {
        return Err(EvalError::NoProblems {
            file: source.to_owned(),
        });
    }
    Ok(problems)
}

fn text_field<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!("`{key}` must be a string, not {other}")),
    }
}

fn parse_record(map: &Map<String, Value>, line: usize, layout: Layout) -> Result<Problem, String> {
    let required = |key: &str| -> Result<&str, String> {
        text_field(map, key)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("no `{key}` text"))
    };
    match layout {
        Layout::Math500 => Ok(Problem {
            id: required("unique_id")?.to_owned(),
            problem: required("problem")?.to_owned(),
            reference: required("answer")?.trim().to_owned(),
            solution: text_field(map, "solution")?.unwrap_or_default().to_owned(),
        }),
        Layout::Gsm8k => {
            let solution = required("answer")?;
            let reference = gsm8k_reference(solution)
                .ok_or_else(|| "`answer` has no `#### N` line".to_owned())?;
            Ok(Problem {
                id: format!("gsm8k/{line}"),
                problem: required("question")?.to_owned(),
                reference,
                solution: strip_calculator_annotations(solution),
            })
        }
        Layout::Generic => {
            let problem = match text_field(map, "problem")? {
                Some(p) if !p.trim().is_empty() => p,
                _ => required("question")
                    .map_err(|_| "no `problem` or `question` text".to_owned())?,
            };
            let (reference, solution) = match text_field(map, "answer")? {
                Some(answer) if answer.contains("####") => (
                    gsm8k_reference(answer)
                        .ok_or_else(|| "`answer` has an empty `#### ` line".to_owned())?,
                    strip_calculator_annotations(answer),
                ),
                Some(answer) if !answer.trim().is_empty() => {
                    (answer.trim().to_owned(), String::new())
                }
                _ => (
                    required("reference")
                        .map_err(|_| "no `answer` or `reference` text".to_owned())?
                        .trim()
                        .to_owned(),
                    String::new(),
                ),
            };
            let id = match map.get("id") {
                None | Some(Value::Null) => format!("line-{line}"),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => return Err(format!("`id` must be a string or number, not {other}")),
            };
            Ok(Problem {
                id,
                problem: problem.to_owned(),
                reference,
                solution,
            })
        }
    }
}

/// The grader for a user's file: GSM8K's when its first record is GSM8K-shaped (`question` +
/// an `answer` with `#### `), MATH's otherwise.
pub fn infer_grader(text: &str) -> Dataset {
    let first = text.lines().find(|l| !l.trim().is_empty());
    let gsm8k = first
        .and_then(|l| serde_json::from_str::<Map<String, Value>>(l).ok())
        .is_some_and(|m| {
            m.contains_key("question")
                && m.get("answer")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains("####"))
        });
    if gsm8k {
        Dataset::Gsm8k
    } else {
        Dataset::Math
    }
}

/// Keeps the problems named in `ids` (in the file's order; an id not in the file is an error),
/// then the first `limit`.
pub fn select_problems(
    problems: Vec<Problem>,
    ids: &[String],
    limit: Option<usize>,
) -> Result<Vec<Problem>, EvalError> {
    let mut chosen = if ids.is_empty() {
        problems
    } else {
        if let Some(missing) = ids.iter().find(|id| !problems.iter().any(|p| &p.id == *id)) {
            return Err(EvalError::UnknownProblem(missing.clone()));
        }
        problems
            .into_iter()
            .filter(|p| ids.contains(&p.id))
            .collect()
    };
    if let Some(limit) = limit {
        chosen.truncate(limit);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_lines_give_the_number_after_the_hashes() {
        let text = r#"{"question": "Q?", "answer": "2 * 3 = <<2*3=6>>6 apples.\n#### 1,006"}"#;
        let p = load_problems("t", text, Layout::Gsm8k).unwrap();
        assert_eq!(p[0].id, "gsm8k/1");
        assert_eq!(p[0].reference, "1006");
        assert_eq!(p[0].solution, "2 * 3 = 6 apples.\n#### 1,006");
    }

    #[test]
    fn generic_files_take_problem_or_question_and_answer_or_reference() {
        let text = "\n{\"id\": 7, \"problem\": \"x\", \"answer\": \"\\\\frac12\"}\n\
                    {\"question\": \"y\", \"reference\": \"3\"}\n";
        let p = load_problems("t", text, Layout::Generic).unwrap();
        assert_eq!(
            (p[0].id.as_str(), p[0].reference.as_str()),
            ("7", "\\frac12")
        );
        assert_eq!((p[1].id.as_str(), p[1].problem.as_str()), ("line-3", "y"));
        assert_eq!(infer_grader(text), Dataset::Math);
        assert_eq!(
            infer_grader(r#"{"question": "q", "answer": "x\n#### 4"}"#),
            Dataset::Gsm8k
        );
    }

    #[test]
    fn bad_lines_name_the_file_the_line_and_the_reason() {
        let e = load_problems("f.jsonl", "{\"problem\": \"x\"}\nnope", Layout::Generic);
        let msg = e.unwrap_err().to_string();
        assert!(msg.contains("f.jsonl") && msg.contains("line 1"), "{msg}");
        assert!(msg.contains("`answer`"), "{msg}");
        let msg = load_problems("f", "[1]", Layout::Generic)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("JSON object"), "{msg}");
        let msg = load_problems(
            "g",
            r#"{"question": "q", "answer": "no hashes"}"#,
            Layout::Gsm8k,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("####"), "{msg}");
        assert!(matches!(
            load_problems("e", "\n\n", Layout::Generic),
            Err(EvalError::NoProblems { .. })
        ));
    }

    #[test]
    fn ids_then_limit_select_problems() {
        let text = (1..=5)
            .map(|i| format!("{{\"id\": {i}, \"problem\": \"p\", \"answer\": \"{i}\"}}"))
            .collect::<Vec<_>>()
            .join("\n");
        let all = load_problems("t", &text, Layout::Generic).unwrap();
        let ids = ["4".to_owned(), "2".to_owned()];
        let some = select_problems(all.clone(), &ids, None).unwrap();
        assert_eq!(
            some.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["2", "4"]
        );
        assert_eq!(select_problems(all.clone(), &[], Some(3)).unwrap().len(), 3);
        let e = select_problems(all, &["9".to_owned()], None).unwrap_err();
        assert!(e.to_string().contains("`9`"), "{e}");
    }
}
