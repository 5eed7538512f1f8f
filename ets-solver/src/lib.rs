//! # ets-solver — the optimisation parts of ETS
//!
//! **Owns**: the exact solver of the ETS retention problem ([`retention`]: a dynamic program over
//! the tree for the first incumbent, Clarabel LP relaxations inside branch-and-bound for the
//! proof) and semantic clustering of step embeddings ([`cluster`]: an hnsw_rs neighbour graph of
//! pairs within the threshold, exact average linkage inside each connected component).
//!
//! **Must not**: know about models, tokens, sockets or the search driver. It implements
//! `ets_core::RetentionSolver` and `ets_core::Clusterer` and nothing calls back into it.
//!
//! **Invariants**: the retention solver's answer is optimal unless it says otherwise
//! (`proven_optimal = false` only after its time cap); Clarabel never prints.

pub mod cluster;
pub mod retention;
