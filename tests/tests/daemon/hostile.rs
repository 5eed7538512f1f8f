//! Hostile inputs against the real daemon and client (issue 14's high-severity findings): a
//! crafted GGUF file, an unbounded width, a cancel that must land within one forward pass, and
//! a socket owned by another user.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ets_core::protocol::{EngineChoice, ErrorKind, JobEvent, ModelRole, Request, Response};
use ets_core::{Method, SearchConfig};

use crate::shared;
use crate::support::{binaries, long_solve, temp_dir};

/// GGUF v3 whose one metadata key claims 2^40 bytes: a reader that trusts it allocates 1 TiB.
fn crafted_gguf() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    b.resize(52, b'a');
    b
}

#[test]
fn a_crafted_gguf_is_an_error_naming_the_field_and_the_daemon_lives_on() {
    let dir = temp_dir("crafted-gguf");
    let path = dir.join("crafted.gguf");
    std::fs::write(&path, crafted_gguf()).unwrap();
    let daemon = shared();
    let mut conn = daemon.connect();
    for engine in [
        EngineChoice::Auto,
        EngineChoice::Native,
        EngineChoice::MistralRs,
    ] {
        let reply = conn.request(&Request::LoadModel {
            model: path.display().to_string(),
            role: ModelRole::Policy,
            keep_alive_secs: None,
            engine: Some(engine),
        });
        match reply {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Model, "{message}");
                assert!(message.contains("crafted.gguf"), "{message}");
                assert!(message.contains("metadata key #0"), "{message}");
            }
            other => panic!("loading a crafted GGUF on {engine:?} answered {other:?}"),
        }
    }
    // A solve naming the same file fails its job; the daemon still answers afterwards.
    let mut request = long_solve("What is 2 + 2?");
    request.models.policy = Some(path.display().to_string());
    let job = conn.submit(request);
    let (_, end) = conn.finish(job);
    assert!(
        matches!(&end, Response::Failed { message, .. } if message.contains("metadata key #0")),
        "{end:?}"
    );
    let status = conn.status();
    assert!(status.uptime_secs < 24 * 3600, "the daemon answers status");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_width_or_depth_over_the_limits_is_refused_naming_the_limit() {
    let mut conn = shared().connect();
    let cases = [
        (
            SearchConfig {
                width: 1_000_000_000,
                ..SearchConfig::default()
            },
            "--max-width",
        ),
        (
            SearchConfig {
                max_depth: usize::MAX,
                ..SearchConfig::default()
            },
            "--max-depth",
        ),
    ];
    for (config, flag) in cases {
        let mut request = long_solve("What is 2 + 2?");
        request.config = config;
        match conn.request(&Request::Solve(Box::new(request))) {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::BadRequest, "{message}");
                assert!(message.contains(flag), "{message}");
            }
            other => panic!("an over-limit solve answered {other:?}"),
        }
    }
}

#[test]
fn a_cancel_lands_within_a_forward_pass_of_a_long_batched_call() {
    let daemon = shared();
    let mut conn = daemon.connect();
    // One depth of 64 children that each may decode 4096 tokens: a single batched call that
    // ran for many minutes before the native policy asked the stop flag between passes.
    let mut request = long_solve("Write out the first thousand digits of pi, one per line.");
    request.config = SearchConfig {
        method: Method::Rebase,
        width: 64,
        max_depth: 1,
        max_step_tokens: 4096,
        max_total_tokens: 4096,
        step_delimiter: "\u{1}".into(),
        seed: 5,
        ..SearchConfig::default()
    };
    let job = conn.submit(request);
    loop {
        match conn.recv().expect("job messages") {
            Response::Event {
                job: j,
                event: JobEvent::Started,
            } if j == job => break,
            Response::Failed {
                job: j, message, ..
            } if j == job => panic!("{message}"),
            _ => {}
        }
    }
    // Let it get into the decode loop, then cancel.
    std::thread::sleep(Duration::from_secs(5));
    let asked = Instant::now();
    let mut other = daemon.connect();
    other.send(&Request::Cancel { job });
    let (_, end) = conn.finish(job);
    let took = asked.elapsed();
    assert!(matches!(end, Response::Cancelled { .. }), "{end:?}");
    // One decode pass of 64 rows takes well under a second here; the whole call, minutes.
    assert!(
        took < Duration::from_secs(20),
        "the cancel took {took:?} to land"
    );
}

/// True when this process may run a child as another uid (root in CI).
fn can_switch_uid() -> bool {
    ets_core::protocol::current_uid() == 0
}

#[test]
fn the_client_refuses_a_socket_served_by_another_user() {
    if !can_switch_uid() {
        eprintln!("skipped: needs root to listen as another uid (CI runs as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = temp_dir("foreign-socket");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.join("etsd.sock");
    let seen = dir.join("seen.bin");
    // A fake daemon run as `nobody`: records whatever a client sends, answers garbage.
    let script = format!(
        "import socket,os\n\
         s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
         s.bind({sock:?}); os.chmod({sock:?},0o777); s.listen(4)\n\
         open({ready:?},'w').close()\n\
         c,_=s.accept(); c.settimeout(5)\n\
         data=b''\n\
         try:\n  data=c.recv(65536)\nexcept Exception: pass\n\
         open({seen:?},'wb').write(data)\n\
         c.sendall(b'\\x05\\x00\\x00\\x00hello')\n",
        sock = socket.display().to_string(),
        ready = dir.join("ready").display().to_string(),
        seen = seen.display().to_string(),
    );
    let mut fake = Command::new("python3")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 as nobody");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("ready").exists() {
        assert!(Instant::now() < deadline, "the fake daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(&binaries().1)
        .arg("--socket")
        .arg(&socket)
        .args(["solve", "--no-autostart", "my secret problem"])
        .output()
        .expect("running ets");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("uid 65534"), "{stderr}");
    let _ = fake.wait();
    let sent = std::fs::read(&seen).unwrap_or_default();
    assert!(
        sent.is_empty(),
        "the client sent {} bytes to a foreign daemon",
        sent.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asks the shared daemon to load `dir` as the embedder; the error it answers.
fn embedder_load_error(dir: &std::path::Path) -> String {
    let mut conn = shared().connect();
    match conn.request(&Request::LoadModel {
        model: dir.display().to_string(),
        role: ModelRole::Embedder,
        keep_alive_secs: None,
        engine: None,
    }) {
        Response::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::Model, "{message}");
            message
        }
        other => panic!("loading {} answered {other:?}", dir.display()),
    }
}

#[test]
fn crafted_safetensors_and_oversized_tokenizer_json_are_errors_naming_the_file() {
    let minilm = crate::support::models_dir().join("minilm-l6");
    let dir = temp_dir("crafted-embedder");
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(minilm.join(name), dir.join(name)).unwrap();
    }
    // A safetensors header that claims 2^40 bytes of JSON.
    let mut weights = (1u64 << 40).to_le_bytes().to_vec();
    weights.extend_from_slice(b"{}");
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
    let message = embedder_load_error(&dir);
    assert!(message.contains("model.safetensors"), "{message}");
    // A tokenizer.json of 65 MiB (sparse: no disk used) is refused before it is read.
    let tokenizer = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("tokenizer.json"))
        .unwrap();
    tokenizer.set_len(65 << 20).unwrap();
    let message = embedder_load_error(&dir);
    assert!(
        message.contains("tokenizer.json") && message.contains("size"),
        "{message}"
    );
    assert!(shared().connect().status().pid > 0, "the daemon lives on");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
/// Before seats were taken at registration, the queue was entered only after a job's models
/// loaded and its prompt was tokenized, which finish in any order: the first job submitted could
/// be refused while later ones ran.
fn a_full_daemon_refuses_the_newest_submissions_in_submission_order() {
    let daemon = crate::support::Daemon::start(
        "queue-order",
        &["--max-concurrent", "1", "--max-queue", "1"],
    );
    let mut c = daemon.connect();
    // Four solves pipelined on one connection: one slot and one queue seat take two of them.
    for i in 0..4 {
        c.send(&Request::Solve(Box::new(crate::support::tiny_solve(
            &format!("What is {i} + 1?"),
            Method::Rebase,
            2,
            8,
            i,
        ))));
    }
    let (mut replies, mut accepted, mut job_messages) = (Vec::new(), Vec::new(), Vec::new());
    while replies.len() < 4 {
        match c.recv().expect("a reply") {
            Response::Accepted { job } => {
                accepted.push(job);
                replies.push("accepted".to_owned());
            }
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Resources, "{message}");
                assert!(
                    message.contains("queue is full") && message.contains("--max-queue"),
                    "{message}"
                );
                replies.push("refused".to_owned());
            }
            other => job_messages.push(other),
        }
    }
    assert_eq!(replies, ["accepted", "accepted", "refused", "refused"]);
    for job in accepted {
        let ended = job_messages
            .iter()
            .find(|m| matches!(m, Response::Result { job: j, .. } if *j == job))
            .cloned();
        let end = ended.unwrap_or_else(|| c.finish(job).1);
        assert!(matches!(end, Response::Result { .. }), "{end:?}");
    }
    // Seats come back when jobs end.
    let job = c.submit(crate::support::tiny_solve(
        "What is 9 + 1?",
        Method::Rebase,
        2,
        8,
        9,
    ));
    let (_, end) = c.finish(job);
    assert!(matches!(end, Response::Result { .. }), "{end:?}");
}
