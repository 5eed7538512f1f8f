//! A bounded run of `cargo xtask soak` (the long runs are in the README): mixed solves, cancels,
//! disconnects, malformed frames and model loads against one real daemon, which must come back
//! to its post-warm-up memory with no live KV, no leaked kvtree node and no open descriptor.

use std::process::Command;

use crate::support::binaries;

#[test]
fn a_short_soak_ends_with_the_daemon_back_at_rest() {
    let xtask = binaries().0.with_file_name("xtask");
    let out = Command::new(&xtask)
        .args(["soak", "--seconds", "20", "--every", "5", "--clients", "3"])
        .arg("--etsd")
        .arg(&binaries().0)
        .output()
        .expect("running xtask soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("| quiet |") && stdout.contains("soak: ok"),
        "{stdout}"
    );
    // The clients did something: jobs ended while it ran.
    let quiet = stdout.lines().find(|l| l.starts_with("| quiet |")).unwrap();
    let ended = quiet.rsplit('|').nth(1).unwrap();
    let done: u64 = ended.split('/').next().unwrap().trim().parse().unwrap();
    assert!(done > 0, "{stdout}");
}
