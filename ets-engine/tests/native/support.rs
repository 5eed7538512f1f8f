//! The shared engines and helpers.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ets_engine::mistralrs::{LlmEngine, LoadOptions};
use ets_engine::native::{NativeEngine, WeightMode};
use ets_engine::store::SMOLLM2_135M;
use ets_engine::ModelFiles;

pub const PROBLEM: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

pub use crate::test_store::store;

fn files() -> ModelFiles {
    store()
        .model_files(SMOLLM2_135M)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn load_native(mode: WeightMode) -> Arc<NativeEngine> {
    let ModelFiles::Gguf { dir, file } = files() else {
        panic!("the small model is a GGUF file");
    };
    let path = dir.join(file);
    let engine = NativeEngine::load(&path, mode);
    Arc::new(engine.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The small model on the native engine with quantized matmuls (the fast default), loaded once.
pub fn native() -> Arc<NativeEngine> {
    static ENGINE: OnceLock<Arc<NativeEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| load_native(WeightMode::Quantized))
        .clone()
}

/// The small model on the native engine with f32 matmuls, loaded once.
pub fn native_f32() -> Arc<NativeEngine> {
    static ENGINE: OnceLock<Arc<NativeEngine>> = OnceLock::new();
    ENGINE.get_or_init(|| load_native(WeightMode::F32)).clone()
}

/// The same file on mistral.rs with f32 matmuls (`CANDLE_DEQUANTIZE_ALL`, read when its
/// weights load), loaded once. Comparisons run in f32: with 8-bit activations, 1e-8
/// differences in any earlier sum flip roundings and move logits by tenths, in either engine.
pub fn mistral() -> Arc<LlmEngine> {
    static ENGINE: OnceLock<Arc<LlmEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
            let files = files();
            let engine = LlmEngine::load(&files, &LoadOptions::new(store().hf_home()))
                .unwrap_or_else(|e| panic!("loading {files:?}: {e}"));
            Arc::new(engine)
        })
        .clone()
}

/// Serialises the tests that run models.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Natural-log softmax of a logits row.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z = row
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter().map(|&x| x as f64 - z).collect()
}

/// Largest absolute difference between two rows.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rows of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

pub use crate::gsm8k_search::gsm8k_questions;
