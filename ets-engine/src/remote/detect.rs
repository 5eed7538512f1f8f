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

/// One request of each kind on the first endpoint that is up: tokenize, a one-token step with
/// its token ids, next-token log-probabilities.
pub(super) fn check_capabilities(remote: &Remote) -> Result<(), String> {
    let Some(endpoint) = remote.pool.endpoints().iter().find(|e| e.is_up()) else {
        return Err("no endpoint is up".into());
    };
    let (http, base, d, model) = (
        &remote.http,
        &endpoint.url,
        remote.dialect,
        &remote.served_name,
    );
    // Only an answer says the server lacks something; a connection that failed (a kept-alive
    // connection the server had just closed, a server still starting) is retried, and if it
    // keeps failing the error says the check could not be made.
    let lacks = |what: &str, e: HttpError| match e {
        HttpError::Attempt(AttemptError::Permanent(m)) => {
            format!("endpoint {base} ({}) lacks {what}: {m}", d.name())
        }
        HttpError::Attempt(AttemptError::Transient(m)) => {
            format!(
                "endpoint {base} ({}) failed the check for {what}: {m}",
                d.name()
            )
        }
        HttpError::Stopped => "stopped".into(),
    };
    let ids = retried(|| d.tokenize(http, base, "Hello", false, model))
        .map_err(|e| lacks("tokenize", e))?;
    if ids.is_empty() {
        return Err(format!("endpoint {base} tokenizes `Hello` to no tokens"));
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
        return Err(format!(
            "endpoint {base} returns no next-token log-probabilities"
        ));
    }
    Ok(())
}

/// One embedding request on the first endpoint that is up.
pub(super) fn check_embeddings(remote: &Remote) -> Result<(), String> {
    let Some(endpoint) = remote.pool.endpoints().iter().find(|e| e.is_up()) else {
        return Err("no endpoint is up".into());
    };
    let (base, d) = (&endpoint.url, remote.dialect);
    retried(|| d.embed(&remote.http, base, &["Hello"], &remote.served_name)).map_err(|e| {
        let m = match e {
            HttpError::Attempt(AttemptError::Permanent(m) | AttemptError::Transient(m)) => m,
            HttpError::Stopped => "stopped".into(),
        };
        format!(
            "endpoint {base} ({}) does not embed text at /v1/embeddings (a llama-server needs \
             --embeddings): {m}",
            d.name()
        )
    })?;
    Ok(())
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
