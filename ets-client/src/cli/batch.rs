//! `ets batch in.jsonl -o out.jsonl`: one solve per input line, up to `--concurrency` in flight
//! on one connection, one output line per input written (and flushed) as each finishes.
//!
//! Input lines are JSON objects: `id` (string or number; missing → the 1-based line number),
//! the problem in `problem` or `question` (GSM8K's shape), optional `method`, `width`, `seed`.
//! Output lines are `--json` documents (docs/json.md): `{"schema", "type": "result", "id", "job",
//! "answer", "end", "stats", "problem"}`, or `{"schema", "type": "error", "id", "line", "error":
//! {"kind", "message"}}`. A rerun skips the ids whose output line has
//! no `error` (failed lines are dropped from the file and tried again).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ets_client::{ClientError, JobResult};
use ets_core::Method;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};

use super::queue::{solve_all, QueueEnd};
use super::search_args::{Overrides, SearchArgs};
use super::{exit, print_json, Globals, Interrupts, UsageError};

/// The file formats, shown by `ets batch --help`.
pub const FORMAT: &str = "\
Input: one JSON object per line: `id` (string or number; default: the line number), the problem
in `problem` or `question` (GSM8K lines work as they are), optional `method`, `width`, `seed`.
Output: one line per input, written as each job ends:
  {\"schema\": 1, \"type\": \"result\", \"id\", \"job\", \"answer\", \"end\", \"stats\", \"problem\"}
  or {\"schema\": 1, \"type\": \"error\", \"id\", \"line\", \"error\": {\"kind\", \"message\"}}
(docs/json.md describes every field).
Rerunning the same command skips the ids already answered and retries the failed ones.
Exit: 0 all lines answered, 4 some failed, 130 interrupted (rerun to resume).";

/// `ets batch` arguments.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Input JSONL file.
    pub input: PathBuf,

    /// Output JSONL file; lines already there without an error are skipped.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Jobs in flight at once.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// The search settings (a line's `method`, `width`, `seed` override them).
    #[command(flatten)]
    pub search: SearchArgs,
}

/// One input line that can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based line number.
    pub line: usize,
    /// The line's id (a string or a number).
    pub id: Value,
    /// The problem text.
    pub problem: String,
    /// The line's own method, width and seed.
    pub overrides: Overrides,
}

/// An input line that cannot run.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Its id if one could be read, else the line number.
    pub id: Value,
    /// What is wrong.
    pub message: String,
}

/// Parses one input line (`line` is 1-based).
pub fn parse_line(line: usize, text: &str) -> Result<Item, BadLine> {
    let bad = |id: Value, message: String| BadLine { line, id, message };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(json!(line), format!("line {line}: not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(bad(json!(line), format!("line {line}: not a JSON object")));
    };
    let id = match map.get("id") {
        None | Some(Value::Null) => json!(line),
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        Some(other) => {
            return Err(bad(
                json!(line),
                format!("line {line}: `id` must be a string or a number, not {other}"),
            ))
        }
    };
    let problem = ["problem", "question"]
        .iter()
        .find_map(|key| map.get(*key).and_then(Value::as_str))
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            bad(
                id.clone(),
                format!("line {line}: no `problem` or `question` text"),
            )
        })?;
    let overrides = overrides(&map).map_err(|m| bad(id.clone(), format!("line {line}: {m}")))?;
    Ok(Item {
        line,
        id,
        problem: problem.to_owned(),
        overrides,
    })
}

fn overrides(map: &Map<String, Value>) -> Result<Overrides, String> {
    let mut o = Overrides::default();
    if let Some(v) = map.get("method").filter(|v| !v.is_null()) {
        let name = v
            .as_str()
            .ok_or(format!("`method` must be a string, not {v}"))?;
        o.method = Some(name.parse::<Method>().map_err(|e| e.to_string())?);
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        match map.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or(format!("`{key}` must be a non-negative integer, not {v}")),
        }
    };
    o.width = number("width")?.map(|w| w as usize);
    o.seed = number("seed")?;
    Ok(o)
}

/// The key an id is matched by on resume (`1` and `"1"` are the same line).
pub fn id_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The resume key of a batch output line: its id, unless the line records an error.
fn batch_key(line: &str) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) else {
        return None;
    };
    if map.contains_key("error") {
        return None;
    }
    map.get("id").map(id_key)
}

/// Reads an existing output file: the lines to keep (those without `error`) and their ids.
#[cfg(test)]
pub fn load_done(text: &str) -> (Vec<String>, HashSet<String>) {
    load_done_by(text, batch_key)
}

/// Reads an existing JSONL output: the lines `key_of` gives a key (finished work) and their
/// keys; the other lines (failures, a line cut short by a crash) will be redone.
pub fn load_done_by(
    text: &str,
    key_of: impl Fn(&str) -> Option<String>,
) -> (Vec<String>, HashSet<String>) {
    let mut kept = Vec::new();
    let mut done = HashSet::new();
    for line in text.lines() {
        if let Some(key) = key_of(line) {
            done.insert(key);
            kept.push(line.to_owned());
        }
    }
    (kept, done)
}

/// Opens the output for appending, first dropping the lines that will be redone.
fn open_output(path: &Path) -> anyhow::Result<(File, HashSet<String>)> {
    open_output_by(path, batch_key)
}

/// Opens a resumable JSONL output for appending: rewrites it without the lines `key_of`
/// rejects, and returns the keys of the lines kept (the work already done).
pub fn open_output_by(
    path: &Path,
    key_of: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(File, HashSet<String>)> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let (kept, done) = load_done_by(&existing, key_of);
    // Rewritten also when the last line lost its newline, so the next result starts a line of
    // its own instead of being glued to it (`}{`).
    let unterminated = !existing.is_empty() && !existing.ends_with('\n');
    if kept.len() != existing.lines().count() || unterminated {
        let tmp = path.with_extension("jsonl.tmp");
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok((file, done))
}

/// The output line of a finished job.
pub fn ok_line(item: &Item, result: &JobResult) -> Value {
    super::json_out::document(
        "result",
        json!({
        "id": item.id,
        "job": result.job,
        "answer": result.outcome.answer,
        "end": result.outcome.end,
        "stats": result.outcome.stats,
        "problem": item.problem,
        }),
    )
}

/// The output line of a line that failed.
pub fn error_line(id: &Value, line: usize, kind: &str, message: &str) -> Value {
    super::json_out::document(
        "error",
        json!({"id": id, "line": line, "error": {"kind": kind, "message": message}}),
    )
}

/// The kind and message of a job that failed (not of a lost connection).
pub fn failure(e: &ClientError) -> (String, String) {
    let message = match e {
        ClientError::JobFailed { message, .. } | ClientError::Server { message, .. } => {
            message.clone()
        }
        other => other.to_string(),
    };
    (super::json_out::client_error_kind(e), message)
}

/// Runs `ets batch`.
pub async fn run(g: &Globals, args: BatchArgs) -> anyhow::Result<u8> {
    // Flags are checked before anything is read or started.
    args.search.request("check", Overrides::default())?;
    let input = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let (file, done) = open_output(&args.output)?;
    let mut out = BufWriter::new(file);
    let mut write = |value: &Value| -> anyhow::Result<()> {
        writeln!(out, "{value}")?;
        out.flush()
            .with_context(|| format!("cannot write {}", args.output.display()))
    };

    let mut todo = Vec::new();
    let (mut skipped, mut failed, mut solved) = (0usize, 0usize, 0usize);
    for (i, text) in input.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(i + 1, text) {
            Ok(item) if done.contains(&id_key(&item.id)) => skipped += 1,
            Ok(item) => match args.search.request(item.problem.clone(), item.overrides) {
                Ok(mut request) => {
                    request.tag = Some(id_key(&item.id));
                    request.stream_events = false;
                    todo.push((item, request));
                }
                Err(UsageError(message)) => {
                    eprintln!("ets: line {}: {message}", item.line);
                    write(&error_line(&item.id, item.line, "BadRequest", &message))?;
                    failed += 1;
                }
            },
            Err(bad) if done.contains(&id_key(&bad.id)) => skipped += 1,
            Err(bad) => {
                eprintln!("ets: {}", bad.message);
                write(&error_line(&bad.id, bad.line, "bad-input", &bad.message))?;
                failed += 1;
            }
        }
    }

    let mut interrupts = Interrupts::new()?;
    let bar = progress_bar(todo.len() as u64, skipped);
    let mut interrupted = false;
    if !todo.is_empty() {
        let on_result = |item: Item, result: Result<JobResult, ClientError>| {
            match result {
                Ok(result) => {
                    write(&ok_line(&item, &result))?;
                    solved += 1;
                }
                Err(e) if e.is_unreachable() => {
                    bar.abandon();
                    return Err(anyhow::Error::new(e).context(format!(
                        "batch stopped at line {}; rerun the same command to resume",
                        item.line
                    )));
                }
                Err(e) => {
                    let (kind, message) = failure(&e);
                    bar.suspend(|| eprintln!("ets: line {} failed: {message}", item.line));
                    write(&error_line(&item.id, item.line, &kind, &message))?;
                    failed += 1;
                }
            }
            bar.inc(1);
            bar.set_message(format!("{failed} failed"));
            Ok(())
        };
        match solve_all(
            g,
            &mut interrupts,
            todo,
            args.concurrency as usize,
            on_result,
        )
        .await?
        {
            QueueEnd::NotStarted => return Ok(exit::CANCELLED),
            QueueEnd::Interrupted => interrupted = true,
            QueueEnd::Finished => {}
        }
    }
    bar.finish_and_clear();
    let summary = json!({
        "input": args.input, "output": args.output,
        "solved": solved, "failed": failed, "skipped": skipped, "interrupted": interrupted,
    });
    if g.json {
        print_json("batch-summary", &summary)?;
    } else {
        eprintln!(
            "ets: {solved} solved, {failed} failed, {skipped} skipped (already in {})",
            args.output.display()
        );
    }
    if interrupted {
        eprintln!("ets: interrupted; rerun the same command to resume");
        Ok(exit::CANCELLED)
    } else if failed > 0 {
        Ok(exit::JOB_FAILED)
    } else {
        Ok(exit::OK)
    }
}

/// A progress bar on stderr for `len` jobs.
pub fn progress_bar(len: u64, skipped: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(format!("0 failed, {skipped} skipped"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_take_id_problem_or_question_and_overrides() {
        let item = parse_line(3, r#"{"id": "a7", "problem": "1+1?", "width": 4}"#).unwrap();
        assert_eq!(item.id, json!("a7"));
        assert_eq!(item.problem, "1+1?");
        assert_eq!(item.overrides.width, Some(4));

        let gsm = r#"{"question": "Tom has 3 apples.", "answer": "Three.\n#### 3"}"#;
        let item = parse_line(5, gsm).unwrap();
        assert_eq!(item.id, json!(5), "a missing id is the line number");
        assert_eq!(item.problem, "Tom has 3 apples.");

        let item = parse_line(
            1,
            r#"{"id": 12, "problem": "x", "method": "bon", "seed": 3}"#,
        );
        let item = item.unwrap();
        assert_eq!(item.id, json!(12));
        assert_eq!(item.overrides.method, Some(Method::BestOfN));
        assert_eq!(item.overrides.seed, Some(3));
    }

    #[test]
    fn bad_lines_say_which_line_and_why() {
        let bad = parse_line(4, "not json").unwrap_err();
        assert_eq!((bad.line, bad.id.clone()), (4, json!(4)));
        assert!(
            bad.message.starts_with("line 4: not JSON"),
            "{}",
            bad.message
        );

        let bad = parse_line(2, r#"{"id": "q", "answer": "3"}"#).unwrap_err();
        assert_eq!(bad.id, json!("q"));
        assert!(
            bad.message.contains("no `problem` or `question`"),
            "{}",
            bad.message
        );

        let bad = parse_line(2, r#"{"problem": "x", "method": "mcts"}"#).unwrap_err();
        assert!(bad.message.contains("mcts"), "{}", bad.message);
        assert!(parse_line(2, r#"{"problem": "x", "width": -1}"#).is_err());
        assert!(parse_line(2, r#"{"id": [1], "problem": "x"}"#).is_err());
        assert!(parse_line(2, "[1, 2]").is_err());
    }

    #[test]
    fn resume_keeps_answered_ids_and_drops_errors() {
        let existing = [
            r#"{"id": "a", "answer": "1"}"#,
            r#"{"id": 2, "line": 2, "error": {"kind": "search", "message": "x"}}"#,
            r#"{"id": 3, "answer": null}"#,
            "garbage from a crash mid-wri",
        ]
        .join("\n");
        let (kept, done) = load_done(&existing);
        assert_eq!(kept.len(), 2);
        assert!(done.contains("a") && done.contains("3"));
        assert!(!done.contains("2"), "failed lines are redone");
        assert_eq!(id_key(&json!(3)), id_key(&json!("3")));
    }

    #[test]
    fn resume_rewrites_the_output_without_failed_lines() {
        let dir = std::env::temp_dir().join(format!("ets-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        std::fs::write(
            &path,
            "{\"id\":1,\"answer\":\"2\"}\n{\"id\":2,\"error\":{}}\n",
        )
        .unwrap();
        let (mut file, done) = open_output(&path).unwrap();
        assert_eq!(done.len(), 1);
        writeln!(file, "{{\"id\":2,\"answer\":\"5\"}}").unwrap();
        drop(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"id\":1,\"answer\":\"2\"}\n{\"id\":2,\"answer\":\"5\"}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_after_a_last_line_without_newline_starts_a_new_line() {
        let dir = std::env::temp_dir().join(format!("ets-batch-nl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        std::fs::write(&path, "{\"id\":1,\"answer\":\"2\"}").unwrap();
        let (mut file, done) = open_output(&path).unwrap();
        assert_eq!(done.len(), 1);
        writeln!(file, "{{\"id\":2,\"answer\":\"5\"}}").unwrap();
        drop(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"id\":1,\"answer\":\"2\"}\n{\"id\":2,\"answer\":\"5\"}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
