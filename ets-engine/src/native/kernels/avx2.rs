//! The AVX2 + FMA microkernel of [`super::q8_gemm`]: a tile of `R` weight rows × `C`
//! activation rows, one 8-lane f32 accumulator per output held in registers over the whole
//! `k`.
//!
//! Per 32-value block and activation row, `x` and `|x|` are held in registers while the tile's
//! weight rows stream from L1; each (weight row, activation row) pair costs `sign` (`w` takes
//! `x`'s sign) → `maddubs` (u8·i8 pairs → i16) → `madd` (i16 pairs → i32) → `cvt` (→ f32) →
//! `fmadd` by `dw·dx` (the tile's scale products computed once per block). Only the
//! accumulators live across blocks: AVX2 has 16 vector registers, and a first version that
//! also held the weight rows spilled accumulators to the stack on every block.
//!
//! Lane by lane this is candle's `vec_dot_q8_0_q8_0` (the same 32 integer products summed in
//! the same pairs, the same FMA per block, the same final horizontal sum), so results are
//! bit-identical to candle's `QMatMul`.

use std::arch::x86_64::*;
use std::ops::Range;

use super::q8_gemm::{PackedQ8, QuantizedRows, GROUP, QK};

/// Activation rows per tile.
pub(crate) const TILE_C: usize = 2;

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
///
/// Written so that only the `GROUP × C` accumulators stay in registers across blocks (AVX2 has
/// 16): per block and activation row, `x` and `|x|` are held while the group's weight rows
/// stream from L1, and the `GROUP × C` scale products are computed once per block into a small
/// array that each FMA broadcasts from. A first version that also held the four weight rows and
/// their absolute values spilled every accumulator to the stack on each block.
///
/// The integer dot is `maddubs(|x|, sign(w, x))`, candle's `maddubs(|w|, sign(x, w))` with the
/// operands' roles swapped: the same 32 products `w·x`, summed in the same pairs, so the same
/// i16 and i32 values (no pair can saturate: quants are within ±127, see
/// [`super::q8_gemm::PackedQ8`]).
// The accumulator tile is indexed [weight row][activation row] on purpose: registers, not an
// iterator's borrows, are what this loop must keep.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const C: usize>(t: &Tile) {
    let mut acc = [[_mm256_setzero_ps(); C]; GROUP];
    let ones = _mm256_set1_epi16(1);
    // scale[c][r] = dw[r] · dx[c] for the current block.
    let mut scale = [[0f32; GROUP]; C];
    for b in 0..t.kb {
        let wq = t.wq.add(b * GROUP * QK);
        let dw = _mm_loadu_ps(t.wd.add(b * GROUP));
        for c in 0..C {
            let dx = _mm_set1_ps(*t.xd.add(c * t.kb + b));
            _mm_storeu_ps(scale[c].as_mut_ptr(), _mm_mul_ps(dw, dx));
        }
        for c in 0..C {
            let x = _mm256_loadu_si256(t.xq.add((c * t.kb + b) * QK) as *const __m256i);
            let xabs = _mm256_sign_epi8(x, x);
            for r in 0..GROUP {
                let w = load_each_time(wq.add(r * QK));
                let sw = _mm256_sign_epi8(w, x);
                let dot = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(xabs, sw));
                let d = _mm256_set1_ps(std::ptr::read_volatile(&scale[c][r]));
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

/// An unaligned 32-byte load the compiler must emit where it stands: plain loads of the weight
/// rows get hoisted out of the activation-row loop and held in registers, which spills the
/// accumulators.
#[inline(always)]
unsafe fn load_each_time(p: *const i8) -> __m256i {
    let v: __m256i;
    std::arch::asm!(
        "vmovdqu {v}, ymmword ptr [{p}]",
        p = in(reg) p,
        v = out(ymm_reg) v,
        options(readonly, nostack, preserves_flags),
    );
    v
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
