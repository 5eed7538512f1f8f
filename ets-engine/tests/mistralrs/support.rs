//! The shared engine and helpers.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ets_core::{ExpandRequest, Policy, SamplingConfig};
use ets_engine::mistralrs::{LlmEngine, LoadOptions, MistralPolicy};
use ets_engine::store::{MINILM_L6, SMOLLM2_135M};
use ets_engine::PolicyOptions;

pub use crate::test_store::store;

/// The small model, loaded once for the whole binary.
pub fn engine() -> Arc<LlmEngine> {
    static ENGINE: OnceLock<Arc<LlmEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let store = store();
            let files = store
                .model_files(SMOLLM2_135M)
                .unwrap_or_else(|e| panic!("{e}"));
            let engine = LlmEngine::load(&files, &LoadOptions::new(store.hf_home()))
                .unwrap_or_else(|e| panic!("loading {files:?}: {e}"));
            Arc::new(engine)
        })
        .clone()
}

/// The embedder's folder.
pub fn minilm_dir() -> std::path::PathBuf {
    store()
        .model_dir(MINILM_L6)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Serialises the tests that run models (so the RSS test measures itself alone).
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn policy() -> MistralPolicy {
    MistralPolicy::new(engine(), PolicyOptions::default())
}

pub const PROBLEM: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

/// The encoded root prompt of [`PROBLEM`].
pub fn root(policy: &mut MistralPolicy) -> Vec<u32> {
    policy.encode_prompt(PROBLEM).unwrap()
}

pub fn sampling(temperature: f64) -> SamplingConfig {
    SamplingConfig {
        temperature,
        ..SamplingConfig::default()
    }
}

pub fn request<'a>(
    context: &'a [u32],
    num_children: usize,
    max_tokens: usize,
    seed: u64,
    sampling: &'a SamplingConfig,
) -> ExpandRequest<'a> {
    ExpandRequest {
        context,
        num_children,
        max_tokens,
        seed,
        sampling,
        step_delimiter: "\n\n",
    }
}
