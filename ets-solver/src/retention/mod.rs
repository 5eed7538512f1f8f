//! Retention solver (being written).
