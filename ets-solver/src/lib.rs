//! # ets-solver — the optimisation parts of ETS
//!
//! **Owns**: the exact solver of the ETS retention problem ([`retention`]: a dynamic program over
//! the tree, exact whenever no cluster spans two parents, and otherwise branch-and-bound over the
//! coupled clusters with Lagrangian bounds from subgradient steps and Clarabel LP duals) and semantic clustering of step embeddings ([`cluster`]: the exact graph of pairs
//! within the threshold, found by a vectorised all-pairs scan, and exact average linkage inside
//! each connected component; hnsw_rs was measured and rejected, see the crate README).
//!
//! **Must not**: know about models, tokens, sockets or the search driver. It implements
//! `ets_core::RetentionSolver` and `ets_core::Clusterer` and nothing calls back into it.
//!
//! **Invariants**: the retention solver's answer is optimal unless it says otherwise
//! (`proven_optimal = false` only after its time cap); Clarabel never prints.

pub mod cluster;
pub mod retention;
