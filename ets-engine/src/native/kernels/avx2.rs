//! The AVX2 + FMA microkernel of [`super::q8_gemm`]: a tile of `R` weight rows × `C`
//! activation rows, one 8-lane f32 accumulator per output held in registers over the whole
//! `k`.
//!
//! Per 32-value block, each weight row is loaded once and made unsigned once (`|w|`), each
//! activation row is loaded once, and each (weight row, activation row) pair costs
//! `sign` (`x` takes `w`'s sign) → `maddubs` (u8·i8 pairs → i16) → `madd` (i16 pairs → i32)
//! → `cvt` (→ f32) → `fmadd` by `dw·dx`. candle's `vec_dot` does the same arithmetic per pair
//! but reloads and re-converts both blocks and scales, and sums its lanes, for every pair.
//!
//! Lane by lane this is candle's `vec_dot_q8_0_q8_0` (same operands, same order, same final
//! horizontal sum), so results are bit-identical to candle's `QMatMul`.

use std::arch::x86_64::*;
use std::ops::Range;

use super::q8_gemm::{PackedQ8, QuantizedRows, GROUP, QK};

/// Activation rows per tile.
pub(crate) const TILE_C: usize = 3;

/// Runs weight groups `range` against all activation rows of `xq`, writing `out[c * n + j]`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `out` points to `xq.m × w.n()` writable values.
pub(super) unsafe fn run_groups(
    w: &PackedQ8,
    xq: &QuantizedRows,
    out: *mut f32,
    range: Range<usize>,
) {
    let n = w.n();
    for g in range {
        let rows = GROUP.min(n - g * GROUP);
        let mut c = 0;
        while c < xq.m {
            let cols = TILE_C.min(xq.m - c);
            let t = Tile {
                wq: w.group_qs(g),
                wd: w.group_d(g),
                xq: xq.qs.as_ptr().add(c * xq.kb * QK),
                xd: xq.d.as_ptr().add(c * xq.kb),
                kb: xq.kb,
                out: out.add(c * n + g * GROUP),
                n,
                rows,
            };
            match cols {
                1 => tile::<1>(&t),
                2 => tile::<2>(&t),
                3 => tile::<3>(&t),
                _ => tile::<TILE_C>(&t),
            }
            c += cols;
        }
    }
}

/// One tile's operands.
struct Tile {
    /// The weight group's quants (`[block][GROUP][32]`) and scales (`[block][GROUP]`).
    wq: *const i8,
    wd: *const f32,
    /// The first activation row's quants and scales (rows `kb` blocks apart).
    xq: *const i8,
    xd: *const f32,
    kb: usize,
    /// Where output (first activation row, first weight row) goes; rows `n` apart.
    out: *mut f32,
    n: usize,
    /// Weight rows of the group that exist (the rest are padding, not written).
    rows: usize,
}

/// `GROUP` weight rows × `C` activation rows.
// The accumulator tile is indexed [weight row][activation row] on purpose: registers, not an
// iterator's borrows, are what this loop must keep.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const C: usize>(t: &Tile) {
    let mut acc = [[_mm256_setzero_ps(); C]; GROUP];
    let ones = _mm256_set1_epi16(1);
    for b in 0..t.kb {
        let wq = t.wq.add(b * GROUP * QK);
        let wd = t.wd.add(b * GROUP);
        let mut w = [_mm256_setzero_si256(); GROUP];
        let mut wabs = [_mm256_setzero_si256(); GROUP];
        for r in 0..GROUP {
            w[r] = _mm256_loadu_si256(wq.add(r * QK) as *const __m256i);
            wabs[r] = _mm256_sign_epi8(w[r], w[r]);
        }
        for c in 0..C {
            let x = _mm256_loadu_si256(t.xq.add((c * t.kb + b) * QK) as *const __m256i);
            let dx = *t.xd.add(c * t.kb + b);
            for r in 0..GROUP {
                let sx = _mm256_sign_epi8(x, w[r]);
                let dot = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(wabs[r], sx));
                let d = _mm256_set1_ps(*wd.add(r) * dx);
                acc[r][c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[r][c]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(t.rows) {
        for (c, &a) in acc.iter().enumerate() {
            *t.out.add(c * t.n + r) = hsum(a);
        }
    }
}

/// The sum of 8 lanes, in candle's order.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(x: __m256) -> f32 {
    let res = _mm256_extractf128_ps(x, 1);
    let res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    let res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}
