//! Retention solve time on problems shaped like a real search, at widths 16, 64 and 256.
//!
//! Before Criterion runs, a table is printed (markdown) with, per configuration (cluster mix,
//! subgradient steps) and width, the median and 90th percentile over [`INSTANCES`] seeded
//! problems of each problem's median solve time, and the medians of the problem sizes and of
//! the work done (LP solves, branch-and-bound nodes). Every solve must be proven optimal.
//! Criterion then times solving all of a width's typical problems once.
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

fn main() {
    print_table();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
