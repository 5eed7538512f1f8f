//! Tests of the native engine on the real small model (one binary): exactness against the
//! mistral.rs engine and against prefill from scratch, K/V accounting, the policy and the PRM.
//!
//! They use the models of the store (`ETS_MODELS_DIR`, else the XDG data dir): run
//! `cargo xtask models` first. Tests that run a model take one lock, so timings and memory are
//! one test's own.

mod exactness;
#[path = "../common/gsm8k_search.rs"]
mod gsm8k_search;
mod policy;
mod prm;
mod search;
mod support;
#[path = "../common/test_store.rs"]
mod test_store;
