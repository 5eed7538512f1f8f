//! Q8_0 × Q8_0 matrix multiplication, tiled: `y = x · Wᵀ` for f32 activations `x` (`m × k`)
//! and a Q8_0 weight `W` (`n × k`, as GGUF stores it).
//!
//! - [`PackedQ8`]: the weight repacked once at load. Rows are taken [`GROUP`] at a time; for
//!   each 32-wide block of `k`, the group's `GROUP × 32` quants are contiguous, followed (in a
//!   separate array) by the group's `GROUP` scales as f32. A tile of weight rows is then one
//!   forward stream of memory. A last, short group is padded with zero rows (never written
//!   out).
//! - [`QuantizedRows`]: the activations quantized once per call to Q8_0 exactly as
//!   candle/ggml do it (per block `d = max|x| / 127` rounded to f16, `q = round(x / d)`).
//! - [`matmul`]: splits the weight groups into a few chunks for the rayon pool (one fork-join
//!   per call) and runs the AVX2 microkernel ([`super::avx2`]) when the CPU has AVX2 and FMA,
//!   else a portable scalar loop.
//!
//! Every output element is computed by the same sequence of operations whatever the batch
//! (`m`), the tile it falls in, or the chunking: a row's result never depends on the other
//! rows of the batch. The AVX2 path reproduces candle's `vec_dot_q8_0_q8_0` lane by lane
//! (eight f32 lanes, one FMA per block, the same horizontal sum), so it is bit-identical to
//! candle's `QMatMul` on the same machine.

use half::f16;
use rayon::prelude::*;

/// Values per Q8_0 block.
pub(crate) const QK: usize = 32;
/// Bytes of a GGUF Q8_0 block: an f16 scale and 32 quants.
pub(crate) const BLOCK_BYTES: usize = 34;
/// Weight rows interleaved per packed group (the microkernel's tile height).
pub(crate) const GROUP: usize = 4;

/// A Q8_0 weight matrix (`n` rows of `k` values) repacked for [`matmul`].
#[derive(Clone)]
pub(crate) struct PackedQ8 {
    n: usize,
    k: usize,
    /// `[group][block][row of group][32]`.
    qs: Vec<i8>,
    /// `[group][block][row of group]`.
    d: Vec<f32>,
}

impl std::fmt::Debug for PackedQ8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedQ8")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

impl PackedQ8 {
    /// Repacks row-major GGUF Q8_0 data: the parts are stacked (their rows concatenated), each
    /// `rows × k` values, `rows * k / 32` blocks of [`BLOCK_BYTES`]. `None` when `k` is not a
    /// multiple of 32 or a part's byte count does not match.
    pub(crate) fn from_gguf_parts(k: usize, parts: &[(usize, &[u8])]) -> Option<Self> {
        if k == 0 || k % QK != 0 {
            return None;
        }
        let kb = k / QK;
        let row_bytes = kb * BLOCK_BYTES;
        if parts
            .iter()
            .any(|&(rows, data)| data.len() != rows * row_bytes)
        {
            return None;
        }
        let rows: Vec<&[u8]> = parts
            .iter()
            .flat_map(|&(_, data)| data.chunks_exact(row_bytes))
            .collect();
        let n = rows.len();
        let groups = n.div_ceil(GROUP);
        let mut qs = vec![0i8; groups * kb * GROUP * QK];
        let mut d = vec![0f32; groups * kb * GROUP];
        for (i, row) in rows.iter().enumerate() {
            let (g, r) = (i / GROUP, i % GROUP);
            for (b, block) in row.chunks_exact(BLOCK_BYTES).enumerate() {
                let slot = (g * kb + b) * GROUP + r;
                d[slot] = f16::from_le_bytes([block[0], block[1]]).to_f32();
                for (q, &byte) in qs[slot * QK..(slot + 1) * QK].iter_mut().zip(&block[2..]) {
                    // -128 is outside Q8_0's range (quantizers round into ±127); the AVX2
                    // kernel's sign trick needs every quant's negation to fit in an i8.
                    *q = (byte as i8).max(-127);
                }
            }
        }
        Some(Self { n, k, qs, d })
    }

    /// Output width (weight rows).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    fn groups(&self) -> usize {
        self.n.div_ceil(GROUP)
    }
}

/// Activations quantized to Q8_0, row-major: `qs` is `[row][block][32]`, `d` is `[row][block]`.
pub(crate) struct QuantizedRows {
    pub(crate) m: usize,
    pub(crate) kb: usize,
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes `x` (`m × k`, `k` a multiple of 32) as candle's `BlockQ8_0::from_float`
    /// does: the scale is `max|x| / 127`, stored as f16; the quants are `round(x / scale)`
    /// computed with the unrounded scale's inverse, rounding halves away from zero.
    pub(crate) fn quantize(x: &[f32], k: usize) -> Self {
        assert!(k % QK == 0 && x.len() % k.max(1) == 0);
        let m = x.len().checked_div(k).unwrap_or(0);
        let kb = k / QK;
        let mut qs = vec![0i8; m * k];
        let mut d = vec![0f32; m * kb];
        let quantize_blocks = |(xs, (qs, d)): (&[f32], (&mut [i8], &mut [f32]))| {
            for ((xs, q), d) in xs
                .chunks_exact(QK)
                .zip(qs.chunks_exact_mut(QK))
                .zip(d.iter_mut())
            {
                let amax = xs.iter().fold(0f32, |a, &x| a.max(x.abs()));
                let scale = amax / 127.0;
                let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
                *d = f16::from_f32(scale).to_f32();
                for (q, &x) in q.iter_mut().zip(xs) {
                    *q = (x * inv).round() as i8;
                }
            }
        };
        // A prefill's rows are quantized in parallel (the rest of the product is); a decode
        // step's few rows are not worth a fork.
        let rows_per_task = (MIN_PARALLEL_WORK / 16 / k.max(1)).max(1);
        if m > rows_per_task {
            x.par_chunks(rows_per_task * k)
                .zip(
                    qs.par_chunks_mut(rows_per_task * k)
                        .zip(d.par_chunks_mut(rows_per_task * kb)),
                )
                .for_each(quantize_blocks);
        } else {
            quantize_blocks((x, (&mut qs, &mut d)));
        }
        Self { m, kb, qs, d }
    }
}

/// Which inner loop [`matmul`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// The portable loop (any CPU).
    Scalar,
    /// AVX2 + FMA tiles (x86-64 with both, detected at run time).
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }
}

/// A raw output pointer that chunks running on other threads write through; each chunk
/// writes only its own columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: chunks write disjoint elements, and `matmul` outlives them (rayon joins before it
// returns).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Multiply-accumulates per call below which the whole product runs on the calling thread.
const MIN_PARALLEL_WORK: usize = 1 << 18;

/// `x · Wᵀ` (`m × n`, row-major) for activations `x` (`m × k`).
pub(crate) fn matmul(w: &PackedQ8, x: &[f32], kernel: Kernel) -> Vec<f32> {
    let xq = QuantizedRows::quantize(x, w.k);
    let mut out = vec![0f32; xq.m * w.n];
    matmul_quantized(w, &xq, &mut out, kernel);
    out
}

/// `out = xq · Wᵀ` with activations already quantized; `out` is `m × n`, row-major.
pub(crate) fn matmul_quantized(w: &PackedQ8, xq: &QuantizedRows, out: &mut [f32], kernel: Kernel) {
    assert_eq!(xq.kb * QK, w.k, "activation width");
    assert_eq!(out.len(), xq.m * w.n, "output size");
    if xq.m == 0 || w.n == 0 {
        return;
    }
    let groups = w.groups();
    let work = xq.m * w.n * w.k;
    let threads = rayon::current_num_threads().max(1);
    // A few chunks per thread so a slow core does not hold up the others, each big enough to
    // amortise its scheduling.
    let chunks = if work < MIN_PARALLEL_WORK || threads == 1 {
        1
    } else {
        (threads * 4)
            .min(work / MIN_PARALLEL_WORK * threads)
            .max(threads)
    };
    let per_chunk = groups.div_ceil(chunks.min(groups));
    let ptr = Out(out.as_mut_ptr());
    let run = |first: usize| {
        let last = (first + per_chunk).min(groups);
        // SAFETY: `out` holds `m × n` values; groups `first..last` write columns
        // `first * GROUP .. min(last * GROUP, n)` only.
        unsafe { run_groups(w, xq, ptr, first..last, kernel) };
    };
    if per_chunk >= groups {
        run(0);
    } else {
        (0..groups).into_par_iter().step_by(per_chunk).for_each(run);
    }
}

/// Runs weight groups `range` against every activation row.
///
/// # Safety
/// `out` points to `xq.m × w.n` writable values that no one else writes in these columns.
unsafe fn run_groups(
    w: &PackedQ8,
    xq: &QuantizedRows,
    out: Out,
    range: std::ops::Range<usize>,
    kernel: Kernel,
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => super::avx2::run_groups(w, xq, out.0, range),
        _ => run_groups_scalar(w, xq, out.0, range),
    }
}

/// The portable loop: per output, blocks in order, `Σ (Σ qw·qx) · (dw·dx)` in f32.
///
/// # Safety
/// As [`run_groups`].
unsafe fn run_groups_scalar(
    w: &PackedQ8,
    xq: &QuantizedRows,
    out: *mut f32,
    range: std::ops::Range<usize>,
) {
    let kb = xq.kb;
    for g in range {
        let rows = GROUP.min(w.n - g * GROUP);
        for r in 0..rows {
            for c in 0..xq.m {
                let mut sum = 0f32;
                for b in 0..kb {
                    let slot = (g * kb + b) * GROUP + r;
                    let wq = &w.qs[slot * QK..(slot + 1) * QK];
                    let xs = &xq.qs[(c * kb + b) * QK..(c * kb + b + 1) * QK];
                    let dot: i32 = wq.iter().zip(xs).map(|(&a, &b)| a as i32 * b as i32).sum();
                    sum += dot as f32 * (w.d[slot] * xq.d[c * kb + b]);
                }
                *out.add(c * w.n + g * GROUP + r) = sum;
            }
        }
    }
}

/// Accessors the microkernels use.
impl PackedQ8 {
    pub(crate) fn group_qs(&self, g: usize) -> *const i8 {
        let kb = self.k / QK;
        self.qs[g * kb * GROUP * QK..].as_ptr()
    }

    pub(crate) fn group_d(&self, g: usize) -> *const f32 {
        let kb = self.k / QK;
        self.d[g * kb * GROUP..].as_ptr()
    }
}
