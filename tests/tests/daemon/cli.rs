//! The `ets` command line against the real daemon: every `--json` document checked against the
//! schema file (`solve`, `--stream`, `ps`, `status`, `models list`, `metrics`, errors),
//! the unreachable-daemon exit code, and auto-start (the README's first command).

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::{binaries, models_dir, temp_dir};
use crate::{schema, shared};

fn ets(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new(&binaries().1)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("running ets")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const TINY: [&str; 8] = [
    "--method",
    "rebase",
    "--width",
    "2",
    "--max-depth",
    "2",
    "--max-step-tokens",
    "8",
];

#[test]
fn solve_json_ps_status_and_metrics_speak_to_the_daemon() {
    let socket = &shared().socket;
    let mut args = vec!["--no-autostart", "--json", "solve"];
    args.extend(TINY);
    args.extend(["--max-tokens", "16", "--seed", "5", "What is 3 + 4?"]);
    let out = ets(socket, &args);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let result = schema::one("result", &out.stdout);
    assert_eq!(result["problem"], "What is 3 + 4?");
    assert_eq!(result["width"], 2);
    assert!(result["stats"]["nodes"].as_u64().unwrap() > 1, "{result}");
    assert!(
        result["stats"]["generated_tokens"].as_u64().unwrap() > 0,
        "{result}"
    );
    assert!(
        result["stats"]["wall_time_s"].as_f64().unwrap() > 0.0,
        "{result}"
    );
    assert!(result["nodes"].as_array().unwrap().len() > 1);

    // --stream: one event document per line, then the result.
    let mut args = vec!["--no-autostart", "--json", "solve", "--stream"];
    args.extend(TINY);
    args.extend(["--max-tokens", "16", "--seed", "6", "What is 2 + 2?"]);
    let out = ets(socket, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let (last, events) = lines.split_last().expect("lines");
    schema::check("result", last);
    assert!(events.len() >= 3, "{lines:?}");
    for e in events {
        schema::check("event", e);
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"]["search"]["depth-done"].is_object()),
        "{events:?}"
    );

    let out = ets(socket, &["--json", "ps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    schema::one("jobs", &out.stdout);

    let out = ets(socket, &["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = schema::one("status", &out.stdout);
    assert!(status["jobs_done"].as_u64().unwrap() >= 2, "{status}");
    assert!(
        status["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["state"] == "ready"
                && m["roles"].as_array().unwrap().contains(&"policy".into())),
        "{status}"
    );

    let out = ets(socket, &["--json", "models", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let models = schema::one("models", &out.stdout);
    assert!(
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["loaded"] == true),
        "{models}"
    );

    // The first problem again: its prompt's K/V is warm (kept by the engine from the first
    // job), which the metrics count per model.
    let mut args = vec!["--no-autostart", "--json", "solve"];
    args.extend(TINY);
    args.extend(["--max-tokens", "16", "--seed", "7", "What is 3 + 4?"]);
    let out = ets(socket, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = ets(socket, &["--json", "metrics"]);
    assert!(out.status.success());
    let metrics = schema::one("metrics", &out.stdout);
    let metrics = metrics["text"].as_str().unwrap();
    assert!(metrics.contains("ets_jobs_total{outcome=\"done\"}"));
    let total = |family: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{family}{{model=")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert!(total("ets_prompt_cache_hits_total") >= 1.0, "{metrics}");
    assert!(
        total("ets_prompt_cache_reused_tokens_total") > 0.0,
        "{metrics}"
    );
    assert!(total("ets_prompt_cache_bytes") > 0.0, "{metrics}");
    // "What is 2 + 2?" shares its chat header with "What is 3 + 4?": computed on it.
    assert!(
        total("ets_prompt_cache_shared_hits_total") >= 1.0,
        "{metrics}"
    );
    // `ets status` shows the same per model, and their bytes in all.
    let out = ets(socket, &["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = schema::one("status", &out.stdout);
    let warm: Vec<&Value> = status["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["prompt_cache"].as_object().map(|_| &m["prompt_cache"]))
        .collect();
    assert!(!warm.is_empty(), "{status}");
    let sum = |key: &str| warm.iter().map(|c| c[key].as_u64().unwrap()).sum::<u64>();
    assert!(sum("hits") >= 1 && sum("shared_hits") >= 1, "{status}");
    assert_eq!(
        status["prompt_cache_bytes"].as_u64().unwrap(),
        sum("bytes"),
        "{status}"
    );
    let out = ets(socket, &["status"]);
    assert!(
        text(&out.stdout).contains("warm prompts across jobs"),
        "{}",
        text(&out.stdout)
    );

    // A job the daemon refuses: an error document on stdout, exit 4.
    let out = ets(
        socket,
        &[
            "--no-autostart",
            "--json",
            "solve",
            "--width",
            "100000",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let error = schema::one("error", &out.stdout);
    assert_eq!(error["error"]["kind"], "bad-request", "{error}");
}

#[test]
fn an_unreachable_daemon_exits_3_and_names_the_socket() {
    let dir = temp_dir("unreachable");
    let socket = dir.join("nobody.sock");
    let out = ets(&socket, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nobody.sock"),
        "{}",
        text(&out.stderr)
    );
    let out = ets(&socket, &["--json", "status"]);
    assert_eq!(out.status.code(), Some(3));
    let error = schema::one("error", &out.stdout);
    assert_eq!(error["error"]["kind"], "unreachable");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nobody.sock"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn solve_starts_the_daemon_when_none_runs() {
    let dir = temp_dir("autostart");
    let socket = dir.join("ets").join("etsd.sock");
    let mut args = vec!["solve"];
    args.extend(TINY);
    args.extend(["--max-tokens", "16", "What is 5 + 6?"]);
    let out = Command::new(&binaries().1)
        .arg("--socket")
        .arg(&socket)
        .args(&args)
        .env("ETSD", &binaries().0)
        .env("ETS_MODELS_DIR", models_dir())
        .env("XDG_STATE_HOME", dir.join("state"))
        .output()
        .expect("running ets");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.to_lowercase().contains("answer"), "{stdout}");
    assert!(socket.exists(), "the started daemon keeps running");
    let log = std::fs::read_to_string(dir.join("state/ets/etsd.log")).unwrap_or_default();
    assert!(log.contains("etsd listening"), "{log}");

    let out = ets(&socket, &["shutdown"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!socket.exists(), "shutdown removed the socket");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stream_in_text_mode_prints_one_readable_line_per_event() {
    let mut args = vec!["--no-autostart", "solve", "--stream"];
    args.extend(TINY);
    args.extend(["--max-tokens", "16", "--seed", "8", "What is 6 + 1?"]);
    let out = ets(&shared().socket, &args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.to_lowercase().contains("answer"), "{stdout}");
    // Every event a line on stderr, `job N: what happened`, in words (no Rust Debug).
    let lines: Vec<&str> = stderr.lines().collect();
    let job = lines
        .first()
        .and_then(|l| l.strip_prefix("job "))
        .and_then(|l| l.split_once(": "))
        .map(|(job, _)| job.to_owned())
        .unwrap_or_else(|| panic!("no event line:\n{stderr}"));
    let prefix = format!("job {job}: ");
    let events: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("not an event line: {l:?}\n{stderr}"))
        })
        .collect();
    for event in &events {
        // Debug would print `LoadingModels`, `Search(DepthDone { depth: 1, .. })`.
        assert!(
            !event.starts_with(|c: char| c.is_ascii_uppercase()) && !event.contains("Search("),
            "{event:?}"
        );
    }
    for (want, what) in [
        ("loading models", "the model load"),
        ("started", "the job's start"),
        ("search started: prompt ", "the search's start"),
        ("depth 1: expanded 1 nodes into 2 children", "the expansion"),
        ("depth 1 done: ", "the first depth's end"),
    ] {
        assert!(
            events.iter().any(|e| e.starts_with(want)),
            "no line for {what} ({want:?}):\n{stderr}"
        );
    }
}
