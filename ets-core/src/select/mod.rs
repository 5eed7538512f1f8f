//! Selection policies: how many children each frontier node gets at a depth.
//!
//! Every method gives the root the full width at depth 0. After that: [`rebase`] and [`ets`]
//! spread the remaining width over the frontier, [`beam`] keeps the best `ceil(sqrt(W))`,
//! [`dvts`] runs independent greedy subtrees, and best-of-N continues every chain with one
//! child. The driver ([`crate::search`]) applies them; the functions here are pure.

pub mod beam;
pub mod dvts;
pub mod ets;
pub mod rebase;
