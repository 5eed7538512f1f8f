//! Which server an endpoint runs and what it can do, asked once at load: `/props` answers on
//! llama.cpp (with `default_generation_settings`); vLLM lists its models at `/v1/models` with
//! `owned_by: "vllm"`. Then one tiny request of each kind ETS makes checks the capabilities, so a
//! server that lacks one fails the load with the endpoint and what it lacks.

use serde_json::Value;

use super::dialect::{Dialect, StepRequest};
use super::http::{Http, HttpError};
use super::pool::AttemptError;
use super::Remote;

/// Why an endpoint cannot be used.
#[derive(Debug)]
pub(super) enum DetectError {
    /// It does not answer (it may come back; it is marked down).
    Unreachable(String),
    /// It answers but cannot serve ETS.
    Unsupported(String),
}

fn unreachable(e: HttpError) -> DetectError {
    match e {
        HttpError::Attempt(AttemptError::Transient(m)) => DetectError::Unreachable(m),
        HttpError::Attempt(AttemptError::Permanent(m)) => DetectError::Unsupported(m),
        HttpError::Stopped => DetectError::Unreachable("stopped".into()),
    }
}

/// The endpoint's dialect (`forced` when given) and the first model it lists.
pub(super) fn detect(
    http: &Http,
    base: &str,
    forced: Option<Dialect>,
) -> Result<(Dialect, String), DetectError> {
    let models = http.get(&format!("{base}/v1/models"), None);
    let dialect = match forced {
        Some(d) => {
            models.as_ref().map_err(|e| unreachable(e.clone()))?;
            d
        }
        None => match http.get(&format!("{base}/props"), None) {
            Ok(props) if props.get("default_generation_settings").is_some() => Dialect::LlamaCpp,
            Err(HttpError::Attempt(AttemptError::Transient(m))) if models.is_err() => {
                return Err(DetectError::Unreachable(m))
            }
            _ => {
                let listed = models.as_ref().map_err(|e| unreachable(e.clone()))?;
                match owner(listed).as_deref() {
                    Some("vllm") => Dialect::Vllm,
                    Some("sglang") => {
                        return Err(DetectError::Unsupported(
                            Dialect::parse("sglang").unwrap_err(),
                        ))
                    }
                    other => {
                        return Err(DetectError::Unsupported(format!(
                            "cannot tell which server this is (no llama.cpp /props, \
                             /v1/models owned_by {other:?}); give its dialect (llama.cpp or \
                             vllm)"
                        )))
                    }
                }
            }
        },
    };
    let name = models
        .ok()
        .and_then(|m| m["data"][0]["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok((dialect, name))
}

fn owner(models: &Value) -> Option<String> {
    models["data"][0]["owned_by"].as_str().map(str::to_owned)
}

/// A check that failed on one endpoint; `transient` when no answer said why (a connection
/// refused or cut, a timeout, a 5xx).
struct CheckFailure {
    message: String,
    transient: bool,
}

/// Runs `check` on the endpoints that are up, in order, until one passes. An endpoint that stops
/// answering during its check (a server killed while the model loads) is marked down and the
/// next one is tried; an endpoint that still answers (its `/v1/models`) but fails a check fails
/// the load.
fn on_an_answering_endpoint(
    remote: &Remote,
    check: impl Fn(&str) -> Result<(), CheckFailure>,
) -> Result<(), String> {
    let mut last = None;
    for endpoint in remote.pool.endpoints().iter().filter(|e| e.is_up()) {
        match check(&endpoint.url) {
            Ok(()) => return Ok(()),
            Err(CheckFailure {
                message,
                transient: true,
            }) if !remote.http.probe(&format!("{}/v1/models", endpoint.url)) => {
                endpoint.mark_down(&message);
                last = Some(message);
            }
            Err(CheckFailure { message, .. }) => return Err(message),
        }
    }
    Err(last.unwrap_or_else(|| "no endpoint is up".into()))
}

/// One request of each kind on an endpoint that is up: tokenize, a one-token step with its
/// token ids, next-token log-probabilities.
pub(super) fn check_capabilities(remote: &Remote) -> Result<(), String> {
    on_an_answering_endpoint(remote, |base| check_capabilities_on(remote, base))
}

fn check_capabilities_on(remote: &Remote, base: &str) -> Result<(), CheckFailure> {
    let (http, d, model) = (&remote.http, remote.dialect, &remote.served_name);
    // Only an answer says the server lacks something; a connection that failed (a kept-alive
    // connection the server had just closed, a server still starting) is retried, and if it
    // keeps failing the error says the check could not be made.
    let lacks = |what: &str, e: HttpError| match e {
        HttpError::Attempt(AttemptError::Permanent(m)) => CheckFailure {
            message: format!("endpoint {base} ({}) lacks {what}: {m}", d.name()),
            transient: false,
        },
        HttpError::Attempt(AttemptError::Transient(m)) => CheckFailure {
            message: format!(
                "endpoint {base} ({}) failed the check for {what}: {m}",
                d.name()
            ),
            transient: true,
        },
        HttpError::Stopped => CheckFailure {
            message: "stopped".into(),
            transient: false,
        },
    };
    let ids = retried(|| d.tokenize(http, base, "Hello", false, model))
        .map_err(|e| lacks("tokenize", e))?;
    if ids.is_empty() {
        return Err(CheckFailure {
            message: format!("endpoint {base} tokenizes `Hello` to no tokens"),
            transient: false,
        });
    }
    let sampling = ets_core::SamplingConfig::default();
    let step = StepRequest {
        context: &ids,
        seed: 1,
        max_tokens: 1,
        sampling: &sampling,
        delimiter: "\n\n",
        model,
    };
    retried(|| d.complete(http, base, &step, None)).map_err(|e| {
        lacks(
            "completions from token ids with the sampled token ids returned",
            e,
        )
    })?;
    let next = retried(|| d.next_token_logprobs(http, base, &ids, 2, model, None))
        .map_err(|e| lacks("next-token log-probabilities", e))?;
    if next.top.is_empty() {
        return Err(CheckFailure {
            message: format!("endpoint {base} returns no next-token log-probabilities"),
            transient: false,
        });
    }
    Ok(())
}

/// One embedding request on an endpoint that is up.
pub(super) fn check_embeddings(remote: &Remote) -> Result<(), String> {
    on_an_answering_endpoint(remote, |base| {
        let d = remote.dialect;
        retried(|| d.embed(&remote.http, base, &["Hello"], &remote.served_name))
            .map(|_| ())
            .map_err(|e| {
                let (m, transient) = match e {
                    HttpError::Attempt(AttemptError::Permanent(m)) => (m, false),
                    HttpError::Attempt(AttemptError::Transient(m)) => (m, true),
                    HttpError::Stopped => ("stopped".into(), false),
                };
                let message = format!(
                    "endpoint {base} ({}) does not embed text at /v1/embeddings (a llama-server \
                     needs --embeddings): {m}",
                    d.name()
                );
                CheckFailure { message, transient }
            })
    })
}

/// `call`, tried again after 0.2, 0.4 and 0.8 s while it fails transiently.
fn retried<T>(mut call: impl FnMut() -> Result<T, HttpError>) -> Result<T, HttpError> {
    let mut wait = std::time::Duration::from_millis(200);
    for _ in 0..3 {
        match call() {
            Err(HttpError::Attempt(AttemptError::Transient(_))) => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    call()
}
