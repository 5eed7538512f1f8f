//! The real `etsd` binary refuses a bad configuration at start-up, naming what was wrong, before
//! it binds its socket or loads a model. (This file is also why `cargo test --workspace` builds
//! `etsd` before the end-to-end tests in `tests/` start it.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etsd-startup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `etsd` with `args` on a socket in `dir`, with no user config file in reach.
fn etsd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etsd"))
        .arg("--socket")
        .arg(dir.join("etsd.sock"))
        .arg("--models-dir")
        .arg(dir.join("models"))
        .args(args)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env_remove("RUST_LOG")
        .output()
        .expect("running etsd")
}

/// Runs `etsd`, checks it refused to start without binding its socket, returns its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = etsd(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "etsd {args:?} started: {stderr}");
    assert!(
        !dir.join("etsd.sock").exists(),
        "etsd {args:?} bound its socket before refusing"
    );
    stderr
}

#[test]
fn an_unknown_config_key_is_refused_naming_the_key_and_the_file() {
    let dir = temp_dir("unknown-key");
    let config = dir.join("etsd.toml");
    std::fs::write(
        &config,
        "[[remote]]\nname = \"qwen\"\nendpoints = [\"http://127.0.0.1:1\"]\nendpoint_timeout = 3\n",
    )
    .unwrap();
    let stderr = refused(&dir, &["--config", config.to_str().unwrap()]);
    assert!(stderr.contains("endpoint_timeout"), "{stderr}");
    assert!(stderr.contains("etsd.toml"), "{stderr}");
}

#[test]
fn a_config_endpoint_that_is_not_http_is_refused_naming_it() {
    let dir = temp_dir("bad-endpoint");
    let config = dir.join("etsd.toml");
    std::fs::write(
        &config,
        "[[remote]]\nname = \"qwen\"\nendpoints = [\"http://127.0.0.1:1\", \"ftp://gpu-7:8000\"]\n",
    )
    .unwrap();
    let stderr = refused(&dir, &["--config", config.to_str().unwrap()]);
    assert!(stderr.contains("ftp://gpu-7:8000"), "{stderr}");
    assert!(stderr.contains("qwen"), "{stderr}");
}

#[test]
fn a_remote_flag_without_endpoints_is_refused_naming_the_flag() {
    let dir = temp_dir("bad-flag");
    let stderr = refused(&dir, &["--remote", "qwen"]);
    assert!(stderr.contains("--remote"), "{stderr}");
    assert!(stderr.contains("NAME=URL"), "{stderr}");
    let stderr = refused(&dir, &["--remote", "qwen="]);
    assert!(stderr.contains("has no endpoints"), "{stderr}");
}

#[test]
fn the_default_config_file_is_read_from_xdg_config_home() {
    let dir = temp_dir("xdg");
    let ets = dir.join("config").join("ets");
    std::fs::create_dir_all(&ets).unwrap();
    std::fs::write(
        ets.join("etsd.toml"),
        "[[remote]]\nname = \"a b\"\nendpoints = [\"http://127.0.0.1:1\"]\n",
    )
    .unwrap();
    let stderr = refused(&dir, &[]);
    assert!(stderr.contains("`a b`"), "{stderr}");
    assert!(stderr.contains("etsd.toml"), "{stderr}");
}
