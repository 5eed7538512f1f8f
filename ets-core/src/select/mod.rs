//! Selection policies: how many children each frontier node gets at a depth.

pub mod rebase;
