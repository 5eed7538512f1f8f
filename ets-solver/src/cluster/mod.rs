//! Semantic clustering of step embeddings: [`AverageLinkage`] implements `ets_core::Clusterer`.
//!
//! # What it computes
//! Agglomerative clustering with cosine distance ([`cosine_distance`], `1 − cos`) and average
//! linkage (UPGMA: the distance of two clusters is the mean of all pairwise distances between
//! their members). Starting from singletons, the closest pair of clusters is merged while its
//! distance is **≤** `threshold`. Average linkage never produces inversions, so this equals
//! cutting the dendrogram at `threshold` as scipy's `fcluster(Z, t, criterion="distance")` does
//! (cophenetic distance ≤ t), and a pair at exactly `threshold` merges.
//!
//! Exact arithmetic: each pairwise distance is computed in f64 and rounded to a multiple of
//! 2⁻⁴⁰ (≈ 9·10⁻¹³, far below the precision of f32 embeddings), and so is the threshold. Sums of
//! these integers are exact, so an average is an exact rational that does not depend on the order
//! of merges, and `≤` and ties are decided exactly. Ties between equal averages go to the pair
//! whose smallest members are lexicographically smallest.
//!
//! Inputs: no embeddings give no labels; a negative threshold merges nothing (not even identical
//! vectors); a threshold ≥ 2 merges everything. Zero vectors, and vectors with a NaN or infinite
//! component (treated as zero vectors, never a panic), are at distance 0 from each other and 1
//! from everything else. Different dimensions or a NaN threshold are errors
//! ([`AverageLinkage::try_cluster`]) or panics (the trait method).
//!
//! # Why it is exact
//! Two clusters can only merge if their average distance is ≤ t, and an average of pairwise
//! distances that are all > t is > t (exactly so on the integer units), so every merge joins
//! clusters with at least one pair within t. Hence every cluster stays inside one connected
//! component of the *threshold graph* (edges: pairs within t), and clusters in different
//! components never merge. The next merge is the smallest key under a total order that depends
//! only on the two clusters, so inside one component the naive algorithm's merges are exactly the
//! merges of average linkage run on that component alone; [`AverageLinkage`] therefore builds the
//! threshold graph, takes connected components, and runs exact average linkage (with every
//! pairwise distance of the component, including those beyond t) inside each.
//!
//! The threshold graph is built exactly, never approximately: every pair passes an f32 unit-vector
//! prefilter whose error bound is proven (a pair within t always passes), and each pair that
//! passes is decided by the exact distance. An HNSW index (hnsw_rs) was the design's first idea
//! for finding the neighbour pairs, but it cannot certify recall: completing its proposals into
//! an exact graph needs every cross-component pair checked anyway, which is the full scan, and
//! building the index alone costs more than the whole scan at the frontier sizes ETS uses (see
//! the crate README's `## Clustering` for the measurements).
//!
//! [`naive_average_linkage`] is the textbook O(N³) algorithm over the full distance matrix; the
//! tests check that both give identical labels.
//!
//! # Layout
//! `distance` (cosine distance, units, prefilter), `graph` (threshold-graph components),
//! `linkage` (exact average linkage inside a component), `naive` (the reference), `error`.

mod distance;
mod error;
mod graph;
mod linkage;
mod naive;

pub use distance::cosine_distance;
pub use error::ClusterError;
pub use naive::naive_average_linkage;

use distance::{prefilter_cutoff, threshold_units, Prepared};
use error::validate;

/// Average-linkage clustering over cosine distance, exact (see the [module docs](self)).
///
/// ```
/// use ets_core::Clusterer;
/// use ets_solver::cluster::AverageLinkage;
///
/// let embeddings = vec![
///     vec![1.0, 0.0, 0.0],
///     vec![0.0, 1.0, 0.0],
///     vec![0.99, 0.01, 0.0],
/// ];
/// assert_eq!(AverageLinkage::default().cluster(&embeddings, 0.05), [0, 1, 0]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct AverageLinkage {}

impl AverageLinkage {
    /// A clusterer (it has no settings; the same as `default()`).
    pub fn new() -> Self {
        Self {}
    }

    /// One label per embedding, dense in `0..k` and numbered by first appearance; embeddings
    /// share a label when average linkage merges them at distances ≤ `threshold`.
    ///
    /// # Errors
    /// [`ClusterError::DimensionMismatch`] when an embedding's length differs from the first
    /// one's; [`ClusterError::NanThreshold`] when `threshold` is NaN.
    pub fn try_cluster(
        &self,
        embeddings: &[Vec<f32>],
        threshold: f64,
    ) -> Result<Vec<usize>, ClusterError> {
        validate(embeddings, threshold)?;
        let n = embeddings.len();
        let Some(units) = threshold_units(threshold) else {
            return Ok((0..n).collect());
        };
        if n <= 1 {
            return Ok(vec![0; n]);
        }
        let prepared = Prepared::new(embeddings);
        let cutoff = prefilter_cutoff(embeddings[0].len(), threshold);
        // Every point starts as its own representative: the smallest member of its cluster.
        let mut representative: Vec<usize> = (0..n).collect();
        for component in graph::threshold_components(&prepared, units, cutoff) {
            if component.len() < 2 {
                continue;
            }
            let local = linkage::link_component(&prepared, &component, units);
            for (&member, &slot) in component.iter().zip(&local) {
                representative[member] = component[slot];
            }
        }
        Ok(labels_by_first_appearance(&representative))
    }
}

impl ets_core::Clusterer for AverageLinkage {
    /// [`AverageLinkage::try_cluster`].
    ///
    /// # Panics
    /// Where `try_cluster` returns an error: embeddings of different dimensions (the message
    /// names the index and both dimensions), or a NaN threshold.
    fn cluster(&self, embeddings: &[Vec<f32>], threshold: f64) -> Vec<usize> {
        match self.try_cluster(embeddings, threshold) {
            Ok(labels) => labels,
            Err(error) => panic!("AverageLinkage::cluster: {error}"),
        }
    }
}

/// Dense labels from per-point cluster representatives (each the cluster's smallest member, so
/// the first appearance of a cluster is its representative).
fn labels_by_first_appearance(representative: &[usize]) -> Vec<usize> {
    let mut label_of = vec![usize::MAX; representative.len()];
    let mut next = 0;
    representative
        .iter()
        .map(|&r| {
            if label_of[r] == usize::MAX {
                label_of[r] = next;
                next += 1;
            }
            label_of[r]
        })
        .collect()
}
