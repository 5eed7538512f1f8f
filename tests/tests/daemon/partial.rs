//! Anytime results: a deadline that passes mid-search returns what the search found by then,
//! marked partial (`end: deadline`), through the real daemon and `ets solve`.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{binaries, Daemon};

fn ets(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(&binaries().1)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .output()
        .expect("running ets")
}

/// A REBASE search of many depths with a deadline of `secs`.
fn long_solve_args(secs: &str, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "solve",
        "--json",
        "--method",
        "rebase",
        "--width",
        "8",
        "--max-depth",
        "40",
        "--max-step-tokens",
        "24",
        "--max-tokens",
        "800",
        "--deadline",
        secs,
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many \
               clips in May. How many clips did Natalia sell altogether in April and May?"
            .into(),
    );
    args
}

#[test]
fn a_deadline_mid_search_returns_the_partial_result_and_exit_4_unless_accepted() {
    // Its own daemon, warmed up first, so the deadline falls inside the search rather than in
    // a model load or another test's queue.
    let daemon = Daemon::start("partial", &[]);
    let warm = ets(
        &daemon,
        &[
            "solve",
            "--json",
            "--width",
            "1",
            "--max-depth",
            "1",
            "1+1?",
        ],
    );
    assert_eq!(warm.status.code(), Some(0), "{warm:?}");
    for (extra, code) in [(&[][..], 4), (&["--accept-partial"][..], 0)] {
        let args = long_solve_args("4", extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ets(&daemon, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{stdout}\n{stderr}\n{}",
            daemon.log()
        );
        let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON document");
        assert_eq!(v["type"], "result", "{stdout}");
        assert_eq!(v["end"], "deadline", "{stdout}");
        // The search was under way: the policy had expanded nodes (the first expansion takes
        // about a second here; 40 depths of 8 take minutes, so the deadline lands mid-search.
        // With 4 children and 20 depths a 10 s deadline stopped landing once the native
        // engine got faster).
        assert!(v["stats"]["policy_calls"].as_u64() >= Some(1), "{stdout}");
        if code == 4 {
            assert!(stderr.contains("partial"), "{stderr}");
        }
    }
}
