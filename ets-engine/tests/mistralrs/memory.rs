//! Resident memory stays bounded over many expansions (mistral.rs' prefix cacher, which never
//! evicts on CPU, is off).

use ets_core::Policy;

use crate::support::{exclusive, policy, request, sampling};

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// With the prefix cacher on, every finished sequence keeps a KV cache of at least one
/// 512-token block (≈ 23 MB for this model): 200 expansions would keep ≈ 4.6 GB.
const BOUND_MIB: u64 = 300;

#[test]
fn rss_stays_bounded_over_200_expansions() {
    let _g = exclusive();
    let mut p = policy();
    let engine = p.engine().clone();
    let s = sampling(1.0);
    let base: Vec<u32> = engine.encode("Count: 1, 2, 3,", false).unwrap();
    let contexts: Vec<Vec<u32>> = (0..220u32)
        .map(|i| {
            let mut c = base.clone();
            c.extend(engine.encode(&format!(" {}", i + 4), false).unwrap());
            c
        })
        .collect();
    let mut run = |range: std::ops::Range<usize>| {
        for chunk in contexts[range].chunks(10) {
            let reqs: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, c)| request(c, 1, 2, i as u64, &s))
                .collect();
            let out = p.expand(&reqs).unwrap();
            assert!(out.iter().all(|children| children.len() == 1));
        }
    };
    run(0..20); // warm-up: allocator pools, first batches
    let before = rss_kib();
    run(20..220);
    let after = rss_kib();
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "RSS {} MiB -> {} MiB over 200 expansions",
        before / 1024,
        after / 1024
    );
    assert!(
        growth_mib < BOUND_MIB,
        "RSS grew {growth_mib} MiB over 200 expansions"
    );
}
