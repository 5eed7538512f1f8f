//! Tests of `ets_solver::cluster`: [`AverageLinkage`] against the naive reference on seeded random
//! data with planted near-duplicate groups, against scipy on fixed cases, and the edge cases
//! (zero and non-finite vectors, duplicates, thresholds 0 and 2, chains, errors).

use ets_core::Clusterer;
use ets_solver::cluster::{cosine_distance, naive_average_linkage, AverageLinkage, ClusterError};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs the fast clusterer and the reference, checks they agree and that labels are dense and
/// numbered by first appearance, and returns the labels.
fn check(embeddings: &[Vec<f32>], threshold: f64) -> Vec<usize> {
    let fast = AverageLinkage::default().cluster(embeddings, threshold);
    let naive = naive_average_linkage(embeddings, threshold);
    assert_eq!(
        fast, naive,
        "fast and naive differ at threshold {threshold}"
    );
    let mut next = 0;
    for &label in &fast {
        assert!(
            label <= next,
            "labels not numbered by first appearance: {fast:?}"
        );
        next = next.max(label + 1);
    }
    fast
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller; `1 - gen` keeps the logarithm finite.
    let (u, v): (f64, f64) = (1.0 - rng.gen::<f64>(), rng.gen());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn random_unit(dim: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    loop {
        let v: Vec<f64> = (0..dim).map(|_| gaussian(rng)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-6 {
            return v.into_iter().map(|x| x / norm).collect();
        }
    }
}

/// A unit vector at cosine distance `distance` from the unit vector `base` (for `dim ≥ 2`).
fn at_distance(base: &[f64], distance: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut w = random_unit(base.len(), rng);
    let along: f64 = w.iter().zip(base).map(|(x, b)| x * b).sum();
    w.iter_mut().zip(base).for_each(|(x, b)| *x -= along * b);
    let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cos = 1.0 - distance;
    let sin = (1.0 - cos * cos).max(0.0).sqrt();
    base.iter()
        .zip(&w)
        .map(|(b, x)| cos * b + sin * x / norm)
        .collect()
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Mostly distinct vectors plus planted groups whose members sit 0.005–0.05 from a centre, so
/// their pairwise distances straddle the 0.05 threshold; also exact and scaled duplicates, and
/// now and then a zero or NaN vector.
fn planted(n: usize, dim: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(n);
    while out.len() < n {
        match rng.gen_range(0..10) {
            0..=3 => {
                let centre = random_unit(dim, rng);
                let size = rng.gen_range(2..=8);
                for _ in 0..size {
                    let distance = rng.gen_range(0.005..0.05);
                    out.push(to_f32(&at_distance(&centre, distance, rng)));
                }
            }
            4 if !out.is_empty() => {
                let copy = out[rng.gen_range(0..out.len())].clone();
                let scale = [1.0f32, 1.0, 3.0, 0.5][rng.gen_range(0..4)];
                out.push(copy.iter().map(|x| x * scale).collect());
            }
            5 if rng.gen_bool(0.15) => {
                let mut v = vec![0.0f32; dim];
                if rng.gen_bool(0.5) {
                    v[0] = f32::NAN;
                }
                out.push(v);
            }
            _ => out.push(to_f32(&random_unit(dim, rng))),
        }
    }
    out.truncate(n);
    // Shuffle so that group members are interleaved with the rest.
    for i in (1..out.len()).rev() {
        out.swap(i, rng.gen_range(0..=i));
    }
    out
}

#[test]
fn random_planted_inputs_match_naive() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_c1a5);
    let dims = [8, 16, 32, 64, 100, 384];
    let mut merged_trials = 0;
    for trial in 0..48 {
        let dim = dims[trial % dims.len()];
        let n = match trial % 4 {
            0 => rng.gen_range(2..20),
            1 => rng.gen_range(20..70),
            2 => rng.gen_range(70..160),
            _ => rng.gen_range(160..=300),
        };
        let embeddings = planted(n, dim, &mut rng);
        let threshold = [0.05, 0.05, 0.03, 0.08][trial % 4];
        let labels = check(&embeddings, threshold);
        let clusters = labels.iter().max().map_or(0, |m| m + 1);
        if clusters < n && clusters > 1 {
            merged_trials += 1;
        }
    }
    assert!(
        merged_trials >= 40,
        "too few trials had merges: {merged_trials}"
    );
}

#[test]
fn dense_low_dimensional_inputs_match_naive() {
    // In 3 dimensions random vectors are often close: large components, long chains.
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for trial in 0..30 {
        let n = rng.gen_range(2..120);
        let embeddings: Vec<Vec<f32>> = (0..n).map(|_| to_f32(&random_unit(3, &mut rng))).collect();
        let threshold = [0.01, 0.05, 0.2, 0.6][trial % 4];
        check(&embeddings, threshold);
    }
}

#[test]
fn pairs_at_the_threshold_decide_exactly() {
    // Distances within ±1e-6 of the threshold in 384 dimensions exercise the f32 prefilter's
    // margin: a pair merges exactly when its distance, in units, is within the threshold.
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let threshold = 0.05;
    let (mut merged, mut apart) = (0, 0);
    for _ in 0..400 {
        let base = random_unit(384, &mut rng);
        let other = at_distance(&base, threshold + rng.gen_range(-1e-6..1e-6), &mut rng);
        let pair = vec![to_f32(&base), to_f32(&other)];
        let labels = check(&pair, threshold);
        let distance = cosine_distance(&pair[0], &pair[1]);
        let within = (distance * 2f64.powi(40)).round() <= (threshold * 2f64.powi(40)).round();
        assert_eq!(labels == [0, 0], within, "distance {distance}");
        if within {
            merged += 1;
        } else {
            apart += 1;
        }
    }
    assert!(merged > 50 && apart > 50, "merged {merged}, apart {apart}");
}

#[test]
fn threshold_is_inclusive() {
    let pair = vec![vec![1.0f32, 0.0], vec![0.8, 0.6]];
    let distance = cosine_distance(&pair[0], &pair[1]);
    assert!((distance - 0.2).abs() < 1e-6);
    assert_eq!(check(&pair, distance), [0, 0]);
    assert_eq!(check(&pair, distance - 1e-9), [0, 1]);
}

#[test]
fn empty_and_single_inputs() {
    assert_eq!(check(&[], 0.05), Vec::<usize>::new());
    assert_eq!(check(&[vec![0.3, 0.4]], 0.05), [0]);
    assert_eq!(check(&[vec![0.0, 0.0]], 0.05), [0]);
    assert_eq!(check(&[vec![]], 0.05), [0]);
    assert_eq!(check(&[vec![1.0]], -1.0), [0]);
}

#[test]
fn zero_and_non_finite_vectors() {
    let embeddings = vec![
        vec![1.0f32, 0.0, 0.0],
        vec![0.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
        vec![f32::NAN, 1.0, 0.0],
        vec![0.0, 0.0, f32::INFINITY],
        vec![0.999, 0.001, 0.0],
    ];
    // Zero, NaN and infinite vectors are all "zero": distance 0 among them, 1 to the rest.
    assert_eq!(check(&embeddings, 0.05), [0, 1, 2, 1, 1, 0]);
    assert_eq!(check(&embeddings, 0.0), [0, 1, 2, 1, 1, 3]);
    // At threshold 1 every distance here is ≤ 1.
    assert_eq!(check(&embeddings, 1.0), [0; 6]);
    let all_zero = vec![vec![0.0f32; 4]; 5];
    assert_eq!(check(&all_zero, 0.0), [0; 5]);
    assert_eq!(check(&all_zero, -0.5), [0, 1, 2, 3, 4]);
}

#[test]
fn threshold_zero_merges_only_duplicates() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = random_unit(64, &mut rng);
    let b = random_unit(64, &mut rng);
    let near_a = at_distance(&a, 1e-3, &mut rng);
    let embeddings = vec![
        to_f32(&a),
        to_f32(&b),
        to_f32(&near_a),
        to_f32(&a),
        to_f32(&b),
    ];
    assert_eq!(check(&embeddings, 0.0), [0, 1, 2, 0, 1]);
    assert_eq!(check(&embeddings, 0.01), [0, 1, 0, 0, 1]);
    assert_eq!(check(&embeddings, -1e-12), [0, 1, 2, 3, 4]);
}

#[test]
fn threshold_two_merges_everything() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut embeddings: Vec<Vec<f32>> = (0..40)
        .map(|_| to_f32(&random_unit(16, &mut rng)))
        .collect();
    // An exactly opposite pair (distance 2) and a zero vector.
    embeddings.push(embeddings[0].iter().map(|x| -x).collect());
    embeddings.push(vec![0.0; 16]);
    assert_eq!(check(&embeddings, 2.0), vec![0; 42]);
    assert_eq!(check(&embeddings, f64::INFINITY), vec![0; 42]);
}

/// Unit vectors in the plane at the given angles (radians).
fn arc(angles: &[f64]) -> Vec<Vec<f32>> {
    angles
        .iter()
        .map(|a| vec![a.cos() as f32, a.sin() as f32])
        .collect()
}

#[test]
fn chain_single_linkage_would_join_average_linkage_does_not() {
    // d(A,B) = 0.03, d(B,C) = 0.04: each neighbour pair is within 0.05 (single linkage joins all
    // three), but after A+B the average to C is (0.04 + d(A,C)) / 2 ≈ 0.0975 > 0.05.
    let (ab, bc) = ((1.0f64 - 0.03).acos(), (1.0f64 - 0.04).acos());
    assert_eq!(check(&arc(&[0.0, ab, ab + bc]), 0.05), [0, 0, 1]);

    // A long chain with steps of distance 0.04: one threshold component, several clusters.
    let step = (1.0f64 - 0.04).acos();
    let angles: Vec<f64> = (0..12).map(|k| k as f64 * step).collect();
    let labels = check(&arc(&angles), 0.05);
    assert!(labels.iter().max().unwrap() >= &3, "{labels:?}");
}

#[test]
fn ties_break_towards_lowest_indices() {
    // B sits at the same distance from A and from C; A and C are far apart. The tie goes to the
    // pair with the lower smallest member, (A, B); then C is too far from {A, B} on average.
    let s = (1.0f64 - 0.04).acos();
    let embeddings = arc(&[-s, 0.0, s]);
    assert_eq!(
        cosine_distance(&embeddings[0], &embeddings[1]),
        cosine_distance(&embeddings[1], &embeddings[2])
    );
    assert_eq!(check(&embeddings, 0.05), [0, 0, 1]);
    // Same points listed the other way round: the tie again goes to the lowest indices.
    let reversed: Vec<Vec<f32>> = embeddings.iter().rev().cloned().collect();
    assert_eq!(check(&reversed, 0.05), [0, 0, 1]);
}

#[test]
fn deterministic() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let embeddings = planted(150, 32, &mut rng);
    let first = AverageLinkage::default().cluster(&embeddings, 0.05);
    for _ in 0..3 {
        assert_eq!(AverageLinkage::new().cluster(&embeddings, 0.05), first);
    }
}

/// Points with f32-exact coordinates and labels from scipy 1.17.1:
/// `fcluster(linkage(pdist(x, "cosine"), "average"), t, "distance")`, relabelled by first
/// appearance. Inputs chosen so that no merge height is within 1e-6 of a threshold and no two
/// heights tie.
type ScipyCase = (&'static [[f32; 4]], &'static [(f64, &'static [usize])]);

const SCIPY_CASES: &[ScipyCase] = &[
    (
        &[
            [-1.47, -0.26, 0.88, -0.55],
            [-0.94, 0.56, 0.40, 0.06],
            [-1.62, -0.07, 1.33, -0.46],
            [-1.37, -0.06, 1.10, -0.69],
            [-0.73, -0.14, 1.33, -0.27],
            [-1.14, 0.03, 1.37, -0.48],
            [-1.30, 0.08, 1.68, -0.88],
            [-0.78, 0.09, 1.18, 0.01],
            [-0.43, 0.19, 0.38, 0.25],
            [-0.67, 0.66, 0.34, 0.27],
        ],
        &[
            (0.05, &[0, 1, 0, 0, 2, 0, 0, 2, 3, 1]),
            (0.1, &[0, 1, 0, 0, 0, 0, 0, 0, 2, 1]),
            (0.2, &[0, 1, 0, 0, 0, 0, 0, 0, 1, 1]),
            (0.4, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ],
    ),
    (
        &[
            [0.08, -0.84, -0.29, 0.23],
            [0.23, -0.29, -0.28, 0.24],
            [0.50, -1.10, -0.12, -0.21],
            [0.79, -1.17, -0.09, -0.16],
            [0.36, -1.35, 0.24, -0.00],
            [0.76, -1.03, -0.25, -0.05],
            [0.05, 0.09, -0.68, -0.19],
            [-1.40, 0.06, -0.44, 0.80],
            [0.26, -0.95, 0.27, -0.33],
            [0.47, -1.19, -0.52, 0.22],
        ],
        &[
            (0.05, &[0, 1, 2, 2, 3, 2, 4, 5, 6, 0]),
            (0.1, &[0, 1, 2, 2, 3, 2, 4, 5, 3, 0]),
            (0.2, &[0, 0, 1, 1, 1, 1, 2, 3, 1, 0]),
            (0.4, &[0, 0, 0, 0, 0, 0, 1, 2, 0, 0]),
        ],
    ),
    (
        &[
            [-0.69, 1.55, 0.53, -0.33],
            [1.45, 0.34, 0.16, -0.77],
            [0.36, 0.13, -0.28, -0.10],
            [-0.59, 1.60, 0.26, 0.18],
            [-0.13, 1.54, 0.46, -0.19],
            [1.59, 0.24, -0.34, -0.26],
            [-0.01, 0.02, 0.18, 0.12],
            [-0.50, 2.09, 0.46, -0.08],
            [-0.12, -0.24, 0.17, 0.29],
        ],
        &[
            (0.05, &[0, 1, 2, 0, 0, 3, 4, 0, 5]),
            (0.1, &[0, 1, 2, 0, 0, 1, 3, 0, 4]),
            (0.2, &[0, 1, 1, 0, 0, 1, 2, 0, 3]),
            (0.4, &[0, 1, 1, 0, 0, 1, 2, 0, 2]),
        ],
    ),
    (
        &[
            [-1.43, -1.21, -0.29, 0.47],
            [-0.08, -0.22, -0.18, 0.33],
            [-0.05, 0.78, 0.35, -0.49],
            [-1.23, -0.87, -0.55, 0.00],
            [-0.91, -1.14, -0.23, 0.56],
            [-0.67, -0.97, -0.38, 0.26],
            [-0.30, 0.13, -0.03, -0.66],
            [-0.74, -0.90, -0.45, 0.54],
            [-0.64, 0.02, 0.34, -0.20],
            [-0.13, 0.46, -0.03, 0.20],
        ],
        &[
            (0.05, &[0, 1, 2, 3, 0, 0, 4, 0, 5, 6]),
            (0.1, &[0, 1, 2, 0, 0, 0, 3, 0, 4, 5]),
            (0.2, &[0, 1, 2, 0, 0, 0, 3, 0, 4, 5]),
            (0.4, &[0, 0, 1, 0, 0, 0, 2, 0, 3, 4]),
        ],
    ),
    (
        &[
            [0.40, -0.08, -0.83, 0.79],
            [0.11, -0.77, -0.34, 0.18],
            [-0.18, -0.30, -0.12, 0.46],
            [-1.60, 0.90, 0.64, 0.26],
            [0.32, -0.97, -0.43, 0.74],
            [-1.57, 0.49, 0.49, 0.09],
            [-1.68, 0.64, 0.39, 0.55],
            [0.48, -0.73, -0.17, 0.39],
            [-0.03, -0.51, -0.27, 0.71],
        ],
        &[
            (0.05, &[0, 1, 2, 3, 4, 3, 3, 5, 2]),
            (0.1, &[0, 1, 2, 3, 4, 3, 3, 4, 2]),
            (0.2, &[0, 1, 2, 3, 1, 3, 3, 1, 2]),
            (0.4, &[0, 0, 0, 1, 0, 1, 1, 0, 0]),
        ],
    ),
    (
        &[
            [-0.55, 0.76, -0.20, 0.69],
            [1.08, 0.14, 1.07, -1.16],
            [0.29, -0.81, -0.13, -0.76],
            [-0.10, -0.76, -0.12, -0.39],
            [0.31, -0.77, -0.01, -0.23],
            [-1.08, 0.11, -0.96, 0.96],
            [0.25, -1.11, -0.02, -0.41],
            [0.44, -1.32, -0.19, -0.45],
            [-0.22, 0.44, -0.73, 0.85],
            [1.54, -0.30, 1.00, -0.61],
        ],
        &[
            (0.05, &[0, 1, 2, 3, 4, 5, 4, 4, 6, 7]),
            (0.1, &[0, 1, 2, 3, 2, 4, 2, 2, 5, 1]),
            (0.2, &[0, 1, 2, 2, 2, 3, 2, 2, 3, 1]),
            (0.4, &[0, 1, 2, 2, 2, 0, 2, 2, 0, 1]),
        ],
    ),
];

#[test]
fn agrees_with_scipy_fcluster() {
    for (points, expectations) in SCIPY_CASES {
        let embeddings: Vec<Vec<f32>> = points.iter().map(|p| p.to_vec()).collect();
        for &(threshold, expected) in *expectations {
            assert_eq!(check(&embeddings, threshold), expected, "t = {threshold}");
        }
    }
}

#[test]
fn errors_name_the_bad_input() {
    let clusterer = AverageLinkage::default();
    let embeddings = vec![vec![1.0f32; 4], vec![1.0; 4], vec![1.0; 3]];
    let error = clusterer.try_cluster(&embeddings, 0.05).unwrap_err();
    assert_eq!(
        error,
        ClusterError::DimensionMismatch {
            index: 2,
            expected: 4,
            found: 3
        }
    );
    assert_eq!(
        clusterer.try_cluster(&embeddings[..2], f64::NAN),
        Err(ClusterError::NanThreshold)
    );

    for run in [
        (|| AverageLinkage::default().cluster(&[vec![1.0; 4], vec![1.0; 4], vec![1.0; 3]], 0.05))
            as fn() -> Vec<usize>,
        || naive_average_linkage(&[vec![1.0; 4], vec![1.0; 4], vec![1.0; 3]], 0.05),
    ] {
        let panic = std::panic::catch_unwind(run).expect_err("mismatched dimensions must panic");
        let message = panic
            .downcast_ref::<String>()
            .expect("formatted panic message");
        assert!(
            message.contains("embedding 2 has dimension 3, but embedding 0 has dimension 4"),
            "{message}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Small integer coordinates give many exact ties, duplicates, opposite and zero vectors.
    #[test]
    fn tie_heavy_inputs_match_naive(
        dim in 1usize..4,
        raw in prop::collection::vec(prop::collection::vec(-2i8..=2, 3), 0..14),
        threshold in prop::sample::select(vec![0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 1.5, 2.0]),
    ) {
        let embeddings: Vec<Vec<f32>> =
            raw.iter().map(|v| v[..dim].iter().map(|&x| f32::from(x)).collect()).collect();
        check(&embeddings, threshold);
    }
}
