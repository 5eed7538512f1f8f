//! The loop `ets batch` and `ets eval` share: many solves through one connection, at most
//! `concurrency` in flight, each result handed over as it ends, Ctrl-C stopping the run.
//! Unfinished jobs are cancelled when their tasks are dropped.

use anyhow::Context;
use ets_client::{Client, ClientError, JobResult, SolveRequest};
use tokio::task::JoinSet;

use super::{Globals, Interrupts};

/// How a run of solves ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEnd {
    /// Every solve ended and was handed over.
    Finished,
    /// Ctrl-C after the first solve was sent; the rest were cancelled or never sent.
    Interrupted,
    /// Ctrl-C while connecting: nothing was sent.
    NotStarted,
}

/// Solves every request of `todo`, handing each result with its item to `on_result` in the
/// order they end. An error from `on_result` stops the run and is returned.
pub async fn solve_all<T: Send + 'static>(
    g: &Globals,
    interrupts: &mut Interrupts,
    todo: Vec<(T, SolveRequest)>,
    concurrency: usize,
    mut on_result: impl FnMut(T, Result<JobResult, ClientError>) -> anyhow::Result<()>,
) -> anyhow::Result<QueueEnd> {
    let client = tokio::select! {
        client = g.connect(true) => client?,
        _ = interrupts.recv() => {
            eprintln!("ets: interrupted while connecting; nothing was started");
            return Ok(QueueEnd::NotStarted);
        }
    };
    let mut queue = todo.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < concurrency {
            let Some((item, request)) = queue.next() else {
                break;
            };
            let client: Client = client.clone();
            running.spawn(async move {
                let result = async { client.solve(request).await?.wait().await }.await;
                (item, result)
            });
        }
        let (item, result) = tokio::select! {
            joined = running.join_next() => match joined {
                None => return Ok(QueueEnd::Finished),
                Some(joined) => joined.context("a solve task panicked")?,
            },
            _ = interrupts.recv() => return Ok(QueueEnd::Interrupted),
        };
        on_result(item, result)?;
    }
}
