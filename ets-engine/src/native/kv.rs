//! Physical K/V: [`KvSegment`], the payload of one kvtree node (the K and V of its span for
//! every layer, as candle tensors), and [`PendingKv`], the growing K/V of a sequence's tokens
//! that are not in a node yet.
//!
//! Both are token-major: token `t`, key/value head `g` starts at `(t * kv_heads + g) * head_dim`
//! of a layer's buffer, so a forward pass appends rows without transposing and a node's
//! segment is a plain copy of a pending range.
//!
//! Elements are f32 or f16 ([`KvPrecision`]). K and V are rounded once, when appended, and
//! every reader (the token's own pass, later decodes, a segment copy) sees the same rounded
//! values, so results stay bit-identical however a context is split into segments.

use candle_core::{Device, Storage, Tensor, WithDType};
use half::f16;

use super::model::ModelConfig;
use crate::error::Error;

/// Element type of the stored K/V.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvPrecision {
    /// Half precision (10-bit mantissa): half the memory and memory traffic of f32, the same
    /// bytes per token as mistral.rs' bf16 cache. The default with quantized weights.
    #[default]
    F16,
    /// Single precision, for exactness checks against f32 references.
    F32,
}

impl KvPrecision {
    /// Bytes of one element.
    pub fn bytes(self) -> usize {
        match self {
            KvPrecision::F16 => 2,
            KvPrecision::F32 => 4,
        }
    }
}

/// An element type K/V can be stored in.
pub(crate) trait KvElem: WithDType + Copy + Send + Sync {
    /// Writes `src` rounded to this type into `dst`.
    fn round_from(src: &[f32], dst: &mut Vec<Self>);
    /// Reads `src` into `dst` (same length).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// The elements of a buffer of this type (panics on a buffer of another type: a model
    /// keeps one precision).
    fn of(buf: &KvBuf) -> &[Self];
}

impl KvElem for f32 {
    fn round_from(src: &[f32], dst: &mut Vec<Self>) {
        dst.extend_from_slice(src);
    }

    fn widen(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn of(buf: &KvBuf) -> &[Self] {
        match buf {
            KvBuf::F32(b) => b,
            KvBuf::F16(_) => panic!("f16 K/V read as f32"),
        }
    }
}

impl KvElem for f16 {
    fn round_from(src: &[f32], dst: &mut Vec<Self>) {
        use half::slice::HalfFloatSliceExt;
        let start = dst.len();
        dst.resize(start + src.len(), f16::ZERO);
        dst[start..].convert_from_f32_slice(src);
    }

    fn widen(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }

    fn of(buf: &KvBuf) -> &[Self] {
        match buf {
            KvBuf::F16(b) => b,
            KvBuf::F32(_) => panic!("f32 K/V read as f16"),
        }
    }
}

/// One layer's pending K or V, in the model's precision.
#[derive(Debug, Clone)]
pub(crate) enum KvBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvBuf {
    fn new(precision: KvPrecision) -> Self {
        match precision {
            KvPrecision::F32 => KvBuf::F32(Vec::new()),
            KvPrecision::F16 => KvBuf::F16(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            KvBuf::F32(b) => b.len(),
            KvBuf::F16(b) => b.len(),
        }
    }

    fn push(&mut self, values: &[f32]) {
        match self {
            KvBuf::F32(b) => f32::round_from(values, b),
            KvBuf::F16(b) => f16::round_from(values, b),
        }
    }

    fn tensor(&self, a: usize, b: usize, shape: (usize, usize, usize)) -> Result<Tensor, Error> {
        let t = match self {
            KvBuf::F32(buf) => Tensor::from_vec(buf[a..b].to_vec(), shape, &Device::Cpu),
            KvBuf::F16(buf) => Tensor::from_vec(buf[a..b].to_vec(), shape, &Device::Cpu),
        };
        t.map_err(Error::engine)
    }
}

/// The K and V of one node's token span for every layer: tensors of shape
/// `[len, kv_heads, head_dim]` in the model's [`KvPrecision`], exactly `len` tokens (no spare
/// capacity), so its size is `len × kv_bytes_per_token`.
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

    /// Its first `len` tokens: a view sharing this segment's tensors (no copy).
    pub(crate) fn prefix(&self, len: usize) -> KvSegment {
        assert!(len <= self.len, "prefix of {len} tokens of {}", self.len);
        let view = |t: &Tensor| t.narrow(0, 0, len).expect("a prefix within the segment");
        KvSegment {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (view(k), view(v)))
                .collect(),
            len,
        }
    }

    /// This segment's tokens followed by `next`'s, in new tensors of exactly that size.
    pub(crate) fn join(&self, next: &KvSegment) -> Result<KvSegment, Error> {
        let layers = self
            .layers
            .iter()
            .zip(&next.layers)
            .map(|((k, v), (nk, nv))| {
                let k = Tensor::cat(&[k, nk], 0).map_err(Error::engine)?;
                let v = Tensor::cat(&[v, nv], 0).map_err(Error::engine)?;
                Ok((k, v))
            })
            .collect::<Result<_, Error>>()?;
        Ok(KvSegment {
            layers,
            len: self.len + next.len,
        })
    }
}

/// K/V of the tokens a sequence has processed since its last node: one growing buffer per
/// layer for K and one for V.
#[derive(Debug, Clone)]
pub struct PendingKv {
    k: Vec<KvBuf>,
    v: Vec<KvBuf>,
    row: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl PendingKv {
    /// An empty buffer for a model of this shape.
    pub fn new(config: &ModelConfig) -> Self {
        Self {
            k: vec![KvBuf::new(config.kv_precision); config.layers],
            v: vec![KvBuf::new(config.kv_precision); config.layers],
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

    /// Appends K and V rows of `layer`, rounded to the model's precision.
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        self.k[layer].push(k);
        self.v[layer].push(v);
    }

    /// K and V of `layer` as elements of type `T` (the model's precision).
    pub(crate) fn layer<T: KvElem>(&self, layer: usize) -> (&[T], &[T]) {
        (T::of(&self.k[layer]), T::of(&self.v[layer]))
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
        let layers = self
            .k
            .iter()
            .zip(&self.v)
            .map(|(k, v)| Ok((k.tensor(a, b, shape)?, v.tensor(a, b, shape)?)))
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

/// Runs `f` on the data of contiguous CPU tensors of element type `T` (read locks held
/// meanwhile).
pub(crate) fn with_slices<T: KvElem, R>(
    tensors: &[&Tensor],
    f: impl FnOnce(&[&[T]]) -> R,
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
        let data = cpu.as_slice::<T>().map_err(Error::engine)?;
        let start = layout.start_offset();
        slices.push(&data[start..start + n]);
    }
    Ok(f(&slices))
}
