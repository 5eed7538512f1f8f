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
                let x = x.contiguous()?;
                let rows = x.dim(0)?;
                let y = {
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
                    q8_gemm::matmul(w, &data[start..start + len], *kernel)
                };
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

    /// The single part's product (a projection of one matrix).
    pub(crate) fn forward_one(&self, x: &Tensor) -> Result<Tensor> {
        let mut ys = self.forward(x)?;
        if ys.len() != 1 {
            candle_core::bail!("projection of {} parts used as one", ys.len());
        }
        Ok(ys.swap_remove(0))
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
