//! One job from acceptance to its final message: load its models, size its KV reservation,
//! wait in the queue, run the search on a plain thread, and turn how it ended into `Result`,
//! `Failed` or `Cancelled`.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ets_core::protocol::{ErrorKind, JobEvent, ModelRole, Response, SolveRequest};
use ets_core::search::{run_search, Backends, SearchEvent, SearchOutcome};
use ets_core::{
    BackendError, Continuation, Embedder, ExpandRequest, Method, Policy, Reward, ScoreRequest,
};
use ets_kvtree::KvTree;
use ets_solver::cluster::AverageLinkage;
use ets_solver::retention::BranchAndBound;

use super::jobs::{Job, Outbox, Refusal, StopReason};
use super::registry::{run_on_thread, ModelLease};
use super::Daemon;
use crate::backend::{BertEmbedder, MistralPolicy, MistralReward, PolicyOptions, PrmProfile};

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
            tracing::warn!(job = job.id, ?kind, %message, "job failed")
        }
        other => tracing::info!(job = job.id, end = ?std::mem::discriminant(other), "job ended"),
    }
    let _ = outbox.send(message);
    daemon.wake_idle_watch();
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
    embedder: Option<ModelLease>,
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
    let (models, estimate) = match kv_estimate(models, &request).await {
        Ok(x) => x,
        Err(e) => return Ending::Failed(ErrorKind::Model, e),
    };
    let granted = match daemon.jobs.enqueue(job, estimate, stream.clone()) {
        Ok(g) => g,
        Err(Refusal::OverBudget { estimate, budget }) => {
            return Ending::Failed(
                ErrorKind::Resources,
                format!(
                    "this search may hold up to {estimate} bytes of live KV (prompt + width {} × \
                     max_total_tokens {}), more than the daemon's KV budget of {budget} bytes; \
                     lower the width or max tokens, or start etsd with a larger --kv-budget",
                    request.config.width, request.config.max_total_tokens
                ),
            )
        }
        Err(Refusal::QueueFull(n)) => {
            return Ending::Failed(
                ErrorKind::Resources,
                format!("the job queue is full ({n} jobs wait); try again later"),
            )
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
        Ok(search(&thread_job, &request, models, stream, &leaked))
    })
    .await;
    match result {
        Ok(Ok(outcome)) => match job.stop.check() {
            // A stop that lands after the last step still ends the job as asked.
            Some(reason) if outcome.end == ets_core::search::EndReason::Stopped => {
                Ending::Stopped(reason)
            }
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
    let profile_name = choice.prm_profile.as_deref().unwrap_or(&args.prm_profile);
    let profile = PrmProfile::named_or_file(profile_name).map_err(|e| e.to_string())?;
    let policy = daemon
        .registry
        .acquire(policy_name, ModelRole::Policy)
        .await?;
    let prm = daemon.registry.acquire(prm_name, ModelRole::Prm).await?;
    let needs_embedder =
        request.config.method == Method::Ets && request.config.effective_lambda_s() > 0.0;
    let embedder = if needs_embedder {
        let name = choice.embedder.as_deref().unwrap_or(&args.embedder);
        Some(daemon.registry.acquire(name, ModelRole::Embedder).await?)
    } else {
        None
    };
    Ok(JobModels {
        policy,
        prm,
        profile,
        embedder,
    })
}

/// The job's worst-case live KV in bytes: every one of `width` open paths at the token cap,
/// plus the prompt.
async fn kv_estimate(
    models: JobModels,
    request: &SolveRequest,
) -> Result<(JobModels, u64), String> {
    let problem = request.problem.clone();
    let width = request.config.width as u64;
    let max_tokens = request.config.max_total_tokens as u64;
    run_on_thread("ets-encode", move || {
        let engine = models
            .policy
            .llm()
            .ok_or("the policy is not a causal LM")?
            .clone();
        let bytes_per_token = engine.kv_bytes_per_token().unwrap_or(0);
        let prompt = MistralPolicy::new(engine, PolicyOptions::default())
            .encode_prompt(&problem)
            .map_err(|e| format!("encoding the problem: {e}"))?
            .len() as u64;
        let tokens = prompt.saturating_add(width.saturating_mul(max_tokens));
        Ok((models, tokens.saturating_mul(bytes_per_token)))
    })
    .await
}

/// The search itself, on a plain thread.
fn search(
    job: &Job,
    request: &SolveRequest,
    models: JobModels,
    stream: Option<Outbox>,
    counters: &super::Counters,
) -> Result<SearchOutcome, String> {
    let policy_engine = models
        .policy
        .llm()
        .ok_or("the policy is not a causal LM")?
        .clone();
    let prm_engine = models
        .prm
        .llm()
        .ok_or("the PRM is not a causal LM")?
        .clone();
    let mut policy = Interruptible {
        inner: MistralPolicy::new(policy_engine.clone(), PolicyOptions::default()),
        job,
    };
    let mut reward = Interruptible {
        inner: MistralReward::new(prm_engine, &models.profile).map_err(|e| e.to_string())?,
        job,
    };
    let mut embedder = models
        .embedder
        .as_ref()
        .and_then(|l| l.embedder().cloned())
        .map(SharedEmbedder);
    let solver = BranchAndBound {
        time_limit: request.config.retention_time_limit,
        ..BranchAndBound::default()
    };
    let clusterer = AverageLinkage::new();
    let mut kv = KvTree::new(policy_engine.kv_bytes_per_token().unwrap_or(0));
    let progress = &job.progress;
    let mut observer = |event: &SearchEvent| {
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
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: embedder.as_mut().map(|e| e as &mut dyn Embedder),
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
    result.map_err(|e| e.to_string())
}

/// A backend that checks the job's stop flag before every request, so a cancel lands within
/// one child or one score, not one whole depth.
struct Interruptible<'a, T> {
    inner: T,
    job: &'a Job,
}

#[derive(Debug, thiserror::Error)]
#[error("stopped: {0:?}")]
struct Stopped(StopReason);

impl<T> Interruptible<'_, T> {
    fn check(&self) -> Result<(), BackendError> {
        match self.job.stop.check() {
            Some(reason) => Err(Box::new(Stopped(reason))),
            None => Ok(()),
        }
    }
}

impl<T: Policy> Policy for Interruptible<'_, T> {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        self.inner.encode_prompt(problem)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            self.check()?;
            out.extend(self.inner.expand(std::slice::from_ref(r))?);
        }
        Ok(out)
    }
}

impl<T: Reward> Reward for Interruptible<'_, T> {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            self.check()?;
            out.extend(self.inner.score(std::slice::from_ref(r))?);
        }
        Ok(out)
    }
}

/// The registry's shared embedder as ets-core's [`Embedder`].
struct SharedEmbedder(Arc<BertEmbedder>);

impl Embedder for SharedEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(self.0.embed_texts(texts)?)
    }
}
