//! Refcounted prefix tree over token ids (placeholder; being written).

/// Placeholder error.
#[derive(Debug, thiserror::Error)]
#[error("kv tree error")]
pub struct KvTreeError;
