//! The model store the model tests read from. Included by the `backend` and `native` test
//! binaries (`#[path]`).

use std::sync::OnceLock;

use ets_engine::store::{Store, MINILM_L6, SMOLLM2_135M};

/// The store, with the test models pulled into it on first use (a no-op when they are
/// there), so `cargo test` needs no set-up step.
pub fn store() -> Store {
    static PULLED: OnceLock<()> = OnceLock::new();
    let store = Store::open_default().unwrap_or_else(|e| panic!("{e}"));
    PULLED.get_or_init(|| {
        store
            .ensure_pulled(&[SMOLLM2_135M, MINILM_L6])
            .unwrap_or_else(|e| panic!("pulling the test models: {e}"))
    });
    store
}
