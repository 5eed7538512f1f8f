//! The daemon's life: cancellation (explicit and by disconnect) releasing every KV node, the KV
//! budget and deadlines, one daemon per socket, and SIGTERM.

use std::time::{Duration, Instant};

use ets_core::protocol::{ErrorKind, JobEvent, JobState, Request, Response};
use ets_core::search::SearchEvent;

use crate::support::{long_solve, tiny_solve, Daemon};

/// Reads a job's events until a depth with live KV is done.
fn until_live_kv(c: &mut crate::support::Conn, job: u64) -> u64 {
    loop {
        match c.recv().expect("events") {
            Response::Event {
                job: j,
                event: JobEvent::Search(SearchEvent::DepthDone { live_tokens, .. }),
            } if j == job && live_tokens > 0 => return live_tokens,
            Response::Event { .. } => {}
            other => panic!("job {job} ended early: {other:?}"),
        }
    }
}

#[test]
fn cancel_and_disconnect_stop_searches_and_release_their_kv() {
    let daemon = Daemon::start("cancel", &["--max-concurrent", "2"]);
    let mut watcher = daemon.connect();

    // A client that walks away mid-search.
    let mut leaver = daemon.connect();
    let job = leaver.submit(long_solve(
        "A train travels 60 km in 1.5 hours. What is its speed?",
    ));
    until_live_kv(&mut leaver, job);
    let running = watcher.status();
    let info = running.jobs.iter().find(|j| j.job == job).expect("listed");
    assert_eq!(info.state, JobState::Running);
    assert!(
        info.live_tokens > 0 && running.live_kv_bytes > 0,
        "{running:?}"
    );
    drop(leaver);

    // A job cancelled by another connection.
    let mut owner = daemon.connect();
    let second = owner.submit(long_solve("What is 15% of 240?"));
    until_live_kv(&mut owner, second);
    assert_eq!(
        watcher.request(&Request::Cancel { job: second }),
        Response::Done
    );
    let started = Instant::now();
    let end = owner.finish(second).1;
    assert_eq!(end, Response::Cancelled { job: second });
    eprintln!("cancel landed in {:?}", started.elapsed());

    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let s = watcher.status();
        if s.jobs.is_empty() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.jobs.is_empty(), "both jobs ended: {status:?}");
    assert_eq!(status.jobs_cancelled, 2, "{status:?}");
    assert_eq!(
        (status.live_kv_tokens, status.live_kv_bytes),
        (0, 0),
        "back to the baseline"
    );
    assert_eq!(
        status.kv_nodes_leaked, 0,
        "every search released every node it held"
    );
}

#[test]
fn kv_budget_and_deadline_fail_with_clear_errors() {
    let daemon = Daemon::start("budget", &["--kv-budget", "10M"]);
    let mut c = daemon.connect();
    let job = c.submit(tiny_solve(
        "What is 2 + 3?",
        ets_core::Method::Rebase,
        8,
        64,
        1,
    ));
    match c.finish(job).1 {
        Response::Failed {
            kind: ErrorKind::Resources,
            message,
            ..
        } => {
            assert!(
                message.contains("10000000") && message.contains("--kv-budget"),
                "{message}"
            )
        }
        other => panic!("expected a resources error, got {other:?}"),
    }
    let mut hurried = tiny_solve("What is 2 + 3?", ets_core::Method::Rebase, 1, 4, 1);
    hurried.deadline_ms = Some(1);
    let job = c.submit(hurried);
    match c.finish(job).1 {
        Response::Failed {
            kind: ErrorKind::Deadline,
            message,
            ..
        } => {
            assert!(message.contains("1 ms"), "{message}")
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    // A search that fits runs.
    let job = c.submit(tiny_solve(
        "What is 2 + 3?",
        ets_core::Method::Rebase,
        1,
        4,
        1,
    ));
    assert!(
        matches!(c.finish(job).1, Response::Result { .. }),
        "{}",
        daemon.log()
    );
    // The search refused above, under a KV limit: the daemon reserves the limit (100 tokens of
    // this model, policy and PRM, fit in 10 MB; its worst case of 8 × 64 tokens did not), and
    // the search never holds more than the limit live.
    let mut limited = tiny_solve("What is 2 + 3?", ets_core::Method::Rebase, 8, 64, 1);
    limited.config.max_depth = 4;
    limited.config.max_step_tokens = 16;
    limited.config.kv_limit = Some(100);
    let job = c.submit(limited);
    match c.finish(job).1 {
        Response::Result { outcome, .. } => {
            assert!(
                outcome.stats.peak_live_tokens <= 100,
                "peak {} over the limit",
                outcome.stats.peak_live_tokens
            );
            assert!(outcome.stats.nodes > 1, "the search expanded the root");
        }
        other => panic!("expected a result under the KV limit, got {other:?}"),
    }
}

#[test]
fn warm_prompts_count_in_the_kv_budget_and_give_way_to_a_job_that_needs_it() {
    // A 100-token KV limit reserves 100 × 23,040 B for the policy and as much for the PRM
    // (SmolLM2-135M, f16 K/V): 4,608,000 B. The budget leaves 42,000 B (under 2 tokens) beside
    // one such job, so the warm prompts a first job leaves must give way when a second starts.
    let daemon = Daemon::start("warm-budget", &["--kv-budget", "4650000"]);
    let mut c = daemon.connect();
    let limited = || {
        let mut r = tiny_solve("What is 2 + 3?", ets_core::Method::Rebase, 8, 64, 1);
        r.config.max_depth = 2;
        r.config.max_step_tokens = 4;
        r.config.kv_limit = Some(100);
        r
    };
    let warm = |c: &mut crate::support::Conn| {
        let status = c.status();
        let caches: Vec<_> = status
            .models
            .iter()
            .filter_map(|m| m.prompt_cache)
            .collect();
        let hits: u64 = caches.iter().map(|s| s.hits + s.shared_hits).sum();
        let misses: u64 = caches.iter().map(|s| s.misses).sum();
        (status.prompt_cache_bytes, hits, misses)
    };
    let job = c.submit(limited());
    assert!(
        matches!(c.finish(job).1, Response::Result { .. }),
        "{}",
        daemon.log()
    );
    let (bytes, hits, misses) = warm(&mut c);
    assert!(
        bytes > 42_000,
        "the first job left its prompts warm: {bytes} B"
    );
    // The same problem again: its start trims the warm prompts to the 42,000 B the budget
    // leaves, so it finds none and prefills.
    let job = c.submit(limited());
    assert!(
        matches!(c.finish(job).1, Response::Result { .. }),
        "{}",
        daemon.log()
    );
    let (_, hits_after, misses_after) = warm(&mut c);
    assert_eq!(hits_after, hits, "nothing warm was left to hit");
    assert!(misses_after > misses);
}

#[test]
fn one_daemon_per_socket_and_sigterm_exits_cleanly() {
    let mut daemon = Daemon::start("lifecycle", &[]);
    // A second daemon on the same socket refuses to start and says why.
    let mut second = Daemon::spawn(&daemon.socket, &daemon.dir.join("second"), &[]);
    let status = crate::support::wait_timeout(&mut second, Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    let log =
        std::fs::read_to_string(daemon.dir.join("second").join("etsd.stderr")).unwrap_or_default();
    assert!(log.contains("already running"), "{log}");
    assert!(
        daemon.socket.exists(),
        "the first daemon's socket is untouched"
    );

    // SIGTERM with a search running: it fails with "shutting down", the socket goes, exit 0.
    let mut c = daemon.connect();
    let job = c.submit(long_solve(
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many \
         clips in May. How many clips did Natalia sell altogether in April and May?",
    ));
    until_live_kv(&mut c, job);
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket.exists(), "socket removed");
    match c.finish(job).1 {
        Response::Failed {
            kind: ErrorKind::ShuttingDown,
            message,
            ..
        } => {
            assert!(message.contains("shutting down"), "{message}")
        }
        other => panic!("expected shutting down, got {other:?}"),
    }
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = crate::support::temp_dir("stale");
    let socket = dir.join("ets").join("etsd.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A socket file nobody listens on, as a crashed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut child = Daemon::spawn(&socket, &dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = false;
    while Instant::now() < deadline && !answered {
        answered = crate::support::Conn::open(&socket).is_ok_and(|mut c| c.hello().is_ok());
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = crate::support::wait_timeout(&mut child, Duration::from_secs(30));
    assert!(answered, "the daemon took over the stale socket");
    assert!(status.is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}
