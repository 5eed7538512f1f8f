//! Requests a client sends, responses and events the daemon sends back.
//!
//! A connection opens with `Hello`; the daemon always answers with its own `Hello` (so a client
//! of any version learns the daemon's version), and when the versions differ it then sends
//! `Error { ProtocolMismatch }` naming both versions and closes the connection. After that the daemon handles a connection's requests in
//! order and answers each with exactly one *reply* — a response that names no job: `Accepted`,
//! `Jobs`, `Status`, `Metrics`, `Models`, `Pulled`, `Done` or `Error` — in the order the requests
//! were sent, so a client matches replies to requests first-in first-out. A `Solve` is answered
//! by `Accepted` (or `Error` when the request is invalid); that job's `Event`s (if asked) and its
//! one final `Result`, `Failed` or `Cancelled` follow, interleaved with other replies and other
//! jobs' messages, always after its `Accepted`. A client that disconnects cancels the jobs it
//! started.
//!
//! `Request::Hello` and `Response::Hello` are the first variants and keep their shape in every
//! protocol version, so any two versions can tell each other apart.

use serde::{Deserialize, Serialize};

use crate::config::SearchConfig;
use crate::search::{SearchEvent, SearchOutcome};

/// Daemon-assigned job id, unique for the daemon's lifetime.
pub type JobId = u64;

/// Which models a solve uses; `None` fields take the daemon's defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelChoice {
    /// Policy model: a store alias or a path.
    pub policy: Option<String>,
    /// Process reward model: a store alias or a path.
    pub prm: Option<String>,
    /// PRM profile name or profile file.
    pub prm_profile: Option<String>,
    /// Embedder for ETS clustering: a store alias or a path.
    pub embedder: Option<String>,
    /// Engine that runs the policy and the PRM; `None` takes the daemon's choice for each.
    pub engine: Option<EngineChoice>,
}

impl ModelChoice {
    /// True when every field takes the daemon's default.
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// One problem to solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolveRequest {
    /// A tag of the client's (a batch line id, say), echoed in the result.
    pub tag: Option<String>,
    /// The problem text.
    pub problem: String,
    /// Search settings.
    pub config: SearchConfig,
    /// Models.
    pub models: ModelChoice,
    /// Wall-clock budget in milliseconds from acceptance; the job fails past it.
    pub deadline_ms: Option<u64>,
    /// Send progress events, not only the result.
    pub stream_events: bool,
}

impl SolveRequest {
    /// A request with default settings and models.
    pub fn new(problem: impl Into<String>) -> Self {
        Self {
            tag: None,
            problem: problem.into(),
            config: SearchConfig::default(),
            models: ModelChoice::default(),
            deadline_ms: None,
            stream_events: true,
        }
    }
}

/// Role a model plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelRole {
    /// Policy LLM.
    Policy,
    /// Process reward model.
    Prm,
    /// Step embedder.
    Embedder,
}

/// Which implementation runs a causal LM (policy or PRM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// The native tree-attention engine for llama-family GGUF files on the CPU, mistral.rs for
    /// everything else (other formats and architectures, and `cuda` builds).
    #[default]
    Auto,
    /// The native tree-attention engine: K/V in the search tree, incremental PRM scoring.
    /// Llama, mistral and qwen2 GGUF files only.
    Native,
    /// mistral.rs.
    MistralRs,
    /// A serving engine elsewhere (llama.cpp server, vLLM, SGLang) over HTTP: the model is a
    /// remote model added by name (`etsd.toml`, `--remote`, `ets models add`).
    Remote,
}

impl EngineChoice {
    /// Every choice, in the order help texts list them.
    pub const ALL: [EngineChoice; 4] = [
        EngineChoice::Auto,
        EngineChoice::Native,
        EngineChoice::MistralRs,
        EngineChoice::Remote,
    ];

    /// The name flags and configs use.
    pub fn name(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Native => "native",
            EngineChoice::MistralRs => "mistralrs",
            EngineChoice::Remote => "remote",
        }
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(EngineChoice::Auto),
            "native" => Ok(EngineChoice::Native),
            "mistralrs" | "mistral.rs" | "mistral-rs" => Ok(EngineChoice::MistralRs),
            "remote" => Ok(EngineChoice::Remote),
            _ => Err(format!(
                "unknown engine `{s}` (expected auto, native, mistralrs or remote)"
            )),
        }
    }
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Opens the connection: the client's protocol version and name.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the client.
        protocol: u32,
        /// Free-form client name for logs.
        client: String,
    },
    /// Runs a search.
    Solve(Box<SolveRequest>),
    /// Cancels a job (any client's).
    Cancel {
        /// The job.
        job: JobId,
    },
    /// Lists queued and running jobs.
    ListJobs,
    /// Daemon status: models, jobs, totals.
    Status,
    /// Prometheus text exposition of the daemon's metrics.
    Metrics,
    /// Loads a model and keeps it warm.
    LoadModel {
        /// Alias or path.
        model: String,
        /// Role it is loaded for.
        role: ModelRole,
        /// Idle keep-alive in seconds; negative keeps it forever; `None` takes the default.
        keep_alive_secs: Option<i64>,
        /// Engine for a policy or PRM; `None` takes the daemon's choice.
        engine: Option<EngineChoice>,
    },
    /// Unloads a model.
    UnloadModel {
        /// Alias or path.
        model: String,
    },
    /// Pins (or unpins) a model so it is never unloaded for idleness.
    PinModel {
        /// Alias or path.
        model: String,
        /// Pin or unpin.
        pinned: bool,
    },
    /// Downloads a model into the store.
    Pull {
        /// Store alias.
        alias: String,
    },
    /// Lists the models the store knows (built-in aliases and pulled ones).
    ListModels,
    /// Adds (or replaces, when no job uses it) a model served elsewhere, by name.
    AddRemoteModel(RemoteModelSpec),
    /// Stops the daemon: running jobs fail with "shutting down".
    Shutdown,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for a search slot.
    Queued,
    /// Searching.
    Running,
}

/// A job in [`Response::Jobs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Id.
    pub job: JobId,
    /// Client tag.
    pub tag: Option<String>,
    /// State.
    pub state: JobState,
    /// Queue position (0 = next) while queued.
    pub queue_position: Option<usize>,
    /// Search method.
    pub method: crate::config::Method,
    /// Search width.
    pub width: usize,
    /// Deepest depth done.
    pub depth: usize,
    /// Nodes created so far.
    pub nodes: usize,
    /// Live KV tokens of its tree.
    pub live_tokens: u64,
    /// Live KV bytes of its tree.
    pub live_bytes: u64,
    /// Milliseconds since accepted.
    pub age_ms: u64,
    /// The first line of the problem.
    pub problem: String,
}

/// Whether a registered model can serve yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelState {
    /// Being pulled or loaded.
    Loading,
    /// Loaded and warm.
    Ready,
}

/// A model in [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Alias or path, as first asked for.
    pub model: String,
    /// The files it was loaded from.
    pub path: String,
    /// Loading or ready.
    pub state: ModelState,
    /// What runs it: `native`, `mistralrs` or `embedder`.
    pub engine: String,
    /// Jobs using it now.
    pub in_use: usize,
    /// Roles it is loaded for.
    pub roles: Vec<ModelRole>,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Bytes of its weight files.
    pub bytes: u64,
    /// Seconds since last use.
    pub idle_secs: u64,
    /// Idle keep-alive in seconds (negative = forever).
    pub keep_alive_secs: i64,
    /// Its endpoints, for a remote model (empty otherwise).
    pub endpoints: Vec<EndpointInfo>,
    /// Its warm prompts across jobs, on an engine that keeps them (the native one).
    pub prompt_cache: Option<PromptCacheStats>,
}

/// What a model's cache of warm prompts (root prompts' K/V kept across jobs) did so far, and
/// holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptCacheStats {
    /// Jobs' first prefills that found their prompt cached whole.
    pub hits: u64,
    /// Jobs' first prefills that found only a start of their prompt (a chat template's
    /// header) shared with a cached one, and computed the rest on it.
    pub shared_hits: u64,
    /// Jobs' first prefills that found nothing.
    pub misses: u64,
    /// Prompt tokens not prefilled thanks to hits and shared hits.
    pub tokens_reused: u64,
    /// Prompts cached now.
    pub entries: u64,
    /// Their K/V bytes.
    pub bytes: u64,
    /// The cap on those bytes (`etsd --prompt-cache`).
    pub max_bytes: u64,
}

/// A model served by remote engines: a named set of endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoteModelSpec {
    /// The name jobs use for it (`--policy NAME`, `--prm NAME`).
    pub name: String,
    /// Base URLs, `http://host:port`, one or many.
    pub endpoints: Vec<String>,
    /// The model name the servers expect in requests; `None`: the first one they list.
    pub served_name: Option<String>,
    /// The role it is meant for (checked against the servers' capabilities when loaded).
    pub role: Option<ModelRole>,
    /// PRM profile it is used with when it is the PRM and a job names none.
    pub prm_profile: Option<String>,
    /// Server dialect (`llama.cpp`, `vllm`, `sglang`); `None`: detected.
    pub dialect: Option<String>,
    /// Seconds one request may take before it counts as failed (and is retried elsewhere);
    /// `None`: 120.
    pub timeout_secs: Option<u32>,
}

/// One endpoint of a remote model, for status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Base URL.
    pub url: String,
    /// Whether jobs are sent to it (down after repeated failures, probed back up).
    pub up: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests sent since the model was loaded.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Mean latency of successful requests, in milliseconds.
    pub mean_latency_ms: f64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Prompt tokens the server reported computing.
    pub prompt_tokens_computed: u64,
    /// Prompt tokens the server reported reusing from its prefix cache.
    pub prompt_tokens_reused: u64,
}

/// Answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// Daemon version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// The socket it listens on.
    pub socket: String,
    /// Its model store.
    pub models_dir: String,
    /// Searches that may run at once.
    pub max_concurrent: usize,
    /// Connected clients.
    pub clients: usize,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Loaded models.
    pub models: Vec<ModelInfo>,
    /// Queued and running jobs.
    pub jobs: Vec<JobInfo>,
    /// Jobs finished since start.
    pub jobs_done: u64,
    /// Jobs failed since start.
    pub jobs_failed: u64,
    /// Jobs cancelled since start.
    pub jobs_cancelled: u64,
    /// Live KV tokens over all running jobs.
    pub live_kv_tokens: u64,
    /// Live KV bytes over all running jobs.
    pub live_kv_bytes: u64,
    /// KV nodes a search still held when it returned, summed over ended jobs (0 unless a
    /// search leaked references).
    pub kv_nodes_leaked: u64,
    /// KV byte budget, if any.
    pub kv_budget_bytes: Option<u64>,
    /// Bytes of the warm prompts kept across jobs, over all models. Under a KV budget they
    /// count in it and give way: a job that would not fit beside them evicts them.
    pub prompt_cache_bytes: u64,
}

/// Progress of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobEvent {
    /// Its models are being loaded (pulled first if the store lacks a built-in one).
    LoadingModels,
    /// Waiting; `position` jobs are ahead.
    Queued {
        /// Jobs ahead of this one.
        position: usize,
    },
    /// Models are loaded and the search started.
    Started,
    /// Progress of the search itself.
    Search(SearchEvent),
}

/// Machine-readable class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request was malformed or had bad values.
    BadRequest,
    /// Protocol versions differ.
    ProtocolMismatch,
    /// A model could not be found or loaded.
    Model,
    /// The search failed.
    Search,
    /// A resource limit (KV budget, queue) refused the job.
    Resources,
    /// The daemon is shutting down.
    ShuttingDown,
    /// No such job.
    UnknownJob,
    /// The job passed its deadline.
    Deadline,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// The kebab-case name logs use.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::ProtocolMismatch => "protocol-mismatch",
            ErrorKind::Model => "model",
            ErrorKind::Search => "search",
            ErrorKind::Resources => "resources",
            ErrorKind::ShuttingDown => "shutting-down",
            ErrorKind::UnknownJob => "unknown-job",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A response or event from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Handshake answer: the daemon's protocol version and name.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the daemon.
        protocol: u32,
        /// Daemon name and version.
        daemon: String,
    },
    /// A solve was accepted as this job.
    Accepted {
        /// The job.
        job: JobId,
    },
    /// Progress of a job.
    Event {
        /// The job.
        job: JobId,
        /// What happened.
        event: JobEvent,
    },
    /// A job's search finished.
    Result {
        /// The job.
        job: JobId,
        /// The client's tag.
        tag: Option<String>,
        /// The search's outcome.
        outcome: Box<SearchOutcome>,
    },
    /// A job failed.
    Failed {
        /// The job.
        job: JobId,
        /// Why.
        kind: ErrorKind,
        /// What went wrong, for people.
        message: String,
    },
    /// A job was cancelled.
    Cancelled {
        /// The job.
        job: JobId,
    },
    /// Answer to `ListJobs`.
    Jobs(Vec<JobInfo>),
    /// Answer to `Status`.
    Status(Box<StatusReport>),
    /// Answer to `Metrics`: Prometheus text exposition.
    Metrics(String),
    /// Answer to `ListModels`.
    Models(Vec<StoreModel>),
    /// Answer to `Pull`.
    Pulled {
        /// Store alias.
        alias: String,
        /// Folder it lives in.
        path: String,
        /// Bytes of its files.
        bytes: u64,
        /// It was already in the store (nothing was downloaded).
        already_present: bool,
    },
    /// The request was carried out.
    Done,
    /// The request failed (not tied to a job).
    Error {
        /// Class.
        kind: ErrorKind,
        /// What went wrong, for people.
        message: String,
    },
}

/// A model the store knows, in [`Response::Models`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreModel {
    /// Store alias.
    pub alias: String,
    /// What it is.
    pub description: String,
    /// Its files are in the store.
    pub pulled: bool,
    /// Bytes of its files (0 when not pulled).
    pub bytes: u64,
    /// Folder it lives (or would live) in.
    pub path: String,
    /// Loaded in the daemon now.
    pub loaded: bool,
}

impl Response {
    /// The job a response belongs to; `None` for replies to requests.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Response::Event { job, .. }
            | Response::Result { job, .. }
            | Response::Failed { job, .. }
            | Response::Cancelled { job } => Some(*job),
            _ => None,
        }
    }

    /// The variant's kebab-case name, for logs (`"result"`, `"cancelled"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Response::Hello { .. } => "hello",
            Response::Accepted { .. } => "accepted",
            Response::Event { .. } => "event",
            Response::Result { .. } => "result",
            Response::Failed { .. } => "failed",
            Response::Cancelled { .. } => "cancelled",
            Response::Jobs(_) => "jobs",
            Response::Status(_) => "status",
            Response::Metrics(_) => "metrics",
            Response::Models(_) => "models",
            Response::Pulled { .. } => "pulled",
            Response::Done => "done",
            Response::Error { .. } => "error",
        }
    }
}
