//! `cargo xtask bench-engine`: engine speed of the small model on this machine, on its Q4_1
//! file and its Q8_0 re-quantization: decode tok/s with 1 and 16 sequences, prefill tok/s, and
//! PRM (judge) time per scored step, on mistral.rs and (Q8_0 only) on the native engine.
//! Prints a markdown table (kept in ets-daemon's README).
//!
//! Decode rates subtract the prefill of the same request, measured separately, so they count
//! generated tokens only. Run it in release for numbers that mean something
//! (`cargo xtask bench-engine` builds dependencies optimised either way).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use ets_core::{ExpandRequest, Policy, SamplingConfig, ScoreRequest};
use ets_engine::mistralrs::{LlmEngine, LoadOptions, MistralPolicy, MistralReward};
use ets_engine::native::{
    NativeEngine, NativePolicy, NativePolicyOptions, NativeReward, WeightMode,
};
use ets_engine::store::{builtin_alias, PullOptions, Store, SMOLLM2_135M};
use ets_engine::ModelFiles;
use ets_engine::{PolicyOptions, PrmProfile};

/// Tokens generated per decode measurement.
const DECODE_TOKENS: usize = 64;
/// A delimiter the model never writes, so steps run to their cap.
const NEVER: &str = "\u{1}\u{2}\u{3}";

struct Row {
    file: String,
    prefill: f64,
    decode_1: f64,
    decode_16: f64,
    score_ms: f64,
}

impl Row {
    fn new(file: &str, speeds: Speeds, score_ms: f64) -> Self {
        Self {
            file: file.to_owned(),
            prefill: speeds.prefill,
            decode_1: speeds.decode_1,
            decode_16: speeds.decode_16,
            score_ms,
        }
    }
}

/// Runs the benchmark; `--native-only` skips the mistral.rs rows.
pub fn run(args: &[String]) -> Result<()> {
    let native_only = args.iter().any(|a| a == "--native-only");
    let store = Store::open_default()?;
    let q8 = builtin_alias(SMOLLM2_135M)?.spec();
    let mut q4 = q8.clone();
    q4.alias = format!("{SMOLLM2_135M}-q4_1");
    q4.requantize_by_default = false;
    let mut rows = Vec::new();
    let specs = if native_only { vec![] } else { vec![q4, q8] };
    for spec in specs {
        store
            .pull(&spec, &PullOptions::default())
            .with_context(|| format!("pulling {}", spec.alias))?;
        let files = store.model_files(&spec.alias)?;
        eprintln!("benchmarking {files:?}");
        let engine = Arc::new(LlmEngine::load(&files, &LoadOptions::new(store.hf_home()))?);
        rows.push(measure(engine, &spec.alias)?);
    }
    if let ModelFiles::Gguf { dir, file } = store.model_files(SMOLLM2_135M)? {
        let engine = Arc::new(NativeEngine::load(&dir.join(file), WeightMode::Quantized)?);
        // Every prefill measured is a prefill: no warm prompt from the call before.
        engine.set_prompt_cache_bytes(0);
        rows.push(measure_native(
            engine,
            &format!("{SMOLLM2_135M} (native engine)"),
        )?);
    }
    println!("| model file | prefill tok/s | decode tok/s (1 seq) | decode tok/s (16 seqs) | PRM ms/step |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.0} |",
            r.file, r.prefill, r.decode_1, r.decode_16, r.score_ms
        );
    }
    Ok(())
}

/// The natalia prompt repeated, as every row measures it.
fn long_problem() -> String {
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many \
     clips in May. How many clips did Natalia sell altogether in April and May? "
        .repeat(6)
}

/// Prefill tok/s, decode tok/s with 1 and with 16 sequences, measured on `policy` with the long
/// problem's prompt (`context`). Every call must prefill the prompt again (the native policy is
/// given a cache budget of 0 for that; mistral.rs' prefix cache is off).
struct Speeds {
    prefill: f64,
    decode_1: f64,
    decode_16: f64,
}

fn measure_speeds(policy: &mut dyn Policy, context: &[u32]) -> Result<Speeds> {
    let greedy = SamplingConfig {
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let sample = SamplingConfig::default();
    let mut timed = |children: usize, max_tokens: usize, sampling: &SamplingConfig| {
        timed_expand(policy, context, children, max_tokens, sampling)
    };
    timed(1, 1, &greedy)?; // warm-up
    let best = |xs: Vec<f64>| xs.into_iter().fold(f64::INFINITY, f64::min);
    let prefill_1 = best(
        (0..3)
            .map(|_| timed(1, 1, &greedy).map(|x| x.0))
            .collect::<Result<_>>()?,
    );
    let (t1, n1) = timed(1, DECODE_TOKENS, &greedy)?;
    let prefill_16 = timed(16, 1, &sample)?.0;
    let (t16, n16) = timed(16, DECODE_TOKENS, &sample)?;
    Ok(Speeds {
        prefill: context.len() as f64 / prefill_1,
        decode_1: n1.saturating_sub(1) as f64 / (t1 - prefill_1).max(1e-9),
        decode_16: n16.saturating_sub(16) as f64 / (t16 - prefill_16).max(1e-9),
    })
}

/// One expansion of `context` into `children` children of up to `max_tokens` tokens each, run
/// to the cap (the delimiter never appears): its seconds and the tokens generated.
pub(crate) fn timed_expand(
    policy: &mut dyn Policy,
    context: &[u32],
    children: usize,
    max_tokens: usize,
    sampling: &SamplingConfig,
) -> Result<(f64, usize)> {
    let req = ExpandRequest {
        context,
        num_children: children,
        max_tokens,
        seed: 5,
        sampling,
        step_delimiter: NEVER,
    };
    let t = Instant::now();
    let out = policy.expand(&[req]).map_err(|e| anyhow!("{e}"))?;
    let tokens = out[0].iter().map(|c| c.token_ids.len()).sum();
    Ok((t.elapsed().as_secs_f64(), tokens))
}

const PROBLEM: &str =
    "Natalia sold clips to 48 of her friends in April, and then she sold half as \
                       many clips in May. How many clips did Natalia sell altogether?";

/// The native engine: the same decode and prefill measurements (the prompt is dropped from
/// its cache before each prefill); the PRM row is the incremental cost of one new step (8
/// different second steps scored in one call after the first step was scored).
fn measure_native(engine: Arc<NativeEngine>, name: &str) -> Result<Row> {
    let options = NativePolicyOptions {
        // A cache budget of 0 evicts everything after each call: every call prefills.
        max_cached_bytes: 0,
        ..NativePolicyOptions::default()
    };
    let mut policy = NativePolicy::new(engine.clone(), options);
    let context = policy.encode_problem(&long_problem())?;
    let speeds = measure_speeds(&mut policy, &context)?;

    let mut prm = NativeReward::new(engine, &PrmProfile::builtin("judge")?, 1 << 30)?;
    let first = "Natalia sold 48 clips in April.\n\n";
    prm.score_steps(&[ScoreRequest {
        problem: PROBLEM,
        steps: &[first],
    }])?;
    let seconds: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "In May she sold half as many: 48 / 2 = {} clips.\n\n",
                20 + i
            )
        })
        .collect();
    let trajectories: Vec<[&str; 2]> = seconds.iter().map(|s| [first, s.as_str()]).collect();
    let reqs: Vec<ScoreRequest<'_>> = trajectories
        .iter()
        .map(|steps| ScoreRequest {
            problem: PROBLEM,
            steps,
        })
        .collect();
    let t = Instant::now();
    prm.score_steps(&reqs)?;
    let score_ms = t.elapsed().as_secs_f64() * 1000.0 / reqs.len() as f64;
    Ok(Row::new(name, speeds, score_ms))
}

fn measure(engine: Arc<LlmEngine>, name: &str) -> Result<Row> {
    let mut policy = MistralPolicy::new(engine.clone(), PolicyOptions::default());
    let context = policy
        .encode_prompt(&long_problem())
        .map_err(|e| anyhow!("{e}"))?;
    let speeds = measure_speeds(&mut policy, &context)?;

    let prm = MistralReward::new(engine, &PrmProfile::builtin("judge")?)?;
    let steps = [
        "Natalia sold 48 clips in April.\n\n",
        "In May she sold half as many: 48 / 2 = 24 clips.\n\n",
    ];
    let reqs: Vec<ScoreRequest<'_>> = (0..8)
        .map(|_| ScoreRequest {
            problem: PROBLEM,
            steps: &steps,
        })
        .collect();
    prm.score_steps(&reqs[..1])?; // warm-up
    let t = Instant::now();
    prm.score_steps(&reqs)?;
    let score_ms = t.elapsed().as_secs_f64() * 1000.0 / reqs.len() as f64;
    Ok(Row::new(name, speeds, score_ms))
}
