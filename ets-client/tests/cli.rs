//! The `ets` binary against the in-process fake daemon: exit codes, JSON output, batch resume,
//! Ctrl-C. (With the real `etsd`: the workspace's `tests/` package.)

#![cfg(feature = "cli")]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::mpsc;

fn ets(socket: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ets"));
    command
        .env("ETSD", "/nonexistent/etsd")
        .arg("--socket")
        .arg(socket)
        .kill_on_drop(true);
    command
}

async fn run(command: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("ets finished in time")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn an_unreachable_daemon_exits_3_and_says_how_to_start_it() {
    let socket = common::temp_dir().join("none.sock");
    let out = run(ets(&socket).arg("status")).await;
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains(&socket.display().to_string()) && err.contains("ets serve"),
        "{err}"
    );

    // With --json the error is a document on stdout too.
    let out = run(ets(&socket).args(["--json", "status"])).await;
    assert_eq!(out.status.code(), Some(3));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(
        (&doc["schema"], &doc["type"], &doc["error"]["kind"]),
        (&1.into(), &"error".into(), &"unreachable".into()),
        "{doc}"
    );

    let out = run(ets(&socket).args(["--no-autostart", "solve", "x"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // solve starts the daemon when nobody listens: here $ETSD names a missing program.
    let out = run(ets(&socket).args(["solve", "x"])).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("/nonexistent/etsd"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn solve_prints_json_and_a_failed_job_exits_4() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (socket, _daemon) = common::mini_daemon(tx).await;
    let out = run(ets(&socket).args(["--json", "solve", "6 * 7", "--width", "4"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["answer"], "42");
    assert_eq!(result["width"], 4);
    assert!(
        result["job"].is_u64() && result["stats"].is_object(),
        "{result}"
    );

    let out = run(ets(&socket).args(["--json", "solve", "please fail", "--stream"])).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("the fake policy failed"),
        "{}",
        text(&out.stderr)
    );
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.first().unwrap()["type"], "event");
    assert_eq!(lines.last().unwrap()["error"]["kind"], "search");

    let out = run(ets(&socket).args(["solve", "6 * 7"])).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("answer: 42\n"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn ctrl_c_cancels_the_job_and_exits_130() {
    let (tx, mut solves) = mpsc::unbounded_channel();
    let (socket, _daemon) = common::mini_daemon(tx).await;
    let child = ets(&socket)
        .args(["solve", "hang forever"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // ets listens for Ctrl-C before it connects, so once the job is accepted it is heard.
    assert_eq!(solves.recv().await.unwrap(), "hang forever");
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cancelled"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn batch_writes_a_line_per_input_and_resumes() {
    let (tx, mut solves) = mpsc::unbounded_channel();
    let (socket, _daemon) = common::mini_daemon(tx).await;
    let dir = common::temp_dir();
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let lines = [
        r#"{"id": "a", "problem": "1 + 1"}"#,
        r#"{"question": "Tom has 3 apples", "answer": "3"}"#,
        "not json",
        r#"{"id": "c", "problem": "this will fail"}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let batch = |concurrency: &str| {
        let mut command = ets(&socket);
        command
            .arg("batch")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .args(["--concurrency", concurrency]);
        command
    };
    let out = run(&mut batch("2")).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
    let written: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 4);
    let by_id = |id: Value| written.iter().find(|l| l["id"] == id).unwrap().clone();
    assert_eq!(by_id("a".into())["answer"], "42");
    assert_eq!(by_id(2.into())["problem"], "Tom has 3 apples");
    assert_eq!(by_id(3.into())["error"]["kind"], "bad-input");
    assert_eq!(by_id("c".into())["error"]["kind"], "search");
    assert!(written.iter().all(|l| l["schema"] == 1), "{written:?}");
    let mut first_run = Vec::new();
    while let Ok(problem) = solves.try_recv() {
        first_run.push(problem);
    }
    assert_eq!(first_run.len(), 3);

    // The rerun only retries the lines that failed.
    let out = run(&mut batch("1")).await;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(solves.recv().await.unwrap(), "this will fail");
    assert!(solves.try_recv().is_err(), "answered lines are skipped");
    let rerun = std::fs::read_to_string(&output).unwrap();
    assert_eq!(rerun.lines().count(), 4, "{rerun}");
}

#[tokio::test]
async fn admin_commands_speak_json() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (socket, _daemon) = common::mini_daemon(tx).await;
    let out = run(ets(&socket).args(["--json", "status"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["version"], "fake-1");
    let out = run(ets(&socket).arg("ps")).await;
    assert_eq!(text(&out.stdout), "no jobs\n");
    let out = run(ets(&socket).arg("metrics")).await;
    assert_eq!(text(&out.stdout), "ets_up 1\n");
    // A request the daemon refuses: its message, exit 1.
    let out = run(ets(&socket).args(["models", "unload", "nothing"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not do"),
        "{}",
        text(&out.stderr)
    );
    // Bash completions: a function registered for `ets` that offers the commands, the
    // subcommands of `models`, and the flags.
    let out = run(ets(&socket).args(["completions", "bash"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("complete -F _ets"), "{script}");
    for word in [
        "solve",
        "batch",
        "eval",
        "models",
        "unload",
        "shutdown",
        "--socket",
        "--no-autostart",
        "--max-step-tokens",
    ] {
        assert!(script.contains(word), "{word} missing from:\n{script}");
    }
}
