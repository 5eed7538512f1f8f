//! Retention solve time on problems shaped like a real search, at widths 16, 64 and 256.
//!
//! Before Criterion runs, a table is printed (markdown) with, per configuration (cluster mix,
//! subgradient steps) and width, the median and 90th percentile over [`INSTANCES`] seeded
//! problems of each problem's median solve time, and the medians of the problem sizes and of
//! the work done (LP solves, branch-and-bound nodes). Every solve must be proven optimal.
//! Criterion then times solving all of a width's typical problems once.
//!
//! The hard family (width 256, 30–80 clusters across parents, [`realistic::hard_problem`]) gets
//! its own table (p50/p90/max solve time, proven-optimal count) and Criterion group
//! `retention_hard`. `ETS_HARD_ONLY=1` skips the rest; `ETS_HARD_DETAIL=1` prints every hard
//! problem; `ETS_DUMP_HARD=<file>` writes them as JSON lines for `scripts/cbc_retention.py`.
//!
//! Run with `cargo bench -p ets-solver --bench retention`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ets_core::{RetentionProblem, RetentionSolver};
use ets_solver::retention::BranchAndBound;

#[path = "../tests/retention_realistic.rs"]
#[allow(dead_code, unused_imports)]
mod realistic;

/// Problems per width.
const INSTANCES: u64 = 25;

/// Widths of the paper.
const WIDTHS: [usize; 3] = [16, 64, 256];

/// Table rows: a label, the cluster mix, and the subgradient steps per node (the default 40,
/// or 0: an LP at every node the inherited multipliers do not settle).
const CONFIGS: [(&str, realistic::ClusterMix, usize); 3] = [
    ("typical", realistic::TYPICAL_MIX, 40),
    ("cross-heavy", realistic::CROSS_HEAVY_MIX, 40),
    ("typical, LP only", realistic::TYPICAL_MIX, 0),
];

fn problems(width: usize, mix: realistic::ClusterMix) -> Vec<RetentionProblem> {
    (0..INSTANCES)
        .map(|seed| realistic::realistic_problem_with(width, 1000 * width as u64 + seed, mix))
        .collect()
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

/// Median solve time of one problem over repeated solves (at least 11, about 20 ms in all).
fn solve_time(solver: &BranchAndBound, problem: &RetentionProblem) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 11 || (start.elapsed() < Duration::from_millis(20) && times.len() < 1000) {
        let t = Instant::now();
        black_box(solver.solve(black_box(problem)));
        times.push(t.elapsed());
    }
    median(times)
}

fn print_table() {
    println!(
        "| clusters | width | candidates | ancestors | clusters (shared / across parents) \
         | median µs | p90 µs | LP solves | B&B nodes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, mix, dual_steps) in CONFIGS {
        let solver = BranchAndBound {
            dual_steps,
            ..BranchAndBound::default()
        };
        for width in WIDTHS {
            let problems = problems(width, mix);
            let mut times = Vec::new();
            let mut lps = Vec::new();
            let mut nodes = Vec::new();
            for p in &problems {
                let r = solver.solve(p);
                assert!(r.proven_optimal, "width {width}: not proven optimal");
                lps.push(r.lp_solves);
                nodes.push(r.nodes_explored);
                times.push(solve_time(&solver, p).as_secs_f64() * 1e6);
            }
            let mut sorted = times.clone();
            sorted.sort_by(f64::total_cmp);
            let p90 = sorted[(sorted.len() * 9) / 10];
            let shared: Vec<(usize, usize)> =
                problems.iter().map(realistic::shared_clusters).collect();
            println!(
                "| {name} | {width} | {} | {} | {} ({} / {}) | {:.0} | {:.0} | {} (max {}) \
                 | {} (max {}) |",
                median(problems.iter().map(|p| p.num_candidates()).collect()),
                median(problems.iter().map(|p| p.num_ancestors()).collect()),
                median(problems.iter().map(|p| p.num_clusters).collect()),
                median(shared.iter().map(|s| s.0).collect()),
                median(shared.iter().map(|s| s.1).collect()),
                median(times),
                p90,
                median(lps.clone()),
                lps.iter().max().copied().unwrap_or(0),
                median(nodes.clone()),
                nodes.iter().max().copied().unwrap_or(0),
            );
        }
    }
}

/// Problems of the hard family (width 256, many clusters across parents).
const HARD_INSTANCES: u64 = 40;

/// One solve of a hard problem: time, result.
fn hard_solve(
    solver: &BranchAndBound,
    problem: &RetentionProblem,
) -> (Duration, ets_core::Retention) {
    let t = Instant::now();
    let r = black_box(solver.solve(black_box(problem)));
    (t.elapsed(), r)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// The hard family's table: per problem the fastest of three solves, then p50/p90/max over
/// problems, how many were proven optimal, and the work. With `ETS_DUMP_HARD=<file>` the
/// problems are also written as JSON lines for `scripts/cbc_retention.py`.
fn print_hard_table() {
    let solver = BranchAndBound::default();
    let problems: Vec<RetentionProblem> =
        (0..HARD_INSTANCES).map(realistic::hard_problem).collect();
    let mut times = Vec::new();
    let mut proven = 0;
    let mut nodes = Vec::new();
    let mut lps = Vec::new();
    let mut dump = String::new();
    for (seed, p) in problems.iter().enumerate() {
        let mut best = Duration::MAX;
        let mut result = None;
        for _ in 0..3 {
            let (t, r) = hard_solve(&solver, p);
            best = best.min(t);
            result = Some(r);
        }
        let r = result.expect("solved");
        proven += usize::from(r.proven_optimal);
        nodes.push(r.nodes_explored);
        lps.push(r.lp_solves);
        times.push(best.as_secs_f64() * 1e3);
        dump.push_str(&problem_json(&format!("hard-{seed}"), p, r.objective));
        dump.push('\n');
    }
    if let Ok(path) = std::env::var("ETS_DUMP_HARD") {
        std::fs::write(&path, dump).expect("ETS_DUMP_HARD is writable");
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let across: Vec<usize> = problems
        .iter()
        .map(|p| realistic::shared_clusters(p).1)
        .collect();
    println!();
    println!(
        "| hard family | candidates | clusters across parents | p50 ms | p90 ms | max ms \
         | proven optimal | B&B nodes (p50 / max) | LP solves (p50 / max) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} problems | {}–{} | {}–{} (median {}) | {:.2} | {:.2} | {:.2} | {proven}/{} \
         | {} / {} | {} / {} |",
        problems.len(),
        problems
            .iter()
            .map(|p| p.num_candidates())
            .min()
            .unwrap_or(0),
        problems
            .iter()
            .map(|p| p.num_candidates())
            .max()
            .unwrap_or(0),
        across.iter().min().unwrap_or(&0),
        across.iter().max().unwrap_or(&0),
        median(across.clone()),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        sorted.last().copied().unwrap_or(0.0),
        problems.len(),
        median(nodes.clone()),
        nodes.iter().max().unwrap_or(&0),
        median(lps.clone()),
        lps.iter().max().unwrap_or(&0),
    );
    if std::env::var_os("ETS_HARD_DETAIL").is_some() {
        for (seed, p) in problems.iter().enumerate() {
            let r = solver.solve(p);
            println!(
                "hard-{seed}: n {} across {} {:.2} ms nodes {} lps {} proven {}",
                p.num_candidates(),
                across[seed],
                times[seed],
                r.nodes_explored,
                r.lp_solves,
                r.proven_optimal
            );
        }
    }
}

/// One problem as a JSON object (the fields of `RetentionProblem`, a name and the objective
/// the solver found).
fn problem_json(name: &str, p: &RetentionProblem, objective: f64) -> String {
    fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
        items.map(|x| x.to_string()).collect::<Vec<_>>().join(",")
    }
    let parent = |p: &Option<usize>| p.map_or("null".to_owned(), |p| p.to_string());
    format!(
        "{{\"name\":\"{name}\",\"objective\":{objective},\"targets\":[{}],\
         \"candidate_parent\":[{}],\"ancestor_parent\":[{}],\"clusters\":[{}],\
         \"num_clusters\":{},\"lambda_b\":{},\"lambda_s\":{}}}",
        list(p.targets.iter()),
        list(p.candidate_parent.iter().map(parent)),
        list(p.ancestor_parent.iter().map(parent)),
        list(p.clusters.iter()),
        p.num_clusters,
        p.lambda_b,
        p.lambda_s,
    )
}

fn bench(c: &mut Criterion) {
    let solver = BranchAndBound::default();
    let mut group = c.benchmark_group("retention");
    for width in WIDTHS {
        let problems = problems(width, realistic::TYPICAL_MIX);
        group.throughput(Throughput::Elements(problems.len() as u64));
        group.bench_function(format!("width_{width}"), |b| {
            b.iter(|| {
                for p in &problems {
                    black_box(solver.solve(black_box(p)));
                }
            })
        });
    }
    group.finish();
}

/// Criterion over the hard family: solving its first 10 problems once per iteration.
fn bench_hard(c: &mut Criterion) {
    let solver = BranchAndBound::default();
    let problems: Vec<RetentionProblem> = (0..10).map(realistic::hard_problem).collect();
    let mut group = c.benchmark_group("retention_hard");
    group.sample_size(10);
    group.throughput(Throughput::Elements(problems.len() as u64));
    group.bench_function("width_256_cross_parent", |b| {
        b.iter(|| {
            for p in &problems {
                black_box(solver.solve(black_box(p)));
            }
        })
    });
    group.finish();
}

fn main() {
    if std::env::var_os("ETS_HARD_ONLY").is_none() {
        print_table();
    }
    print_hard_table();
    let mut criterion = Criterion::default().configure_from_args();
    if std::env::var_os("ETS_HARD_ONLY").is_none() {
        bench(&mut criterion);
    }
    bench_hard(&mut criterion);
    criterion.final_summary();
}
