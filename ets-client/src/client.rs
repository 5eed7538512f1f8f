//! [`Client`]: the async SDK — one connection, any number of concurrent requests and jobs.

use std::path::Path;
use std::sync::Arc;

use ets_core::protocol::{
    EngineChoice, JobId, JobInfo, ModelRole, RemoteModelSpec, Request, Response, SolveRequest,
    StatusReport, StoreModel,
};
use serde::{Deserialize, Serialize};

use crate::conn::{Connection, Reply};
use crate::{ClientError, ConnectOptions, Job};

/// A connection to the daemon. Cheap to clone (clones share the connection); `Send + Sync`.
///
/// Requests may be made concurrently from many tasks; each gets its own reply. The connection
/// closes when the last clone and the last [`Job`] are dropped, and the daemon then cancels
/// the jobs still running on it.
#[derive(Debug, Clone)]
pub struct Client {
    conn: Arc<Connection>,
}

/// Answer to [`Client::pull`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    /// Store alias.
    pub alias: String,
    /// Folder it lives in.
    pub path: String,
    /// Bytes of its files.
    pub bytes: u64,
    /// It was already in the store (nothing was downloaded).
    pub already_present: bool,
}

impl Client {
    /// Connects to the daemon (starting it if `opts` says so) and checks its protocol version.
    ///
    /// Must be called inside a tokio runtime; the connection's tasks run on it.
    pub async fn connect(opts: ConnectOptions) -> Result<Self, ClientError> {
        let conn = crate::connect::connect(&opts).await?;
        Ok(Self {
            conn: Arc::new(conn),
        })
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        self.conn.socket()
    }

    /// The daemon's name and version, as it said hello.
    pub fn daemon(&self) -> &str {
        self.conn.daemon()
    }

    /// Sends one request and returns its reply; `Error` replies become
    /// [`ClientError::Server`].
    async fn call(&self, request: Request) -> Result<Reply, ClientError> {
        call_on(&self.conn, &request).await
    }

    /// Starts a search. Its events (if `request.stream_events`) and result arrive on the
    /// returned [`Job`].
    pub async fn solve(&self, request: SolveRequest) -> Result<Job, ClientError> {
        match self.call(Request::Solve(Box::new(request))).await? {
            Reply::Accepted(job, messages) => Ok(Job::new(job, messages, self.conn.clone())),
            Reply::Response(other) => Err(unexpected("Solve", other)),
        }
    }

    /// Cancels a job (any client's). The job's own handle then ends with
    /// [`ClientError::Cancelled`].
    pub async fn cancel(&self, job: JobId) -> Result<(), ClientError> {
        Self::cancel_on(&self.conn, job).await
    }

    pub(crate) async fn cancel_on(conn: &Connection, job: JobId) -> Result<(), ClientError> {
        expect_done("Cancel", call_on(conn, &Request::Cancel { job }).await?)
    }

    /// Queued and running jobs, of every client.
    pub async fn list_jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        match self.call(Request::ListJobs).await? {
            Reply::Response(Response::Jobs(jobs)) => Ok(jobs),
            other => Err(unexpected_reply("ListJobs", other)),
        }
    }

    /// The daemon's status: models, jobs, totals.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        match self.call(Request::Status).await? {
            Reply::Response(Response::Status(report)) => Ok(*report),
            other => Err(unexpected_reply("Status", other)),
        }
    }

    /// The daemon's metrics in the Prometheus text exposition format.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        match self.call(Request::Metrics).await? {
            Reply::Response(Response::Metrics(text)) => Ok(text),
            other => Err(unexpected_reply("Metrics", other)),
        }
    }

    /// The models the daemon's store knows.
    pub async fn list_models(&self) -> Result<Vec<StoreModel>, ClientError> {
        match self.call(Request::ListModels).await? {
            Reply::Response(Response::Models(models)) => Ok(models),
            other => Err(unexpected_reply("ListModels", other)),
        }
    }

    /// Downloads a model into the daemon's store (returns at once if it is there).
    pub async fn pull(&self, alias: impl Into<String>) -> Result<PullReport, ClientError> {
        let alias = alias.into();
        match self.call(Request::Pull { alias }).await? {
            Reply::Response(Response::Pulled {
                alias,
                path,
                bytes,
                already_present,
            }) => Ok(PullReport {
                alias,
                path,
                bytes,
                already_present,
            }),
            other => Err(unexpected_reply("Pull", other)),
        }
    }

    /// Loads a model for a role and keeps it warm for `keep_alive_secs` of idleness (negative:
    /// forever; `None`: the daemon's default), a policy or PRM on `engine` (`None`: the
    /// daemon's choice).
    pub async fn load_model(
        &self,
        model: impl Into<String>,
        role: ModelRole,
        keep_alive_secs: Option<i64>,
        engine: Option<EngineChoice>,
    ) -> Result<(), ClientError> {
        let request = Request::LoadModel {
            model: model.into(),
            role,
            keep_alive_secs,
            engine,
        };
        expect_done("LoadModel", self.call(request).await?)
    }

    /// Adds a model served by remote engines (or replaces one no job uses), by name; jobs then
    /// name it as their policy or PRM.
    pub async fn add_remote_model(&self, spec: RemoteModelSpec) -> Result<(), ClientError> {
        expect_done(
            "AddRemoteModel",
            self.call(Request::AddRemoteModel(spec)).await?,
        )
    }

    /// Unloads a model.
    pub async fn unload_model(&self, model: impl Into<String>) -> Result<(), ClientError> {
        let request = Request::UnloadModel {
            model: model.into(),
        };
        expect_done("UnloadModel", self.call(request).await?)
    }

    /// Pins a model (never unloaded for idleness) or unpins it.
    pub async fn pin_model(
        &self,
        model: impl Into<String>,
        pinned: bool,
    ) -> Result<(), ClientError> {
        let request = Request::PinModel {
            model: model.into(),
            pinned,
        };
        expect_done("PinModel", self.call(request).await?)
    }

    /// Stops the daemon; its running jobs fail with "shutting down". A connection the daemon
    /// closes before it replies counts as success.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        match self.call(Request::Shutdown).await {
            Ok(reply) => expect_done("Shutdown", reply),
            Err(ClientError::Disconnected { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

async fn call_on(conn: &Connection, request: &Request) -> Result<Reply, ClientError> {
    match conn.request(request).await? {
        Reply::Response(Response::Error { kind, message }) => {
            Err(ClientError::Server { kind, message })
        }
        reply => Ok(reply),
    }
}

fn expect_done(request: &'static str, reply: Reply) -> Result<(), ClientError> {
    match reply {
        Reply::Response(Response::Done) => Ok(()),
        other => Err(unexpected_reply(request, other)),
    }
}

fn unexpected_reply(request: &'static str, reply: Reply) -> ClientError {
    match reply {
        Reply::Response(response) => unexpected(request, response),
        Reply::Accepted(job, _) => unexpected(request, Response::Accepted { job }),
    }
}

fn unexpected(request: &'static str, reply: Response) -> ClientError {
    ClientError::UnexpectedReply {
        request,
        reply: format!("{reply:?}"),
    }
}
