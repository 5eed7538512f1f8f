//! # ets-client — the SDK for talking to `etsd`, and the `ets` command line
//!
//! **Owns**: reaching the daemon ([`ConnectOptions`], [`AutoStart`]), the client side of the
//! wire protocol (one connection, replies matched to requests first-in first-out, job messages
//! routed to their [`Job`]), the async [`Client`] and its [`blocking::Client`] twin, and — behind
//! the default `cli` feature — the `ets` binary.
//!
//! **Must not**: depend on the daemon crate or a model engine. It speaks only
//! [`ets_core::protocol`]; `ets serve` and auto-start *run* the `etsd` program. The library
//! needs tokio, interprocess and ets-core only: clap, indicatif, serde_json and anyhow belong to
//! the CLI.
//!
//! **Entry points**: [`Client::connect`], [`Client::solve`] → [`Job`] ([`Job::next_event`],
//! [`Job::wait`]); [`blocking::Client`]. Errors are one enum, [`ClientError`].
//!
//! **Invariants**: a request's reply waiter is queued before its frame is written, by the one
//! task that writes; a job's channel exists before any of its messages can be read. Closing the
//! connection (dropping the `Client` and every `Job`) makes the daemon cancel its jobs; dropping
//! one unfinished `Job` cancels that job.
//!
//! ## How an editor embeds the SDK
//!
//! Connect once (starting the daemon if nobody listens), start a search with progress events,
//! show them as they come, and cancel when the user asks:
//!
//! ```no_run
//! use ets_client::{AutoStart, Client, ClientError, ConnectOptions, JobEvent, Method, SolveRequest};
//!
//! # async fn editor(user_cancelled: tokio::sync::oneshot::Receiver<()>) -> Result<(), ClientError> {
//! let client = Client::connect(
//!     ConnectOptions::new()
//!         .autostart(AutoStart::etsd())
//!         .client_name("my-editor"),
//! )
//! .await?;
//!
//! let mut request = SolveRequest::new("What is the sum of the first 10 odd numbers?");
//! request.config.method = Method::Ets;
//! request.config.width = 16;
//! let mut job = client.solve(request).await?;
//!
//! tokio::pin!(user_cancelled);
//! let mut cancel_sent = false;
//! loop {
//!     tokio::select! {
//!         event = job.next_event() => match event {
//!             Some(JobEvent::Queued { position }) => println!("queued, {position} ahead"),
//!             Some(event) => println!("{event:?}"),
//!             None => break, // the job ended
//!         },
//!         _ = &mut user_cancelled, if !cancel_sent => {
//!             cancel_sent = true;
//!             job.cancel().await?; // the job then ends with ClientError::Cancelled
//!         }
//!     }
//! }
//! match job.wait().await {
//!     Ok(result) => println!("answer: {:?}", result.outcome.answer),
//!     Err(ClientError::Cancelled { job }) => println!("job {job} cancelled"),
//!     Err(e) => eprintln!("{e}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Programs without an async runtime use [`blocking::Client`], which has the same methods.

#![warn(missing_docs)]

pub mod blocking;
mod client;
mod conn;
mod connect;
mod error;
mod job;
pub mod store;

pub use client::{Client, PullReport};
pub use connect::{locate_etsd, AutoStart, ConnectOptions, ETSD_ENV};
pub use error::ClientError;
pub use job::{Job, JobResult};

// Everything a program embedding the SDK names, so that `ets-client` is its only dependency.
/// The protocol and search types themselves, for what the re-exports above leave out.
pub use ets_core;
pub use ets_core::protocol::{
    EndpointInfo, EngineChoice, ErrorKind, JobEvent, JobId, JobInfo, JobState, ModelChoice,
    ModelInfo, ModelRole, ModelState, RemoteModelSpec, SolveRequest, StatusReport, StoreModel,
};
pub use ets_core::search::{EndReason, SearchEvent, SearchOutcome, SearchStats, Trajectory};
pub use ets_core::{KvCost, Method, SamplingConfig, SearchConfig};

/// The README's example, compiled and checked as a doctest (with and without `cli`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;
