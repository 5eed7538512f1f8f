//! [`Job`]: the handle of one accepted solve — its events as they come, then its result.

use std::sync::Arc;

use ets_core::protocol::{JobEvent, JobId, Request};
use ets_core::search::SearchOutcome;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::conn::{Connection, JobMessage};
use crate::ClientError;

/// A finished search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job.
    pub job: JobId,
    /// The tag the request carried.
    pub tag: Option<String>,
    /// What the search found.
    pub outcome: SearchOutcome,
}

/// A job the daemon accepted.
///
/// Read its progress with [`Job::next_event`] (cancel-safe, so it can sit in a
/// `tokio::select!`), then its result with [`Job::wait`]; or do both with [`Job::wait_with`].
///
/// Dropping a job that has not ended cancels it (use [`Job::detach`] to let it run unwatched).
/// A job also keeps its connection open: the connection closes, and the daemon cancels the jobs
/// still running on it, once the [`crate::Client`] and every `Job` are dropped.
#[derive(Debug)]
pub struct Job {
    id: JobId,
    messages: mpsc::UnboundedReceiver<JobMessage>,
    /// The job's end, from when it arrives until [`Job::wait`] takes it.
    end: Option<Result<JobResult, ClientError>>,
    /// The end has arrived (stays true after `wait` took it).
    finished: bool,
    conn: Arc<Connection>,
    detached: bool,
}

impl Job {
    pub(crate) fn new(
        id: JobId,
        messages: mpsc::UnboundedReceiver<JobMessage>,
        conn: Arc<Connection>,
    ) -> Self {
        Self {
            id,
            messages,
            end: None,
            finished: false,
            conn,
            detached: false,
        }
    }

    /// The daemon's id of this job.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// True once the job's result, failure or cancellation has arrived (or the connection
    /// was lost).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next progress event; `None` once the job has ended (then [`Job::wait`] returns at
    /// once). Cancel-safe: dropping the future loses nothing.
    pub async fn next_event(&mut self) -> Option<JobEvent> {
        if self.finished {
            return None;
        }
        let end = match self.messages.recv().await {
            Some(JobMessage::Event(event)) => return Some(event),
            Some(JobMessage::Result { tag, outcome }) => Ok(JobResult {
                job: self.id,
                tag,
                outcome: *outcome,
            }),
            Some(JobMessage::Failed { kind, message }) => Err(ClientError::JobFailed {
                job: self.id,
                kind,
                message,
            }),
            Some(JobMessage::Cancelled) => Err(ClientError::Cancelled { job: self.id }),
            None => Err(self.conn.disconnected()),
        };
        self.end = Some(end);
        self.finished = true;
        None
    }

    /// Waits for the job's end, skipping its remaining events.
    ///
    /// Errors: [`ClientError::JobFailed`] with the daemon's message,
    /// [`ClientError::Cancelled`], or [`ClientError::Disconnected`].
    pub async fn wait(self) -> Result<JobResult, ClientError> {
        self.wait_with(|_| {}).await
    }

    /// Waits for the job's end, calling `on_event` for each progress event first.
    pub async fn wait_with(
        mut self,
        mut on_event: impl FnMut(&JobEvent),
    ) -> Result<JobResult, ClientError> {
        while let Some(event) = self.next_event().await {
            on_event(&event);
        }
        self.end
            .take()
            .expect("next_event returns None only once the end is recorded")
    }

    /// Asks the daemon to cancel this job; its end ([`ClientError::Cancelled`], or a result
    /// that raced the cancel) still arrives through this handle.
    pub async fn cancel(&self) -> Result<(), ClientError> {
        crate::Client::cancel_on(&self.conn, self.id).await
    }

    /// Lets the job run without this handle: it is not cancelled, its messages are dropped.
    pub fn detach(mut self) -> JobId {
        self.detached = true;
        self.id
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.conn.forget_job(self.id);
        if !self.detached {
            self.conn.send_and_forget(&Request::Cancel { job: self.id });
        }
    }
}
