//! A blocking [`Client`] for programs without an async runtime: the async [`crate::Client`]
//! driven by a small runtime of its own (one worker thread, so the connection keeps reading
//! between calls). No second protocol implementation.
//!
//! Call it from plain threads, never from inside a tokio runtime (blocking there panics).
//!
//! ```no_run
//! use ets_client::blocking::Client;
//! use ets_client::{ConnectOptions, SolveRequest};
//!
//! let client = Client::connect(ConnectOptions::new())?;
//! let result = client.solve(SolveRequest::new("What is 6 * 7?"))?.wait()?;
//! println!("{:?}", result.outcome.answer);
//! # Ok::<(), ets_client::ClientError>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use ets_core::protocol::{
    EngineChoice, JobEvent, JobId, JobInfo, ModelRole, SolveRequest, StatusReport, StoreModel,
};
use tokio::runtime::Runtime;

use crate::{ClientError, ConnectOptions, JobResult, PullReport};

/// The blocking twin of [`crate::Client`]; cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Client {
    inner: crate::Client,
    runtime: Arc<Runtime>,
}

/// The blocking twin of [`crate::Job`]; dropping an unfinished one cancels it.
#[derive(Debug)]
pub struct Job {
    // Dropped before the runtime: the job's cancel is queued while the runtime still runs.
    inner: crate::Job,
    runtime: Arc<Runtime>,
}

impl Client {
    /// Connects (see [`crate::Client::connect`]).
    pub fn connect(opts: ConnectOptions) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ets-client")
            .enable_all()
            .build()
            .map_err(|error| ClientError::Io {
                socket: opts.socket.clone(),
                error,
            })?;
        let inner = runtime.block_on(crate::Client::connect(opts))?;
        Ok(Self {
            inner,
            runtime: Arc::new(runtime),
        })
    }

    /// The async client this one drives (for code that has a runtime after all).
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        self.inner.socket()
    }

    /// The daemon's name and version.
    pub fn daemon(&self) -> &str {
        self.inner.daemon()
    }

    /// See [`crate::Client::solve`].
    pub fn solve(&self, request: SolveRequest) -> Result<Job, ClientError> {
        let inner = self.runtime.block_on(self.inner.solve(request))?;
        Ok(Job {
            inner,
            runtime: self.runtime.clone(),
        })
    }

    /// See [`crate::Client::cancel`].
    pub fn cancel(&self, job: JobId) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.cancel(job))
    }

    /// See [`crate::Client::list_jobs`].
    pub fn list_jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        self.runtime.block_on(self.inner.list_jobs())
    }

    /// See [`crate::Client::status`].
    pub fn status(&self) -> Result<StatusReport, ClientError> {
        self.runtime.block_on(self.inner.status())
    }

    /// See [`crate::Client::metrics`].
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.runtime.block_on(self.inner.metrics())
    }

    /// See [`crate::Client::list_models`].
    pub fn list_models(&self) -> Result<Vec<StoreModel>, ClientError> {
        self.runtime.block_on(self.inner.list_models())
    }

    /// See [`crate::Client::pull`].
    pub fn pull(&self, alias: impl Into<String>) -> Result<PullReport, ClientError> {
        self.runtime.block_on(self.inner.pull(alias))
    }

    /// See [`crate::Client::load_model`].
    pub fn load_model(
        &self,
        model: impl Into<String>,
        role: ModelRole,
        keep_alive_secs: Option<i64>,
        engine: Option<EngineChoice>,
    ) -> Result<(), ClientError> {
        self.runtime
            .block_on(self.inner.load_model(model, role, keep_alive_secs, engine))
    }

    /// See [`crate::Client::unload_model`].
    pub fn unload_model(&self, model: impl Into<String>) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.unload_model(model))
    }

    /// See [`crate::Client::pin_model`].
    pub fn pin_model(&self, model: impl Into<String>, pinned: bool) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.pin_model(model, pinned))
    }

    /// See [`crate::Client::shutdown`].
    pub fn shutdown(&self) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.shutdown())
    }
}

impl Job {
    /// The daemon's id of this job.
    pub fn id(&self) -> JobId {
        self.inner.id()
    }

    /// True once the job has ended.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// Blocks for the next progress event; `None` once the job has ended.
    pub fn next_event(&mut self) -> Option<JobEvent> {
        self.runtime.block_on(self.inner.next_event())
    }

    /// Blocks until the job ends (see [`crate::Job::wait`]).
    pub fn wait(self) -> Result<JobResult, ClientError> {
        self.wait_with(|_| {})
    }

    /// Blocks until the job ends, calling `on_event` for each event first.
    pub fn wait_with(self, on_event: impl FnMut(&JobEvent)) -> Result<JobResult, ClientError> {
        let Job { inner, runtime } = self;
        runtime.block_on(inner.wait_with(on_event))
    }

    /// Asks the daemon to cancel this job; its end still arrives through this handle.
    pub fn cancel(&self) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.cancel())
    }

    /// Lets the job run without this handle.
    pub fn detach(self) -> JobId {
        let Job { inner, runtime: _ } = self;
        inner.detach()
    }
}
