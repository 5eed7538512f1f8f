//! `cargo xtask bench-search`: the same ETS and REBASE searches on the native engine, on
//! mistral.rs and on the remote engine against a local `llama-server` (same GGUF, as many
//! threads as the machine has cores, like the in-process engines), end to end, with the small model (`smollm2-135m`, Q8_0) as policy and as the
//! judge PRM, MiniLM-L6 as ETS's embedder, on the first GSM8K test problems.
//!
//! Each engine runs in its own child process (this executable again, with the hidden
//! `--engine NAME --json`), so its peak RSS is its own; the child prints one JSON line per
//! search and the parent prints a markdown table per engine × method × width:
//! - wall time: the search's own clock (`SearchStats::wall_time`, model load excluded), less
//!   the time the meters below spent;
//! - policy tok/s: generated tokens / wall;
//! - PRM tokens per scored step: tokens the PRM engine ran per new node scored. Native: the
//!   delta of `NativeEngine::tokens_processed` across each `score` call (the search is
//!   single-threaded, so the delta is the PRM's alone). mistral.rs: the length of the ids it
//!   prefills per request (`MistralReward::score_input`; its prefix cache is off, so every
//!   score re-prefills the whole rendered trajectory). Shown next to the mean step length
//!   (generated tokens / steps) and the mean scored trajectory (`score_input` length);
//! - peak RSS: VmHWM, reset before each search (`/proc/self/clear_refs`), so it is the model
//!   weights plus that search's working set;
//! - peak live KV: `SearchStats::peak_live_tokens` and `peak_live_bytes` of the search's own
//!   `KvTree`, at the engine's own bytes per token (native K/V is f32, mistral.rs' bf16);
//! - engine caches: native only, the peak of `policy.kv_stats()` + `reward.kv_stats()`
//!   resident bytes, read after every call (`expand`, `score`, and the `retain` calls, which
//!   the wrappers pass on and where the native backends free pruned nodes);
//! - server prompt tokens (remote only): prompt tokens the server computed / reused from its
//!   prefix cache (`timings.prompt_n` / `cache_n`), policy and PRM requests together; the
//!   remote row's PRM tokens are the PRM requests' computed prompt tokens;
//! - speedup: mistral.rs / native, of wall time and of policy tok/s (the engines round
//!   differently, so their trees and token counts differ); a line under the table compares
//!   the remote engine with native the same way.
//!
//! Caps as in docs/benchmarks.md: 32 tokens a step, 96 a trajectory, depth cap 25, seed 0.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ets_core::eval::{load_problems, select_problems, Layout, Problem};
use ets_core::protocol::RemoteModelSpec;
use ets_core::search::{run_search, Backends};
use ets_core::{
    BackendError, Continuation, Embedder, ExpandRequest, Method, Policy, Reward, ScoreRequest,
    SearchConfig,
};
use ets_engine::mistralrs::{LlmEngine, LoadOptions, MistralPolicy, MistralReward};
use ets_engine::native::{
    NativeEngine, NativePolicy, NativePolicyOptions, NativeReward, WeightMode,
};
use ets_engine::store::{Store, MINILM_L6, SMOLLM2_135M};
use ets_engine::{BertEmbedder, ModelFiles, PolicyOptions, PrmProfile};
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;
use serde::{Deserialize, Serialize};

use crate::bench_remote::{BoxedPolicy, BoxedReward, LlamaServerProcess};

const PROBLEMS_FILE: &str = "data/gsm8k_test.jsonl";
const MAX_STEP_TOKENS: usize = 32;
const MAX_TRAJECTORY_TOKENS: usize = 96;
const SEED: u64 = 0;
/// The native PRM's cache budget (the native model tests use the same).
const NATIVE_PRM_CACHE_BYTES: u64 = 1 << 30;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    Native,
    Mistral,
    Remote,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::Mistral => "mistralrs",
            Engine::Remote => "llama-server",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "native" => Ok(Engine::Native),
            "mistralrs" | "mistral.rs" | "mistral" => Ok(Engine::Mistral),
            "llama-server" | "remote" => Ok(Engine::Remote),
            _ => bail!("unknown engine `{s}`; engines: native, mistralrs, llama-server"),
        }
    }
}

struct Options {
    engines: Vec<Engine>,
    limit: usize,
    widths: Vec<usize>,
    methods: Vec<Method>,
    out: Option<std::path::PathBuf>,
    /// Child mode: run this engine's searches and print JSON lines.
    child: Option<Engine>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            engines: vec![Engine::Native, Engine::Mistral, Engine::Remote],
            limit: 5,
            widths: vec![4, 8],
            methods: vec![Method::Ets, Method::Rebase],
            out: None,
            child: None,
        };
        let mut json = false;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match flag.as_str() {
                "--engines" => o.engines = list(value()?, Engine::parse)?,
                "--limit" => o.limit = value()?.parse().context("--limit")?,
                "--widths" => o.widths = list(value()?, |s| Ok(s.parse::<usize>()?))?,
                "--methods" => o.methods = list(value()?, |s| Ok(s.parse::<Method>()?))?,
                "--out" => o.out = Some(value()?.into()),
                "--engine" => o.child = Some(Engine::parse(value()?)?),
                "--json" => json = true,
                other => bail!(
                    "unknown flag `{other}`; flags: --engines native,mistralrs,llama-server, --limit N, \
                     --widths 4,8, --methods ets,rebase, --out FILE"
                ),
            }
        }
        if o.child.is_some() != json {
            bail!("--engine and --json (the child mode) go together");
        }
        Ok(o)
    }
}

fn list<T>(text: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    text.split(',').map(|s| parse(s.trim())).collect()
}

/// One search's measurements: one JSON line of a child.
#[derive(Debug, Serialize, Deserialize)]
struct SearchRecord {
    engine: String,
    method: String,
    width: usize,
    problem: String,
    wall_s: f64,
    /// Time the meters spent (already taken out of `wall_s`).
    meter_s: f64,
    generated_tokens: u64,
    steps: u64,
    prm_steps: u64,
    prm_tokens: u64,
    scored_trajectory_tokens: u64,
    peak_rss_bytes: u64,
    peak_live_kv_tokens: u64,
    peak_live_kv_bytes: u64,
    engine_cache_peak_bytes: Option<u64>,
    /// Prompt tokens a serving engine computed / reused (remote only).
    #[serde(default)]
    server_prompt_tokens: Option<(u64, u64)>,
    finished: usize,
    truncated: usize,
    answer: Option<String>,
}

/// Runs the benchmark (or, with `--engine X --json`, one engine's searches).
pub fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    if let Some(engine) = options.child {
        return run_engine(engine, &options);
    }
    let exe = std::env::current_exe()?;
    // The child reads the same flags; `--engines` and `--out` are the parent's alone.
    let mut records = Vec::new();
    for &engine in &options.engines {
        eprintln!("bench-search: {} in a child process", engine.name());
        let mut child = Command::new(&exe)
            .arg("bench-search")
            .args(args)
            .args(["--engine", engine.name(), "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            match line.starts_with('{') {
                true => records.push(serde_json::from_str::<SearchRecord>(&line)?),
                false => eprintln!("{line}"),
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("the {} child failed: {status}", engine.name());
        }
    }
    let table = markdown_table(&records);
    println!("{table}");
    if let Some(path) = &options.out {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The child: loads one engine and runs every search, one JSON line each on stdout.
fn run_engine(engine: Engine, options: &Options) -> Result<()> {
    let store = Store::open_default()?;
    store.ensure_pulled(&[SMOLLM2_135M, MINILM_L6])?;
    let path = crate::tidy::workspace_root().join(PROBLEMS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let problems = load_problems(PROBLEMS_FILE, &text, Layout::Gsm8k)?;
    let problems = select_problems(problems, &[], Some(options.limit))?;
    let embedder = match options.methods.contains(&Method::Ets) {
        true => Some(BertEmbedder::load(&store.model_dir(MINILM_L6)?)?),
        false => None,
    };
    let profile = PrmProfile::builtin("judge")?;
    let files = store.model_files(SMOLLM2_135M)?;
    let mut bench = Bench {
        engine,
        options,
        problems: &problems,
        embedder,
    };
    match engine {
        Engine::Native => {
            let ModelFiles::Gguf { dir, file } = files else {
                bail!("{SMOLLM2_135M} is not a GGUF file");
            };
            let model = Arc::new(NativeEngine::load(&dir.join(file), WeightMode::Quantized)?);
            // Each search prefills its prompt, as the mistral.rs rows do (and as before warm
            // prompts existed): the methods run the same problems one after the other.
            model.set_prompt_cache_bytes(0);
            let counter = Some(model.clone());
            bench.run_all(model.config().kv_bytes_per_token(), counter, || {
                Ok((
                    NativePolicy::new(model.clone(), NativePolicyOptions::default()),
                    NativeReward::new(model.clone(), &profile, NATIVE_PRM_CACHE_BYTES)?,
                ))
            })
        }
        Engine::Remote => {
            let ModelFiles::Gguf { dir, file } = files else {
                bail!("{SMOLLM2_135M} is not a GGUF file");
            };
            let bin = crate::llama_cpp::ensure_built(2)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let server = LlamaServerProcess::start(&bin, &dir.join(file), threads)?;
            eprintln!(
                "bench-search: llama-server with {threads} threads at {}",
                server.url()
            );
            let model = ets_engine::load_remote_model(&RemoteModelSpec {
                name: "bench".into(),
                endpoints: vec![server.url()],
                ..RemoteModelSpec::default()
            })?;
            // K/V lives in the server: the search's KvTree counts exact tokens, 0 bytes here.
            bench.run_all(0, None, || {
                Ok((
                    BoxedPolicy(model.policy(&PolicyOptions::default(), 0)?),
                    BoxedReward(model.reward(&profile, 0)?),
                ))
            })
        }
        Engine::Mistral => {
            let model = Arc::new(LlmEngine::load(&files, &LoadOptions::new(store.hf_home()))?);
            bench.run_all(model.kv_bytes_per_token().unwrap_or(0), None, || {
                Ok((
                    MistralPolicy::new(model.clone(), PolicyOptions::default()),
                    MistralReward::new(model.clone(), &profile)?,
                ))
            })
        }
    }
}

/// One engine's searches.
struct Bench<'a> {
    engine: Engine,
    options: &'a Options,
    problems: &'a [Problem],
    embedder: Option<BertEmbedder>,
}

impl Bench<'_> {
    /// Every width × method × problem, each with a fresh (cold) policy and PRM from
    /// `backends`; the engine itself stays loaded. `engine_counter`: the native engine, whose
    /// token count gives the PRM's tokens.
    fn run_all<P: PolicyCache, R: RewardInputs>(
        &mut self,
        kv_bytes_per_token: u64,
        engine_counter: Option<Arc<NativeEngine>>,
        mut backends: impl FnMut() -> Result<(P, R)>,
    ) -> Result<()> {
        for &width in &self.options.widths {
            for &method in &self.options.methods {
                for problem in self.problems {
                    let readings = Mutex::new(Readings::default());
                    let (policy, reward) = backends()?;
                    let meters = (
                        PolicyMeter {
                            inner: policy,
                            readings: &readings,
                        },
                        RewardMeter {
                            inner: reward,
                            engine_counter: engine_counter.clone(),
                            readings: &readings,
                        },
                    );
                    let config = search_config(method, width);
                    let record = self.search(problem, &config, meters, kv_bytes_per_token)?;
                    eprintln!(
                        "{} {method} w{width} {}: {:.1} s, {} tok, answer {:?}",
                        record.engine,
                        record.problem,
                        record.wall_s,
                        record.generated_tokens,
                        record.answer,
                    );
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
                    stdout.flush()?;
                }
            }
        }
        Ok(())
    }

    /// One search with a fresh `KvTree`, its peak RSS measured from a reset.
    fn search<P: PolicyCache, R: RewardInputs>(
        &mut self,
        problem: &Problem,
        config: &SearchConfig,
        (mut policy, mut reward): (PolicyMeter<'_, P>, RewardMeter<'_, R>),
        kv_bytes_per_token: u64,
    ) -> Result<SearchRecord> {
        let backends = Backends {
            policy: &mut policy,
            reward: &mut reward,
            embedder: match config.method {
                Method::Ets => self.embedder.as_mut().map(|e| e as &mut dyn Embedder),
                _ => None,
            },
            solver: &BranchAndBound::default(),
            clusterer: &AverageLinkage::new(),
        };
        let mut kv = KvTree::new(kv_bytes_per_token);
        // Resets VmHWM to the current RSS (Linux ≥ 4.0).
        std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
        let mut observer = |_: &_| std::ops::ControlFlow::Continue(());
        let outcome = run_search(&problem.problem, config, backends, &mut kv, &mut observer)?;
        let peak_rss_bytes = peak_rss_bytes()?;
        let mut r = lock(policy.readings);
        let s = &outcome.stats;
        let server = match (
            policy.inner.server_prompt_tokens(),
            reward.inner.server_prompt_tokens(),
        ) {
            (None, None) => None,
            (p, q) => {
                let (p, q) = (p.unwrap_or_default(), q.unwrap_or_default());
                // The PRM's tokens are what the server computed for its prompts; its scored
                // trajectories, every prompt token it was sent.
                r.prm_tokens = q.computed;
                r.scored_trajectory_tokens = q.computed + q.reused;
                Some((p.computed + q.computed, p.reused + q.reused))
            }
        };
        Ok(SearchRecord {
            engine: self.engine.name().into(),
            method: config.method.name().into(),
            width: config.width,
            problem: problem.id.clone(),
            wall_s: (s.wall_time.saturating_sub(r.meter_time)).as_secs_f64(),
            meter_s: r.meter_time.as_secs_f64(),
            generated_tokens: s.generated_tokens,
            steps: s.nodes.saturating_sub(1) as u64,
            prm_steps: r.prm_steps,
            prm_tokens: r.prm_tokens,
            scored_trajectory_tokens: r.scored_trajectory_tokens,
            peak_rss_bytes,
            peak_live_kv_tokens: s.peak_live_tokens,
            peak_live_kv_bytes: s.peak_live_bytes,
            engine_cache_peak_bytes: r.peak_cache_bytes,
            server_prompt_tokens: server,
            finished: s.finished,
            truncated: s.truncated,
            answer: outcome.answer,
        })
    }
}

/// `ets eval`'s search for these caps: the defaults, GSM8K's `####` marker added.
fn search_config(method: Method, width: usize) -> SearchConfig {
    let mut config = SearchConfig {
        method,
        width,
        max_step_tokens: MAX_STEP_TOKENS,
        max_total_tokens: MAX_TRAJECTORY_TOKENS,
        seed: SEED,
        ..SearchConfig::default()
    };
    config.answer_markers.push("####".into());
    config
}

/// The process's VmHWM in bytes.
fn peak_rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    let kib = line
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// What the wrappers read during one search (shared by the policy's and the PRM's).
#[derive(Debug, Default)]
struct Readings {
    policy_cache_bytes: u64,
    reward_cache_bytes: u64,
    peak_cache_bytes: Option<u64>,
    prm_steps: u64,
    prm_tokens: u64,
    scored_trajectory_tokens: u64,
    meter_time: Duration,
}

impl Readings {
    fn sample_caches(&mut self, policy: Option<u64>, reward: Option<u64>) {
        if let Some(bytes) = policy {
            self.policy_cache_bytes = bytes;
        }
        if let Some(bytes) = reward {
            self.reward_cache_bytes = bytes;
        }
        if policy.is_some() || reward.is_some() {
            let total = self.policy_cache_bytes + self.reward_cache_bytes;
            self.peak_cache_bytes = Some(self.peak_cache_bytes.unwrap_or(0).max(total));
        }
    }
}

/// A policy whose engine-side K/V cache the benchmark can see.
trait PolicyCache: Policy {
    /// Resident bytes of the policy's own cache, where it keeps one.
    fn cache_bytes(&self) -> Option<u64>;
}

impl PolicyCache for NativePolicy {
    fn cache_bytes(&self) -> Option<u64> {
        Some(self.kv_stats().resident_bytes)
    }
}

impl PolicyCache for MistralPolicy {
    fn cache_bytes(&self) -> Option<u64> {
        None
    }
}

impl PolicyCache for BoxedPolicy {
    fn cache_bytes(&self) -> Option<u64> {
        None
    }
}

/// A PRM whose inputs and cache the benchmark can see.
trait RewardInputs: Reward {
    /// Resident bytes of the PRM's own cache, where it keeps one.
    fn cache_bytes(&self) -> Option<u64>;
    /// Tokens of the whole rendered trajectory the PRM scores for `request`.
    fn trajectory_tokens(&self, request: &ScoreRequest<'_>) -> Result<u64>;
}

impl RewardInputs for NativeReward {
    fn cache_bytes(&self) -> Option<u64> {
        Some(self.kv_stats().resident_bytes)
    }

    fn trajectory_tokens(&self, r: &ScoreRequest<'_>) -> Result<u64> {
        Ok(self.score_input(r.problem, r.steps)?.len() as u64)
    }
}

impl RewardInputs for BoxedReward {
    fn cache_bytes(&self) -> Option<u64> {
        None
    }

    /// Unknown here: the server renders and tokenizes (its counts are read after the search).
    fn trajectory_tokens(&self, _: &ScoreRequest<'_>) -> Result<u64> {
        Ok(0)
    }
}

impl RewardInputs for MistralReward {
    fn cache_bytes(&self) -> Option<u64> {
        None
    }

    fn trajectory_tokens(&self, r: &ScoreRequest<'_>) -> Result<u64> {
        Ok(self.score_input(r.problem, r.steps)?.len() as u64)
    }
}

fn lock(readings: &Mutex<Readings>) -> std::sync::MutexGuard<'_, Readings> {
    readings.lock().expect("single-threaded")
}

/// A policy that samples its engine's cache into `readings` after every call; `retain` is
/// passed on (the native policy frees pruned nodes there).
struct PolicyMeter<'m, P> {
    inner: P,
    readings: &'m Mutex<Readings>,
}

impl<P: PolicyCache> Policy for PolicyMeter<'_, P> {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        self.inner.encode_prompt(problem)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        let children = self.inner.expand(requests)?;
        let started = Instant::now();
        let mut readings = lock(self.readings);
        readings.sample_caches(self.inner.cache_bytes(), None);
        readings.meter_time += started.elapsed();
        Ok(children)
    }

    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        self.inner.retain(live)?;
        let started = Instant::now();
        let mut readings = lock(self.readings);
        readings.sample_caches(self.inner.cache_bytes(), None);
        readings.meter_time += started.elapsed();
        Ok(())
    }
}

/// A PRM that counts the tokens each `score` runs. With `engine_counter` (the native
/// engine) that is the engine's own count across the call; without (mistral.rs, which
/// prefills every trajectory whole), the scored trajectories' lengths. `retain` is passed on.
struct RewardMeter<'m, R> {
    inner: R,
    engine_counter: Option<Arc<NativeEngine>>,
    readings: &'m Mutex<Readings>,
}

impl<R: RewardInputs> Reward for RewardMeter<'_, R> {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        let engine_tokens = || self.engine_counter.as_ref().map(|e| e.tokens_processed());
        let before = engine_tokens();
        let scores = self.inner.score(requests)?;
        let after = engine_tokens();
        let started = Instant::now();
        let mut steps = 0;
        let mut trajectory_tokens = 0;
        for r in requests.iter().filter(|r| !r.steps.is_empty()) {
            steps += 1;
            trajectory_tokens += self.inner.trajectory_tokens(r)?;
        }
        let prefilled = match (before, after) {
            (Some(before), Some(after)) => after - before,
            _ => trajectory_tokens,
        };
        let mut readings = lock(self.readings);
        readings.prm_steps += steps;
        readings.prm_tokens += prefilled;
        readings.scored_trajectory_tokens += trajectory_tokens;
        readings.sample_caches(None, self.inner.cache_bytes());
        readings.meter_time += started.elapsed();
        Ok(scores)
    }

    fn retain(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), BackendError> {
        self.inner.retain(live)?;
        let started = Instant::now();
        let mut readings = lock(self.readings);
        readings.sample_caches(None, self.inner.cache_bytes());
        readings.meter_time += started.elapsed();
        Ok(())
    }
}

/// Sums over one engine × method × width.
#[derive(Debug, Default)]
struct Cell {
    searches: usize,
    wall_s: f64,
    generated_tokens: u64,
    steps: u64,
    prm_steps: u64,
    prm_tokens: u64,
    scored_trajectory_tokens: u64,
    peak_rss_bytes: u64,
    peak_live_kv_tokens: u64,
    peak_live_kv_bytes: u64,
    engine_cache_peak_bytes: Option<u64>,
    server_prompt_tokens: Option<(u64, u64)>,
}

impl Cell {
    fn add(&mut self, r: &SearchRecord) {
        self.searches += 1;
        self.wall_s += r.wall_s;
        self.generated_tokens += r.generated_tokens;
        self.steps += r.steps;
        self.prm_steps += r.prm_steps;
        self.prm_tokens += r.prm_tokens;
        self.scored_trajectory_tokens += r.scored_trajectory_tokens;
        self.peak_rss_bytes = self.peak_rss_bytes.max(r.peak_rss_bytes);
        self.peak_live_kv_tokens = self.peak_live_kv_tokens.max(r.peak_live_kv_tokens);
        self.peak_live_kv_bytes = self.peak_live_kv_bytes.max(r.peak_live_kv_bytes);
        if let Some((computed, reused)) = r.server_prompt_tokens {
            let (c, u) = self.server_prompt_tokens.unwrap_or_default();
            self.server_prompt_tokens = Some((c + computed, u + reused));
        }
        if let Some(bytes) = r.engine_cache_peak_bytes {
            self.engine_cache_peak_bytes =
                Some(self.engine_cache_peak_bytes.unwrap_or(0).max(bytes));
        }
    }

    fn tok_per_s(&self) -> f64 {
        self.generated_tokens as f64 / self.wall_s.max(1e-9)
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    num as f64 / den.max(1) as f64
}

/// The table: one row per method × width × engine, native next to mistral.rs.
fn markdown_table(records: &[SearchRecord]) -> String {
    let mut cells: BTreeMap<(usize, String, usize, Engine), Cell> = BTreeMap::new();
    let method_rank = |m: &str| Method::ALL.iter().position(|x| x.name() == m).unwrap_or(9);
    for r in records {
        let engine = Engine::parse(&r.engine).expect("children write known engines");
        cells
            .entry((method_rank(&r.method), r.method.clone(), r.width, engine))
            .or_default()
            .add(r);
    }
    let mut out = String::from(
        "| engine | method | width | searches | wall s | generated tok | policy tok/s \
         | PRM tok / scored step | mean step tok | mean scored trajectory tok | peak RSS MiB \
         | peak live KV tok / MiB | engine caches peak MiB | server prompt tok computed / reused \
         | speedup (wall) | speedup (tok/s) |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for ((rank, method, width, engine), c) in &cells {
        let mistral = cells.get(&(*rank, method.clone(), *width, Engine::Mistral));
        let (wall_speedup, tok_speedup) = match (engine, mistral) {
            (Engine::Native, Some(m)) => (
                format!("{:.2}×", m.wall_s / c.wall_s.max(1e-9)),
                format!("{:.2}×", c.tok_per_s() / m.tok_per_s().max(1e-9)),
            ),
            _ => ("—".into(), "—".into()),
        };
        let caches = match c.engine_cache_peak_bytes {
            Some(bytes) => format!("{:.1}", bytes as f64 / MIB),
            None => "n/a".into(),
        };
        let server = match c.server_prompt_tokens {
            Some((computed, reused)) => format!("{computed} / {reused}"),
            None => "—".into(),
        };
        out += &format!(
            "| {} | {method} | {width} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} \
             | {} / {:.1} | {caches} | {server} | {wall_speedup} | {tok_speedup} |\n",
            engine.name(),
            c.searches,
            c.wall_s,
            c.generated_tokens,
            c.tok_per_s(),
            ratio(c.prm_tokens, c.prm_steps),
            ratio(c.generated_tokens, c.steps),
            ratio(c.scored_trajectory_tokens, c.prm_steps),
            c.peak_rss_bytes as f64 / MIB,
            c.peak_live_kv_tokens,
            c.peak_live_kv_bytes as f64 / MIB,
        );
    }
    let total = |engine: Engine| -> (f64, u64) {
        let cs = cells.iter().filter(|(k, _)| k.3 == engine).map(|(_, c)| c);
        cs.fold((0.0, 0), |(w, t), c| (w + c.wall_s, t + c.generated_tokens))
    };
    let ((native_s, native_tok), (mistral_s, mistral_tok), (remote_s, remote_tok)) = (
        total(Engine::Native),
        total(Engine::Mistral),
        total(Engine::Remote),
    );
    if native_s > 0.0 && mistral_s > 0.0 {
        out += &format!(
            "\nAll searches: native {native_s:.1} s for {native_tok} tokens, mistral.rs \
             {mistral_s:.1} s for {mistral_tok} tokens: {:.2}× the wall time, {:.2}× the \
             tok/s.\n",
            mistral_s / native_s,
            (native_tok as f64 / native_s) / (mistral_tok as f64 / mistral_s).max(1e-9),
        );
    }
    if native_s > 0.0 && remote_s > 0.0 {
        out += &format!(
            "\nAll searches: native {native_s:.1} s for {native_tok} tokens, llama-server \
             {remote_s:.1} s for {remote_tok} tokens: llama-server took {:.2}× native's wall \
             time; native's tok/s is {:.2}× llama-server's.\n",
            remote_s / native_s,
            (native_tok as f64 / native_s) / (remote_tok as f64 / remote_s).max(1e-9),
        );
    }
    out
}
