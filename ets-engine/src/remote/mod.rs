//! The remote engine (feature `remote`): policy and PRM on serving engines elsewhere — llama.cpp's
//! `llama-server` or vLLM — over HTTP, across any number of endpoints.
//!
//! Layout:
//! - `pool`: endpoints of one model: sticky rendezvous order per job, health, bounded in-flight
//!   requests, retries with backoff, failover.
//! - `http`: cancellable JSON requests (a stopped job drops its requests, closing their
//!   connections).
//! - `dialect`: each server's API for the calls ETS makes (sources cited there).
//! - `policy`: [`RemotePolicy`]. `prm`: [`RemoteReward`]. `embedder`: [`RemoteEmbedder`]
//!   (`/v1/embeddings`, for a model added with the embedder role).
//!
//! A model is a name, its endpoints and a served model name ([`RemoteModelSpec`]). Loading
//! detects each endpoint's dialect (`/props` for llama.cpp, `/v1/models` `owned_by` for vLLM)
//! unless it is given, and checks the capabilities ETS needs (token ids back from a completion,
//! next-token log-probabilities, tokenize) with one tiny request, so a server that lacks one is
//! an error naming the endpoint and what it lacks at load time, not mid-search.
//!
//! KV: ets-kvtree stays the exact logical account of a search; the servers' own caches are
//! theirs. What they report (llama.cpp `timings.cache_n` / `prompt_n`, vLLM
//! `usage.prompt_tokens_details.cached_tokens`) is counted per endpoint as prompt tokens computed
//! and reused.

mod dialect;
mod embedder;
mod http;
mod policy;
mod pool;
mod prm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ets_core::protocol::{EndpointInfo, RemoteModelSpec};
use ets_core::{Policy, Reward, StopHandle};

pub use dialect::Dialect;
pub use embedder::RemoteEmbedder;
pub use policy::RemotePolicy;
pub use pool::{EndpointPool, EndpointStatus, PoolOptions};
pub use prm::RemoteReward;

use self::dialect::{NextTokens, StepReply, StepRequest};
use self::http::{Http, HttpError};
use self::pool::{AttemptError, PoolError};
use crate::engines::{CausalLm, EngineKind};
use crate::error::Error;
use crate::profile::PrmProfile;
use crate::prompt::PolicyOptions;

/// Longest a single request may take (a step of a few hundred tokens on a busy server), unless
/// the model's `timeout_secs` says otherwise.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A loaded remote model: its endpoints, dialect and HTTP client.
#[derive(Debug)]
pub struct Remote {
    name: String,
    served_name: String,
    dialect: Dialect,
    pool: EndpointPool,
    http: Http,
    next_job: AtomicU64,
    _runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// Each endpoint's health and counters, as `ets status` shows them.
    fn endpoint_infos(&self) -> Vec<EndpointInfo> {
        self.pool
            .status()
            .into_iter()
            .map(|s| EndpointInfo {
                url: s.url,
                up: s.up,
                in_flight: s.in_flight,
                requests: s.requests,
                errors: s.errors,
                mean_latency_ms: s.mean_latency_ms,
                last_error: s.last_error,
                prompt_tokens_computed: s.prompt_computed,
                prompt_tokens_reused: s.prompt_reused,
            })
            .collect()
    }

    fn error(&self, message: String) -> Error {
        Error::Remote {
            model: self.name.clone(),
            message,
        }
    }

    fn next_job_key(&self) -> u64 {
        self.next_job.fetch_add(1, Ordering::Relaxed)
    }

    /// Threads a call's requests run on: every endpoint's in-flight bound, at most 64.
    fn parallelism(&self) -> usize {
        self.pool
            .endpoints()
            .len()
            .saturating_mul(self.pool.max_in_flight())
            .clamp(1, 64)
    }

    fn call<T>(
        &self,
        job_key: u64,
        stop: Option<&StopHandle>,
        what: &str,
        attempt: impl FnMut(&pool::Endpoint) -> Result<T, HttpError>,
    ) -> Result<T, Error> {
        let mut attempt = attempt;
        let mut stopped = false;
        let result = self
            .pool
            .call(job_key, stop, |endpoint| match attempt(endpoint) {
                Ok(v) => Ok(v),
                Err(HttpError::Attempt(e)) => Err(e),
                Err(HttpError::Stopped) => {
                    stopped = true;
                    Err(AttemptError::Permanent("stopped".into()))
                }
            });
        match result {
            Ok(v) => Ok(v),
            Err(_) if stopped => Err(Error::Stopped),
            Err(PoolError::Stopped) => Err(Error::Stopped),
            Err(e) => Err(Error::Remote {
                model: self.name.clone(),
                message: format!("{what}: {e}"),
            }),
        }
    }

    fn complete(
        &self,
        job_key: u64,
        step: &StepRequest<'_>,
        stop: Option<&StopHandle>,
    ) -> Result<StepReply, Error> {
        self.call(job_key, stop, "sampling a step", |e| {
            let reply = self.dialect.complete(&self.http, &e.url, step, stop)?;
            e.record_prompt(reply.prompt_computed, reply.prompt_reused);
            Ok(reply)
        })
    }

    fn next_token_logprobs(
        &self,
        job_key: u64,
        context: &[u32],
        n: usize,
        stop: Option<&StopHandle>,
    ) -> Result<NextTokens, Error> {
        self.call(job_key, stop, "scoring a step", |e| {
            let next = self.dialect.next_token_logprobs(
                &self.http,
                &e.url,
                context,
                n,
                &self.served_name,
                stop,
            )?;
            e.record_prompt(next.prompt_computed, next.prompt_reused);
            Ok(next)
        })
    }

    fn tokenize(
        &self,
        job_key: u64,
        text: &str,
        stop: Option<&StopHandle>,
    ) -> Result<Vec<u32>, Error> {
        self.call(job_key, stop, "tokenizing", |e| {
            self.dialect
                .tokenize(&self.http, &e.url, text, false, &self.served_name)
        })
    }

    fn tokenize_special(
        &self,
        job_key: u64,
        text: &str,
        stop: Option<&StopHandle>,
    ) -> Result<Vec<u32>, Error> {
        self.call(job_key, stop, "tokenizing", |e| {
            self.dialect
                .tokenize(&self.http, &e.url, text, true, &self.served_name)
        })
    }

    fn detokenize(
        &self,
        job_key: u64,
        ids: &[u32],
        stop: Option<&StopHandle>,
    ) -> Result<String, Error> {
        self.call(job_key, stop, "detokenizing", |e| {
            self.dialect
                .detokenize(&self.http, &e.url, ids, &self.served_name)
        })
    }

    fn chat_ids(
        &self,
        job_key: u64,
        messages: &[(&str, &str)],
        stop: Option<&StopHandle>,
    ) -> Result<Vec<u32>, Error> {
        self.call(job_key, stop, "rendering the chat template", |e| {
            self.dialect
                .chat_ids(&self.http, &e.url, messages, &self.served_name)
        })
    }
}

/// What servers reported about one backend's prompts (summed over its requests).
#[derive(Debug, Default)]
pub(crate) struct PromptCounter {
    computed: AtomicU64,
    reused: AtomicU64,
}

impl PromptCounter {
    fn add(&self, computed: Option<u64>, reused: Option<u64>) {
        self.computed
            .fetch_add(computed.unwrap_or(0), Ordering::Relaxed);
        self.reused
            .fetch_add(reused.unwrap_or(0), Ordering::Relaxed);
    }

    fn get(&self) -> ets_core::ServerPromptTokens {
        ets_core::ServerPromptTokens {
            computed: self.computed.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
        }
    }
}

/// Runs `f` over `items` on up to `threads` threads; results in order, the first error wins.
pub(crate) fn run_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, Error> + Sync,
) -> Result<Vec<R>, Error> {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, Error>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() || failed.load(Ordering::Relaxed) {
                    break;
                }
                let r = f(&items[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    // The first error in item order (a later item may have failed first in time).
    let mut out = Vec::with_capacity(items.len());
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() != items.len() {
        return Err(Error::engine("a parallel call ended early"));
    }
    Ok(out)
}

/// A remote model behind the [`CausalLm`] boundary.
#[derive(Debug, Clone)]
pub struct RemoteLm(Arc<Remote>);

impl CausalLm for RemoteLm {
    fn engine(&self) -> EngineKind {
        EngineKind::Remote
    }

    /// K/V lives on the servers, not in this process: nothing to reserve here.
    fn kv_bytes_per_token(&self) -> u64 {
        0
    }

    fn keeps_job_kv(&self) -> bool {
        // Requests of one call run concurrently: pass calls whole.
        true
    }

    fn policy(&self, options: &PolicyOptions, _cache_bytes: u64) -> Result<Box<dyn Policy>, Error> {
        Ok(Box::new(RemotePolicy::new(self.0.clone(), options.clone())))
    }

    fn reward(&self, profile: &PrmProfile, _cache_bytes: u64) -> Result<Box<dyn Reward>, Error> {
        Ok(Box::new(RemoteReward::new(self.0.clone(), profile)?))
    }

    fn endpoints(&self) -> Vec<EndpointInfo> {
        self.0.endpoint_infos()
    }

    fn description(&self) -> String {
        format!(
            "{} `{}` on {} endpoint(s)",
            self.0.dialect.name(),
            self.0.served_name,
            self.0.pool.endpoints().len()
        )
    }
}

/// Loads a remote model as a policy or PRM: connects ([`connect`]), checks the capabilities
/// ETS needs of a causal LM on one answering endpoint, and starts the prober that brings down
/// endpoints back up.
pub fn load_remote(spec: &RemoteModelSpec) -> Result<Arc<dyn CausalLm>, Error> {
    let remote = connect(spec)?;
    detect::check_capabilities(&remote).map_err(|message| remote.error(message))?;
    start_prober(Arc::downgrade(&remote));
    Ok(Arc::new(RemoteLm(remote)))
}

/// Loads a remote model as the step embedder: connects, checks that one answering endpoint
/// embeds a text at `/v1/embeddings`, and starts the prober.
pub fn load_remote_embedder(spec: &RemoteModelSpec) -> Result<RemoteEmbedder, Error> {
    let remote = connect(spec)?;
    detect::check_embeddings(&remote).map_err(|message| remote.error(message))?;
    start_prober(Arc::downgrade(&remote));
    Ok(RemoteEmbedder(remote))
}

/// Checks the spec, detects each endpoint's dialect and the served model name.
fn connect(spec: &RemoteModelSpec) -> Result<Arc<Remote>, Error> {
    let invalid = |message: String| Error::Remote {
        model: spec.name.clone(),
        message,
    };
    if spec.name.trim().is_empty() {
        return Err(invalid("a remote model needs a name".into()));
    }
    if spec.endpoints.is_empty() {
        return Err(invalid("a remote model needs at least one endpoint".into()));
    }
    for url in &spec.endpoints {
        check_url(url).map_err(|m| invalid(format!("endpoint `{url}`: {m}")))?;
    }
    let forced = match &spec.dialect {
        Some(d) => Some(Dialect::parse(d).map_err(invalid)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ets-remote-io")
        .enable_all()
        .build()
        .map_err(|e| invalid(format!("starting the HTTP runtime: {e}")))?;
    let timeout = match spec.timeout_secs {
        Some(0) => return Err(invalid("timeout_secs must be at least 1".into())),
        Some(secs) => Duration::from_secs(secs.into()),
        None => DEFAULT_REQUEST_TIMEOUT,
    };
    let http = Http::new(runtime.handle().clone(), timeout).map_err(invalid)?;
    let pool = EndpointPool::new(&spec.endpoints, PoolOptions::default());
    let mut found: Option<(Dialect, String)> = None;
    let mut unreachable = Vec::new();
    for endpoint in pool.endpoints() {
        match detect::detect(&http, &endpoint.url, forced) {
            Ok((dialect, served)) => {
                if let Some((d, _)) = &found {
                    if *d != dialect {
                        return Err(invalid(format!(
                            "endpoint {} speaks {}, but the others speak {}: one model's \
                             endpoints must run the same server",
                            endpoint.url,
                            dialect.name(),
                            d.name()
                        )));
                    }
                } else {
                    found = Some((dialect, served));
                }
            }
            Err(detect::DetectError::Unreachable(m)) => {
                endpoint.mark_down(&m);
                unreachable.push(format!("{}: {m}", endpoint.url));
            }
            Err(detect::DetectError::Unsupported(m)) => {
                return Err(invalid(format!("endpoint {}: {m}", endpoint.url)))
            }
        }
    }
    let Some((dialect, listed)) = found else {
        return Err(invalid(format!(
            "no endpoint answers: {}",
            unreachable.join("; ")
        )));
    };
    let served_name = spec.served_name.clone().unwrap_or(listed);
    let remote = Arc::new(Remote {
        name: spec.name.clone(),
        served_name,
        dialect,
        pool,
        http,
        next_job: AtomicU64::new(0),
        _runtime: runtime,
    });
    Ok(remote)
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err("must be a base URL `http://host:port` (no path)".into());
    }
    Ok(())
}

/// Probes down endpoints until the model is dropped.
fn start_prober(remote: Weak<Remote>) {
    let _ = std::thread::Builder::new()
        .name("ets-remote-probe".into())
        .spawn(move || loop {
            let every = match remote.upgrade() {
                Some(r) => r.pool.probe_every(),
                None => return,
            };
            std::thread::sleep(every);
            let Some(r) = remote.upgrade() else { return };
            // A bug in one probe must not end probing: down endpoints would stay down.
            let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                r.pool
                    .probe_down(|e| r.http.probe(&format!("{}/health", e.url)))
            }));
            if probed.is_err() {
                tracing::error!(model = %r.name, "probing down endpoints panicked");
            }
        });
}

mod detect;
