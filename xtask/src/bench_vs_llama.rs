//! `cargo xtask bench-engine --vs-llama-cpp [--threads N] [--jobs N] [--rounds N]`: the native
//! engine and llama.cpp side by side, in one run, on the same GGUF (the store's SmolLM2-135M
//! Q8_0), the same prompt length, sequence counts and threads. Prints one markdown table with
//! the ratios (kept in ets-engine's README).
//!
//! The two engines take turns for `--rounds` rounds (default 3), and each row keeps each
//! engine's best: on a shared VM whose speed drifts by a third within minutes, one engine
//! measured entirely before the other was seen at 0.72× and 0.92× on the same build.
//!
//! llama.cpp's `llama-bench` and `llama-batched-bench` are built once from the pinned sdist
//! (`cargo xtask llama-cpp`, AVX2/FMA/F16C, never `-march=native`) and run as:
//! - prefill: `llama-bench -p 256 -n 0` (a 256-token prompt, tok/s);
//! - decode, 1 sequence: `llama-bench -p 0 -n 64 -d 256` (64 tokens after 256 of context);
//! - decode, 16 and 64 sequences sharing a 256-token prompt: `llama-batched-bench -npp 256
//!   -ntg 64 -npl 16,64 -pps -kvu` (`speed_tg`: generated tokens of all sequences per second).
//!
//! The native rows measure the same shapes through the policy the daemon uses
//! ([`NativePolicy`]): a 256-token prompt prefilled (best of 3), then one call that prefills it
//! once and decodes 64 tokens in each of 1, 16 or 64 children; decode tok/s is the generated
//! tokens over that call's time minus its prefill. Children sample (temperature 1, so they
//! differ, as in a search); the single sequence decodes greedily. Both engines use `--threads`
//! threads (default: every core rayon sees), the native one through `RAYON_NUM_THREADS`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ets_core::SamplingConfig;
use ets_engine::native::{NativeEngine, NativePolicy, NativePolicyOptions, WeightMode};
use ets_engine::store::{Store, SMOLLM2_135M};
use ets_engine::ModelFiles;
use serde_json::Value;

use crate::bench_engine::timed_expand;
use crate::llama_cpp;

/// Prompt tokens of every measurement.
const PROMPT: usize = 256;
/// Tokens each sequence generates.
const GENERATE: usize = 64;
/// Sequence counts of the batched rows.
const BATCHES: [usize; 2] = [16, 64];

/// One table row: what was measured, llama.cpp's tok/s and the native engine's.
struct Row {
    what: String,
    llama: f64,
    native: f64,
}

/// Runs the comparison (the arguments after `--vs-llama-cpp`'s task name).
pub fn run(args: &[String]) -> Result<()> {
    let threads = match flag(args, "--threads")? {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let jobs = flag(args, "--jobs")?.unwrap_or(threads);
    // Before the first parallel call creates rayon's pool (edition 2021: a safe call).
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let bin = llama_cpp::ensure_built(jobs as u32)?;
    let store = Store::open_default()?;
    let ModelFiles::Gguf { dir, file } = store.model_files(SMOLLM2_135M)? else {
        bail!("{SMOLLM2_135M} is not a GGUF model in the store");
    };
    let gguf = dir.join(file);
    eprintln!(
        "bench-engine --vs-llama-cpp: {} on {threads} threads",
        gguf.display()
    );

    let rounds = flag(args, "--rounds")?.unwrap_or(3);
    let (mut llama, mut native) = (vec![0f64; 4], vec![0f64; 4]);
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for (best, x) in llama.iter_mut().zip(llama_rows(&bin, &gguf, threads)?) {
            *best = best.max(x);
        }
        for (best, x) in native.iter_mut().zip(native_rows(&gguf)?) {
            *best = best.max(x);
        }
    }
    let names = [
        format!("prefill, {PROMPT}-token prompt"),
        format!("decode, 1 sequence, {PROMPT} tokens of context"),
        format!("decode, 16 sequences sharing a {PROMPT}-token prompt"),
        format!("decode, 64 sequences sharing a {PROMPT}-token prompt"),
    ];
    let rows: Vec<Row> = names
        .into_iter()
        .zip(llama.into_iter().zip(native))
        .map(|(what, (llama, native))| Row {
            what,
            llama,
            native,
        })
        .collect();
    println!(
        "| tok/s, {threads} threads, best of {rounds} rounds | llama.cpp (AVX2/FMA/F16C build) | native | native / llama.cpp |"
    );
    println!("|---|--:|--:|--:|");
    for r in rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.2}× |",
            r.what,
            r.llama,
            r.native,
            r.native / r.llama.max(1e-9)
        );
    }
    Ok(())
}

/// The value of `--name N`, if given.
fn flag(args: &[String], name: &str) -> Result<Option<usize>> {
    let Some(i) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    let value = args
        .get(i + 1)
        .ok_or_else(|| anyhow!("{name} needs a number"))?;
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => bail!("{name} must be a positive number, got `{value}`"),
    }
}

/// llama.cpp's prefill, decode at 1 sequence, and batched decode at [`BATCHES`], in tok/s.
fn llama_rows(bin: &Path, gguf: &Path, threads: usize) -> Result<Vec<f64>> {
    let t = threads.to_string();
    let bench = |extra: &[&str]| -> Result<f64> {
        let mut cmd = Command::new(bin.join("llama-bench"));
        cmd.arg("-m")
            .arg(gguf)
            .args(["-t", &t, "-r", "3", "-o", "json"]);
        let out = run_json(cmd.args(extra))?;
        let tests = out
            .as_array()
            .ok_or_else(|| anyhow!("llama-bench printed no JSON array"))?;
        tests
            .first()
            .and_then(|t| t["avg_ts"].as_f64())
            .ok_or_else(|| anyhow!("llama-bench printed no avg_ts"))
    };
    let prefill = bench(&["-p", &PROMPT.to_string(), "-n", "0"])?;
    let decode_1 = bench(&[
        "-p",
        "0",
        "-n",
        &GENERATE.to_string(),
        "-d",
        &PROMPT.to_string(),
    ])?;
    let npl = BATCHES.map(|b| b.to_string()).join(",");
    let context = PROMPT + GENERATE * BATCHES.iter().max().unwrap_or(&1) + 64;
    let mut cmd = Command::new(bin.join("llama-batched-bench"));
    cmd.arg("-m").arg(gguf).args([
        "-t",
        &t,
        "-tb",
        &t,
        "-c",
        &context.to_string(),
        "-b",
        "2048",
        "-ub",
        "512",
        "-npp",
        &PROMPT.to_string(),
        "-ntg",
        &GENERATE.to_string(),
        "-npl",
        &npl,
        "-pps",
        "-kvu",
        "--output-format",
        "jsonl",
    ]);
    let output = run_text(&mut cmd)?;
    let mut rows = vec![prefill, decode_1];
    for batch in BATCHES {
        let speed = output
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|v| v["pl"].as_u64() == Some(batch as u64))
            .and_then(|v| v["speed_tg"].as_f64())
            .ok_or_else(|| anyhow!("llama-batched-bench printed no line for {batch} sequences"))?;
        rows.push(speed);
    }
    Ok(rows)
}

/// Runs `cmd` to its end; its output, or an error with its stderr when it failed.
fn run_checked(cmd: &mut Command) -> Result<std::process::Output> {
    eprintln!("running {cmd:?}");
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Stdout and stderr together: llama-batched-bench logs its JSONL lines on either, by build.
fn run_text(cmd: &mut Command) -> Result<String> {
    let out = run_checked(cmd)?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    let out = run_checked(cmd)?;
    serde_json::from_slice(&out.stdout).with_context(|| format!("parsing the output of {cmd:?}"))
}

/// The native engine's rows, the same shapes as [`llama_rows`].
fn native_rows(gguf: &Path) -> Result<Vec<f64>> {
    let engine = Arc::new(NativeEngine::load(gguf, WeightMode::Quantized)?);
    // Every prefill measured is a prefill: no warm prompt from the call before.
    engine.set_prompt_cache_bytes(0);
    // A cache budget of 0 evicts everything after each call, so every call prefills.
    let options = NativePolicyOptions {
        max_cached_bytes: 0,
        ..NativePolicyOptions::default()
    };
    let mut policy = NativePolicy::new(engine, options);
    let mut prompt =
        policy.encode_problem(&"Natalia sold clips to 48 of her friends. ".repeat(40))?;
    if prompt.len() < PROMPT {
        bail!(
            "the benchmark prompt has {} tokens, fewer than {PROMPT}",
            prompt.len()
        );
    }
    prompt.truncate(PROMPT);
    let greedy = SamplingConfig {
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let sample = SamplingConfig::default();
    let mut timed = |children: usize, tokens: usize, sampling: &SamplingConfig| {
        timed_expand(&mut policy, &prompt, children, tokens, sampling)
    };
    timed(1, 1, &greedy)?; // warm-up
    let prefill_time = (0..3)
        .map(|_| timed(1, 1, &greedy).map(|x| x.0))
        .collect::<Result<Vec<f64>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let mut rows = vec![PROMPT as f64 / prefill_time];
    for (children, sampling) in [(1, &greedy), (BATCHES[0], &sample), (BATCHES[1], &sample)] {
        // The prefill of this call (one shared prompt, one first token per child).
        let first = timed(children, 1, sampling)?.0;
        let (time, generated) = timed(children, GENERATE, sampling)?;
        rows.push(generated.saturating_sub(children) as f64 / (time - first).max(1e-9));
    }
    Ok(rows)
}
