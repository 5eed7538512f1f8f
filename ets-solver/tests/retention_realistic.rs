//! Retention problems shaped like a real search, and checks of the solver on them.
//!
//! [`realistic_problem`] simulates a REBASE search with a seeded RNG: scores drift from parent
//! to child, REBASE allocates children at each depth, a few nodes finish along the way, and the
//! last frontier becomes the candidates; the tree above them is the ancestors. Clusters are
//! mostly singletons with some groups of 2–5, mostly siblings, as step embeddings give at a
//! 0.05 cosine cut. The retention bench (`benches/retention.rs`) includes this file for its
//! instances.

use ets_core::select::rebase::allocate;
use ets_core::{KvCost, RetentionProblem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// REBASE softmax temperature of the paper.
pub const TEMPERATURE: f64 = 0.2;

/// The paper's λ_s for a width (1.5 at 16, 1.4 at 64, 1.45 at 256).
pub fn paper_lambda_s(width: usize) -> f64 {
    match width {
        0..=16 => 1.5,
        17..=64 => 1.4,
        _ => 1.45,
    }
}

/// One simulated search node.
struct SimNode {
    parent: Option<usize>,
    score: f64,
}

/// How candidates are grouped into clusters: each candidate joins its previous sibling's
/// cluster with probability `sibling`, else a random earlier cluster with probability `cross`,
/// never beyond `max_size` members; otherwise it starts a cluster of its own.
#[derive(Debug, Clone, Copy)]
pub struct ClusterMix {
    /// Probability of joining the previous sibling's cluster.
    pub sibling: f64,
    /// Probability of joining a random earlier cluster (most likely under another parent).
    pub cross: f64,
    /// Largest cluster.
    pub max_size: usize,
}

/// Duplicates are mostly siblings (one parent sampling the same step twice).
pub const TYPICAL_MIX: ClusterMix = ClusterMix {
    sibling: 0.2,
    cross: 0.03,
    max_size: 5,
};

/// A harder mix: many clusters span parents, so the solver must branch.
pub const CROSS_HEAVY_MIX: ClusterMix = ClusterMix {
    sibling: 0.1,
    cross: 0.15,
    max_size: 5,
};

/// The hard family: pairs of near-duplicate steps, most of them under different parents; at
/// width 256 about 55–80 clusters span parents (issue 15's slow problems had 36–73), so the
/// solver must settle many coupled decisions whose objectives differ by 1e-8 or less.
pub const HARD_MIX: ClusterMix = ClusterMix {
    sibling: 0.15,
    cross: 0.6,
    max_size: 2,
};

/// A problem of the hard family: a simulated search of width 256 clustered with [`HARD_MIX`].
pub fn hard_problem(seed: u64) -> RetentionProblem {
    realistic_problem_with(256, 0x4a52_0000 + seed, HARD_MIX)
}

/// A retention problem from a simulated REBASE search of `width` over 3–8 depths, clustered
/// with [`TYPICAL_MIX`].
pub fn realistic_problem(width: usize, seed: u64) -> RetentionProblem {
    realistic_problem_with(width, seed, TYPICAL_MIX)
}

/// A retention problem from a simulated REBASE search of `width` over 3–8 depths.
pub fn realistic_problem_with(width: usize, seed: u64, mix: ClusterMix) -> RetentionProblem {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Drawn as an i32, as it always was, so the seeded problems stay the same.
    let depth: i32 = rng.gen_range(3..=8);
    simulated_problem(width, depth as usize, mix, &mut rng)
}

/// The retention problem of the frontier after `depth` depths of a simulated REBASE search of
/// `width` (depth 0: the root alone).
pub fn realistic_problem_at_depth(
    width: usize,
    depth: usize,
    seed: u64,
    mix: ClusterMix,
) -> RetentionProblem {
    simulated_problem(width, depth, mix, &mut ChaCha8Rng::seed_from_u64(seed))
}

fn simulated_problem(
    width: usize,
    depth: usize,
    mix: ClusterMix,
    rng: &mut ChaCha8Rng,
) -> RetentionProblem {
    let mut nodes = vec![SimNode {
        parent: None,
        score: 0.5,
    }];
    let mut frontier = vec![0usize];
    let mut alloc = vec![width];
    for d in 1..=depth {
        let mut next = Vec::new();
        for (&f, &n) in frontier.iter().zip(&alloc) {
            for _ in 0..n {
                let beta: f64 = (rng.gen::<f64>() + rng.gen::<f64>()) / 2.0;
                let score = (0.6 * nodes[f].score + 0.4 * beta).clamp(0.0, 1.0);
                nodes.push(SimNode {
                    parent: Some(f),
                    score,
                });
                // A few steps finish (answer reached) and leave the frontier.
                if d == 1 || rng.gen::<f64>() >= 0.02 * d as f64 {
                    next.push(nodes.len() - 1);
                }
            }
        }
        frontier = next;
        let scores: Vec<f64> = frontier.iter().map(|&i| nodes[i].score).collect();
        alloc = allocate(&scores, width, TEMPERATURE);
    }
    // Ancestors: every node above a candidate, in creation (hence topological) order.
    let mut is_ancestor = vec![false; nodes.len()];
    for &c in &frontier {
        let mut a = nodes[c].parent;
        while let Some(j) = a {
            if is_ancestor[j] {
                break;
            }
            is_ancestor[j] = true;
            a = nodes[j].parent;
        }
    }
    let mut index = vec![usize::MAX; nodes.len()];
    let mut ancestor_parent = Vec::new();
    for (j, node) in nodes.iter().enumerate() {
        if is_ancestor[j] {
            index[j] = ancestor_parent.len();
            ancestor_parent.push(node.parent.map(|p| index[p]));
        }
    }
    // The root has no parent: at depth 0 it is the lone candidate, no special case needed.
    let candidate_parent: Vec<Option<usize>> = frontier
        .iter()
        .map(|&c| nodes[c].parent.map(|p| index[p]))
        .collect();
    let scores: Vec<f64> = frontier.iter().map(|&i| nodes[i].score).collect();
    let (clusters, num_clusters) = sibling_clusters(&candidate_parent, mix, rng);
    RetentionProblem {
        targets: targets(&scores, width),
        candidate_parent,
        ancestor_parent,
        clusters,
        num_clusters,
        lambda_b: 1.0,
        lambda_s: paper_lambda_s(width),
        scores,
        node_ids: frontier.iter().map(|&i| i as u64).collect(),
        kv_cost: KvCost::Nodes,
        candidate_tokens: frontier.iter().map(|&i| step_tokens(i)).collect(),
        ancestor_tokens: nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| is_ancestor[j])
            .map(|(j, _)| step_tokens(j))
            .collect(),
        capacity: None,
    }
}

/// Tokens of simulated node `j`'s own span: 150–349 for the root (the prompt), 20–199 for a
/// step. A hash of the node's index, so the seeded problems draw exactly what they always did.
pub fn step_tokens(j: usize) -> u64 {
    let mut x = (j as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    if j == 0 {
        150 + x % 200
    } else {
        20 + x % 180
    }
}

/// Clusters with two or more members, and how many of those have members under two or more
/// parents (the ones the solver must branch on).
pub fn shared_clusters(p: &RetentionProblem) -> (usize, usize) {
    let mut parents: Vec<Vec<Option<usize>>> = vec![Vec::new(); p.num_clusters];
    for (i, &k) in p.clusters.iter().enumerate() {
        parents[k].push(p.candidate_parent[i]);
    }
    let shared = parents.iter().filter(|ps| ps.len() >= 2).count();
    let across = parents
        .iter()
        .filter(|ps| ps.iter().any(|&q| q != ps[0]))
        .count();
    (shared, across)
}

/// REBASE targets `O_i = n_i / Σn` at `width`.
pub fn targets(scores: &[f64], width: usize) -> Vec<f64> {
    let n = allocate(scores, width, TEMPERATURE);
    let total = n.iter().sum::<usize>().max(1) as f64;
    n.iter().map(|&k| k as f64 / total).collect()
}

/// Cluster labels (dense, by first appearance) and their count, as [`ClusterMix`] says.
fn sibling_clusters(
    candidate_parent: &[Option<usize>],
    mix: ClusterMix,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, usize) {
    let n = candidate_parent.len();
    let mut clusters = vec![0; n];
    let mut sizes: Vec<usize> = Vec::new();
    for i in 0..n {
        let previous =
            (i > 0 && candidate_parent[i - 1] == candidate_parent[i]).then(|| clusters[i - 1]);
        let roll: f64 = rng.gen();
        let join = match previous {
            Some(k) if roll < mix.sibling && sizes[k] < mix.max_size => Some(k),
            _ if roll > 1.0 - mix.cross && !sizes.is_empty() => {
                Some(rng.gen_range(0..sizes.len())).filter(|&k| sizes[k] < mix.max_size)
            }
            _ => None,
        };
        clusters[i] = join.unwrap_or_else(|| {
            sizes.push(0);
            sizes.len() - 1
        });
        sizes[clusters[i]] += 1;
    }
    (clusters, sizes.len())
}

#[cfg(test)]
mod checks {
    use super::*;
    use ets_core::retention::BruteForceRetention;
    use ets_core::RetentionSolver;
    use ets_solver::retention::BranchAndBound;

    #[test]
    fn realistic_problems_are_valid_and_sized_like_the_width() {
        for width in [16, 64, 256] {
            for seed in 0..5 {
                let p = realistic_problem(width, seed);
                p.validate().unwrap();
                let n = p.num_candidates();
                assert!(
                    n * 2 >= width && n <= width,
                    "width {width}: {n} candidates"
                );
                let (shared, _) = shared_clusters(&p);
                assert!(
                    shared >= 1 && shared * 2 <= p.num_clusters,
                    "width {width} seed {seed}: {shared} shared of {}",
                    p.num_clusters
                );
            }
        }
    }

    #[test]
    fn the_depth_0_frontier_is_the_root_kept_alone() {
        // The simulation builds depth 0 like any other depth: the root is the lone candidate.
        let p = realistic_problem_at_depth(16, 0, 1, TYPICAL_MIX);
        assert_eq!(p.candidate_parent, vec![None]);
        assert_eq!(p.num_ancestors(), 0);
        let got = BranchAndBound::default().try_solve(&p).unwrap();
        assert_eq!(got.keep, vec![true]);
        assert!(got.proven_optimal);
        assert_eq!(got.objective, p.objective(&[true]));
        assert_eq!(got.keep, BruteForceRetention.solve(&p).keep);
        // Depth 1 has the root as the only ancestor.
        let p = realistic_problem_at_depth(16, 1, 1, TYPICAL_MIX);
        assert_eq!(p.num_ancestors(), 1);
        assert_eq!(
            BranchAndBound::default().solve(&p).keep,
            BruteForceRetention.solve(&p).keep
        );
    }

    #[test]
    fn hard_problems_are_proven_optimal_within_the_default_work_limit() {
        for seed in 0..6 {
            let p = hard_problem(seed);
            let (_, across) = shared_clusters(&p);
            assert!(
                across >= 50,
                "seed {seed}: {across} clusters across parents"
            );
            let got = BranchAndBound::default().solve(&p);
            assert!(got.proven_optimal, "seed {seed}");
            assert_eq!(got.objective, p.objective(&got.keep));
        }
    }

    /// Solves with `solver` while `threads` threads spin on every core.
    fn solve_under_load(
        solver: &BranchAndBound,
        p: &RetentionProblem,
        threads: usize,
    ) -> Vec<ets_core::Retention> {
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                });
            }
            let results = (0..4).map(|_| solver.solve(p)).collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            results
        })
    }

    #[test]
    fn a_work_limited_solve_keeps_the_same_set_under_cpu_load() {
        // A hard problem the limit cuts short, so the work bound (not the proof) decides the
        // set. Checked against the old behaviour: with `time_limit: Some(unloaded time)` and no
        // work limit instead, the loaded solves end at other points of the search.
        let p = hard_problem(2);
        let solver = BranchAndBound {
            work_limit: 120_000,
            ..BranchAndBound::default()
        };
        let quiet = solver.solve(&p);
        assert!(!quiet.proven_optimal, "the limit must end this solve");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for loaded in solve_under_load(&solver, &p, 2 * cores) {
            assert_eq!(loaded, quiet);
        }
        // Unlimited, the same problem is proven, and its set is at least as good.
        let proven = BranchAndBound::default().solve(&p);
        assert!(proven.proven_optimal);
        assert!(proven.objective >= quiet.objective - 1e-12);
    }

    #[test]
    fn small_realistic_problems_match_brute_force() {
        let mut checked = 0;
        for seed in 0..40 {
            let p = realistic_problem(16, seed);
            if p.num_candidates() > 16 {
                continue;
            }
            checked += 1;
            let bf = BruteForceRetention.solve(&p);
            let bb = BranchAndBound::default().solve(&p);
            assert!(bb.proven_optimal, "seed {seed}");
            assert!((bf.objective - bb.objective).abs() <= 1e-9, "seed {seed}");
            assert_eq!(bf.keep, bb.keep, "seed {seed}");
        }
        assert!(checked >= 20, "{checked}");
    }

    /// `p` with the KV cost `kv_cost` and a capacity a `share` of the way from its cheapest
    /// candidate path to its whole tree.
    fn with_capacity(p: &RetentionProblem, kv_cost: KvCost, share: f64) -> RetentionProblem {
        let cheapest = p.path_tokens().into_iter().min().unwrap();
        let all = p.kept_tokens(&vec![true; p.num_candidates()]);
        RetentionProblem {
            kv_cost,
            capacity: Some(cheapest + ((all - cheapest) as f64 * share) as u64),
            ..p.clone()
        }
    }

    #[test]
    fn small_realistic_problems_under_a_capacity_match_brute_force() {
        let mut checked = 0;
        for seed in 0..20 {
            let p = realistic_problem(16, seed);
            if p.num_candidates() > 16 {
                continue;
            }
            for kv_cost in KvCost::ALL {
                for share in [0.2, 0.6] {
                    let q = with_capacity(&p, kv_cost, share);
                    let bf = BruteForceRetention.solve(&q);
                    let bb = BranchAndBound::default().solve(&q);
                    assert!(bb.proven_optimal, "seed {seed}");
                    assert!((bf.objective - bb.objective).abs() <= 1e-9, "seed {seed}");
                    assert_eq!(bf.keep, bb.keep, "seed {seed} {kv_cost} {share}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "{checked}");
    }

    #[test]
    fn a_wide_problem_under_a_binding_capacity_keeps_a_set_that_fits() {
        // Width 256, capacity at half the tree: the knapsack's lists grow to thousands of
        // sets, and the default work limit may end the solve unproven; the set still fits,
        // and the same problem gives the same set.
        let p = with_capacity(&realistic_problem(256, 0), KvCost::Tokens, 0.5);
        let got = BranchAndBound::default().solve(&p);
        assert!(p.kept_tokens(&got.keep) <= p.capacity.unwrap());
        assert_eq!(got.objective, p.objective(&got.keep));
        let free = BranchAndBound::default().solve(&RetentionProblem {
            capacity: None,
            ..p.clone()
        });
        assert!(got.objective <= free.objective);
        assert_eq!(BranchAndBound::default().solve(&p), got);
    }

    /// The optimum by enumerating every subset of the candidates in clusters of two or more;
    /// the rest then has separable weights, maximised by a plain recursion over the tree.
    fn enumerated_optimum(p: &RetentionProblem) -> f64 {
        let n = p.num_candidates();
        let m = p.num_ancestors();
        let size = |k: usize| p.clusters.iter().filter(|&&c| c == k).count();
        let coupled: Vec<usize> = (0..n).filter(|&i| size(p.clusters[i]) >= 2).collect();
        assert!(coupled.len() <= 18, "{} coupled candidates", coupled.len());
        let c = p.node_cost();
        let v = p.cluster_value();
        let candidate_children: Vec<Vec<usize>> = (0..m)
            .map(|j| {
                (0..n)
                    .filter(|&i| p.candidate_parent[i] == Some(j))
                    .collect()
            })
            .collect();
        let ancestor_children: Vec<Vec<usize>> = (0..m)
            .map(|j| {
                (0..m)
                    .filter(|&a| p.ancestor_parent[a] == Some(j))
                    .collect()
            })
            .collect();
        let mut best = f64::NEG_INFINITY;
        for mask in 0u32..(1 << coupled.len()) {
            // weight[i]: None when excluded, Some((w, forced)) otherwise.
            let mut weight: Vec<Option<(f64, bool)>> = (0..n)
                .map(|i| Some((p.targets[i] - c + v, false)))
                .collect();
            let mut covered = vec![false; p.num_clusters];
            for (b, &i) in coupled.iter().enumerate() {
                if mask & (1 << b) != 0 {
                    weight[i] = Some((p.targets[i] - c, true));
                    covered[p.clusters[i]] = true;
                } else {
                    weight[i] = None;
                }
            }
            let constant = v * covered.iter().filter(|&&x| x).count() as f64;
            // Best value of each live subtree, bottom up; (value, contains a forced candidate).
            let mut value = vec![(f64::NEG_INFINITY, false); m];
            for j in (0..m).rev() {
                let mut children: Vec<(f64, bool)> = candidate_children[j]
                    .iter()
                    .filter_map(|&i| weight[i])
                    .collect();
                children.extend(
                    ancestor_children[j]
                        .iter()
                        .map(|&a| value[a])
                        .filter(|&(x, _)| x > f64::NEG_INFINITY),
                );
                let mut sum = -c;
                let mut taken = false;
                let mut forced = false;
                for &(x, f) in &children {
                    if f || x >= 0.0 {
                        sum += x;
                        taken = true;
                        forced |= f;
                    }
                }
                if !taken {
                    sum = children
                        .iter()
                        .map(|&(x, _)| x - c)
                        .fold(f64::NEG_INFINITY, f64::max);
                }
                value[j] = (sum, forced);
            }
            best = best.max(value[0].0 + constant);
        }
        best
    }

    #[test]
    fn medium_problems_match_enumeration() {
        let mut checked = 0;
        for (width, mix) in [(64, TYPICAL_MIX), (32, CROSS_HEAVY_MIX)] {
            for seed in 0..30 {
                let p = realistic_problem_with(width, seed, mix);
                let coupled = (0..p.num_candidates())
                    .filter(|&i| p.clusters.iter().filter(|&&c| c == p.clusters[i]).count() >= 2)
                    .count();
                if coupled > 13 {
                    continue;
                }
                checked += 1;
                let bb = BranchAndBound::default().solve(&p);
                assert!(bb.proven_optimal, "seed {seed}");
                let best = enumerated_optimum(&p);
                assert!(
                    (bb.objective - best).abs() <= 1e-9,
                    "width {width} seed {seed}: {} vs {best}",
                    bb.objective
                );
            }
        }
        assert!(checked >= 20, "{checked}");
    }
}
