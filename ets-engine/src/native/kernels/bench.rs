//! Timings (ignored tests; meaningful only in an optimised build):
//! - `bench_kernel`: candle's `QMatMul` vs the packed GEMM on SmolLM2-135M's shapes.
//! - `bench_engine`: `cargo xtask bench-engine --native-only`'s prefill and decode
//!   measurements (same prompt, same requests) per `ETS_Q8_KERNEL` choice.

use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Tensor};
use ets_core::{ExpandRequest, Policy, SamplingConfig};

use super::super::q8_gemm::Kernel;
use super::super::{Choice, Projection};
use super::{quantized, smollm2, Rng};
use crate::native::{NativeEngine, NativePolicy, NativePolicyOptions, WeightMode};

fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore = "timing; run in release"]
fn bench_kernel() {
    let mut rng = Rng(1);
    // (name, n, k): SmolLM2-135M's stacked Q/K/V, output, gate/up, down.
    let shapes = [
        ("qkv", 960, 576),
        ("wo", 576, 576),
        ("gate_up", 3072, 576),
        ("down", 576, 1536),
    ];
    eprintln!("| matrix | rows | candle GMAC/s | packed GMAC/s | speed-up |");
    eprintln!("|---|--:|--:|--:|--:|");
    for (name, n, k) in shapes {
        let q = Arc::new(quantized(&rng.values(n * k), n, k));
        let candle = QMatMul::QTensor(q.clone());
        let ours = Projection::new(vec![candle.clone()], Choice::Packed(Kernel::detect())).unwrap();
        for m in [1usize, 4, 16, 64, 256] {
            let x = Tensor::from_vec(rng.values(m * k), (m, k), &Device::Cpu).unwrap();
            let reps = (2_000_000_000 / (m * n * k)).clamp(3, 200);
            let tc = best_of(reps, || {
                candle.forward(&x).unwrap();
            });
            let tp = best_of(reps, || {
                ours.forward_one(&x).unwrap();
            });
            let gmac = (m * n * k) as f64 / 1e9;
            eprintln!(
                "| {name} {n}×{k} | {m} | {:.1} | {:.1} | {:.2}× |",
                gmac / tc,
                gmac / tp,
                tc / tp
            );
        }
    }
}

/// A policy that caches nothing across calls (every call prefills) and the benchmark's prompt
/// (a GSM8K problem six times, about 290 tokens).
fn bench_policy(engine: Arc<NativeEngine>) -> (NativePolicy, Vec<u32>) {
    engine.set_prompt_cache_bytes(0);
    let options = NativePolicyOptions {
        max_cached_bytes: 0,
        ..NativePolicyOptions::default()
    };
    let policy = NativePolicy::new(engine, options);
    let problem =
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many \
                   clips in May. How many clips did Natalia sell altogether in April and May? "
            .repeat(6);
    let context = policy.encode_problem(&problem).unwrap();
    (policy, context)
}

/// Prefill, decode (1 sequence) and decode (16 sequences) tok/s, as bench-engine measures them.
fn speeds(engine: Arc<NativeEngine>) -> (f64, f64, f64) {
    let (mut policy, context) = bench_policy(engine);
    let greedy = SamplingConfig {
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let sample = SamplingConfig::default();
    let mut timed = |children: usize, max_tokens: usize, sampling: &SamplingConfig| {
        let req = ExpandRequest {
            context: &context,
            num_children: children,
            max_tokens,
            seed: 5,
            sampling,
            step_delimiter: "\u{1}\u{2}\u{3}",
        };
        let t = Instant::now();
        let out = policy.expand(&[req]).unwrap();
        let tokens: usize = out[0].iter().map(|c| c.token_ids.len()).sum();
        (t.elapsed().as_secs_f64(), tokens)
    };
    timed(1, 1, &greedy);
    let prefill = (0..3)
        .map(|_| timed(1, 1, &greedy).0)
        .fold(f64::INFINITY, f64::min);
    let (t1, n1) = timed(1, 64, &greedy);
    let prefill_16 = timed(16, 1, &sample).0;
    let (t16, n16) = timed(16, 64, &sample);
    (
        context.len() as f64 / prefill,
        (n1 - 1) as f64 / (t1 - prefill),
        (n16 - 16) as f64 / (t16 - prefill_16),
    )
}

#[test]
#[ignore = "timing; run in release"]
fn bench_engine() {
    let path = smollm2();
    let choices = std::env::var("ETS_BENCH_KERNELS").unwrap_or_else(|_| "candle,avx2".into());
    eprintln!("| kernel | prefill tok/s | decode tok/s (1 seq) | decode tok/s (16 seqs) |");
    eprintln!("|---|--:|--:|--:|");
    for choice in choices.split(',') {
        std::env::set_var("ETS_Q8_KERNEL", choice);
        let engine = Arc::new(NativeEngine::load(&path, WeightMode::Quantized).unwrap());
        let (p, d1, d16) = speeds(engine);
        eprintln!("| {choice} | {p:.0} | {d1:.1} | {d16:.1} |");
    }
    std::env::remove_var("ETS_Q8_KERNEL");
}

/// One measurement repeated, for a profiler: `ETS_BENCH_SHAPE` = `prefill` (default),
/// `decode1` or `decode16` (64 tokens from 1 or 16 sequences after the prompt), run
/// `ETS_BENCH_REPS` times (default 20); prints the best rate.
#[test]
#[ignore = "timing; run in release"]
fn bench_one_shape() {
    let engine = Arc::new(NativeEngine::load(&smollm2(), WeightMode::Quantized).unwrap());
    let (mut policy, context) = bench_policy(engine);
    let shape = std::env::var("ETS_BENCH_SHAPE").unwrap_or_else(|_| "prefill".into());
    let (children, max_tokens) = match shape.as_str() {
        "decode1" => (1, 64),
        "decode16" => (16, 64),
        _ => (1, 1),
    };
    let sampling = SamplingConfig {
        temperature: if children == 1 { 0.0 } else { 1.0 },
        ..SamplingConfig::default()
    };
    let reps: usize = std::env::var("ETS_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let mut best = 0f64;
    for _ in 0..reps {
        let req = ExpandRequest {
            context: &context,
            num_children: children,
            max_tokens,
            seed: 5,
            sampling: &sampling,
            step_delimiter: "\u{1}\u{2}\u{3}",
        };
        let t = Instant::now();
        let out = policy.expand(&[req]).unwrap();
        let tokens: usize = out[0].iter().map(|c| c.token_ids.len()).sum();
        let processed = if max_tokens == 1 {
            context.len()
        } else {
            tokens
        };
        best = best.max(processed as f64 / t.elapsed().as_secs_f64());
    }
    eprintln!(
        "{shape}: best {best:.0} tok/s (prompt {} tokens)",
        context.len()
    );
}
