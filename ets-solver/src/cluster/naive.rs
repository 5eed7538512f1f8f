//! The textbook O(N³) average-linkage clustering, kept as the reference the fast clusterer is
//! tested against. It shares only the definition of distance with [`super::AverageLinkage`]:
//! [`cosine_distance`] and its rounding to units.

use super::distance::{cosine_distance, threshold_units, to_units};
use super::error::validate;

/// Reference average-linkage clustering: the plain algorithm over the full distance matrix.
///
/// Start with one cluster per embedding. Repeatedly compute, from scratch, the average distance
/// of every pair of clusters over all their member pairs; take the pair with the smallest
/// average (ties: the pair whose smallest members are lexicographically smallest); merge it if
/// that average is within `threshold`, else stop. Distances are [`cosine_distance`] rounded to
/// multiples of 2⁻⁴⁰ and summed exactly, and `average ≤ threshold` is decided exactly on those
/// integers, exactly as [`super::AverageLinkage`] defines it. Labels are numbered by first
/// appearance.
///
/// This is the test reference for [`super::AverageLinkage`], which must return the same labels
/// for every input; it costs O(N³) time and O(N²) memory, so use it on small inputs only.
///
/// # Panics
/// When the embeddings do not all have the same dimension or `threshold` is NaN.
pub fn naive_average_linkage(embeddings: &[Vec<f32>], threshold: f64) -> Vec<usize> {
    if let Err(error) = validate(embeddings, threshold) {
        panic!("naive_average_linkage: {error}");
    }
    let n = embeddings.len();
    let distances: Vec<Vec<u128>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| u128::from(to_units(cosine_distance(&embeddings[i], &embeddings[j]))))
                .collect()
        })
        .collect();

    // Clusters in order of their smallest member (merging keeps the order: the lower one stays).
    let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    if let Some(threshold) = threshold_units(threshold) {
        let threshold = u128::from(threshold);
        loop {
            // (sum, count, a, b) of the best pair so far; scanning (a, b) in lexicographic order
            // and replacing only on a strictly smaller average breaks ties towards the first.
            let mut best: Option<(u128, u128, usize, usize)> = None;
            for a in 0..clusters.len() {
                for b in a + 1..clusters.len() {
                    let sum: u128 = clusters[a]
                        .iter()
                        .flat_map(|&i| clusters[b].iter().map(move |&j| (i, j)))
                        .map(|(i, j)| distances[i][j])
                        .sum();
                    let count = (clusters[a].len() * clusters[b].len()) as u128;
                    if best.is_none_or(|(s, c, _, _)| sum * c < s * count) {
                        best = Some((sum, count, a, b));
                    }
                }
            }
            match best {
                Some((sum, count, a, b)) if sum <= threshold * count => {
                    let merged = clusters.remove(b);
                    clusters[a].extend(merged);
                }
                _ => break,
            }
        }
    }

    let mut labels = vec![0; n];
    for (label, cluster) in clusters.iter().enumerate() {
        for &i in cluster {
            labels[i] = label;
        }
    }
    labels
}
