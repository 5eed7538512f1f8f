//! Remote endpoints that fail the ways servers fail in production: a server killed while an
//! `ets eval` runs on two, a server that hangs past the request timeout, one that closes an
//! answer half-way. Every job ends (finished elsewhere, or failed naming the endpoint), none
//! hangs, and the endpoint comes back once its server behaves.

use std::process::Command;
use std::time::{Duration, Instant};

use ets_core::protocol::{Response, SolveRequest};
use ets_core::Method;

use crate::fault_proxy::{Fault, FaultProxy};
use crate::llama_server::{free_port, LlamaServer};
use crate::support::{binaries, temp_dir, tiny_solve, Conn, Daemon};

fn solve(seed: u64) -> SolveRequest {
    let mut r = tiny_solve("What is 9 + 4?", Method::Rebase, 2, 12, seed);
    r.models.policy = Some("smol".into());
    r.models.prm = Some("smol".into());
    r
}

fn endpoint_up(daemon: &Daemon) -> bool {
    let status = daemon.connect().status();
    let model = status.models.iter().find(|m| m.model == "smol");
    model.is_some_and(|m| m.endpoints.iter().all(|e| e.up))
}

/// Runs one job that must fail within `limit`, naming `url`.
fn fails_naming(conn: &mut Conn, seed: u64, url: &str, limit: Duration, log: impl Fn() -> String) {
    let started = Instant::now();
    let job = conn.submit(solve(seed));
    let (_, end) = conn.finish(job);
    let took = started.elapsed();
    match end {
        Response::Failed { message, .. } => {
            assert!(
                message.contains(url),
                "the error does not name {url}: {message}"
            )
        }
        other => panic!(
            "job {job} against a broken server gave {other:?}\n{}",
            log()
        ),
    }
    assert!(
        took < limit,
        "the job took {took:?} to fail (limit {limit:?})"
    );
}

/// Waits until the endpoint is probed back up, then runs one job that must finish.
fn recovers(daemon: &Daemon, conn: &mut Conn, seed: u64) {
    let started = Instant::now();
    while !endpoint_up(daemon) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the endpoint was not probed back up: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let job = conn.submit(solve(seed));
    let (_, end) = conn.finish(job);
    assert!(matches!(end, Response::Result { .. }), "{end:?}");
}

#[test]
fn a_hung_or_cut_off_server_fails_the_job_naming_the_endpoint_and_recovers() {
    let server = LlamaServer::start(free_port());
    let proxy = FaultProxy::start(server.port);
    let config = temp_dir("remote-faults-config").join("etsd.toml");
    std::fs::write(
        &config,
        format!(
            "[[remote]]\nname = \"smol\"\nendpoints = [\"{}\"]\ntimeout_secs = 2\n",
            proxy.url()
        ),
    )
    .unwrap();
    let daemon = Daemon::start("remote-faults", &["--config", config.to_str().unwrap()]);
    let mut conn = daemon.connect();
    let job = conn.submit(solve(1));
    let (_, end) = conn.finish(job);
    assert!(matches!(end, Response::Result { .. }), "{end:?}");

    // Hangs: every attempt times out after 2 s; the retries are bounded, so the job fails.
    proxy.set(Fault::Hang);
    fails_naming(&mut conn, 2, &proxy.url(), Duration::from_secs(60), || {
        daemon.log()
    });
    proxy.set(Fault::Pass);
    recovers(&daemon, &mut conn, 3);

    // Answers cut off half-way.
    proxy.set(Fault::Cut);
    fails_naming(&mut conn, 4, &proxy.url(), Duration::from_secs(60), || {
        daemon.log()
    });
    proxy.set(Fault::Pass);
    recovers(&daemon, &mut conn, 5);
}

#[test]
fn an_eval_on_two_servers_finishes_every_job_when_one_is_killed_mid_way() {
    let mut a = LlamaServer::start(free_port());
    let b = LlamaServer::start(free_port());
    let remote = format!("smol={},{}", a.url(), b.url());
    let daemon = Daemon::start("remote-eval", &["--remote", &remote]);
    let out = temp_dir("remote-eval-out");
    let mut eval = Command::new(&binaries().1)
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--no-autostart")
        .args([
            "eval",
            "--dataset",
            "gsm8k",
            "--limit",
            "8",
            "--widths",
            "2",
        ])
        .args([
            "--methods",
            "ets,rebase",
            "--seeds",
            "3",
            "--concurrency",
            "2",
        ])
        .args([
            "--policy",
            "smol",
            "--prm",
            "smol",
            "--prm-profile",
            "judge",
        ])
        .args([
            "--max-depth",
            "2",
            "--max-step-tokens",
            "16",
            "--max-tokens",
            "32",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running ets eval");
    // Kill one server once both have answered search requests and the first cells are
    // written (the models are loaded and jobs are running on each).
    let started = Instant::now();
    loop {
        let status = daemon.connect().status();
        let served = status
            .models
            .iter()
            .find(|m| m.model == "smol")
            .is_some_and(|m| m.endpoints.iter().all(|e| e.requests >= 4));
        let written = std::fs::read_to_string(out.join("results.jsonl"))
            .map(|text| text.lines().count())
            .unwrap_or(0);
        if served && written >= 2 {
            break;
        }
        if let Some(code) = eval.try_wait().unwrap() {
            panic!("ets eval ended ({code}) before both servers were used");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the servers were never both used: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill();
    let output = eval.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ets eval failed after a server died ({}): {stderr}\n{}",
        output.status,
        daemon.log()
    );
    let lines = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        16,
        "8 problems x 2 methods, each answered: {lines}"
    );
    let status = daemon.connect().status();
    let smol = status.models.iter().find(|m| m.model == "smol").unwrap();
    assert!(
        smol.endpoints[1].requests > 0 && smol.endpoints[0].errors > 0,
        "{:?}",
        smol.endpoints
    );
}
