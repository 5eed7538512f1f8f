//! A llama-family model's shape and weights, read from a GGUF file: the `llama` (also Mistral
//! GGUFs), `mistral` and `qwen2` architectures.
//!
//! Weights stay quantized ([`QMatMul`]); norms and the token embedding are dequantized to f32.
//! The rotary embedding follows the file: `{arch}.rope.freq_base`, the optional linear
//! `{arch}.rope.scaling.factor`, and per-frequency factors in `rope_freqs.weight` when present.
//! llama-architecture files rotate adjacent pairs (llama.cpp permutes Q/K when converting);
//! qwen2 files rotate the two halves of each head.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Tensor};

use super::kernels::{Choice, Projection};
use super::kv::KvPrecision;
use crate::error::Error;

/// Which elements RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Element `2i` with `2i + 1` (llama GGUFs).
    Interleaved,
    /// Element `i` with `i + head_dim / 2` (qwen2, "NeoX" style).
    Halves,
}

/// How the engine multiplies by the weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMode {
    /// Quantized weights; activations are quantized to the weights' dot-product type (8-bit
    /// for Q8_0), as candle's `QMatMul` does. Fast; what mistral.rs runs by default. K/V is
    /// stored in f16.
    #[default]
    Quantized,
    /// Weights dequantized to f32 and f32 matmuls, as mistral.rs runs when
    /// `CANDLE_DEQUANTIZE_ALL` is set. 4x the weight memory; no activation rounding; K/V
    /// stored in f32.
    F32,
}

/// The shape of a model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the output matrix).
    pub vocab: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Positions are divided by this (linear RoPE scaling); 1 when unscaled.
    pub rope_linear_factor: f32,
    /// Pairing of rotated elements.
    pub rope_style: RopeStyle,
    /// Element type of the stored K/V: f16 with quantized weights, f32 with f32 weights.
    pub kv_precision: KvPrecision,
}

impl ModelConfig {
    /// Bytes of K and V one token takes over all layers, in the stored precision.
    pub fn kv_bytes_per_token(&self) -> u64 {
        (self.layers * 2 * self.kv_heads * self.head_dim * self.kv_precision.bytes()) as u64
    }

    /// Elements of K (or V) one token takes in one layer.
    pub fn kv_row(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// One transformer block. Projections of the same input are stacked (Q, K, V; gate, up):
/// with Q8_0 weights they run as one packed product (`kernels`), else as candle matmuls.
pub(crate) struct Layer {
    pub attn_norm: Tensor,
    /// Q, K and V.
    pub qkv: Projection,
    pub bq: Option<Tensor>,
    pub bk: Option<Tensor>,
    pub bv: Option<Tensor>,
    pub wo: Projection,
    pub ffn_norm: Tensor,
    /// Gate and up.
    pub gate_up: Projection,
    pub down: Projection,
}

/// All weights of a model.
pub(crate) struct Weights {
    pub embedding: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub output: Projection,
    /// RoPE inverse frequencies, one per rotated pair.
    pub inv_freq: Vec<f32>,
}

/// Reads the config and weights of the GGUF at `path`.
pub(crate) fn load(
    content: &Content,
    file: &mut std::fs::File,
    path: &Path,
    mode: WeightMode,
) -> Result<(ModelConfig, Weights), Error> {
    let device = Device::Cpu;
    let bad = |message: String| Error::Load {
        path: path.to_path_buf(),
        source: message.into(),
    };
    let candle = |source: candle_core::Error| Error::Candle {
        what: "reading weights of",
        path: path.to_path_buf(),
        source,
    };
    let arch = architecture(content).ok_or_else(|| bad("no general.architecture".into()))?;
    let rope_style = match arch.as_str() {
        "llama" | "mistral" => RopeStyle::Interleaved,
        "qwen2" => RopeStyle::Halves,
        other => {
            return Err(bad(format!(
                "architecture {other:?} is not llama-family ({})",
                NATIVE_ARCHITECTURES.join(", ")
            )))
        }
    };
    let get = |key: &str| content.metadata.get(&format!("{arch}.{key}"));
    let int = |key: &str| -> Option<usize> {
        let v = get(key)?;
        v.to_u32()
            .map(|x| x as usize)
            .or_else(|_| v.to_u64().map(|x| x as usize))
            .ok()
    };
    let need = |key: &str| int(key).ok_or_else(|| bad(format!("no {arch}.{key}")));
    let float = |key: &str| get(key).and_then(|v| v.to_f32().ok());
    let heads = need("attention.head_count")?;
    let hidden = need("embedding_length")?;
    let head_dim = int("attention.key_length").unwrap_or(hidden / heads.max(1));
    let rope_dim = int("rope.dimension_count").unwrap_or(head_dim);
    if rope_dim != head_dim {
        return Err(bad(format!(
            "partial rotary embeddings ({rope_dim} of {head_dim}) are not supported"
        )));
    }
    let rope_linear_factor = match get("rope.scaling.type").and_then(|v| v.to_string().ok()) {
        Some(kind) if kind == "linear" => float("rope.scaling.factor").unwrap_or(1.0),
        Some(kind) if kind != "none" => {
            return Err(bad(format!("RoPE scaling {kind:?} is not supported")))
        }
        _ => 1.0,
    };
    let tensor = |name: &str, file: &mut std::fs::File| content.tensor(file, name, &device);
    let dense = |name: &str, file: &mut std::fs::File| -> Result<Tensor, Error> {
        tensor(name, file)
            .and_then(|t| t.dequantize(&device))
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(candle)
    };
    let matmul = |name: &str, file: &mut std::fs::File| -> Result<QMatMul, Error> {
        let t = tensor(name, file).map_err(candle)?;
        let dense_dtype = matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if mode == WeightMode::F32 || dense_dtype {
            let w = t.dequantize(&device).and_then(|w| w.to_dtype(DType::F32));
            Ok(QMatMul::Tensor(w.map_err(candle)?))
        } else {
            Ok(QMatMul::QTensor(Arc::new(t)))
        }
    };
    let choice = match mode {
        WeightMode::Quantized => Choice::from_env(),
        WeightMode::F32 => Choice::Candle,
    };
    let projection = |names: &[&str], file: &mut std::fs::File| -> Result<Projection, Error> {
        let parts = names
            .iter()
            .map(|name| matmul(name, file))
            .collect::<Result<Vec<_>, _>>()?;
        Projection::new(parts, choice).map_err(candle)
    };
    let optional = |name: &str, file: &mut std::fs::File| -> Result<Option<Tensor>, Error> {
        if content.tensor_infos.contains_key(name) {
            dense(name, file).map(Some)
        } else {
            Ok(None)
        }
    };
    let embedding = dense("token_embd.weight", file)?;
    let vocab = embedding.dim(0).map_err(candle)?;
    let output = if content.tensor_infos.contains_key("output.weight") {
        projection(&["output.weight"], file)?
    } else {
        projection(&["token_embd.weight"], file)?
    };
    let layers_n = need("block_count")?;
    let mut layers = Vec::with_capacity(layers_n);
    for i in 0..layers_n {
        let p = format!("blk.{i}");
        layers.push(Layer {
            attn_norm: dense(&format!("{p}.attn_norm.weight"), file)?,
            qkv: projection(
                &[
                    &format!("{p}.attn_q.weight"),
                    &format!("{p}.attn_k.weight"),
                    &format!("{p}.attn_v.weight"),
                ],
                file,
            )?,
            bq: optional(&format!("{p}.attn_q.bias"), file)?,
            bk: optional(&format!("{p}.attn_k.bias"), file)?,
            bv: optional(&format!("{p}.attn_v.bias"), file)?,
            wo: projection(&[&format!("{p}.attn_output.weight")], file)?,
            ffn_norm: dense(&format!("{p}.ffn_norm.weight"), file)?,
            gate_up: projection(
                &[
                    &format!("{p}.ffn_gate.weight"),
                    &format!("{p}.ffn_up.weight"),
                ],
                file,
            )?,
            down: projection(&[&format!("{p}.ffn_down.weight")], file)?,
        });
    }
    let norm = dense("output_norm.weight", file)?;
    let rope_base = float("rope.freq_base").unwrap_or(10_000.0);
    let mut inv_freq: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / rope_base.powf(i as f32 / head_dim as f32))
        .collect();
    if let Some(factors) = optional("rope_freqs.weight", file)? {
        let factors: Vec<f32> = factors
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(candle)?;
        if factors.len() != inv_freq.len() {
            return Err(bad(format!(
                "rope_freqs.weight has {} factors for {} frequencies",
                factors.len(),
                inv_freq.len()
            )));
        }
        for (f, k) in inv_freq.iter_mut().zip(factors) {
            *f /= k;
        }
    }
    let config = ModelConfig {
        kv_heads: int("attention.head_count_kv").unwrap_or(heads),
        layers: layers_n,
        hidden,
        heads,
        head_dim,
        vocab,
        rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
        rope_base,
        rope_linear_factor,
        rope_style,
        kv_precision: match mode {
            WeightMode::Quantized => KvPrecision::F16,
            WeightMode::F32 => KvPrecision::F32,
        },
        arch,
    };
    if config.heads % config.kv_heads != 0 {
        return Err(bad(format!(
            "{} query heads do not group over {} key/value heads",
            config.heads, config.kv_heads
        )));
    }
    let weights = Weights {
        embedding,
        layers,
        norm,
        output,
        inv_freq,
    };
    Ok((config, weights))
}

/// Rotates each head of each row in place; `rows[i]` holds `heads` heads of `head_dim` values
/// at position `positions[i]`.
pub(crate) fn apply_rope(
    x: &mut [f32],
    positions: &[usize],
    heads: usize,
    config: &ModelConfig,
    inv_freq: &[f32],
) {
    let hd = config.head_dim;
    let half = hd / 2;
    let mut cos = vec![0f32; half];
    let mut sin = vec![0f32; half];
    for (row, &pos) in x.chunks_exact_mut(heads * hd).zip(positions) {
        let p = pos as f32 / config.rope_linear_factor;
        for i in 0..half {
            let angle = p * inv_freq[i];
            cos[i] = angle.cos();
            sin[i] = angle.sin();
        }
        for head in row.chunks_exact_mut(hd) {
            for i in 0..half {
                let (a, b) = match config.rope_style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// `general.architecture` values the native engine runs.
pub const NATIVE_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2"];

fn architecture(content: &Content) -> Option<String> {
    content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
}
