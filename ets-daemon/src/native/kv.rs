//! Physical K/V: [`KvSegment`], the payload of one kvtree node (the K and V of its span for
//! every layer, as candle tensors), and [`PendingKv`], the growing K/V of a sequence's tokens
//! that are not in a node yet.
//!
//! Both are token-major: token `t`, key/value head `g` starts at `(t * kv_heads + g) * head_dim`
//! of a layer's buffer, so a forward pass appends rows without transposing and a node's
//! segment is a plain copy of a pending range.

use candle_core::{Device, Storage, Tensor};

use super::model::ModelConfig;
use crate::error::Error;

/// The K and V of one node's token span for every layer: tensors of shape
/// `[len, kv_heads, head_dim]`, f32, exactly `len` tokens (no spare capacity), so its size is
/// `len × kv_bytes_per_token`.
#[derive(Debug, Clone)]
pub struct KvSegment {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvSegment {
    /// Tokens in the segment.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by its tensors (every layer, K and V).
    pub fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|(k, v)| {
                (k.elem_count() * k.dtype().size_in_bytes()
                    + v.elem_count() * v.dtype().size_in_bytes()) as u64
            })
            .sum()
    }

    /// K and V of `layer`.
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }
}

/// K/V of the tokens a sequence has processed since its last node: one growing buffer per
/// layer for K and one for V.
#[derive(Debug, Clone)]
pub struct PendingKv {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    row: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl PendingKv {
    /// An empty buffer for a model of this shape.
    pub fn new(config: &ModelConfig) -> Self {
        Self {
            k: vec![Vec::new(); config.layers],
            v: vec![Vec::new(); config.layers],
            row: config.kv_row(),
            kv_heads: config.kv_heads,
            head_dim: config.head_dim,
        }
    }

    /// Tokens held (as of the last completed forward pass).
    pub fn len(&self) -> usize {
        self.k.last().map_or(0, |k| k.len() / self.row)
    }

    /// Whether it holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        self.k[layer].extend_from_slice(k);
        self.v[layer].extend_from_slice(v);
    }

    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.k[layer], &self.v[layer])
    }

    /// Tokens `start..end` as a node payload (copied into exact-size tensors).
    pub fn segment(&self, start: usize, end: usize) -> Result<KvSegment, Error> {
        assert!(
            start <= end && end <= self.len(),
            "pending range {start}..{end} of {}",
            self.len()
        );
        let (a, b) = (start * self.row, end * self.row);
        let shape = (end - start, self.kv_heads, self.head_dim);
        let tensor = |buf: &[f32]| {
            Tensor::from_vec(buf[a..b].to_vec(), shape, &Device::Cpu).map_err(Error::engine)
        };
        let layers = self
            .k
            .iter()
            .zip(&self.v)
            .map(|(k, v)| Ok((tensor(k)?, tensor(v)?)))
            .collect::<Result<_, Error>>()?;
        Ok(KvSegment {
            layers,
            len: end - start,
        })
    }

    /// All its tokens as a node payload.
    pub fn to_segment(&self) -> Result<KvSegment, Error> {
        self.segment(0, self.len())
    }
}

/// Runs `f` on the f32 data of contiguous CPU tensors (read locks held meanwhile).
pub(crate) fn with_slices<R>(
    tensors: &[&Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> Result<R, Error> {
    let guards: Vec<_> = tensors
        .iter()
        .map(|t| (t.storage_and_layout(), t.elem_count()))
        .collect();
    let mut slices = Vec::with_capacity(guards.len());
    for ((storage, layout), n) in &guards {
        let Storage::Cpu(cpu) = &**storage else {
            return Err(Error::engine("native K/V must live on the CPU"));
        };
        if !layout.is_contiguous() {
            return Err(Error::engine("native K/V tensors must be contiguous"));
        }
        let data = cpu.as_slice::<f32>().map_err(Error::engine)?;
        let start = layout.start_offset();
        slices.push(&data[start..start + n]);
    }
    Ok(f(&slices))
}
