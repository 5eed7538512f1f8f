//! One job from acceptance to its final message: load its models, size its KV reservation,
//! wait in the queue, run the search on a plain thread, and turn how it ended into `Result`,
//! `Failed` or `Cancelled`.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ets_core::protocol::{EngineChoice, ErrorKind, JobEvent, ModelRole, Response, SolveRequest};
use ets_core::search::{
    run_search, Backends, EndReason, SearchEvent, SearchObserver, SearchOutcome,
};
use ets_core::{
    BackendError, Continuation, ExpandRequest, Method, Policy, Reward, ScoreRequest, StopCheck,
};
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;

use super::backends::{self, JobEmbedder, POLICY_EMBEDDER};
use super::jobs::{Job, Outbox, Refusal, StopReason};
use super::registry::{run_on_thread, ModelLease};
use super::Daemon;
use ets_engine::PrmProfile;

/// How a job ended, before it becomes a message.
enum Ending {
    Done(Box<SearchOutcome>),
    Failed(ErrorKind, String),
    Stopped(StopReason),
}

/// Runs a job to its end and sends its final message. It starts once its `Accepted` is sent
/// (`accepted_sent`), so none of its messages can overtake it.
pub async fn run_job(
    daemon: Arc<Daemon>,
    job: Arc<Job>,
    request: SolveRequest,
    outbox: Outbox,
    accepted_sent: tokio::sync::oneshot::Receiver<()>,
) {
    if accepted_sent.await.is_err() {
        // The connection went away before the job was announced.
        daemon.jobs.leave(job.id);
        daemon.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let stream = request.stream_events.then(|| outbox.clone());
    let ending = drive(&daemon, &job, request, stream).await;
    daemon.jobs.leave(job.id);
    let message = match ending {
        Ending::Done(outcome) => {
            daemon.counters.record_done(&outcome);
            Response::Result {
                job: job.id,
                tag: job.tag.clone(),
                outcome,
            }
        }
        Ending::Stopped(StopReason::Cancelled | StopReason::ClientGone) => {
            daemon.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            Response::Cancelled { job: job.id }
        }
        Ending::Stopped(StopReason::ShuttingDown) => {
            daemon.counters.failed.fetch_add(1, Ordering::Relaxed);
            failed(
                job.id,
                ErrorKind::ShuttingDown,
                "the daemon is shutting down".into(),
            )
        }
        Ending::Stopped(StopReason::Deadline) => {
            daemon.counters.failed.fetch_add(1, Ordering::Relaxed);
            let ms = job
                .deadline_ms
                .map_or(String::new(), |ms| format!(" of {ms} ms"));
            failed(
                job.id,
                ErrorKind::Deadline,
                format!("the job passed its deadline{ms}"),
            )
        }
        Ending::Failed(kind, message) => {
            daemon.counters.failed.fetch_add(1, Ordering::Relaxed);
            failed(job.id, kind, message)
        }
    };
    match &message {
        Response::Failed { kind, message, .. } => {
            tracing::warn!(job = job.id, kind = kind.name(), %message, "job failed")
        }
        Response::Result { outcome, .. } => {
            tracing::info!(job = job.id, end = outcome.end.name(), "job ended")
        }
        other => tracing::info!(job = job.id, end = other.name(), "job ended"),
    }
    let _ = outbox.send(message);
    daemon.wake_idle_watch();
    if daemon.jobs.all().is_empty() {
        release_free_memory();
    }
}

/// Hands memory freed by ended searches back to the system when no job runs: glibc keeps
/// freed blocks in its arenas, and a 30-minute soak saw RSS stay 47% above its warm level.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The search's observer: progress and events out, the job's stop signal in (also when a
/// backend stopped mid-call, so a deadline keeps what the search found).
struct JobObserver<'j, F> {
    on_event: F,
    job: &'j Job,
}

impl<F: FnMut(&SearchEvent) -> ControlFlow<()>> SearchObserver for JobObserver<'_, F> {
    fn on_event(&mut self, event: &SearchEvent) -> ControlFlow<()> {
        (self.on_event)(event)
    }

    fn should_stop(&mut self) -> bool {
        self.job.stop.check().is_some()
    }
}

fn failed(job: u64, kind: ErrorKind, message: String) -> Response {
    Response::Failed { job, kind, message }
}

fn send_event(stream: &Option<Outbox>, job: u64, event: JobEvent) {
    if let Some(outbox) = stream {
        let _ = outbox.send(Response::Event { job, event });
    }
}

/// The models a job runs on.
struct JobModels {
    policy: ModelLease,
    prm: ModelLease,
    profile: PrmProfile,
    embedder: JobEmbedder,
}

async fn drive(
    daemon: &Arc<Daemon>,
    job: &Arc<Job>,
    request: SolveRequest,
    stream: Option<Outbox>,
) -> Ending {
    send_event(&stream, job.id, JobEvent::LoadingModels);
    let models = match load_models(daemon, &request).await {
        Ok(m) => m,
        Err(e) => return Ending::Failed(ErrorKind::Model, e),
    };
    if let Some(reason) = job.stop.check() {
        return Ending::Stopped(reason);
    }
    let (models, reservation) = match kv_estimate(models, &request).await {
        Ok(x) => x,
        Err(e) => return Ending::Failed(ErrorKind::Model, e),
    };
    let granted = match daemon
        .jobs
        .enqueue(job, reservation.total(), stream.clone())
    {
        Ok(g) => g,
        Err(Refusal::OverBudget { estimate, budget }) => {
            return Ending::Failed(
                ErrorKind::Resources,
                format!(
                    "this search may hold up to {estimate} bytes of live KV (prompt + width {} × \
                     max_total_tokens {}), more than the daemon's KV budget of {budget} bytes; \
                     set a --kv-limit, lower the width or max tokens, or start etsd with a \
                     larger --kv-budget",
                    request.config.width, request.config.max_total_tokens
                ),
            )
        }
        Err(refusal @ Refusal::QueueFull { .. }) => {
            return Ending::Failed(ErrorKind::Resources, refusal.to_string())
        }
    };
    tokio::select! {
        g = granted => if g.is_err() {
            return Ending::Failed(ErrorKind::Internal, "the queue dropped the job".into());
        },
        reason = job.stop.stopped() => return Ending::Stopped(reason),
    }
    send_event(&stream, job.id, JobEvent::Started);
    let thread_job = job.clone();
    let leaked = daemon.counters.clone();
    let result = run_on_thread("ets-search", move || {
        Ok(search(
            &thread_job,
            &request,
            models,
            reservation,
            stream,
            &leaked,
        ))
    })
    .await;
    match result {
        Ok(Ok(mut outcome)) => match job.stop.check() {
            // A deadline returns what the search found by then, marked partial.
            Some(StopReason::Deadline) if outcome.end == EndReason::Stopped => {
                outcome.end = EndReason::Deadline;
                Ending::Done(Box::new(outcome))
            }
            // A stop that lands after the last step still ends the job as asked.
            Some(reason) if outcome.end == EndReason::Stopped => Ending::Stopped(reason),
            _ => Ending::Done(Box::new(outcome)),
        },
        Ok(Err(message)) => match job.stop.check() {
            Some(reason) => Ending::Stopped(reason),
            None => Ending::Failed(ErrorKind::Search, message),
        },
        Err(message) => Ending::Failed(ErrorKind::Internal, message),
    }
}

async fn load_models(daemon: &Daemon, request: &SolveRequest) -> Result<JobModels, String> {
    let args = &daemon.args;
    let choice = &request.models;
    let policy_name = choice.policy.as_deref().unwrap_or(&args.policy);
    let prm_name = choice.prm.as_deref().unwrap_or(&args.prm);
    // The job's profile, else the remote PRM's own, else the daemon's.
    let remote_profile = daemon
        .registry
        .remotes()
        .get(prm_name)
        .and_then(|spec| spec.prm_profile);
    let profile_name = choice
        .prm_profile
        .as_deref()
        .or(remote_profile.as_deref())
        .unwrap_or(&args.prm_profile);
    let profile = PrmProfile::named_or_file(profile_name).map_err(|e| e.to_string())?;
    let engine = |name: &str| choice.engine.unwrap_or_else(|| args.engine_for_model(name));
    let policy = daemon
        .registry
        .acquire(policy_name, ModelRole::Policy, engine(policy_name))
        .await?;
    let prm = daemon
        .registry
        .acquire(prm_name, ModelRole::Prm, engine(prm_name))
        .await?;
    let needs_embedder =
        request.config.method == Method::Ets && request.config.effective_lambda_s() > 0.0;
    let name = choice.embedder.as_deref().unwrap_or(&args.embedder);
    let embedder = if !needs_embedder {
        JobEmbedder::None
    } else if name == POLICY_EMBEDDER {
        backends::check_policy_embeds_steps(&policy)?;
        JobEmbedder::Policy
    } else {
        JobEmbedder::Model(
            daemon
                .registry
                .acquire(name, ModelRole::Embedder, EngineChoice::Auto)
                .await?,
        )
    };
    Ok(JobModels {
        policy,
        prm,
        profile,
        embedder,
    })
}

/// A job's worst-case K/V, in bytes: every one of `width` open paths at the token cap, plus
/// the prompt, in the policy's cache and (on an engine that keeps it) in the PRM's. A search
/// with a KV limit never holds more than the limit's tokens live (the driver enforces it), so
/// its reservation is the limit when that is smaller.
#[derive(Debug, Clone, Copy)]
struct KvReservation {
    policy: u64,
    prm: u64,
}

impl KvReservation {
    fn total(self) -> u64 {
        self.policy.saturating_add(self.prm)
    }
}

/// Live tokens a job may hold: the prompt plus `width` paths at the token cap, or the KV
/// limit when that is smaller.
fn reserved_tokens(prompt: u64, width: u64, max_tokens: u64, kv_limit: Option<u64>) -> u64 {
    let worst = prompt.saturating_add(width.saturating_mul(max_tokens));
    kv_limit.map_or(worst, |limit| worst.min(limit))
}

/// Smallest cache a native backend gets, so tiny searches still reuse their prefixes.
const MIN_CACHE_BYTES: u64 = 64 << 20;

async fn kv_estimate(
    models: JobModels,
    request: &SolveRequest,
) -> Result<(JobModels, KvReservation), String> {
    let problem = request.problem.clone();
    let width = request.config.width as u64;
    let max_tokens = request.config.max_total_tokens as u64;
    let kv_limit = request.config.kv_limit;
    run_on_thread("ets-encode", move || {
        let prompt = backends::prompt_tokens(&models.policy, &problem)? as u64;
        let tokens = reserved_tokens(prompt, width, max_tokens, kv_limit);
        let policy = tokens.saturating_mul(backends::kv_bytes_per_token(&models.policy));
        // The PRM's render adds its own header; the prompt's length stands in for it.
        let prm = if backends::keeps_job_kv(&models.prm) {
            tokens.saturating_mul(backends::kv_bytes_per_token(&models.prm))
        } else {
            0
        };
        Ok((models, KvReservation { policy, prm }))
    })
    .await
}

/// The search itself, on a plain thread.
fn search(
    job: &Arc<Job>,
    request: &SolveRequest,
    models: JobModels,
    reservation: KvReservation,
    stream: Option<Outbox>,
    counters: &super::Counters,
) -> Result<SearchOutcome, String> {
    let (mut policy, mut embedder) = backends::policy_and_embedder(
        &models.policy,
        &models.embedder,
        reservation.policy.max(MIN_CACHE_BYTES),
    )?;
    policy.set_stop(Arc::new(JobStop(job.clone())));
    let mut reward = backends::reward(
        &models.prm,
        &models.profile,
        reservation.prm.max(MIN_CACHE_BYTES),
    )?;
    reward.set_stop(Arc::new(JobStop(job.clone())));
    let mut policy = Interruptible {
        inner: policy,
        one_at_a_time: !backends::keeps_job_kv(&models.policy),
        job,
    };
    let mut reward = Interruptible {
        inner: reward,
        one_at_a_time: !backends::keeps_job_kv(&models.prm),
        job,
    };
    let solver = BranchAndBound {
        time_limit: request.config.retention_time_limit,
        ..BranchAndBound::default()
    };
    let clusterer = AverageLinkage::new();
    let mut kv = KvTree::new(backends::kv_bytes_per_token(&models.policy));
    let progress = &job.progress;
    let on_event = |event: &SearchEvent| {
        match event {
            SearchEvent::Expanded { children, .. } => {
                progress.nodes.fetch_add(*children, Ordering::Relaxed);
            }
            SearchEvent::DepthDone {
                depth,
                live_tokens,
                live_bytes,
                ..
            } => {
                progress.depth.store(*depth, Ordering::Relaxed);
                progress.live_tokens.store(*live_tokens, Ordering::Relaxed);
                progress.live_bytes.store(*live_bytes, Ordering::Relaxed);
            }
            _ => {}
        }
        send_event(&stream, job.id, JobEvent::Search(event.clone()));
        match job.stop.check() {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    };
    let mut observer = JobObserver { on_event, job };
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: match embedder.as_mut() {
            Some(e) => Some(&mut **e),
            None => None,
        },
        solver: &solver,
        clusterer: &clusterer,
    };
    let result = run_search(
        &request.problem,
        &request.config,
        backends,
        &mut kv,
        &mut observer,
    );
    progress.live_tokens.store(0, Ordering::Relaxed);
    progress.live_bytes.store(0, Ordering::Relaxed);
    let left = kv.stats().live_nodes as u64;
    if left > 0 {
        tracing::error!(
            job = job.id,
            nodes = left,
            "a search returned still holding KV nodes"
        );
        counters.kv_nodes_leaked.fetch_add(left, Ordering::Relaxed);
    }
    drop(models);
    let mut outcome = result.map_err(|e| e.to_string())?;
    // What remote servers reported about this search's prompts.
    for reported in [
        policy.inner.server_prompt_tokens(),
        reward.inner.server_prompt_tokens(),
    ]
    .into_iter()
    .flatten()
    {
        outcome.stats.server_prompt_tokens_computed += reported.computed;
        outcome.stats.server_prompt_tokens_reused += reported.reused;
    }
    Ok(outcome)
}

/// The job's stop flag as ets-core's [`StopCheck`], asked by backends between forward passes.
struct JobStop(Arc<Job>);

impl StopCheck for JobStop {
    fn should_stop(&self) -> bool {
        self.0.stop.check().is_some()
    }
}

/// A backend that checks the job's stop flag before every request it passes on. A backend
/// that runs requests one after another (mistral.rs) gets them one at a time, so a cancel
/// lands within one node's children or one score; one that batches them (native) gets the
/// whole batch after one check, so a cancel lands within one depth's batched pass.
struct Interruptible<'a, T: ?Sized> {
    inner: Box<T>,
    one_at_a_time: bool,
    job: &'a Job,
}

#[derive(Debug, thiserror::Error)]
#[error("stopped: {0:?}")]
struct Stopped(StopReason);

impl<T: ?Sized> Interruptible<'_, T> {
    fn check(&self) -> Result<(), BackendError> {
        match self.job.stop.check() {
            Some(reason) => Err(Box::new(Stopped(reason))),
            None => Ok(()),
        }
    }
}

impl<T: Policy + ?Sized> Policy for Interruptible<'_, T> {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        self.inner.encode_prompt(problem)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        if !self.one_at_a_time {
            self.check()?;
            return self.inner.expand(requests);
        }
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            self.check()?;
            out.extend(self.inner.expand(std::slice::from_ref(r))?);
        }
        Ok(out)
    }

    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        self.inner.retain(live)
    }
}

impl<T: Reward + ?Sized> Reward for Interruptible<'_, T> {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        if !self.one_at_a_time {
            self.check()?;
            return self.inner.score(requests);
        }
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            self.check()?;
            out.extend(self.inner.score(std::slice::from_ref(r))?);
        }
        Ok(out)
    }

    fn retain(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), BackendError> {
        self.inner.retain(live)
    }
}
