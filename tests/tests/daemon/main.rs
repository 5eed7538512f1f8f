//! End-to-end tests of the real `etsd` binary over its real socket, with the real small model
//! (SmolLM2-135M as policy and judge PRM, MiniLM as embedder) from the test model store.
//!
//! Most tests share one daemon (started on first use, stopped when the test process ends); tests that
//! count totals, stop the daemon or need other flags start their own.

mod cli;
mod daemon_flags;
mod eval;
mod fault_proxy;
mod hostile;
mod lifecycle;
mod llama_server;
mod models;
mod partial;
mod remote;
mod remote_faults;
mod requests;
mod robustness;
mod schema;
mod soak;
mod support;
mod tokenizer_reference;

use std::sync::OnceLock;

use support::Daemon;

/// The daemon shared by tests that only need a working one.
pub fn shared() -> &'static Daemon {
    static SHARED: OnceLock<Daemon> = OnceLock::new();
    SHARED.get_or_init(|| Daemon::start_for_process("shared", &["--max-concurrent", "2"]))
}
