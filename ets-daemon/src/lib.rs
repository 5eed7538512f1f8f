//! The ETS daemon, `etsd`: the server only.
//!
//! **Owns**: the socket (one daemon per socket, owner-only access), connections and their
//! frames, the model registry (models loaded once through ets-engine's boundary, shared by
//! jobs, kept warm, pinned, unloaded), the job table, FIFO queue and KV budget, running each job
//! on its own thread, status and metrics ([`server`]).
//!
//! **Must not**: name an engine type or parse a model file (that is `ets-engine`, reached only
//! through `ets_engine::{load_causal_lm, load_embedder, CausalLm}`); let a bad request or frame
//! close more than its own connection; let a client touch another client's job.
//!
//! **Entry points**: [`server::run`] with [`server::DaemonArgs`] (the `etsd` binary and
//! `ets serve`).

pub mod server;
