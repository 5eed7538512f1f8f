//! Benchmarks of `AverageLinkage` on frontier-sized inputs: n = 16, 64, 256 embeddings of
//! dimension 384 (all-MiniLM-L6-v2), threshold 0.05.
//!
//! Inputs imitate step embeddings of one problem: every vector shares a common direction (typical
//! pairwise cosine ≈ 0.5, like sentences on one topic), most are distinct (distance ≈ 0.5), and
//! about a fifth sit in near-duplicate groups of 2–4 within 0.005–0.04 of a group centre.
//!
//! The `hnsw_index` group times what an hnsw_rs neighbour search alone would cost on the same
//! inputs (building the index, then one 16-nearest search per point), for comparison with the
//! exact scan the clusterer uses.
//!
//! Run: `cargo bench -p ets-solver --bench clustering`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ets_core::Clusterer;
use ets_solver::cluster::AverageLinkage;
use hnsw_rs::prelude::{DistCosine, Hnsw};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 384;
const THRESHOLD: f64 = 0.05;
const SIZES: [usize; 3] = [16, 64, 256];

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v): (f64, f64) = (1.0 - rng.gen::<f64>(), rng.gen());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn normalised(v: Vec<f64>) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn random_unit(rng: &mut ChaCha8Rng) -> Vec<f64> {
    normalised((0..DIM).map(|_| gaussian(rng)).collect())
}

/// A unit vector at cosine distance `distance` from the unit vector `base`.
fn at_distance(base: &[f64], distance: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let w = random_unit(rng);
    let along: f64 = w.iter().zip(base).map(|(x, b)| x * b).sum();
    let w = normalised(w.iter().zip(base).map(|(x, b)| x - along * b).collect());
    let cos = 1.0 - distance;
    let sin = (1.0 - cos * cos).sqrt();
    base.iter()
        .zip(&w)
        .map(|(b, x)| cos * b + sin * x)
        .collect()
}

/// `n` realistic step embeddings (see the file docs), seeded by `n`.
fn embeddings(n: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let topic = random_unit(&mut rng);
    let sentence = |rng: &mut ChaCha8Rng| {
        let noise = random_unit(rng);
        normalised(
            topic
                .iter()
                .zip(&noise)
                .map(|(t, x)| 0.5f64.sqrt() * (t + x))
                .collect(),
        )
    };
    let mut out: Vec<Vec<f64>> = Vec::with_capacity(n);
    while out.len() < n {
        let centre = sentence(&mut rng);
        if rng.gen_bool(0.07) {
            for _ in 0..rng.gen_range(2..=4) {
                let distance = rng.gen_range(0.005..0.04);
                out.push(at_distance(&centre, distance, &mut rng));
            }
        } else {
            out.push(centre);
        }
    }
    out.truncate(n);
    out.iter()
        .map(|v| v.iter().map(|&x| x as f32).collect())
        .collect()
}

fn average_linkage(c: &mut Criterion) {
    let mut group = c.benchmark_group("average_linkage");
    for n in SIZES {
        let data = embeddings(n);
        let labels = AverageLinkage::default().cluster(&data, THRESHOLD);
        let clusters = labels.iter().max().map_or(0, |m| m + 1);
        eprintln!("n = {n}, dim = {DIM}: {clusters} clusters at threshold {THRESHOLD}");
        let clusterer = AverageLinkage::default();
        group.bench_with_input(BenchmarkId::new("dim384", n), &data, |b, data| {
            b.iter(|| clusterer.cluster(black_box(data), black_box(THRESHOLD)))
        });
    }
    group.finish();
}

fn hnsw_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("hnsw_index");
    for n in SIZES {
        let data = embeddings(n);
        group.bench_with_input(
            BenchmarkId::new("build_and_search16", n),
            &data,
            |b, data| {
                b.iter(|| {
                    let index = Hnsw::<f32, DistCosine>::new(16, data.len(), 16, 64, DistCosine);
                    for (i, v) in data.iter().enumerate() {
                        index.insert((v.as_slice(), i));
                    }
                    let found: usize = data.iter().map(|v| index.search(v, 16, 64).len()).sum();
                    black_box(found)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, average_linkage, hnsw_index);
criterion_main!(benches);
