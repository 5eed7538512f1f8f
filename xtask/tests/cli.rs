//! The `xtask` binary as `cargo xtask` runs it: an unknown task is refused with the list of
//! tasks (this test also makes `cargo test --workspace` build the binary, which the e2e tests
//! run to build `llama-server` without a nested cargo).

use std::process::Command;

#[test]
fn an_unknown_task_is_refused_with_the_list_of_tasks() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("no-such-task")
        .output()
        .expect("running xtask");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-task"), "{stderr}");
    for task in ["tidy", "models", "llama-cpp"] {
        assert!(stderr.contains(task), "{task} missing from: {stderr}");
    }
}
