//! [`NativeEngine`]: the forward pass of a llama-family GGUF model over tree-structured K/V.
//!
//! One call of [`NativeEngine::forward`] runs any mix of sequences in one batch: a prefill of
//! a node's new tokens, one decode token of each sequence being expanded, a re-read of a
//! node's last token. Every sequence names the segments it continues (node payloads, oldest
//! first, each with how many tokens it sees) and owns a [`PendingKv`] that receives the K/V of
//! its new tokens. All rows of the batch go through each weight matrix together; attention is
//! [`tree_attention`] over the distinct segments of the batch, so a prefix shared by several
//! sequences is read once per layer for all of them.

use std::path::Path;

use candle_core::{Device, Tensor};
use half::f16;

use super::attention::{tree_attention, Heads, KvSlice, RowParts};
use super::kv::{with_slices, KvElem, KvPrecision, KvSegment, PendingKv};
use super::model::{self, apply_rope, ModelConfig, WeightMode, Weights};
use super::prompt_cache::{PromptCache, PromptCacheStats, WarmStart, DEFAULT_PROMPT_CACHE_BYTES};
use crate::error::Error;
use crate::gguf_text::GgufText;

/// Which logits a sequence wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None (the pass only extends its K/V).
    None,
    /// After its last new token.
    Last,
    /// After every new token.
    All,
}

/// One sequence of a batched forward pass.
#[derive(Debug, Clone)]
pub struct SeqInput<'a> {
    /// Segments it continues, oldest first, each with the number of its first tokens this
    /// sequence sees (a segment's full length, or fewer to re-read its tail).
    pub context: Vec<(&'a KvSegment, usize)>,
    /// New tokens; their K/V is appended to the sequence's [`PendingKv`], which the new
    /// tokens also attend over (after the context).
    pub tokens: &'a [u32],
    /// Which logits to return.
    pub logits: Logits,
    /// Also return the mean of the final (normed) hidden state over the new tokens.
    pub hidden_mean: bool,
}

/// What a forward pass returns for one sequence.
#[derive(Debug, Clone, Default)]
pub struct SeqOutput {
    /// One full-vocabulary row per asked position, in token order.
    pub logits: Vec<Vec<f32>>,
    /// Mean final hidden state over the new tokens, if asked.
    pub hidden_mean: Option<Vec<f32>>,
}

/// A llama-family GGUF model whose K/V lives in the caller's segments.
pub struct NativeEngine {
    config: ModelConfig,
    weights: Weights,
    text: GgufText,
    mode: WeightMode,
    tokens_processed: std::sync::atomic::AtomicU64,
    prompts: std::sync::Mutex<PromptCache>,
}

impl std::fmt::Debug for NativeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn candle(e: candle_core::Error) -> Error {
    Error::engine(e)
}

impl NativeEngine {
    /// Loads the GGUF file at `path` (llama, mistral or qwen2 architecture).
    pub fn load(path: &Path, mode: WeightMode) -> Result<Self, Error> {
        // Sizes checked against the file before candle's reader allocates what they claim.
        crate::gguf::GgufHeader::read(path)?;
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut file).map_err(|e| {
            Error::Candle {
                what: "reading GGUF header of",
                path: path.to_path_buf(),
                source: e,
            }
        })?;
        let text = GgufText::from_gguf(&content, path)?;
        let (config, weights) = model::load(&content, &mut file, path, mode)?;
        let prompts = PromptCache::new(config.kv_bytes_per_token(), DEFAULT_PROMPT_CACHE_BYTES);
        Ok(Self {
            config,
            weights,
            text,
            mode,
            tokens_processed: 0.into(),
            prompts: std::sync::Mutex::new(prompts),
        })
    }

    /// How it multiplies by its weights.
    pub fn mode(&self) -> WeightMode {
        self.mode
    }

    /// The model's shape.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Tokenizer, chat template and stop ids.
    pub fn text(&self) -> &GgufText {
        &self.text
    }

    /// New tokens run through the model since load (prefill and decode alike).
    pub fn tokens_processed(&self) -> u64 {
        self.tokens_processed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The longest warm prompt (see [`super::prompt_cache`]) that `context` starts with, or
    /// the longest start it shares with one. Counts a hit, a shared hit or a miss.
    pub(crate) fn warm_prompt(&self, context: &[u32]) -> Option<WarmStart> {
        self.prompts().lookup(context)
    }

    /// The warm K/V of exactly `tokens`, or of the longest start they share with a warm
    /// prompt. Counts like [`warm_prompt`](Self::warm_prompt).
    pub(crate) fn warm_span(&self, tokens: &[u32]) -> Option<WarmStart> {
        self.prompts().lookup_span(tokens)
    }

    /// Keeps the K/V of a prompt a job prefilled from the root, for later jobs.
    pub(crate) fn remember_prompt(&self, tokens: &[u32], segment: KvSegment) {
        self.prompts().insert(tokens, segment);
    }

    /// Sets the byte cap of the warm prompts ([`DEFAULT_PROMPT_CACHE_BYTES`] at load; 0 turns
    /// them off), evicting down to it.
    pub fn set_prompt_cache_bytes(&self, max_bytes: u64) {
        self.prompts().set_max_bytes(max_bytes);
    }

    /// Evicts warm prompts, least recently used first, down to `max_bytes` (the cap stays).
    pub fn trim_prompt_cache(&self, max_bytes: u64) {
        self.prompts().trim(max_bytes);
    }

    /// Hits, misses, tokens reused and bytes of the warm prompts.
    pub fn prompt_cache_stats(&self) -> PromptCacheStats {
        self.prompts().stats()
    }

    fn prompts(&self) -> std::sync::MutexGuard<'_, PromptCache> {
        // The cache holds no invariant a panicking holder could break halfway.
        self.prompts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty pending buffer for this model.
    pub fn pending(&self) -> PendingKv {
        PendingKv::new(&self.config)
    }

    /// Runs `seqs` as one batch; `pending[i]` belongs to `seqs[i]` and receives the K/V of its
    /// new tokens.
    ///
    /// The pass runs on a thread of rayon's pool: its parallel operations (products, attention)
    /// then split their work with the other pool threads directly. Called from outside the
    /// pool, each of them would be handed to the pool while this thread sleeps until it is
    /// done, two thread wake-ups per operation, hundreds per decoded token.
    pub fn forward(
        &self,
        seqs: &[SeqInput<'_>],
        pending: &mut [&mut PendingKv],
    ) -> Result<Vec<SeqOutput>, Error> {
        if rayon::current_thread_index().is_some() {
            self.forward_in_pool(seqs, pending)
        } else {
            rayon::scope(|_| self.forward_in_pool(seqs, pending))
        }
    }

    fn forward_in_pool(
        &self,
        seqs: &[SeqInput<'_>],
        pending: &mut [&mut PendingKv],
    ) -> Result<Vec<SeqOutput>, Error> {
        assert_eq!(seqs.len(), pending.len(), "one pending buffer per sequence");
        let cfg = &self.config;
        let w = &self.weights;
        let dev = Device::Cpu;
        // Distinct segments of the batch, and each sequence's parts among them.
        let mut segments: Vec<&KvSegment> = Vec::new();
        let mut seq_parts: Vec<Vec<(usize, usize)>> = Vec::with_capacity(seqs.len());
        for s in seqs {
            let mut parts = Vec::with_capacity(s.context.len() + 1);
            for &(seg, visible) in &s.context {
                assert!(
                    visible <= seg.len(),
                    "sees {visible} of {} tokens",
                    seg.len()
                );
                let i = match segments.iter().position(|x| std::ptr::eq(*x, seg)) {
                    Some(i) => i,
                    None => {
                        segments.push(seg);
                        segments.len() - 1
                    }
                };
                parts.push((i, visible));
            }
            seq_parts.push(parts);
        }
        // Rows: every new token of every sequence, with its position and attention parts.
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut parts: RowParts = Vec::new();
        let mut first_row = Vec::with_capacity(seqs.len());
        for (i, s) in seqs.iter().enumerate() {
            let before = pending[i].len();
            let start: usize = s.context.iter().map(|&(_, v)| v).sum::<usize>() + before;
            first_row.push(ids.len());
            for (j, &t) in s.tokens.iter().enumerate() {
                ids.push(t);
                positions.push(start + j);
                let mut p = seq_parts[i].clone();
                p.push((segments.len() + i, before + j + 1));
                parts.push(p);
            }
        }
        let rows = ids.len();
        if rows == 0 {
            return Ok(vec![SeqOutput::default(); seqs.len()]);
        }
        self.tokens_processed
            .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
        let ids_t = Tensor::new(ids.as_slice(), &dev).map_err(candle)?;
        let mut x = w.embedding.index_select(&ids_t, 0).map_err(candle)?;
        let shape = Heads {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: cfg.head_dim,
        };
        let eps = cfg.rms_eps as f32;
        for (l, layer) in w.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps).map_err(candle)?;
            let with_bias = |y: &Tensor, b: &Option<Tensor>| {
                let y = match b {
                    Some(b) => y.broadcast_add(b)?,
                    None => y.clone(),
                };
                y.flatten_all()?.to_vec1::<f32>()
            };
            let qkv = layer.qkv.forward(&h).map_err(candle)?;
            let mut q = with_bias(&qkv[0], &layer.bq).map_err(candle)?;
            let mut k = with_bias(&qkv[1], &layer.bk).map_err(candle)?;
            let v = with_bias(&qkv[2], &layer.bv).map_err(candle)?;
            apply_rope(&mut q, &positions, cfg.heads, cfg, &w.inv_freq);
            apply_rope(&mut k, &positions, cfg.kv_heads, cfg, &w.inv_freq);
            let row = cfg.kv_row();
            for (i, s) in seqs.iter().enumerate() {
                let (a, b) = (first_row[i] * row, (first_row[i] + s.tokens.len()) * row);
                pending[i].append(l, &k[a..b], &v[a..b]);
            }
            let seg_tensors: Vec<&Tensor> = segments
                .iter()
                .flat_map(|s| {
                    let (k, v) = s.layer(l);
                    [k, v]
                })
                .collect();
            let attn = match cfg.kv_precision {
                KvPrecision::F16 => attend::<f16>(&q, shape, &seg_tensors, pending, l, &parts)?,
                KvPrecision::F32 => attend::<f32>(&q, shape, &seg_tensors, pending, l, &parts)?,
            };
            let attn =
                Tensor::from_vec(attn, (rows, cfg.heads * cfg.head_dim), &dev).map_err(candle)?;
            let o = layer.wo.forward_one(&attn).map_err(candle)?;
            x = (x + o).map_err(candle)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps).map_err(candle)?;
            let mlp = || -> candle_core::Result<Tensor> {
                layer.down.forward_one(&layer.gate_up.forward_gated(&h)?)
            };
            x = (x + mlp().map_err(candle)?).map_err(candle)?;
        }
        // Rows whose logits are wanted, and the final norm.
        let mut wanted = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            let n = s.tokens.len();
            match s.logits {
                Logits::None => {}
                Logits::Last if n > 0 => wanted.push((first_row[i] + n - 1) as u32),
                Logits::Last => {}
                Logits::All => wanted.extend((0..n).map(|j| (first_row[i] + j) as u32)),
            }
        }
        let any_hidden = seqs.iter().any(|s| s.hidden_mean);
        let normed = if any_hidden {
            Some(candle_nn::ops::rms_norm(&x, &w.norm, eps).map_err(candle)?)
        } else {
            None
        };
        let mut logit_rows: Vec<Vec<f32>> = if wanted.is_empty() {
            Vec::new()
        } else {
            let picked = Tensor::new(wanted.as_slice(), &dev).map_err(candle)?;
            let hidden = match &normed {
                Some(n) => n.index_select(&picked, 0),
                None => x
                    .index_select(&picked, 0)
                    .and_then(|x| candle_nn::ops::rms_norm(&x, &w.norm, eps)),
            }
            .map_err(candle)?;
            w.output
                .forward_one(&hidden)
                .and_then(|l| l.to_vec2::<f32>())
                .map_err(candle)?
        };
        let hidden_rows: Option<Vec<Vec<f32>>> = match &normed {
            Some(n) => Some(n.to_vec2::<f32>().map_err(candle)?),
            None => None,
        };
        let mut out = Vec::with_capacity(seqs.len());
        let mut taken = logit_rows.drain(..);
        for (i, s) in seqs.iter().enumerate() {
            let n = s.tokens.len();
            let count = match s.logits {
                Logits::None => 0,
                Logits::Last => n.min(1),
                Logits::All => n,
            };
            let logits = taken.by_ref().take(count).collect();
            let hidden_mean = match (&hidden_rows, s.hidden_mean && n > 0) {
                (Some(h), true) => {
                    let mut mean = vec![0f32; cfg.hidden];
                    for r in &h[first_row[i]..first_row[i] + n] {
                        for (m, x) in mean.iter_mut().zip(r) {
                            *m += x / n as f32;
                        }
                    }
                    Some(mean)
                }
                _ => None,
            };
            out.push(SeqOutput {
                logits,
                hidden_mean,
            });
        }
        Ok(out)
    }

    /// Next-token logits after `tokens`, prefilled from scratch (no shared segment).
    pub fn logits_from_scratch(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, Error> {
        let mut pending = self.pending();
        let seq = SeqInput {
            context: Vec::new(),
            tokens,
            logits: Logits::All,
            hidden_mean: false,
        };
        Ok(self
            .forward(&[seq], &mut [&mut pending])?
            .swap_remove(0)
            .logits)
    }
}

/// Attention of layer `l` over the batch's segments (`segments`: K and V tensors of each, in
/// order) and every sequence's pending K/V, all stored as `T`.
fn attend<T: KvElem>(
    q: &[f32],
    shape: Heads,
    segments: &[&Tensor],
    pending: &[&mut PendingKv],
    l: usize,
    parts: &RowParts,
) -> Result<Vec<f32>, Error> {
    with_slices::<T, _>(segments, |data| {
        let mut slices: Vec<KvSlice<'_, T>> = data
            .chunks_exact(2)
            .map(|kv| KvSlice { k: kv[0], v: kv[1] })
            .collect();
        for p in pending {
            let (k, v) = p.layer::<T>(l);
            slices.push(KvSlice { k, v });
        }
        tree_attention(q, shape, &slices, parts)
    })
}
