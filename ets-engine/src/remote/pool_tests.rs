//! Tests of the endpoint pool: sticky order, failover, marking down and up, retries with the
//! same inputs, permanent errors, bounded in-flight requests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn urls(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("http://127.0.0.1:{}", 9000 + i))
        .collect()
}

fn fast() -> PoolOptions {
    PoolOptions {
        backoff: Duration::from_millis(1),
        ..PoolOptions::default()
    }
}

#[test]
fn a_job_sticks_to_one_endpoint_and_jobs_spread_over_all() {
    let pool = EndpointPool::new(&urls(4), fast());
    let mut used = std::collections::HashSet::new();
    for job in 0..200u64 {
        let first = pool.order(job)[0].url.clone();
        for _ in 0..3 {
            assert_eq!(pool.order(job)[0].url, first, "job {job} moved");
        }
        used.insert(first);
    }
    assert_eq!(used.len(), 4, "200 jobs used only {used:?}");
}

#[test]
fn losing_an_endpoint_moves_only_its_jobs() {
    let all = urls(4);
    let pool = EndpointPool::new(&all, fast());
    let fewer = EndpointPool::new(&all[..3], fast());
    for job in 0..200u64 {
        let before = pool.order(job)[0].url.clone();
        let after = fewer.order(job)[0].url.clone();
        if before != all[3] {
            assert_eq!(before, after, "job {job} moved though its endpoint stayed");
        }
    }
}

#[test]
fn a_failing_endpoint_is_marked_down_and_the_job_fails_over_with_the_same_input() {
    let pool = EndpointPool::new(&urls(3), fast());
    let job = 7;
    let first = pool.order(job)[0].url.clone();
    let seen = std::sync::Mutex::new(Vec::new());
    let out = pool
        .call(job, None, |e| {
            seen.lock().unwrap().push(e.url.clone());
            if e.url == first {
                Err(AttemptError::Transient("connection refused".into()))
            } else {
                Ok(e.url.clone())
            }
        })
        .unwrap();
    assert_ne!(out, first);
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen.iter().filter(|u| **u == first).count(),
        3,
        "retried on its own endpoint until marked down: {seen:?}"
    );
    let status = pool.status();
    let down: Vec<_> = status.iter().filter(|s| !s.up).collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].url, first);
    assert!(down[0].last_error.as_deref().unwrap().contains("refused"));
    // The next call of the same job goes straight to the failover endpoint.
    let again = pool.call(job, None, |e| Ok(e.url.clone())).unwrap();
    assert_eq!(again, out);
    // A probe that answers brings it back, and the job returns to it.
    pool.probe_down(|_| true);
    assert_eq!(pool.call(job, None, |e| Ok(e.url.clone())).unwrap(), first);
}

#[test]
fn attempts_are_bounded_and_the_error_names_the_endpoint() {
    let pool = EndpointPool::new(&urls(2), fast());
    let calls = AtomicUsize::new(0);
    let e = pool
        .call(1, None, |_| -> Result<(), _> {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(AttemptError::Transient("timed out".into()))
        })
        .unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    let text = e.to_string();
    assert!(
        text.contains("http://127.0.0.1:900") && text.contains("timed out"),
        "{text}"
    );
}

#[test]
fn a_permanent_error_is_not_retried() {
    let pool = EndpointPool::new(&urls(2), fast());
    let calls = AtomicUsize::new(0);
    let e = pool
        .call(1, None, |_| -> Result<(), _> {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(AttemptError::Permanent("HTTP 400: bad prompt".into()))
        })
        .unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(
        matches!(e, PoolError::Refused(ref m) if m.contains("HTTP 400")),
        "{e}"
    );
    assert!(
        pool.status().iter().all(|s| s.up),
        "a 4xx does not mark down"
    );
}

struct Flag(AtomicBool);

impl ets_core::StopCheck for Flag {
    fn should_stop(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn in_flight_requests_per_endpoint_are_bounded_and_a_stop_ends_the_wait() {
    let pool = Arc::new(EndpointPool::new(
        &urls(1),
        PoolOptions {
            max_in_flight: 2,
            ..fast()
        },
    ));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|job| {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            std::thread::spawn(move || {
                pool.call(job, None, |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);

    let stop: StopHandle = Arc::new(Flag(AtomicBool::new(true)));
    let e = pool.call(1, Some(&stop), |_| Ok(())).unwrap_err();
    assert_eq!(e, PoolError::Stopped);
}
