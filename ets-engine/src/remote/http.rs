//! JSON over HTTP to one endpoint, cancellable: each request runs as a future on the engine's
//! runtime and is dropped (closing its connection, which tells the server to stop the task) as
//! soon as the job's stop check says stop. Failures are classified for the pool: connection
//! errors, timeouts, 5xx, 429 and unreadable bodies are transient; other 4xx are permanent.

use std::time::Duration;

use ets_core::StopHandle;
use serde_json::Value;

use super::pool::AttemptError;

/// Longest error body quoted in a message.
const QUOTE_BYTES: usize = 300;

/// An HTTP client for JSON requests with a per-request timeout.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

/// Why a request ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Retrying (here or elsewhere) may help, or not.
    Attempt(AttemptError),
    /// The job was stopped; the request was dropped.
    Stopped,
}

impl Http {
    /// A client whose requests run on `handle` and give up after `timeout`.
    pub fn new(handle: tokio::runtime::Handle, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .no_proxy()
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { client, handle })
    }

    /// POSTs `body` to `url` and parses the JSON answer.
    pub fn post(
        &self,
        url: &str,
        body: &Value,
        stop: Option<&StopHandle>,
    ) -> Result<Value, HttpError> {
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default());
        self.send(url, request, stop)
    }

    /// GETs `url` and parses the JSON answer.
    pub fn get(&self, url: &str, stop: Option<&StopHandle>) -> Result<Value, HttpError> {
        self.send(url, self.client.get(url), stop)
    }

    /// GETs `url` with a short timeout; true on any 2xx.
    pub fn probe(&self, url: &str) -> bool {
        let request = self.client.get(url).timeout(Duration::from_secs(2));
        // `send` arms the timeout's timer, so it runs inside the runtime (a prober thread is
        // outside every runtime context).
        self.handle
            .block_on(async move { request.send().await })
            .is_ok_and(|r| r.status().is_success())
    }

    fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        stop: Option<&StopHandle>,
    ) -> Result<Value, HttpError> {
        let exchange = async move {
            let response = request.send().await.map_err(|e| classify(&e))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| classify(&e))?;
            if !status.is_success() {
                let body = quote(&bytes);
                let message = format!("HTTP {status}: {body}");
                return Err(if status.is_server_error() || status.as_u16() == 429 {
                    AttemptError::Transient(message)
                } else {
                    AttemptError::Permanent(message)
                });
            }
            serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                AttemptError::Transient(format!("the answer is not JSON ({e}): {}", quote(&bytes)))
            })
        };
        let stopped = async {
            loop {
                if stop.is_some_and(|s| s.should_stop()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = url;
        self.handle.block_on(async {
            tokio::select! {
                r = exchange => r.map_err(HttpError::Attempt),
                _ = stopped => Err(HttpError::Stopped),
            }
        })
    }
}

fn classify(e: &reqwest::Error) -> AttemptError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    };
    AttemptError::Transient(format!("{what}: {}", error_chain(e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut end = text.len().min(QUOTE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end].chars().filter(|c| !c.is_control()).collect();
    if end < text.len() {
        out.push('…');
    }
    out
}
