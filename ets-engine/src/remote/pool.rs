//! Many endpoints serving one model: which endpoint a job uses, health, bounded in-flight
//! requests, and failover.
//!
//! - **Sticky jobs**: a job's requests go to the endpoint with the highest rendezvous hash of
//!   (job key, endpoint), so that endpoint's prefix cache holds the job's whole tree; the other
//!   endpoints, in hash order, are its failover order. Adding or losing an endpoint moves only
//!   the jobs that hashed to it.
//! - **Health**: an endpoint is marked down after [`PoolOptions::failures_to_down`] consecutive
//!   failed requests (connection errors, timeouts, 5xx) and skipped while down; a prober asks
//!   its health URL every [`PoolOptions::probe_every`] and marks it up again when it answers.
//! - **Retries**: a failed request is retried with exponential backoff, on the same endpoint
//!   first and then on the next in the job's order; a retry sends the same body (same seed), so a
//!   retry never changes a search's answer. Client errors (4xx) are not retried.
//! - **Bounds**: at most [`PoolOptions::max_in_flight`] requests per endpoint; more wait.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ets_core::StopHandle;

/// How a pool treats its endpoints.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most requests in flight to one endpoint.
    pub max_in_flight: usize,
    /// Consecutive failures that mark an endpoint down.
    pub failures_to_down: u32,
    /// Attempts of one request in all (first try included), across endpoints.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// How often a down endpoint is probed.
    pub probe_every: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            failures_to_down: 3,
            max_attempts: 4,
            backoff: Duration::from_millis(200),
            probe_every: Duration::from_secs(2),
        }
    }
}

/// What one attempt at a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// Worth retrying elsewhere: connection refused or reset, timeout, 5xx, a cut-off body.
    Transient(String),
    /// Retrying cannot help: a 4xx, or an answer the engine cannot use.
    Permanent(String),
}

/// One endpoint and what is known about it.
#[derive(Debug)]
pub struct Endpoint {
    /// Base URL, `http://host:port`, no trailing slash.
    pub url: String,
    up: AtomicBool,
    consecutive_failures: AtomicU64,
    in_flight: Mutex<usize>,
    slot_freed: Condvar,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Sum of latencies of successful requests, in microseconds.
    latency_us: AtomicU64,
    successes: AtomicU64,
    last_error: Mutex<Option<String>>,
    prompt_computed: AtomicU64,
    prompt_reused: AtomicU64,
}

/// A snapshot of one endpoint, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    /// Base URL.
    pub url: String,
    /// Whether requests go to it.
    pub up: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Mean latency of successful requests, in milliseconds.
    pub mean_latency_ms: f64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Prompt tokens the server says it computed.
    pub prompt_computed: u64,
    /// Prompt tokens the server says it reused from its prefix cache.
    pub prompt_reused: u64,
}

impl Endpoint {
    fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            up: AtomicBool::new(true),
            consecutive_failures: AtomicU64::new(0),
            in_flight: Mutex::new(0),
            slot_freed: Condvar::new(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            last_error: Mutex::new(None),
            prompt_computed: AtomicU64::new(0),
            prompt_reused: AtomicU64::new(0),
        }
    }

    /// Whether requests go to it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn status(&self) -> EndpointStatus {
        let successes = self.successes.load(Ordering::Relaxed);
        EndpointStatus {
            url: self.url.clone(),
            up: self.is_up(),
            in_flight: *lock(&self.in_flight),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            mean_latency_ms: if successes == 0 {
                0.0
            } else {
                self.latency_us.load(Ordering::Relaxed) as f64 / successes as f64 / 1000.0
            },
            last_error: lock(&self.last_error).clone(),
            prompt_computed: self.prompt_computed.load(Ordering::Relaxed),
            prompt_reused: self.prompt_reused.load(Ordering::Relaxed),
        }
    }

    /// Counts what the server said about one request's prompt.
    pub fn record_prompt(&self, computed: Option<u64>, reused: Option<u64>) {
        self.prompt_computed
            .fetch_add(computed.unwrap_or(0), Ordering::Relaxed);
        self.prompt_reused
            .fetch_add(reused.unwrap_or(0), Ordering::Relaxed);
    }

    /// Marks it down (it did not answer at load, or stopped answering during the load's
    /// checks); counted as an error.
    pub fn mark_down(&self, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(message.to_owned());
        if self.up.swap(false, Ordering::AcqRel) {
            tracing_down(&self.url, message);
        }
    }

    fn succeeded(&self, took: Duration) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.latency_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.up.store(true, Ordering::Release);
    }

    fn failed(&self, message: &str, failures_to_down: u32) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(message.to_owned());
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= u64::from(failures_to_down) && self.up.swap(false, Ordering::AcqRel) {
            tracing_down(&self.url, message);
        }
    }

    /// Marks it up after a successful probe.
    pub fn mark_up(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.up.store(true, Ordering::Release);
    }
}

fn tracing_down(url: &str, message: &str) {
    tracing::warn!(endpoint = url, error = message, "endpoint marked down");
}

/// A held in-flight slot of an endpoint.
struct Slot<'a>(&'a Endpoint);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.in_flight) -= 1;
        self.0.slot_freed.notify_one();
    }
}

/// The endpoints of one model.
#[derive(Debug)]
pub struct EndpointPool {
    endpoints: Vec<Arc<Endpoint>>,
    options: PoolOptions,
    waiting: AtomicUsize,
}

/// Why a request could not be served by any endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every attempt failed; the last error names its endpoint.
    #[error("{attempts} attempts failed; last: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error, naming its endpoint.
        last: String,
    },
    /// A request the engine cannot use (not retried).
    #[error("{0}")]
    Refused(String),
    /// The job was stopped while waiting or between attempts.
    #[error("stopped")]
    Stopped,
}

impl EndpointPool {
    /// A pool over `urls` (at least one).
    pub fn new(urls: &[String], options: PoolOptions) -> Self {
        Self {
            endpoints: urls.iter().map(|u| Arc::new(Endpoint::new(u))).collect(),
            options,
            waiting: AtomicUsize::new(0),
        }
    }

    /// The endpoints, in configuration order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Snapshots of every endpoint.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.endpoints.iter().map(|e| e.status()).collect()
    }

    /// The job's endpoint order: highest rendezvous hash of (job key, URL) first.
    pub fn order(&self, job_key: u64) -> Vec<Arc<Endpoint>> {
        let mut ranked: Vec<(u64, &Arc<Endpoint>)> = self
            .endpoints
            .iter()
            .map(|e| (rendezvous(job_key, &e.url), e))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.url.cmp(&b.1.url)));
        ranked.into_iter().map(|(_, e)| e.clone()).collect()
    }

    /// Runs `attempt` against the job's endpoints until one succeeds: the first endpoint in the
    /// job's order that is up, retrying transient failures with backoff and moving on to the
    /// next endpoint once one is marked down. Every attempt gets the same inputs.
    pub fn call<T>(
        &self,
        job_key: u64,
        stop: Option<&StopHandle>,
        mut attempt: impl FnMut(&Endpoint) -> Result<T, AttemptError>,
    ) -> Result<T, PoolError> {
        let order = self.order(job_key);
        if order.is_empty() {
            return Err(PoolError::Refused("no endpoint is configured".into()));
        }
        let mut last = String::new();
        let mut backoff = self.options.backoff;
        for n in 0..self.options.max_attempts.max(1) {
            if stop.is_some_and(|s| s.should_stop()) {
                return Err(PoolError::Stopped);
            }
            if n > 0 {
                sleep_unless_stopped(backoff, stop)?;
                backoff = backoff.saturating_mul(2);
            }
            // The first endpoint in the job's order that is up; if none is, the job's own
            // first choice (it may have come back).
            let endpoint = order
                .iter()
                .find(|e| e.is_up())
                .unwrap_or(&order[0])
                .clone();
            let slot = self.take_slot(&endpoint, stop)?;
            endpoint.requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = attempt(&endpoint);
            drop(slot);
            match result {
                Ok(value) => {
                    endpoint.succeeded(started.elapsed());
                    return Ok(value);
                }
                Err(AttemptError::Permanent(message)) => {
                    endpoint.errors.fetch_add(1, Ordering::Relaxed);
                    *lock(&endpoint.last_error) = Some(message.clone());
                    return Err(PoolError::Refused(format!("{}: {message}", endpoint.url)));
                }
                Err(AttemptError::Transient(message)) => {
                    endpoint.failed(&message, self.options.failures_to_down);
                    last = format!("{}: {message}", endpoint.url);
                }
            }
        }
        Err(PoolError::Exhausted {
            attempts: self.options.max_attempts.max(1),
            last,
        })
    }

    /// Waits for a free in-flight slot of `endpoint`.
    fn take_slot<'a>(
        &self,
        endpoint: &'a Endpoint,
        stop: Option<&StopHandle>,
    ) -> Result<Slot<'a>, PoolError> {
        let mut in_flight = lock(&endpoint.in_flight);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        while *in_flight >= self.options.max_in_flight.max(1) {
            if stop.is_some_and(|s| s.should_stop()) {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Stopped);
            }
            in_flight = endpoint
                .slot_freed
                .wait_timeout(in_flight, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        *in_flight += 1;
        Ok(Slot(endpoint))
    }

    /// Probes every down endpoint once with `probe`; an answering one is marked up.
    pub fn probe_down(&self, probe: impl Fn(&Endpoint) -> bool) {
        for e in &self.endpoints {
            if !e.is_up() && probe(e) {
                e.mark_up();
            }
        }
    }

    /// Most requests in flight to one endpoint.
    pub fn max_in_flight(&self) -> usize {
        self.options.max_in_flight.max(1)
    }

    /// How often down endpoints should be probed.
    pub fn probe_every(&self) -> Duration {
        self.options.probe_every
    }
}

fn sleep_unless_stopped(d: Duration, stop: Option<&StopHandle>) -> Result<(), PoolError> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.is_some_and(|s| s.should_stop()) {
            return Err(PoolError::Stopped);
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    Ok(())
}

/// Rendezvous (highest random weight) hash of a job key and an endpoint URL.
fn rendezvous(job_key: u64, url: &str) -> u64 {
    // FNV-1a over the URL, then a SplitMix64 finaliser with the key.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut x = h ^ job_key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
