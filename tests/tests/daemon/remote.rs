//! The remote engine against real `llama-server` processes: searches through etsd with policy
//! and judge PRM on two servers, endpoint health in `ets status`, failover when a server dies
//! and its return, the judge score agreeing with the native engine's, and a server that does not
//! speak the protocol refused by name, step embeddings from a server's `/v1/embeddings`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ets_core::protocol::{ModelInfo, RemoteModelSpec, Request, Response};
use ets_core::{Method, ScoreRequest};
use serde_json::Value;

use crate::llama_server::{free_port, smol_gguf, LlamaServer};
use crate::support::{binaries, tiny_solve, Daemon};

fn ets(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(&binaries().1)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .output()
        .expect("running ets")
}

fn remote_model(daemon: &Daemon, name: &str) -> ModelInfo {
    let status = daemon.connect().status();
    status
        .models
        .into_iter()
        .find(|m| m.model == name)
        .unwrap_or_else(|| panic!("{name} is not in status"))
}

#[test]
fn an_ets_search_runs_on_two_llama_servers_and_status_shows_their_endpoints() {
    let a = LlamaServer::start(free_port());
    let b = LlamaServer::start(free_port());
    let remote = format!("smol={},{}", a.url(), b.url());
    let daemon = Daemon::start("remote-solve", &["--remote", &remote]);
    let out = ets(
        &daemon,
        &[
            "solve",
            "--json",
            "--policy",
            "smol",
            "--prm",
            "smol",
            "--prm-profile",
            "judge",
            "--method",
            "ets",
            "--width",
            "4",
            "--max-depth",
            "2",
            "--max-step-tokens",
            "32",
            "What is 12 + 30?",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    let v: Value = serde_json::from_str(&stdout).expect("solve --json prints JSON");
    assert!(v.to_string().contains("trajector"), "{stdout}");
    let info = remote_model(&daemon, "smol");
    assert_eq!(info.engine, "remote");
    assert_eq!(info.endpoints.len(), 2);
    assert!(info.endpoints.iter().all(|e| e.up), "{:?}", info.endpoints);
    let requests: u64 = info.endpoints.iter().map(|e| e.requests).sum();
    assert!(requests > 4, "{:?}", info.endpoints);
    let reused: u64 = info.endpoints.iter().map(|e| e.prompt_tokens_reused).sum();
    assert!(
        reused > 0,
        "the servers' prefix caches reused nothing: {:?}",
        info.endpoints
    );
    // The text status names the endpoints and their health.
    let text = String::from_utf8_lossy(&ets(&daemon, &["status"]).stdout).into_owned();
    assert!(text.contains(&a.url()) && text.contains(&b.url()), "{text}");
}

#[test]
fn ets_clusters_with_embeddings_from_a_server_and_one_without_them_is_refused_by_name() {
    let lm = LlamaServer::start(free_port());
    let embedding = LlamaServer::start_with(free_port(), &["--embeddings", "--pooling", "mean"]);
    let daemon = Daemon::start(
        "remote-embedder",
        &[
            "--remote",
            &format!("smol={}", lm.url()),
            "--remote",
            &format!("emb={}", embedding.url()),
        ],
    );
    let solve = |embedder: &str| {
        ets(
            &daemon,
            &[
                "solve",
                "--json",
                "--policy",
                "smol",
                "--prm",
                "smol",
                "--prm-profile",
                "judge",
                "--embedder",
                embedder,
                "--method",
                "ets",
                "--width",
                "4",
                "--max-depth",
                "2",
                "--max-step-tokens",
                "24",
                "What is 12 + 30?",
            ],
        )
    };
    let out = solve("emb");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    let emb = remote_model(&daemon, "emb");
    assert_eq!(emb.endpoints.len(), 1);
    // Each ETS selection embeds its frontier in one request (the load-time check is not
    // counted): depth 1's here.
    assert!(
        emb.endpoints[0].requests >= 1 && emb.endpoints[0].errors == 0,
        "{:?}",
        emb.endpoints
    );
    // A server started without --embeddings: the job fails naming the endpoint and the fix.
    let out = solve("smol");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&lm.url()) && text.contains("/v1/embeddings"),
        "{text}"
    );
}

#[test]
fn a_killed_server_fails_over_shows_down_and_is_probed_back_up() {
    let mut a = LlamaServer::start(free_port());
    let b = LlamaServer::start(free_port());
    let remote = format!("smol={},{}", a.url(), b.url());
    let daemon = Daemon::start("remote-failover", &["--remote", &remote]);
    let mut conn = daemon.connect();
    let solve = |seed| {
        let mut r = tiny_solve("What is 7 * 6?", Method::Rebase, 2, 16, seed);
        r.models.policy = Some("smol".into());
        r.models.prm = Some("smol".into());
        r
    };
    // Warm: load the model while both servers live.
    let job = conn.submit(solve(1));
    assert!(matches!(conn.finish(job).1, Response::Result { .. }));
    let jobs: Vec<_> = (2..10).map(|seed| conn.submit(solve(seed))).collect();
    a.kill();
    for job in jobs {
        let (_, end) = conn.finish(job);
        assert!(
            matches!(end, Response::Result { .. }),
            "job {job} did not finish after a server died: {end:?}\n{}",
            daemon.log()
        );
    }
    // Jobs that hashed to the dead server moved; enough of them mark it down.
    let mut seed = 100;
    while remote_model(&daemon, "smol").endpoints[0].up {
        let job = conn.submit(solve(seed));
        assert!(matches!(conn.finish(job).1, Response::Result { .. }));
        seed += 1;
        assert!(seed < 140, "the dead endpoint was never marked down");
    }
    let dead = &remote_model(&daemon, "smol").endpoints[0];
    assert!(dead.last_error.is_some(), "{dead:?}");
    // Back on the same port: probed up, and it gets requests again.
    let back = LlamaServer::start(a.port);
    let started = Instant::now();
    while !remote_model(&daemon, "smol").endpoints[0].up {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the restarted endpoint was not probed back up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = remote_model(&daemon, "smol").endpoints[0].requests;
    for seed in 200..216 {
        let job = conn.submit(solve(seed));
        assert!(matches!(conn.finish(job).1, Response::Result { .. }));
    }
    let after = remote_model(&daemon, "smol").endpoints[0].requests;
    assert!(after > before, "the restarted endpoint got no jobs");
    drop(back);
}

#[test]
fn cancelling_a_remote_job_stops_the_servers_work() {
    let server = LlamaServer::start(free_port());
    let daemon = Daemon::start(
        "remote-cancel",
        &["--remote", &format!("smol={}", server.url())],
    );
    let mut conn = daemon.connect();
    // Steps that never meet their delimiter: each request runs for thousands of tokens.
    let mut r = tiny_solve(
        "Count from one to one thousand in words.",
        Method::Rebase,
        4,
        4000,
        3,
    );
    r.config.max_total_tokens = 4000;
    r.config.step_delimiter = "\u{1}".into();
    r.models.policy = Some("smol".into());
    r.models.prm = Some("smol".into());
    let job = conn.submit(r);
    let started = Instant::now();
    while !crate::llama_server::busy(server.port) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server never started generating: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut other = daemon.connect();
    other.send(&Request::Cancel { job });
    assert!(matches!(conn.finish(job).1, Response::Cancelled { .. }));
    let cancelled = Instant::now();
    while crate::llama_server::busy(server.port) {
        assert!(
            cancelled.elapsed() < Duration::from_secs(10),
            "the server kept generating after the job was cancelled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same three trajectories scored under `profile` by a llama-server and by the native
/// engine on the same GGUF: `(remote, native)` per trajectory.
fn remote_and_native_scores(profile: &ets_engine::PrmProfile) -> Vec<(f64, f64)> {
    use ets_engine::{load_causal_lm, load_remote_model, EngineKind, LoadContext, ModelFiles};
    let server = LlamaServer::start(free_port());
    let remote = load_remote_model(&RemoteModelSpec {
        name: "smol".into(),
        endpoints: vec![server.url()],
        ..RemoteModelSpec::default()
    })
    .expect("loading the remote model");
    let files = ModelFiles::at(&smol_gguf()).unwrap();
    let hf_home = std::env::temp_dir();
    let native = load_causal_lm(
        EngineKind::Native,
        &files,
        &LoadContext {
            hf_home: &hf_home,
            prompt_cache_bytes: ets_engine::DEFAULT_PROMPT_CACHE_BYTES,
        },
    )
    .unwrap();
    let mut remote_prm = remote.reward(profile, 0).unwrap();
    let mut native_prm = native.reward(profile, 1 << 30).unwrap();
    let problem = "Natalia sold clips to 48 of her friends in April, and then she sold half as \
                   many clips in May. How many clips did Natalia sell altogether?";
    let trajectories: [&[&str]; 3] = [
        &["In May she sold 48 / 2 = 24 clips."],
        &[
            "In May she sold 48 / 2 = 24 clips.",
            "Altogether 48 + 24 = 72 clips.",
        ],
        &["In May she sold 48 * 2 = 96 clips."],
    ];
    let requests: Vec<ScoreRequest<'_>> = trajectories
        .iter()
        .map(|steps| ScoreRequest { problem, steps })
        .collect();
    let r = remote_prm.score(&requests).unwrap();
    let n = native_prm.score(&requests).unwrap();
    trajectories
        .iter()
        .zip(r.into_iter().zip(n))
        .map(|(steps, (r, n))| {
            let (r, n) = (r.expect("a remote score"), n.expect("a native score"));
            eprintln!(
                "{}: {steps:?}: remote {r:.4}, native {n:.4}, gap {:.4}",
                profile.name,
                (r - n).abs()
            );
            (r, n)
        })
        .collect()
}

#[test]
/// Measured here (SmolLM2-135M Q8_0, after the native tokenizer was made to split text as
/// Hugging Face and llama.cpp do, so both score the same token ids): gaps 0.018, 0.009 and
/// 0.04-0.07. The server's own verdict on one input moves by 0.03 with its cache state (0.3715
/// then 0.4030 for the first trajectory in two runs, one slot each): a prompt partly reused from
/// its prefix cache is computed in other chunks, with other rounding (Q8_0 activations, f16
/// K/V). 1e-2 agreement is therefore out of reach with the cache on, and the cache is what the
/// remote engine is for; 0.1 still catches a wrong label, template or prompt.
fn the_judge_score_from_llama_server_is_close_to_the_native_engines() {
    let profile = ets_engine::PrmProfile::named_or_file("judge").unwrap();
    for (r, n) in remote_and_native_scores(&profile) {
        assert!((r - n).abs() < 0.1, "remote {r:.4} vs native {n:.4}");
    }
}

#[test]
/// A step-tag PRM (the Math-Shepherd layout: the verdict is the next token after the newest
/// step's tag) served by llama-server: SmolLM2 is no trained PRM, so this checks the layout,
/// the tag check and the label reading against the native engine, with the judge's tolerance.
/// The labels are words likely after a line break, so both are among the server's top-100
/// next tokens (with `+`/`-` neither was, and the remote verdict is then only a bound: 0.05 and
/// 0.24 against native 0.005). Measured gaps: 0.026, 0.001, 0.035.
fn a_step_tag_profile_scores_on_llama_server_as_on_the_native_engine() {
    let dir = crate::support::temp_dir("step-tag-profile");
    let path = dir.join("tagged.toml");
    std::fs::write(
        &path,
        "name = \"tagged\"\nformat = \"step-tag\"\ngood = \"The\"\nbad = \"In\"\n\
         step_tag = \"\\n\"\nproblem_template = \"{problem} \"\nstep_template = \"{step}\"\n\
         step_joiner = \"\"\n",
    )
    .unwrap();
    let profile = ets_engine::PrmProfile::from_file(&path).unwrap();
    for (r, n) in remote_and_native_scores(&profile) {
        assert!((r - n).abs() < 0.1, "remote {r:.4} vs native {n:.4}");
    }
}

#[test]
fn a_server_that_does_not_speak_the_protocol_is_refused_naming_the_endpoint() {
    // Something that answers HTTP with garbage on every path.
    let port = free_port();
    let script = format!(
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20def log_message(self,*a): pass\n\
         \x20def answer(self):\n\
         \x20 self.send_response(200); self.end_headers(); self.wfile.write(b'<html>nope')\n\
         \x20do_GET=answer\n\
         \x20do_POST=answer\n\
         http.server.HTTPServer(('127.0.0.1',{port}),H).serve_forever()\n"
    );
    let mut fake = Command::new("python3")
        .arg("-c")
        .arg(script)
        .spawn()
        .expect("python3");
    let started = Instant::now();
    while crate::llama_server::http_get_status(port, "/").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fake server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon = Daemon::start("remote-garbage", &[]);
    let mut conn = daemon.connect();
    let url = format!("http://127.0.0.1:{port}");
    let added = conn.request(&Request::AddRemoteModel(RemoteModelSpec {
        name: "junk".into(),
        endpoints: vec![url.clone()],
        ..RemoteModelSpec::default()
    }));
    assert!(matches!(added, Response::Done), "{added:?}");
    let mut r = tiny_solve("What is 1 + 1?", Method::Rebase, 2, 8, 1);
    r.models.policy = Some("junk".into());
    let job = conn.submit(r);
    let (_, end) = conn.finish(job);
    match end {
        Response::Failed { message, .. } => {
            assert!(message.contains(&url), "{message}");
        }
        other => panic!("a garbage server gave {other:?}"),
    }
    let _ = fake.kill();
    let _ = fake.wait();
}
