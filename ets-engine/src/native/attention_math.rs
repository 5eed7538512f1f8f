//! The arithmetic of [`super::attention`] on f32 blocks of widened K/V: scores of one query
//! head against a block of keys, the softmax's `exp`, and the weighted sum of values.
//!
//! Each is written so the compiler keeps eight lanes in one vector register (on x86-64-v3,
//! AVX2 + FMA), and so a result depends only on the values it is computed from, in token
//! order: never on how a row's context is split into segments or blocks. That keeps a
//! branch decoded through shared segments bit-identical to the same tokens prefilled from
//! scratch.

/// Lanes per vector register.
const LANES: usize = 8;

/// Lays out `src`, tokens of `[kv_heads][head_dim]` values, as `[kv_heads][head_dim][block]`
/// in `dst` (`block` ≥ tokens, a multiple of [`LANES`]). Lanes past the last token keep
/// whatever finite values they held; their scores are computed and dropped.
pub(super) fn transpose_block(
    src: &[f32],
    kv_heads: usize,
    head_dim: usize,
    block: usize,
    dst: &mut [f32],
) {
    let token_width = kv_heads * head_dim;
    debug_assert!(block % LANES == 0 && src.len() <= block * token_width);
    for (t, token) in src.chunks_exact(token_width).enumerate() {
        for (i, &x) in token.iter().enumerate() {
            dst[i * block + t] = x;
        }
    }
}

/// Scores of the `group` query heads that share one key/value head against a transposed
/// block of keys (`keys[d * block + t]`, see [`transpose_block`]; `block` a multiple of 16):
/// `out[h * out_stride + t] = (q[h] · keys[.., t]) × scale` for heads `h < group` and the
/// first `seen` tokens. `q` holds the heads' `head_dim` values one after another.
///
/// Sixteen tokens (two vectors) per pass, all heads of the group at once: each key vector
/// loaded serves every head, and the `2 × group` accumulators are independent FMA chains.
/// A score is the sum over dimensions in order, one FMA each, so it depends on its query and
/// key only.
#[allow(clippy::too_many_arguments)]
pub(super) fn group_scores(
    q: &[f32],
    group: usize,
    keys: &[f32],
    block: usize,
    scale: f32,
    seen: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let hd = q.len() / group;
    match group {
        1 => scores_of::<1>(q, hd, keys, block, scale, seen, out, out_stride),
        2 => scores_of::<2>(q, hd, keys, block, scale, seen, out, out_stride),
        3 => scores_of::<3>(q, hd, keys, block, scale, seen, out, out_stride),
        4 => scores_of::<4>(q, hd, keys, block, scale, seen, out, out_stride),
        _ => {
            for h in 0..group {
                let q = &q[h * hd..][..hd];
                let out = &mut out[h * out_stride..];
                scores_of::<1>(q, hd, keys, block, scale, seen, out, out_stride);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scores_of<const G: usize>(
    q: &[f32],
    hd: usize,
    keys: &[f32],
    block: usize,
    scale: f32,
    seen: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    const PAIR: usize = 2 * LANES;
    debug_assert!(block % PAIR == 0 && seen <= block && q.len() >= G * hd);
    for j0 in (0..seen).step_by(PAIR) {
        let mut acc = [[0f32; PAIR]; G];
        for d in 0..hd {
            let k: &[f32; PAIR] = keys[d * block + j0..][..PAIR]
                .try_into()
                .expect("a pair of lane blocks");
            for (h, acc) in acc.iter_mut().enumerate() {
                let qd = q[h * hd + d];
                for l in 0..PAIR {
                    acc[l] = qd.mul_add(k[l], acc[l]);
                }
            }
        }
        let n = PAIR.min(seen - j0);
        for (h, acc) in acc.iter().enumerate() {
            let out = &mut out[h * out_stride + j0..][..n];
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = a * scale;
            }
        }
    }
}

/// Replaces each score by `exp(score − max)`, `max` the largest of them, and returns their
/// sum (eight lanes over the scores in order, then the lanes in order).
pub(super) fn exp_shifted_in_place(xs: &mut [f32]) -> f32 {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut chunks = xs.chunks_exact_mut(LANES);
    #[cfg(target_arch = "x86_64")]
    let lanes = if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { avx2::exp_shifted_lanes(chunks.by_ref(), max) }
    } else {
        exp_shifted_lanes(chunks.by_ref(), max)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let lanes = exp_shifted_lanes(chunks.by_ref(), max);
    let mut tail = 0f32;
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        tail += *x;
    }
    lanes.iter().sum::<f32>() + tail
}

/// The portable body of [`exp_shifted_in_place`] over whole lane blocks: the lane sums.
fn exp_shifted_lanes<'a>(chunks: impl Iterator<Item = &'a mut [f32]>, max: f32) -> [f32; LANES] {
    let mut lanes = [0f32; LANES];
    for chunk in chunks {
        for (x, s) in chunk.iter_mut().zip(lanes.iter_mut()) {
            *x = exp_nonpositive(*x - max);
            *s += *x;
        }
    }
    lanes
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! [`super::exp_nonpositive`] eight lanes at a time, operation for operation (the
    //! compiler's own vectorisation of it fell back to scalar lanes), so its results equal
    //! the portable function's.
    use std::arch::x86_64::*;

    use super::{exp_consts as c, LANES};

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_shifted_lanes<'a>(
        chunks: impl Iterator<Item = &'a mut [f32]>,
        max: f32,
    ) -> [f32; LANES] {
        let max = _mm256_set1_ps(max);
        let mut sum = _mm256_setzero_ps();
        for chunk in chunks {
            let ptr = chunk.as_mut_ptr();
            let x = _mm256_max_ps(
                _mm256_sub_ps(_mm256_loadu_ps(ptr), max),
                _mm256_set1_ps(c::FLOOR),
            );
            let shifted = _mm256_add_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(c::LOG2E)),
                _mm256_set1_ps(c::ROUND),
            );
            let n = _mm256_sub_ps(shifted, _mm256_set1_ps(c::ROUND));
            let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-c::LN2_HI), x);
            let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-c::LN2_LO), r);
            let mut p = _mm256_set1_ps(c::P[0]);
            for &k in &c::P[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(k));
            }
            let er = _mm256_add_ps(
                _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r),
                _mm256_set1_ps(1.0),
            );
            let n_bits = _mm256_sub_epi32(
                _mm256_castps_si256(shifted),
                _mm256_set1_epi32(c::ROUND.to_bits() as i32),
            );
            let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                n_bits,
                _mm256_set1_epi32(127),
            )));
            let y = _mm256_mul_ps(er, two_n);
            _mm256_storeu_ps(ptr, y);
            sum = _mm256_add_ps(sum, y);
        }
        let mut lanes = [0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        lanes
    }
}

/// The constants of [`exp_nonpositive`].
mod exp_consts {
    pub(super) const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// ln 2 split in two so that `n · LN2_HI` is exact.
    pub(super) const LN2_HI: f32 = 0.693_359_4;
    pub(super) const LN2_LO: f32 = -2.121_944_4e-4;
    /// 1.5 × 2²³: adding and subtracting it rounds to the nearest integer.
    pub(super) const ROUND: f32 = 12_582_912.0;
    /// Below this, eˣ is under f32's smallest normal.
    pub(super) const FLOOR: f32 = -87.0;
    /// eʳ ≈ 1 + r + r²·P(r), P's coefficients highest first (Cephes' `expf`).
    pub(super) const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
}

/// `eˣ` for `x ≤ 0` (below −87, where the result is under f32's smallest normal, it returns
/// e⁻⁸⁷). Branch-free: `x = n·ln 2 + r` with `n` the nearest integer to `x / ln 2` and
/// `|r| ≤ ln 2 / 2`, `eʳ` by a polynomial (Cephes' `expf` coefficients), `2ⁿ` by building the
/// float's exponent. Within 2 ulp of the exact value.
#[inline(always)]
pub(in crate::native) fn exp_nonpositive(x: f32) -> f32 {
    use exp_consts as c;
    let x = x.max(c::FLOOR);
    let shifted = x * c::LOG2E + c::ROUND;
    let n = shifted - c::ROUND;
    // The same integer read off the bits (`shifted` is ROUND + n exactly).
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(c::ROUND.to_bits() as i32);
    let r = n.mul_add(-c::LN2_LO, n.mul_add(-c::LN2_HI, x));
    let mut p = c::P[0];
    for &k in &c::P[1..] {
        p = p.mul_add(r, k);
    }
    let er = (p * r).mul_add(r, r) + 1.0;
    let two_n = f32::from_bits(((n_bits + 127) as u32) << 23);
    er * two_n
}

/// Weighted values of the `group` query heads that share one key/value head, added to
/// their outputs: `acc[h * hd + d] += Σₜ p[h * p_stride + t] · values[t * stride + d]` for
/// the first `seen` tokens, in token order (one FMA per token, head and dimension).
///
/// Sixteen dimensions (two vectors) per pass for every head of the group at once: each value
/// vector loaded serves every head, and the `2 × group` accumulators stay in registers over
/// the tokens.
#[allow(clippy::too_many_arguments)]
pub(super) fn group_add_weighted(
    p: &[f32],
    p_stride: usize,
    seen: usize,
    group: usize,
    values: &[f32],
    stride: usize,
    acc: &mut [f32],
) {
    let hd = acc.len() / group;
    match group {
        1 => add_weighted_of::<1>(p, p_stride, seen, values, stride, hd, acc),
        2 => add_weighted_of::<2>(p, p_stride, seen, values, stride, hd, acc),
        3 => add_weighted_of::<3>(p, p_stride, seen, values, stride, hd, acc),
        4 => add_weighted_of::<4>(p, p_stride, seen, values, stride, hd, acc),
        _ => {
            for h in 0..group {
                let p = &p[h * p_stride..];
                let acc = &mut acc[h * hd..][..hd];
                add_weighted_of::<1>(p, p_stride, seen, values, stride, hd, acc);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn add_weighted_of<const G: usize>(
    p: &[f32],
    p_stride: usize,
    seen: usize,
    values: &[f32],
    stride: usize,
    hd: usize,
    acc: &mut [f32],
) {
    const PAIR: usize = 2 * LANES;
    let pairs = hd / PAIR;
    for c in 0..pairs {
        let d0 = c * PAIR;
        let mut a = [[0f32; PAIR]; G];
        for (h, a) in a.iter_mut().enumerate() {
            a.copy_from_slice(&acc[h * hd + d0..][..PAIR]);
        }
        for t in 0..seen {
            let v: &[f32; PAIR] = values[t * stride + d0..][..PAIR]
                .try_into()
                .expect("a pair of lane blocks");
            for (h, a) in a.iter_mut().enumerate() {
                let pt = p[h * p_stride + t];
                for l in 0..PAIR {
                    a[l] = pt.mul_add(v[l], a[l]);
                }
            }
        }
        for (h, a) in a.iter().enumerate() {
            acc[h * hd + d0..][..PAIR].copy_from_slice(a);
        }
    }
    // Dimensions past the last whole pair (head sizes that are not a multiple of 16).
    for h in 0..G {
        for t in 0..seen {
            let pt = p[h * p_stride + t];
            for d in pairs * PAIR..hd {
                acc[h * hd + d] = pt.mul_add(values[t * stride + d], acc[h * hd + d]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        let mut x = 0f32;
        while x > -87.0 {
            let got = exp_nonpositive(x) as f64;
            let want = (x as f64).exp();
            let ulp = (want as f32).next_up() as f64 - want as f32 as f64;
            worst = worst.max((got - want).abs() / ulp);
            x -= 0.000_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }

    #[test]
    fn the_vector_exp_equals_the_scalar_one_bit_for_bit() {
        let mut xs: Vec<f32> = (0..4099)
            .map(|i| (i as f32 * 0.731).sin() * 40.0 - 30.0)
            .collect();
        xs.push(-1.0e30);
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: Vec<f32> = xs.iter().map(|&x| exp_nonpositive(x - max)).collect();
        let sum = exp_shifted_in_place(&mut xs);
        assert_eq!(xs, want);
        let mut lanes = [0f32; LANES];
        let whole = want.len() / LANES * LANES;
        for (i, &x) in want[..whole].iter().enumerate() {
            lanes[i % LANES] += x;
        }
        let tail: f32 = want[whole..].iter().sum();
        assert_eq!(sum, lanes.iter().sum::<f32>() + tail);
    }

    #[test]
    fn scores_and_weighted_values_match_plain_sums() {
        // 5 query heads over... each group size the dispatch knows, and one it does not; a
        // head size with a ragged 16-wide tail.
        for group in [1, 2, 3, 4, 5] {
            let (kv_heads, hd, block) = (2, 20, 32);
            let tokens = 19;
            let vals: Vec<f32> = (0..tokens * kv_heads * hd)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let q: Vec<f32> = (0..group * hd)
                .map(|i| (i % 13) as f32 / 3.0 - 2.0)
                .collect();
            let mut kt = vec![0f32; block * kv_heads * hd];
            transpose_block(&vals, kv_heads, hd, block, &mut kt);
            for g in 0..kv_heads {
                let stride = 40;
                let mut got = vec![0f32; group * stride];
                group_scores(
                    &q,
                    group,
                    &kt[g * hd * block..],
                    block,
                    0.5,
                    tokens,
                    &mut got,
                    stride,
                );
                for h in 0..group {
                    for t in 0..tokens {
                        let key = &vals[(t * kv_heads + g) * hd..][..hd];
                        let qh = &q[h * hd..][..hd];
                        let want: f32 = qh.iter().zip(key).map(|(a, b)| a * b).sum::<f32>() * 0.5;
                        let got = got[h * stride + t];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "group {group} head {h} token {t}: {got} vs {want}"
                        );
                    }
                }
                let p: Vec<f32> = (0..group * stride)
                    .map(|i| 1.0 / (i % 7 + 1) as f32)
                    .collect();
                let mut acc = vec![1f32; group * hd];
                group_add_weighted(
                    &p,
                    stride,
                    tokens,
                    group,
                    &vals[g * hd..],
                    kv_heads * hd,
                    &mut acc,
                );
                for h in 0..group {
                    for d in 0..hd {
                        let want: f32 = 1.0
                            + (0..tokens)
                                .map(|t| p[h * stride + t] * vals[(t * kv_heads + g) * hd + d])
                                .sum::<f32>();
                        let got = acc[h * hd + d];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "group {group} head {h} dim {d}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        let mut xs = vec![-3.0, 0.5, 2.0, -1.0];
        let sum = exp_shifted_in_place(&mut xs);
        let want: Vec<f32> = [-5.0f32, -1.5, 0.0, -3.0].iter().map(|x| x.exp()).collect();
        for (a, b) in xs.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!((sum - want.iter().sum::<f32>()).abs() < 1e-6);
    }
}
