//! Applies the configured selection policy to the open frontier of one depth.

use std::collections::HashMap;
use std::time::Instant;

use super::driver::Driver;
use super::kv_fit::{self, KvRoom, Wish};
use super::outcome::{DepthRecord, NodeState, RetentionSummary};
use super::SearchEvent;
use crate::config::{KvCost, Method};
use crate::error::{BackendKind, SearchError};
use crate::select::{beam, ets, rebase};

/// Nodes to expand next, as (node index, children).
pub(super) type Plan = Vec<(usize, usize)>;

/// Allocates children over `open` (indices of open nodes at `depth`), prunes the rest, and fills
/// the selection fields of `record`. `scored` is every child of this depth that has a score
/// (finished and truncated ones included), which DVTS needs. `remaining` is the width to
/// allocate; `kv`, under a KV limit, what the kept paths and the planned children may hold: ETS
/// and REBASE (which then goes through the retention problem with `λ_b = λ_s = 0`) get the
/// capacity left beside `remaining` children, the other methods fit their own allocation
/// ([`kv_fit`]).
pub(super) fn select(
    d: &mut Driver<'_, '_>,
    depth: usize,
    open: &[usize],
    scored: &[usize],
    remaining: usize,
    kv: Option<KvRoom>,
    record: &mut DepthRecord,
) -> Result<Plan, SearchError> {
    let started = Instant::now();
    let scores: Vec<f64> = open
        .iter()
        .map(|&i| d.nodes[i].record.score.unwrap_or(0.0))
        .collect();
    let ids: Vec<u64> = open.iter().map(|&i| d.nodes[i].record.id).collect();
    let config = d.config;
    let allocation = match (config.method, kv) {
        (Method::Rebase, None) => {
            rebase::allocate(&scores, remaining, config.selection_temperature)
        }
        (Method::Beam, None) => beam::allocate(&scores, &ids, remaining),
        (Method::BestOfN, None) => vec![1; open.len()],
        (Method::Dvts, None) => dvts(d, open, scored),
        (Method::Beam | Method::BestOfN | Method::Dvts, Some(kv)) => {
            fitted(d, open, scored, &scores, &ids, remaining, kv)
        }
        (Method::Ets | Method::Rebase, _) => {
            let capacity = kv.map(|kv| kv.capacity(remaining));
            // REBASE under a KV limit is ETS without costs: keep the most target mass that
            // fits, then REBASE over the kept candidates.
            let (lambda_b, lambda_s, kv_cost) = match config.method {
                Method::Ets => (config.lambda_b, d.lambda_s, config.kv_cost),
                _ => (0.0, 0.0, KvCost::Nodes),
            };
            let (clusters, num_clusters) = cluster(d, depth, open, lambda_s)?;
            let ancestry = ancestry(d, open);
            let candidate_tokens: Vec<u64> = open
                .iter()
                .map(|&i| d.nodes[i].record.tokens as u64)
                .collect();
            let ancestor_tokens: Vec<u64> = ancestry
                .ancestors
                .iter()
                .map(|&a| d.nodes[a].record.tokens as u64)
                .collect();
            let frontier = ets::EtsFrontier {
                scores: &scores,
                candidate_parent: &ancestry.candidate_parent,
                ancestor_parent: &ancestry.ancestor_parent,
                clusters: &clusters,
                num_clusters,
                node_ids: &ids,
                candidate_tokens: &candidate_tokens,
                ancestor_tokens: &ancestor_tokens,
            };
            let params = ets::EtsParams {
                width: remaining,
                temperature: config.selection_temperature,
                lambda_b,
                lambda_s,
                kv_cost,
                capacity,
            };
            let selection = ets::allocate(frontier, params, d.backends.solver)?;
            let r = &selection.retention;
            record.retention = Some(RetentionSummary {
                objective: r.objective,
                proven_optimal: r.proven_optimal,
                nodes_explored: r.nodes_explored,
                lp_solves: r.lp_solves,
            });
            if lambda_s > 0.0 {
                record.clusters = clusters;
            }
            selection.children
        }
    };
    let mut plan = Plan::new();
    for (&i, &n) in open.iter().zip(&allocation) {
        if n > 0 {
            plan.push((i, n));
        } else {
            d.close(i, NodeState::Pruned)?;
            d.stats.pruned += 1;
        }
    }
    record.kept = plan.iter().map(|&(i, _)| d.nodes[i].record.id).collect();
    record.allocation = allocation;
    record.selection_time = started.elapsed();
    d.emit(SearchEvent::Pruned {
        depth,
        candidates: open.len(),
        kept: record.kept.clone(),
    });
    Ok(plan)
}

/// Cluster labels of the candidates' newest step texts, and the cluster count.
///
/// Skips the embedder when clustering cannot matter: `lambda_s = 0` (every candidate its own
/// cluster), one candidate, or all texts equal (one cluster). Equal texts share a label without
/// being embedded twice.
fn cluster(
    d: &mut Driver<'_, '_>,
    depth: usize,
    open: &[usize],
    lambda_s: f64,
) -> Result<(Vec<usize>, usize), SearchError> {
    if lambda_s == 0.0 {
        return Ok(((0..open.len()).collect(), open.len()));
    }
    let mut unique: Vec<&str> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    let text_index: Vec<usize> = open
        .iter()
        .map(|&i| {
            let text = d.nodes[i].record.text.as_str();
            *index_of.entry(text).or_insert_with(|| {
                unique.push(text);
                unique.len() - 1
            })
        })
        .collect();
    if unique.len() == 1 {
        return Ok((vec![0; open.len()], 1));
    }
    let embedder = d
        .backends
        .embedder
        .as_mut()
        .ok_or(SearchError::MissingEmbedder { lambda_s })?;
    let embeddings = embedder
        .embed(&unique)
        .map_err(|source| SearchError::Backend {
            kind: BackendKind::Embedder,
            depth,
            source,
        })?;
    if embeddings.len() != unique.len() {
        return Err(SearchError::BackendShape {
            kind: BackendKind::Embedder,
            depth,
            expected: unique.len(),
            got: embeddings.len(),
        });
    }
    d.stats.embedded_texts += unique.len() as u64;
    let labels = d
        .backends
        .clusterer
        .cluster(&embeddings, d.config.cluster_threshold);
    let num_clusters = labels.iter().max().map_or(0, |&k| k + 1);
    Ok((
        text_index.iter().map(|&t| labels[t]).collect(),
        num_clusters,
    ))
}

/// The tree above the candidates.
struct Ancestry {
    /// Node indices of the ancestors, ordered by depth then id (so parents come first).
    ancestors: Vec<usize>,
    /// Each candidate's parent, as an index into `ancestors`.
    candidate_parent: Vec<Option<usize>>,
    /// Each ancestor's parent, as an index into `ancestors`.
    ancestor_parent: Vec<Option<usize>>,
}

/// The tree above the candidates: each candidate's parent as an ancestor index, and each
/// ancestor's parent, ancestors ordered by depth then id (so parents come first).
fn ancestry(d: &Driver<'_, '_>, open: &[usize]) -> Ancestry {
    let parent_of = |i: usize| d.nodes[i].record.parent.map(|p| p as usize);
    let mut ancestors: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &c in open {
        let mut at = parent_of(c);
        while let Some(a) = at {
            if !seen.insert(a) {
                break;
            }
            ancestors.push(a);
            at = parent_of(a);
        }
    }
    ancestors.sort_by_key(|&a| (d.nodes[a].record.depth, d.nodes[a].record.id));
    let index: HashMap<usize, usize> = ancestors.iter().enumerate().map(|(k, &a)| (a, k)).collect();
    let candidate_parent = open
        .iter()
        .map(|&c| parent_of(c).map(|p| index[&p]))
        .collect();
    let ancestor_parent = ancestors
        .iter()
        .map(|&a| parent_of(a).map(|p| index[&p]))
        .collect();
    Ancestry {
        ancestors,
        candidate_parent,
        ancestor_parent,
    }
}

/// Beam, best-of-N or DVTS under a KV limit: the method's own wish (beam's kept candidates and
/// their share of `remaining`, one child per best-of-N trajectory, each DVTS subtree's budget for
/// its best child), fitted to `kv` in score order. A DVTS subtree whose best child gets no room
/// ends.
fn fitted(
    d: &mut Driver<'_, '_>,
    open: &[usize],
    scored: &[usize],
    scores: &[f64],
    ids: &[u64],
    remaining: usize,
    kv: KvRoom,
) -> Vec<usize> {
    let order = beam::ranked(scores, ids);
    let (want, width, max_kept) = match d.config.method {
        Method::Beam if !open.is_empty() && remaining > 0 => {
            let (keep, each) = beam::shape(remaining, open.len());
            (vec![each; open.len()], remaining, keep)
        }
        Method::BestOfN => (vec![1; open.len()], usize::MAX, usize::MAX),
        Method::Dvts => (dvts(d, open, scored), usize::MAX, usize::MAX),
        _ => (vec![0; open.len()], 0, 0),
    };
    let wish = Wish {
        order: &order,
        want: &want,
        width,
        max_kept,
        share_left: d.config.method == Method::Beam,
    };
    let fitted = kv_fit::fit(&d.nodes, open, &wish, kv);
    d.kv_narrowed |= fitted.narrowed;
    if d.config.method == Method::Dvts {
        for (&i, (&wanted, &got)) in open.iter().zip(want.iter().zip(&fitted.children)) {
            if wanted > 0 && got == 0 {
                let subtree = d.nodes[i].record.subtree;
                d.subtree_done[subtree] = true;
            }
        }
    }
    fitted.children
}

/// DVTS: in each live subtree the best scored child of this depth continues with the subtree's
/// budget; if that best child finished or was truncated, the subtree ends.
fn dvts(d: &mut Driver<'_, '_>, open: &[usize], scored: &[usize]) -> Vec<usize> {
    let mut best: Vec<Option<usize>> = vec![None; d.subtree_budgets.len()];
    for &i in scored {
        let r = &d.nodes[i].record;
        let slot = &mut best[r.subtree];
        let better = match *slot {
            None => true,
            Some(b) => {
                let rb = &d.nodes[b].record;
                let (s, sb) = (r.score.unwrap_or(0.0), rb.score.unwrap_or(0.0));
                s > sb || (s == sb && r.id < rb.id)
            }
        };
        if better {
            *slot = Some(i);
        }
    }
    for (s, b) in best.iter().enumerate() {
        match b {
            Some(b) if d.nodes[*b].record.state == NodeState::Open => {}
            _ => d.subtree_done[s] = true,
        }
    }
    open.iter()
        .map(|&i| {
            let s = d.nodes[i].record.subtree;
            if best[s] == Some(i) && !d.subtree_done[s] {
                d.subtree_budgets[s]
            } else {
                0
            }
        })
        .collect()
}
