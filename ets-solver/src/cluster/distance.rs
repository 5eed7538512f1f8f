//! Cosine distance as the clusterer defines it, and the two number systems built on it.
//!
//! * [`cosine_distance`]: `1 − cos` accumulated in f64, clamped to `[0, 2]`, with the zero-vector
//!   rules. Every distance either clusterer uses comes from [`Prepared::distance`], which runs the
//!   same arithmetic in the same order, so both give bit-identical values.
//! * Distance units: a distance is rounded to an integer multiple of 2⁻⁴⁰ ([`to_units`]), and so is
//!   the threshold ([`threshold_units`]). Linkage sums of units are exact integers, so an average
//!   does not depend on the order in which its pairs were added: the fast clusterer and the naive
//!   reference compare exactly the same rationals.
//! * The f32 prefilter: unit vectors in f32 and a cosine cutoff ([`prefilter_cutoff`]) with a
//!   proven error margin, so that every pair within the threshold passes it (no false negatives;
//!   the pairs that pass are then checked with the exact distance).

/// Distance units per unit of cosine distance: distances are rounded to multiples of 2⁻⁴⁰.
const UNITS_PER_DISTANCE: f64 = (1u64 << 40) as f64;

/// f32 unit round-off, 2⁻²⁴.
const F32_UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// Lanes of the f64 accumulator: a fixed summation order the compiler can still vectorise.
const LANES_F64: usize = 16;

/// Lanes of the f32 accumulator of the prefilter.
const LANES_F32: usize = 32;

/// Cosine distance `1 − a·b / (‖a‖ ‖b‖)` with products and sums in f64, clamped to `[0, 2]`.
///
/// Zero vectors: a vector whose norm is zero, or that holds a NaN or infinite component, is
/// treated as the zero vector. The distance between two zero vectors is `0.0`; between a zero
/// vector and any other vector it is `1.0` (orthogonal: neither similar nor opposite). So zero
/// vectors cluster with each other, and with other vectors only when the threshold is ≥ 1.
///
/// The result is symmetric and deterministic: the sum runs in a fixed order of 16 lanes.
///
/// # Panics
/// When `a` and `b` have different lengths.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "cosine_distance: vectors of different dimensions ({} and {})",
        a.len(),
        b.len()
    );
    let (sq_a, sq_b) = (squared_norm(a), squared_norm(b));
    let (zero_a, zero_b) = (is_zero(a, sq_a), is_zero(b, sq_b));
    if zero_a || zero_b {
        return zero_rule(zero_a, zero_b);
    }
    from_parts(dot64(a, b), sq_a, sq_b)
}

/// The norms and zero flags of a set of embeddings, computed once.
pub(crate) struct Prepared<'a> {
    embeddings: &'a [Vec<f32>],
    squared_norms: Vec<f64>,
    zero: Vec<bool>,
}

impl<'a> Prepared<'a> {
    /// Norms and zero flags of `embeddings` (all of one dimension; checked by the caller).
    pub(crate) fn new(embeddings: &'a [Vec<f32>]) -> Self {
        let squared_norms: Vec<f64> = embeddings.iter().map(|e| squared_norm(e)).collect();
        let zero = embeddings
            .iter()
            .zip(&squared_norms)
            .map(|(e, &sq)| is_zero(e, sq))
            .collect();
        Self {
            embeddings,
            squared_norms,
            zero,
        }
    }

    /// Number of embeddings.
    pub(crate) fn len(&self) -> usize {
        self.embeddings.len()
    }

    /// Whether embedding `i` counts as the zero vector.
    pub(crate) fn is_zero(&self, i: usize) -> bool {
        self.zero[i]
    }

    /// `cosine_distance(embeddings[i], embeddings[j])`, bit for bit, without recomputing norms.
    pub(crate) fn distance(&self, i: usize, j: usize) -> f64 {
        if self.zero[i] || self.zero[j] {
            return zero_rule(self.zero[i], self.zero[j]);
        }
        from_parts(
            dot64(&self.embeddings[i], &self.embeddings[j]),
            self.squared_norms[i],
            self.squared_norms[j],
        )
    }

    /// The distance between embeddings `i` and `j` in distance units.
    pub(crate) fn units(&self, i: usize, j: usize) -> u64 {
        to_units(self.distance(i, j))
    }

    /// All embeddings as f32 unit vectors, row after row (`dim` values each); zero vectors give
    /// rows of zeros. Components are `(x / ‖x‖)` computed in f64 and rounded once to f32.
    pub(crate) fn unit_rows(&self) -> Vec<f32> {
        let dim = self.embeddings.first().map_or(0, Vec::len);
        let mut rows = vec![0.0f32; dim * self.len()];
        if dim == 0 {
            return rows;
        }
        for (i, row) in rows.chunks_exact_mut(dim).enumerate() {
            if self.zero[i] {
                continue;
            }
            let norm = self.squared_norms[i].sqrt();
            for (out, &x) in row.iter_mut().zip(&self.embeddings[i]) {
                *out = (f64::from(x) / norm) as f32;
            }
        }
        rows
    }
}

/// A distance in `[0, 2]` rounded to the nearest multiple of 2⁻⁴⁰, as an integer count.
pub(crate) fn to_units(distance: f64) -> u64 {
    (distance * UNITS_PER_DISTANCE).round() as u64
}

/// The threshold in distance units: `None` when it is negative (then no pair is within it, not
/// even identical vectors at distance 0); thresholds above 2 count as 2 (every pair is within).
/// The caller has rejected NaN.
pub(crate) fn threshold_units(threshold: f64) -> Option<u64> {
    (threshold >= 0.0).then(|| to_units(threshold.min(2.0)))
}

/// The cosine cutoff of the f32 prefilter: a pair of unit rows whose f32 dot product ([`dot32`])
/// is below it is provably not within the threshold, in units.
///
/// Why no pair within the threshold is lost. Let `c` be the true cosine, `c64` the f64 value
/// [`Prepared::distance`] uses (`d64 = clamp(1 − c64)`), `c32` the prefilter's value, and
/// `t = min(threshold, 2)`. (1) `to_units(d64) ≤ threshold_units(t)` implies `d64 ≤ t + 2⁻⁴⁰`
/// (both sides round to nearest, so they differ by at most one unit), hence `c64 ≥ 1 − t − 2⁻⁴⁰`
/// (the clamps only help). (2) Each unit component carries one f32 rounding of relative size
/// ≤ 2⁻²⁴ (plus f64 error far below it), each product one more, and a sum of `dim` terms adds at
/// most `γ_dim = dim·u/(1 − dim·u)` times `Σ|x̂ᵢŷᵢ| ≤ 1 + O(u)` (Cauchy–Schwarz on unit vectors),
/// in any summation order; so `|c32 − c| ≤ (dim + 3)·2⁻²⁴·(1 + O(dim·2⁻²⁴))`, and
/// `|c − c64| ≤ (dim + 8)·2⁻⁵²`. The margin below doubles the first bound and adds the second
/// and slack for the rounding of the cutoff itself, valid while `dim·2⁻²⁴ ≤ 1/4`; f32 underflow of
/// tiny components adds at most `dim·2⁻¹⁴⁹`, covered by the slack. Beyond `2²²` dimensions the
/// prefilter is switched off (cutoff −∞).
pub(crate) fn prefilter_cutoff(dim: usize, threshold: f64) -> f64 {
    if dim > 1 << 22 {
        return f64::NEG_INFINITY;
    }
    let dim = dim as f64;
    let margin = 2.0 * (dim + 4.0) * F32_UNIT_ROUNDOFF + (dim + 8.0) * f64::EPSILON + 1e-12;
    1.0 - threshold.min(2.0) - 1.0 / UNITS_PER_DISTANCE - margin
}

/// f32 dot product of two rows of [`Prepared::unit_rows`], for the prefilter only.
#[inline]
pub(crate) fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES_F32];
    let chunks_a = a.chunks_exact(LANES_F32);
    let chunks_b = b.chunks_exact(LANES_F32);
    let mut tail = 0.0f32;
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        tail += x * y;
    }
    for (x, y) in chunks_a.zip(chunks_b) {
        for k in 0..LANES_F32 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The exact-path dot product: f32 products are exact in f64; the sum runs over 16 lanes in a
/// fixed order, the lanes are folded pairwise in a fixed order, then the tail is added.
fn dot64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES_F64];
    let chunks_a = a.chunks_exact(LANES_F64);
    let chunks_b = b.chunks_exact(LANES_F64);
    let mut tail = 0.0f64;
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        tail += f64::from(*x) * f64::from(*y);
    }
    for (x, y) in chunks_a.zip(chunks_b) {
        for k in 0..LANES_F64 {
            acc[k] += f64::from(x[k]) * f64::from(y[k]);
        }
    }
    // Fold the lanes pairwise in a fixed order: 16 → 8 → 4 → 2 → 1.
    let mut width = LANES_F64;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            acc[k] += acc[k + width];
        }
    }
    acc[0] + tail
}

/// `‖a‖²` with the same arithmetic as [`dot64`].
fn squared_norm(a: &[f32]) -> f64 {
    dot64(a, a)
}

/// Whether a vector counts as zero: a non-finite component, or a zero norm. (A finite f32 squared
/// in f64 neither overflows nor underflows, so a non-zero finite vector has a positive norm.)
fn is_zero(a: &[f32], squared_norm: f64) -> bool {
    squared_norm == 0.0 || !a.iter().all(|x| x.is_finite())
}

/// Distance when at least one side is a zero vector.
fn zero_rule(zero_a: bool, zero_b: bool) -> f64 {
    if zero_a && zero_b {
        0.0
    } else {
        1.0
    }
}

/// Distance of two non-zero vectors from their dot product and squared norms.
fn from_parts(dot: f64, sq_a: f64, sq_b: f64) -> f64 {
    (1.0 - dot / (sq_a.sqrt() * sq_b.sqrt())).clamp(0.0, 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_vector_rules() {
        let zero = [0.0f32; 3];
        let nan = [1.0, f32::NAN, 0.0];
        let inf = [f32::INFINITY, 0.0, 0.0];
        let x = [1.0f32, 2.0, 3.0];
        assert_eq!(cosine_distance(&zero, &zero), 0.0);
        assert_eq!(cosine_distance(&zero, &nan), 0.0);
        assert_eq!(cosine_distance(&inf, &nan), 0.0);
        assert_eq!(cosine_distance(&zero, &x), 1.0);
        assert_eq!(cosine_distance(&x, &inf), 1.0);
        assert_eq!(cosine_distance(&[], &[]), 0.0);
    }

    #[test]
    fn known_values_and_symmetry() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 2.0];
        let c = [-3.0f32, 0.0];
        assert_eq!(cosine_distance(&a, &b), 1.0);
        assert_eq!(cosine_distance(&a, &c), 2.0);
        assert_eq!(cosine_distance(&a, &a), 0.0);
        let p = [0.3f32, -1.7, 2.5, 0.01, 9.0, -4.0, 1.0, 1.0, 2.0, 0.5];
        let q = [1.3f32, 0.7, -2.5, 0.11, 8.0, -3.0, 0.0, 1.5, 2.0, 0.25];
        assert_eq!(cosine_distance(&p, &q), cosine_distance(&q, &p));
        let expected = {
            let dot: f64 = p
                .iter()
                .zip(&q)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let na: f64 = p.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = q.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        };
        assert!((cosine_distance(&p, &q) - expected).abs() < 1e-14);
    }

    #[test]
    fn prepared_distance_is_bit_identical() {
        let embeddings = vec![
            vec![0.3f32, -1.7, 2.5, 0.01, 9.0, -4.0, 1.0, 1.0, 2.0],
            vec![1.3f32, 0.7, -2.5, 0.11, 8.0, -3.0, 0.0, 1.5, 2.0],
            vec![0.0f32; 9],
        ];
        let prepared = Prepared::new(&embeddings);
        for i in 0..3 {
            for j in 0..3 {
                let direct = cosine_distance(&embeddings[i], &embeddings[j]);
                assert_eq!(prepared.distance(i, j).to_bits(), direct.to_bits());
            }
        }
    }

    #[test]
    fn threshold_units_edges() {
        assert_eq!(threshold_units(-1e-300), None);
        assert_eq!(threshold_units(0.0), Some(0));
        assert_eq!(threshold_units(-0.0), Some(0));
        assert_eq!(threshold_units(2.0), Some(2 << 40));
        assert_eq!(threshold_units(f64::INFINITY), Some(2 << 40));
        assert_eq!(to_units(0.05), threshold_units(0.05).unwrap());
    }

    #[test]
    fn mismatched_lengths_panic_with_both_dimensions() {
        let panic = std::panic::catch_unwind(|| cosine_distance(&[1.0, 2.0], &[1.0, 2.0, 3.0]))
            .expect_err("different lengths must panic");
        let message = panic
            .downcast_ref::<String>()
            .expect("formatted panic message");
        assert!(
            message.contains("different dimensions (2 and 3)"),
            "{message}"
        );
    }
}
