//! Semantic clustering (being written).
