//! Why a clustering request was rejected: the error type of [`super::AverageLinkage::try_cluster`].

use thiserror::Error;

/// A clustering input the clusterer cannot work with. Each variant carries the bad value.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// An embedding's length differs from the first embedding's.
    #[error(
        "embedding {index} has dimension {found}, but embedding 0 has dimension {expected}; \
         all embeddings must have the same dimension"
    )]
    DimensionMismatch {
        /// Position of the first embedding whose length differs.
        index: usize,
        /// Length of embedding 0.
        expected: usize,
        /// Length of embedding `index`.
        found: usize,
    },
    /// The distance threshold is NaN, so no merge can be decided.
    #[error("clustering threshold is NaN")]
    NanThreshold,
}

/// Checks what [`super::AverageLinkage::try_cluster`] and [`super::naive_average_linkage`] both
/// require: one dimension for all embeddings and a threshold that is not NaN.
pub(crate) fn validate(embeddings: &[Vec<f32>], threshold: f64) -> Result<(), ClusterError> {
    if threshold.is_nan() {
        return Err(ClusterError::NanThreshold);
    }
    let Some(first) = embeddings.first() else {
        return Ok(());
    };
    let expected = first.len();
    match embeddings.iter().position(|e| e.len() != expected) {
        Some(index) => Err(ClusterError::DimensionMismatch {
            index,
            expected,
            found: embeddings[index].len(),
        }),
        None => Ok(()),
    }
}
