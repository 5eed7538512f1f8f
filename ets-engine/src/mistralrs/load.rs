//! Loading a causal LM from local files into a warm mistral.rs engine, and the low-level
//! request plumbing the policy and the PRM share.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use either::Either;
use mistralrs::model_builder_trait::{
    build_gguf_pipeline, build_model_from_pipeline, build_text_pipeline,
};
use mistralrs::{
    Constraint, CustomLogitsProcessor, GgufModelBuilder, Model, NormalRequest, Request,
    RequestMessage, Response, SamplingParams, TextMessageRole, TextMessages, TextModelBuilder,
    TokenSource,
};
use tokenizers::Tokenizer;
use tokio::sync::mpsc::{Receiver, Sender};

use super::controller::LogitsRecorder;
use crate::error::Error;
use crate::files::{check_size, read_text, ModelFiles, MAX_SMALL_TEXT_BYTES, MAX_TOKENIZER_BYTES};
use crate::gguf_text::{ChatRole, GgufText};
use crate::sampling::DelimiterGuard;

/// How to load an engine.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Private `HF_HOME` for mistral.rs (loading creates `$HF_HOME/hub`); never the user's.
    pub hf_home: PathBuf,
    /// Most sequences the engine schedules at once.
    pub max_num_seqs: usize,
    /// Keep mistral.rs' prefix cacher. Off by default: on CPU it never evicts (+2.3 GB over
    /// 100 small requests) and mis-computes a position when a prompt extends a finished
    /// sequence.
    pub prefix_cache: bool,
    /// Share of GPU memory given to the PagedAttention pool (`cuda` builds only).
    pub gpu_memory_utilization: f32,
}

impl LoadOptions {
    /// Defaults with `HF_HOME` at `hf_home`.
    pub fn new(hf_home: impl Into<PathBuf>) -> Self {
        Self {
            hf_home: hf_home.into(),
            max_num_seqs: 32,
            prefix_cache: false,
            gpu_memory_utilization: 0.85,
        }
    }
}

/// A causal LM kept warm in a mistral.rs engine, with its tokenizer.
///
/// Shared (through `Arc`) by the policy and the PRM when one model plays both. Its methods
/// block on a private runtime: call them from a plain thread, never from inside an async task.
pub struct LlmEngine {
    runtime: tokio::runtime::Runtime,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    /// A GGUF model's own tokenizer and template: text is encoded here and mistral.rs gets
    /// token ids, because mistral.rs 0.8.1 splits every BPE GGUF's text with Qwen2's rule
    /// (see `gguf_text`). `None` for safetensors models (their `tokenizer.json` is exact).
    gguf_text: Option<GgufText>,
    eos: Arc<Vec<u32>>,
    token_texts: Vec<String>,
    guards: Mutex<HashMap<String, Arc<DelimiterGuard>>>,
    next_id: AtomicUsize,
    files: ModelFiles,
    kv_bytes_per_token: Option<u64>,
    /// Held while a request is in flight: one request at a time (see [`LlmEngine::run`]).
    in_flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LlmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmEngine")
            .field("files", &self.files)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl LlmEngine {
    /// Loads a model from local files.
    pub fn load(files: &ModelFiles, options: &LoadOptions) -> Result<Self, Error> {
        files.check()?;
        // Sizes checked against the file before mistral.rs' reader allocates them.
        let gguf_text = files
            .gguf_path()
            .map(|path| GgufText::from_file(&path))
            .transpose()?;
        if let ModelFiles::Safetensors { dir } = files {
            // Text mistral.rs reads whole: bounded before it does.
            for (name, format, max) in [
                ("tokenizer.json", "tokenizer JSON", MAX_TOKENIZER_BYTES),
                ("config.json", "config JSON", MAX_SMALL_TEXT_BYTES),
                (
                    "tokenizer_config.json",
                    "tokenizer config JSON",
                    MAX_TOKENIZER_BYTES,
                ),
            ] {
                let path = dir.join(name);
                if path.exists() {
                    check_size(&path, format, max)?;
                }
            }
        }
        std::fs::create_dir_all(&options.hf_home)
            .map_err(|e| Error::io("creating", &options.hf_home, e))?;
        if std::env::var_os("HF_HOME").as_deref() != Some(options.hf_home.as_os_str()) {
            // mistral.rs reads HF_HOME itself; nothing is fetched for local files.
            std::env::set_var("HF_HOME", &options.hf_home);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ets-engine-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting runtime for", files.dir(), e))?;
        let dir = files.dir().to_string_lossy().into_owned();
        let load_error = |e: anyhow::Error| Error::Load {
            path: files.dir().to_path_buf(),
            source: e.into(),
        };
        let prefix_cache_n = options.prefix_cache.then_some(16);
        let (model, tokenizer, eos) = runtime.block_on(async {
            let (pipeline, scheduler, add_config) = match files {
                ModelFiles::Gguf { file, .. } => {
                    let mut b = GgufModelBuilder::new(&dir, vec![file.clone()])
                        .with_token_source(TokenSource::None)
                        .with_max_num_seqs(options.max_num_seqs)
                        .with_prefix_cache_n(prefix_cache_n);
                    if let Some(paged) = paged_attention(options).map_err(load_error)? {
                        b = b.with_paged_attn(paged);
                    } else {
                        b = b.with_force_cpu();
                    }
                    build_gguf_pipeline(b).await.map_err(load_error)?
                }
                ModelFiles::Safetensors { .. } => {
                    let mut b = TextModelBuilder::new(&dir)
                        .with_token_source(TokenSource::None)
                        .with_max_num_seqs(options.max_num_seqs)
                        .with_prefix_cache_n(prefix_cache_n);
                    if let Some(paged) = paged_attention(options).map_err(load_error)? {
                        b = b.with_paged_attn(paged);
                    } else {
                        b = b.with_force_cpu();
                    }
                    build_text_pipeline(b).await.map_err(load_error)?
                }
            };
            let (tokenizer, eos) = {
                let p = pipeline.lock().await;
                (p.tokenizer(), p.get_metadata().eos_tok.clone())
            };
            let model = build_model_from_pipeline(pipeline, scheduler, add_config).await;
            Ok::<_, Error>((model, tokenizer, eos))
        })?;
        let tokenizer = match &gguf_text {
            Some(text) => text.tokenizer().clone(),
            None => tokenizer.ok_or_else(|| Error::tokenizer("the model has no tokenizer"))?,
        };
        let token_texts = (0..tokenizer.get_vocab_size(true) as u32)
            .map(|id| tokenizer.decode(&[id], false).unwrap_or_default())
            .collect();
        Ok(Self {
            runtime,
            model,
            tokenizer,
            gguf_text,
            eos: Arc::new(eos),
            token_texts,
            guards: Mutex::new(HashMap::new()),
            next_id: AtomicUsize::new(1),
            in_flight: tokio::sync::Mutex::new(()),
            kv_bytes_per_token: kv_bytes_per_token(files),
            files: files.clone(),
        })
    }

    /// The files the model was loaded from.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    /// Bytes of K/V cache one token takes in this engine (all layers, K and V), when the
    /// model's files say (`None` if they lack the shape fields).
    pub fn kv_bytes_per_token(&self) -> Option<u64> {
        self.kv_bytes_per_token
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The model's end-of-sequence token ids.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Token ids of `text` in this model's tokenizer.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, Error> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(Error::tokenizer)
    }

    /// Text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        self.tokenizer.decode(ids, false).map_err(Error::tokenizer)
    }

    /// Each token's own text, as used for delimiter checks.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.token_texts.get(id as usize).map(String::as_str)
    }

    /// Token ids of a chat rendered by the model's template, generation prompt appended.
    pub fn encode_chat(&self, turns: &[(ChatRole, String)]) -> Result<Vec<u32>, Error> {
        self.block_on(self.encode_chat_async(turns))
    }

    pub(crate) async fn encode_chat_async(
        &self,
        turns: &[(ChatRole, String)],
    ) -> Result<Vec<u32>, Error> {
        if let Some(text) = &self.gguf_text {
            return text.encode_chat(turns);
        }
        let mut messages = TextMessages::new();
        for (role, content) in turns {
            let role = match role {
                ChatRole::System => TextMessageRole::System,
                ChatRole::User => TextMessageRole::User,
                ChatRole::Assistant => TextMessageRole::Assistant,
            };
            messages = messages.add_message(role, content);
        }
        self.model
            .tokenize(Either::Left(messages), None, true, true, None)
            .await
            .map_err(Error::engine)
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub(crate) fn eos(&self) -> &Arc<Vec<u32>> {
        &self.eos
    }

    pub(crate) fn guard(&self, delimiter: &str) -> Arc<DelimiterGuard> {
        let mut guards = self.guards.lock().unwrap_or_else(|p| p.into_inner());
        guards
            .entry(delimiter.to_owned())
            .or_insert_with(|| Arc::new(DelimiterGuard::new(delimiter, &self.token_texts)))
            .clone()
    }

    fn sender(&self) -> Result<Sender<Request>, Error> {
        self.model.inner().get_sender(None).map_err(Error::engine)
    }

    /// Runs a completion of exactly `context` for at most `max_len` tokens, steered by
    /// `processor`, and waits for it.
    ///
    /// One request is in flight per engine. Measured on mistral.rs 0.8.1 (CPU): with two
    /// requests queued together, the first one's second token was drawn from logits that were
    /// not its own (a token of log-probability -7 where the same request alone, any number of
    /// times, drew one of -0.1), so children depended on what else was queued. Requests one at
    /// a time are exact and reproducible; on CPU batching barely helps (≈ 52 vs 60 tok/s).
    pub(crate) async fn run(
        &self,
        context: Vec<u32>,
        max_len: usize,
        processor: Arc<dyn CustomLogitsProcessor>,
    ) -> Result<(), Error> {
        let _one_at_a_time = self.in_flight.lock().await;
        let rx = self.submit(context, max_len, processor).await?;
        finished(rx).await
    }

    /// The engine's next-token logits after `context` (full vocabulary, before any sampling
    /// rule), read by the same one-token prefill path the PRM uses.
    pub fn next_token_logits(&self, context: &[u32]) -> Result<Vec<f32>, Error> {
        let recorder = Arc::new(LogitsRecorder::default());
        self.block_on(self.run(context.to_vec(), 1, recorder.clone()))?;
        recorder
            .logits()
            .ok_or_else(|| Error::engine("the engine produced no logits"))
    }

    /// Queues a completion of exactly `context` for at most `max_len` tokens, steered by
    /// `processor`; the answer arrives on the returned receiver.
    async fn submit(
        &self,
        context: Vec<u32>,
        max_len: usize,
        processor: Arc<dyn CustomLogitsProcessor>,
    ) -> Result<Receiver<Response>, Error> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let sampling_params = SamplingParams {
            // Our processor leaves one finite logit: greedy on it is the cheapest path.
            temperature: Some(0.0),
            max_len: Some(max_len),
            ..SamplingParams::neutral()
        };
        let request = NormalRequest {
            messages: RequestMessage::CompletionTokens(context),
            sampling_params,
            response: tx,
            return_logprobs: false,
            is_streaming: false,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            constraint: Constraint::None,
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: Some(vec![processor]),
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        self.sender()?
            .send(Request::Normal(Box::new(request)))
            .await
            .map_err(|_| Error::engine("the engine stopped"))?;
        Ok(rx)
    }
}

/// Waits for the answer to a submitted completion.
async fn finished(mut rx: Receiver<Response>) -> Result<(), Error> {
    match rx.recv().await {
        Some(Response::CompletionDone(_)) => Ok(()),
        Some(Response::CompletionModelError(message, _)) => Err(Error::engine(message)),
        Some(Response::InternalError(e)) | Some(Response::ValidationError(e)) => {
            Err(Error::engine(e))
        }
        Some(_) => Err(Error::engine("unexpected response kind to a completion")),
        None => Err(Error::engine("the engine dropped the request")),
    }
}

/// Bytes of one K/V element. mistral.rs 0.8.1 picks its "auto" dtype by trying a bf16 matmul
/// on the device (`determine_auto_dtype_all`), which succeeds on the CPU too, so K/V is bf16
/// (f16 on GPUs without bf16): two bytes everywhere.
const KV_ELEMENT_BYTES: u64 = 2;

/// K/V bytes per token from the model's shape: layers x 2 x kv heads x head dim x element.
fn kv_bytes_per_token(files: &ModelFiles) -> Option<u64> {
    let (layers, heads, kv_heads, hidden, head_dim) = match files {
        ModelFiles::Gguf { dir, file } => {
            let header = crate::gguf::GgufHeader::read(&dir.join(file)).ok()?;
            let arch = header.architecture().ok()?;
            let get = |key: &str| header.uint(&format!("{arch}.{key}"));
            (
                get("block_count")?,
                get("attention.head_count")?,
                get("attention.head_count_kv"),
                get("embedding_length")?,
                get("attention.key_length"),
            )
        }
        ModelFiles::Safetensors { dir } => {
            let config = dir.join("config.json");
            let text = read_text(&config, "config JSON", MAX_SMALL_TEXT_BYTES).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            let get = |key: &str| v.get(key).and_then(serde_json::Value::as_u64);
            (
                get("num_hidden_layers")?,
                get("num_attention_heads")?,
                get("num_key_value_heads"),
                get("hidden_size")?,
                get("head_dim"),
            )
        }
    };
    let head_dim = head_dim.unwrap_or(hidden / heads.max(1));
    Some(layers * 2 * kv_heads.unwrap_or(heads) * head_dim * KV_ELEMENT_BYTES)
}

#[cfg(feature = "cuda")]
fn paged_attention(
    options: &LoadOptions,
) -> anyhow::Result<Option<mistralrs::PagedAttentionConfig>> {
    // The 4096-token default pool is far too small for tree search: size it by memory.
    let config = mistralrs::PagedAttentionMetaBuilder::default()
        .with_gpu_memory(mistralrs::MemoryGpuConfig::Utilization(
            options.gpu_memory_utilization,
        ))
        .build()?;
    Ok(Some(config))
}

#[cfg(not(feature = "cuda"))]
fn paged_attention(_: &LoadOptions) -> anyhow::Result<Option<mistralrs::PagedAttentionConfig>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let gguf = ModelFiles::Gguf {
            dir: "/nonexistent/ets-model".into(),
            file: "m.gguf".into(),
        };
        let e = LlmEngine::load(&gguf, &LoadOptions::new("/nonexistent/hf")).unwrap_err();
        assert!(matches!(e, Error::MissingPath { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ets-model"), "{e}");
    }
}
