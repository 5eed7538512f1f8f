//! Model tests of the mistral.rs backends, the embedder and a real ETS search (one binary).
//!
//! They use the models of the store (`ETS_MODELS_DIR`, else the XDG data dir): run
//! `cargo xtask models` first. A missing model fails the test with that instruction. Tests that
//! run the language model take one shared engine under a lock, so they never interleave in a
//! batch (the RSS test measures one process).

mod embedder;
#[path = "../common/gsm8k_search.rs"]
mod gsm8k_search;
mod memory;
mod policy;
mod prm;
mod search;
mod support;
#[path = "../common/test_store.rs"]
mod test_store;
