//! Matrix kernels of the native engine.
//!
//! - `q8_gemm`: [`PackedQ8`] (a Q8_0 weight repacked at load) and the tiled Q8_0 × Q8_0 GEMM,
//!   with a portable scalar loop.
//! - `avx2`: its AVX2 + FMA microkernel, chosen at run time ([`Kernel::detect`]).
//! - [`Projection`]: what the engine multiplies activations by: one or several stacked weight
//!   matrices (Q, K and V; gate and up) run as one product when all are Q8_0, else candle's
//!   `QMatMul` per matrix.
//!
//! `ETS_Q8_KERNEL=candle|scalar|avx2`, read at load, overrides the choice (for comparisons;
//! `avx2` on a CPU without it falls back to `scalar`).

#[cfg(target_arch = "x86_64")]
mod avx2;
mod q8_gemm;
#[cfg(test)]
mod tests;

pub(crate) use q8_gemm::{Kernel, PackedQ8};

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Storage, Tensor};
use rayon::prelude::*;

use super::attention_math::exp_nonpositive;

/// How Q8_0 weights are multiplied, from `ETS_Q8_KERNEL` or the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// candle's `QMatMul` (the engine's original path).
    Candle,
    /// Repacked weights and our GEMM with this inner loop.
    Packed(Kernel),
}

impl Choice {
    /// `ETS_Q8_KERNEL` when set to `candle`, `scalar` or `avx2`; else the fastest kernel.
    pub(crate) fn from_env() -> Self {
        match std::env::var("ETS_Q8_KERNEL").as_deref() {
            Ok("candle") => Choice::Candle,
            Ok("scalar") => Choice::Packed(Kernel::Scalar),
            _ => Choice::Packed(Kernel::detect()),
        }
    }
}

/// One or more weight matrices applied to the same input, outputs side by side.
#[derive(Debug)]
pub(crate) enum Projection {
    /// Q8_0 weights stacked into one packed matrix; `widths` splits its output.
    Packed {
        w: PackedQ8,
        widths: Vec<usize>,
        kernel: Kernel,
    },
    /// candle matmuls, one per part.
    Candle(Vec<QMatMul>),
}

impl Projection {
    /// Stacks `parts` (same input width) when `choice` packs and every part is a Q8_0
    /// quantized tensor; else keeps candle's matmuls.
    pub(crate) fn new(parts: Vec<QMatMul>, choice: Choice) -> Result<Self> {
        if let Choice::Packed(kernel) = choice {
            if let Some((w, widths)) = pack(&parts)? {
                return Ok(Projection::Packed { w, widths, kernel });
            }
        }
        Ok(Projection::Candle(parts))
    }

    /// `x` (`rows × k`) times each part: one `rows × width` tensor per part.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Projection::Candle(parts) => parts.iter().map(|m| m.forward(x)).collect(),
            Projection::Packed { w, widths, kernel } => {
                let rows = x.dim(0)?;
                let y = packed_product(w, *kernel, x)?;
                if let [n] = widths[..] {
                    return Ok(vec![Tensor::from_vec(y, (rows, n), x.device())?]);
                }
                let mut outs: Vec<Vec<f32>> = widths
                    .iter()
                    .map(|&n| Vec::with_capacity(rows * n))
                    .collect();
                for row in y.chunks_exact(w.n()) {
                    let mut at = 0;
                    for (out, &n) in outs.iter_mut().zip(widths) {
                        out.extend_from_slice(&row[at..at + n]);
                        at += n;
                    }
                }
                outs.into_iter()
                    .zip(widths)
                    .map(|(o, &n)| Tensor::from_vec(o, (rows, n), x.device()))
                    .collect()
            }
        }
    }

    /// `silu(x · gateᵀ) ⊙ (x · upᵀ)` for a projection of two parts, gate then up, of one width
    /// (a SwiGLU feed-forward's first half). Packed, the two halves of one product are combined
    /// row by row into the result; with candle's matmuls, by candle's operations.
    pub(crate) fn forward_gated(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Projection::Packed { w, widths, kernel }
                if widths.len() == 2 && widths[0] == widths[1] =>
            {
                let rows = x.dim(0)?;
                let width = widths[0];
                let y = packed_product(w, *kernel, x)?;
                let mut out = vec![0f32; rows * width];
                let combine = |(y, out): (&[f32], &mut [f32])| {
                    let (gate, up) = y.split_at(width);
                    silu_times(gate, up, out);
                };
                if rows * width >= 1 << 15 {
                    y.par_chunks_exact(2 * width)
                        .zip(out.par_chunks_exact_mut(width))
                        .for_each(combine);
                } else {
                    y.chunks_exact(2 * width)
                        .zip(out.chunks_exact_mut(width))
                        .for_each(combine);
                }
                Tensor::from_vec(out, (rows, width), x.device())
            }
            Projection::Packed { .. } | Projection::Candle(_) => {
                let gu = self.forward(x)?;
                let [gate, up] = &gu[..] else {
                    candle_core::bail!("a gated projection has {} parts, not 2", gu.len());
                };
                candle_nn::ops::silu(gate)? * up
            }
        }
    }

    /// The single part's product (a projection of one matrix).
    pub(crate) fn forward_one(&self, x: &Tensor) -> Result<Tensor> {
        let mut ys = self.forward(x)?;
        if ys.len() != 1 {
            candle_core::bail!("projection of {} parts used as one", ys.len());
        }
        Ok(ys.swap_remove(0))
    }
}

/// `x · Wᵀ` for a packed weight, as a plain row-major vector.
fn packed_product(w: &PackedQ8, kernel: Kernel, x: &Tensor) -> Result<Vec<f32>> {
    let x = x.contiguous()?;
    let rows = x.dim(0)?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("packed Q8_0 matmul runs on the CPU only");
    };
    let data = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    let len = layout.shape().elem_count();
    if len != rows * w.k() {
        candle_core::bail!("input {:?} is not rows × {}", layout.shape(), w.k());
    }
    Ok(q8_gemm::matmul(w, &data[start..start + len], kernel))
}

/// `out = silu(gate) ⊙ up`, `silu(g) = g · σ(g)`, with σ from [`exp_nonpositive`] of `−|g|`
/// (so the exponential never overflows): `σ(g) = 1 / (1 + e)` for `g ≥ 0`, `e / (1 + e)` below.
fn silu_times(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let e = exp_nonpositive(-g.abs());
        let sigma = if g >= 0.0 { 1.0 } else { e } / (1.0 + e);
        *o = g * sigma * u;
    }
}

/// The stacked, repacked weight of `parts` when all are Q8_0 with one input width.
fn pack(parts: &[QMatMul]) -> Result<Option<(PackedQ8, Vec<usize>)>> {
    let mut tensors: Vec<&Arc<QTensor>> = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            QMatMul::QTensor(t) if t.dtype() == GgmlDType::Q8_0 && t.rank() == 2 => tensors.push(t),
            _ => return Ok(None),
        }
    }
    let Some(first) = tensors.first() else {
        return Ok(None);
    };
    let k = first.shape().dims2()?.1;
    let mut data = Vec::with_capacity(tensors.len());
    let mut widths = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let (n, kt) = t.shape().dims2()?;
        if kt != k {
            return Ok(None);
        }
        data.push((n, t.data()?));
        widths.push(n);
    }
    let parts: Vec<(usize, &[u8])> = data.iter().map(|(n, d)| (*n, d.as_ref())).collect();
    Ok(PackedQ8::from_gguf_parts(k, &parts).map(|w| (w, widths)))
}
