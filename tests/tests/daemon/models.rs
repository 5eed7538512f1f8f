//! `ets models …` against the real daemon: `list` without a daemon (the store read from disk)
//! and with one (what is loaded marked), and the model registry over the socket: `load`,
//! `unload`, `pin`, `pull`, keep-alive reaping of an idle model, a pinned model surviving the reaper,
//! and `--engine-for`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ets_core::protocol::ModelInfo;
use serde_json::{json, Value};

use crate::schema;
use crate::support::{binaries, models_dir, temp_dir, Daemon};

/// Runs `ets --socket SOCKET ARGS` with `ETS_MODELS_DIR` set to `store`.
fn ets_in(store: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(&binaries().1)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("ETS_MODELS_DIR", store)
        .env("ETSD", "/nonexistent/etsd")
        .output()
        .expect("running ets")
}

fn ets(socket: &Path, args: &[&str]) -> Output {
    ets_in(&models_dir(), socket, args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks `out` succeeded; returns its stdout.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A model folder as a pull leaves it: `files` and a manifest listing them with `sizes`.
fn model_folder(store: &Path, alias: &str, files: &[(&str, usize)], sizes: &[u64]) {
    let dir = store.join(alias);
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = format!(
        "alias = \"{alias}\"\nsource = \"file:///srv/models/{alias}.gguf\"\nsha256 = \"00\"\n\
         size = 3\nformat = \"gguf\"\nfile = \"{}\"\n",
        files[0].0
    );
    for ((name, len), size) in files.iter().zip(sizes) {
        std::fs::write(dir.join(name), vec![7u8; *len]).unwrap();
        manifest.push_str(&format!("\n[[files]]\npath = \"{name}\"\nsize = {size}\n"));
    }
    std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
}

/// A store holding: the real SmolLM2 folder (linked), a complete custom model, a folder whose
/// file is shorter than its manifest says, a folder without a manifest, and a pull in progress.
/// MiniLM (built in) is missing.
fn fake_store() -> PathBuf {
    let store = temp_dir("store");
    std::os::unix::fs::symlink(
        models_dir().join("smollm2-135m"),
        store.join("smollm2-135m"),
    )
    .unwrap();
    model_folder(
        &store,
        "my-model",
        &[("my.gguf", 1000), ("extra.bin", 24)],
        &[1000, 24],
    );
    model_folder(&store, "broken", &[("b.gguf", 5)], &[10]);
    std::fs::create_dir_all(store.join("notes")).unwrap();
    model_folder(&store, ".tmp-pull-1", &[("t.gguf", 3)], &[3]);
    store
}

/// The bytes of a pulled model as its manifest lists them (read by the engine's own store).
fn manifest_bytes(alias: &str) -> u64 {
    let store = ets_engine::store::Store::at(models_dir());
    let manifest = store.manifest(alias).unwrap().expect("pulled");
    manifest.files.iter().map(|f| f.size).sum()
}

#[test]
fn the_sdk_knows_the_daemons_built_in_models() {
    let daemon: Vec<(&str, &str)> = ets_engine::store::BUILTIN_ALIASES
        .iter()
        .map(|a| (a.name, a.description))
        .collect();
    assert_eq!(ets_client::store::BUILTIN_MODELS.to_vec(), daemon);
}

#[test]
fn models_list_reads_the_store_without_a_daemon_and_marks_what_a_daemon_loaded() {
    let store = fake_store();
    let nobody = store.join("nobody.sock");
    let path = |alias: &str| store.join(alias).display().to_string();
    let expected = |smollm_loaded: bool| {
        json!([
            {"alias": "smollm2-135m",
             "description": "SmolLM2-135M-Instruct GGUF (Apache-2.0): policy and judge PRM",
             "pulled": true, "bytes": manifest_bytes("smollm2-135m"),
             "path": path("smollm2-135m"), "loaded": smollm_loaded},
            {"alias": "minilm-l6",
             "description": "all-MiniLM-L6-v2 safetensors (Apache-2.0): step embedder",
             "pulled": false, "bytes": 0, "path": path("minilm-l6"), "loaded": false},
            {"alias": "my-model", "description": "file:///srv/models/my-model.gguf",
             "pulled": true, "bytes": 1024, "path": path("my-model"), "loaded": false},
        ])
    };

    // No daemon: the store from disk, exit 0, nothing loaded.
    let out = ets_in(&store, &nobody, &["--json", "models", "list"]);
    ok(out.clone());
    let listed = schema::one("models", &out.stdout);
    assert_eq!(listed["models"], expected(false), "{listed:#}");
    let out = ets_in(&store, &nobody, &["models", "list"]);
    let table = ok(out.clone());
    let row = |alias: &str| {
        table
            .lines()
            .find(|l| l.starts_with(alias))
            .unwrap_or_else(|| panic!("no row for {alias}:\n{table}"))
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("smollm2-135m"), ["smollm2-135m", "yes", "no"]);
    assert_eq!(row("minilm-l6"), ["minilm-l6", "no", "no"]);
    assert_eq!(row("my-model"), ["my-model", "yes", "no"]);
    assert!(!table.contains("broken") && !table.contains("notes") && !table.contains(".tmp"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nobody.sock") && stderr.contains("nothing is loaded"),
        "{stderr}"
    );
    // Commands that need the daemon still say it is unreachable.
    let out = ets_in(&store, &nobody, &["models", "unload", "my-model"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // A daemon on the same store lists the same models, and marks the one it loaded.
    let daemon = Daemon::start_with_store("list-store", &store, &[]);
    let out = ets_in(&store, &daemon.socket, &["--json", "models", "list"]);
    ok(out.clone());
    assert_eq!(
        schema::one("models", &out.stdout)["models"],
        expected(false)
    );
    ok(ets_in(
        &store,
        &daemon.socket,
        &["models", "load", "smollm2-135m"],
    ));
    let out = ets_in(&store, &daemon.socket, &["--json", "models", "list"]);
    ok(out.clone());
    assert_eq!(schema::one("models", &out.stdout)["models"], expected(true));
    let _ = std::fs::remove_dir_all(&store);
}

/// The daemon's loaded models, by name.
fn loaded(daemon: &Daemon) -> Vec<ModelInfo> {
    daemon.connect().status().models
}

fn find<'a>(models: &'a [ModelInfo], name: &str) -> Option<&'a ModelInfo> {
    models.iter().find(|m| m.model == name)
}

/// Polls the daemon's models until `done` holds (panics after `limit`); returns them.
fn wait_models(
    daemon: &Daemon,
    limit: Duration,
    what: &str,
    done: impl Fn(&[ModelInfo]) -> bool,
) -> Vec<ModelInfo> {
    let deadline = Instant::now() + limit;
    loop {
        let models = loaded(daemon);
        if done(&models) {
            return models;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}: {models:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `ets --json models list`: alias → loaded.
fn list_loaded(socket: &Path) -> Vec<(String, bool)> {
    let out = ets(socket, &["--json", "models", "list"]);
    let doc: Value = schema::one("models", &ok(out).into_bytes());
    doc["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["alias"].as_str().unwrap().to_owned(),
                m["loaded"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn models_load_pin_unload_and_keep_alive_over_the_socket() {
    let daemon = Daemon::start("registry", &[]);
    let socket = &daemon.socket;
    let said = ok(ets(
        socket,
        &["models", "load", "minilm-l6", "--role", "embedder"],
    ));
    assert_eq!(said.trim(), "loaded minilm-l6 as embedder");
    ok(ets(socket, &["models", "load", "smollm2-135m"]));
    let out = ets(socket, &["--json", "models", "pin", "smollm2-135m"]);
    assert_eq!(
        schema::one("done", &out.stdout)["message"],
        "pinned smollm2-135m"
    );
    let listed = list_loaded(socket);
    assert!(
        listed.contains(&("smollm2-135m".into(), true))
            && listed.contains(&("minilm-l6".into(), true)),
        "{listed:?}"
    );
    let models = loaded(&daemon);
    let smol = find(&models, "smollm2-135m").expect("loaded");
    let mini = find(&models, "minilm-l6").expect("loaded");
    assert!(smol.pinned && !mini.pinned, "{models:?}");
    assert_eq!(
        (smol.keep_alive_secs, mini.keep_alive_secs),
        (1800, 1800),
        "the daemon's default keep-alive"
    );

    // Both idle with a 2 s keep-alive (loading a loaded model sets its keep-alive).
    for (model, role) in [("smollm2-135m", "policy"), ("minilm-l6", "embedder")] {
        ok(ets(
            socket,
            &["models", "load", model, "--role", role, "--keep-alive", "2"],
        ));
    }
    let models = loaded(&daemon);
    assert_eq!(
        find(&models, "smollm2-135m").map(|m| (m.keep_alive_secs, m.pinned)),
        Some((2, true))
    );
    assert!(
        find(&models, "minilm-l6").is_none_or(|m| m.keep_alive_secs == 2),
        "{models:?}"
    );

    // The reaper (every 5 s) unloads the idle embedder past its 2 s keep-alive...
    let models = wait_models(&daemon, Duration::from_secs(30), "minilm reaped", |m| {
        find(m, "minilm-l6").is_none()
    });
    assert!(find(&models, "smollm2-135m").is_some(), "{models:?}");
    // ...and leaves the pinned policy, idle past its keep-alive and a reaper tick.
    let models = wait_models(&daemon, Duration::from_secs(30), "smollm idle 8 s", |m| {
        find(m, "smollm2-135m").is_none_or(|s| s.idle_secs >= 8)
    });
    let smol = find(&models, "smollm2-135m").expect("the pinned model survives the reaper");
    assert!(smol.pinned, "{smol:?}");
    let listed = list_loaded(socket);
    assert!(
        listed.contains(&("smollm2-135m".into(), true))
            && listed.contains(&("minilm-l6".into(), false)),
        "{listed:?}"
    );

    // Unpinned, the idle policy goes at the next tick.
    ok(ets(socket, &["models", "pin", "smollm2-135m", "--unpin"]));
    wait_models(&daemon, Duration::from_secs(15), "smollm reaped", |m| {
        find(m, "smollm2-135m").is_none()
    });

    // Unload: at once, whatever the keep-alive.
    ok(ets(
        socket,
        &["models", "load", "minilm-l6", "--role", "embedder"],
    ));
    assert!(find(&loaded(&daemon), "minilm-l6").is_some());
    let said = ok(ets(socket, &["models", "unload", "minilm-l6"]));
    assert_eq!(said.trim(), "unloaded minilm-l6");
    assert!(find(&loaded(&daemon), "minilm-l6").is_none());

    // Unloading or pinning what is not loaded: an error of kind `model`, exit 1.
    let out = ets(socket, &["--json", "models", "unload", "minilm-l6"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let error = schema::one("error", &out.stdout);
    assert_eq!(error["error"]["kind"], "model", "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not loaded"));
    let out = ets(socket, &["models", "pin", "minilm-l6"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("ets models load minilm-l6"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn engine_for_runs_the_named_model_on_its_engine() {
    let daemon = Daemon::start("engine-for", &["--engine-for", "smollm2-135m=mistralrs"]);
    ok(ets(&daemon.socket, &["models", "load", "smollm2-135m"]));
    // `auto` would pick the native engine for this llama-family GGUF (requests.rs checks it).
    let models = loaded(&daemon);
    let engines: Vec<&str> = models
        .iter()
        .filter(|m| m.model == "smollm2-135m")
        .map(|m| m.engine.as_str())
        .collect();
    assert_eq!(engines, ["mistralrs"], "{models:?}");
    // A load that names its engine overrides the flag.
    ok(ets(
        &daemon.socket,
        &["models", "load", "smollm2-135m", "--engine", "native"],
    ));
    let mut engines: Vec<String> = loaded(&daemon)
        .into_iter()
        .filter(|m| m.model == "smollm2-135m")
        .map(|m| m.engine)
        .collect();
    engines.sort();
    assert_eq!(engines, ["mistralrs", "native"]);
}

#[test]
fn models_pull_over_the_socket_reports_a_stored_model_and_names_an_unknown_one() {
    use ets_core::protocol::{ErrorKind, Request, Response};
    let daemon = crate::shared();
    let mut conn = daemon.connect();
    // The default model is in the tests' store (pulled before the daemon starts): a pull
    // finds it there.
    match conn.request(&Request::Pull {
        alias: "smollm2-135m".into(),
    }) {
        Response::Pulled {
            alias,
            path,
            bytes,
            already_present,
        } => {
            assert_eq!(alias, "smollm2-135m");
            assert!(already_present, "the test store already holds it");
            assert!(bytes > 10_000_000, "{bytes} bytes for a 135M model");
            assert!(Path::new(&path).starts_with(models_dir()), "{path}");
            assert!(Path::new(&path).exists(), "{path}");
        }
        other => panic!("pull of the default model: {other:?}"),
    }
    // An alias no catalogue knows is an error naming it; the connection stays usable.
    match conn.request(&Request::Pull {
        alias: "no-such-model-7".into(),
    }) {
        Response::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::Model);
            assert!(message.contains("no-such-model-7"), "{message}");
        }
        other => panic!("pull of an unknown alias: {other:?}"),
    }
    assert!(conn.status().clients >= 1);
    // The CLI over the same socket says where the model is, and --json says it as a document.
    let out = ok(ets(&daemon.socket, &["models", "pull", "smollm2-135m"]));
    assert!(
        out.contains("smollm2-135m is already in the store"),
        "{out}"
    );
    let doc: Value = serde_json::from_str(&ok(ets(
        &daemon.socket,
        &["--json", "models", "pull", "smollm2-135m"],
    )))
    .unwrap();
    assert_eq!(doc["type"], "pull", "{doc}");
    assert_eq!(doc["already_present"], true, "{doc}");
}
