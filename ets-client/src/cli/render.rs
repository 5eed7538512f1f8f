//! Human formatting: sizes, counts, durations, aligned tables, and the stats block `solve`
//! prints after the answer.

use std::fmt::Write as _;
use std::time::Duration;

use ets_core::search::SearchOutcome;
use ets_core::SearchConfig;

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `3723 s` → `1h02m03s`; under a minute with one decimal.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// The first line of `text`, at most `max` characters (an ellipsis marks a cut).
pub fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max && !text.trim_end().contains('\n') {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The answer line and the stats block `ets solve` prints.
pub fn outcome(outcome: &SearchOutcome, config: &SearchConfig) -> String {
    let s = &outcome.stats;
    let answer = outcome.answer.as_deref().unwrap_or("(no answer)");
    let mut rows: Vec<(&str, String)> = vec![
        (
            "method",
            format!("{} (width {})", config.method, config.width),
        ),
        (
            "depths",
            format!("{} (ended: {})", s.depths, end_reason(outcome)),
        ),
        ("nodes", count(s.nodes as u64)),
        (
            "trajectories",
            format!("{} finished, {} truncated", s.finished, s.truncated),
        ),
        ("generated", format!("{} tokens", count(s.generated_tokens))),
        ("KV metric", format!("{} tokens", count(s.kv_metric_tokens))),
        (
            "peak live KV",
            format!(
                "{} tokens / {}",
                count(s.peak_live_tokens),
                bytes(s.peak_live_bytes)
            ),
        ),
        (
            "model calls",
            format!(
                "{} policy, {} PRM",
                count(s.policy_calls),
                count(s.prm_calls)
            ),
        ),
        ("wall time", duration(s.wall_time)),
    ];
    let served = s.server_prompt_tokens_computed + s.server_prompt_tokens_reused;
    if served > 0 {
        rows.push((
            "server prompts",
            format!(
                "{} tokens computed, {} reused from the servers' caches",
                count(s.server_prompt_tokens_computed),
                count(s.server_prompt_tokens_reused)
            ),
        ));
    }
    let mut out = format!("answer: {answer}\n\n");
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<14}{value}");
    }
    out
}

fn end_reason(outcome: &SearchOutcome) -> &'static str {
    use ets_core::search::EndReason::*;
    match outcome.end {
        WidthSpent => "width spent",
        FrontierEmpty => "frontier empty",
        Decided => "vote decided",
        ShareReached => "vote share reached",
        KvLimit => "KV limit: no room for another step",
        DepthCap => "depth cap",
        Stopped => "stopped",
        Deadline => "deadline passed: partial result",
    }
}

/// One readable line for a job event (`ets solve --stream` without `--json`).
pub fn event(job: u64, event: &ets_client::JobEvent) -> String {
    use ets_client::{JobEvent, SearchEvent};
    let what = match event {
        JobEvent::LoadingModels => "loading models".to_owned(),
        JobEvent::Queued { position } => format!("queued, {position} ahead"),
        JobEvent::Started => "started".to_owned(),
        JobEvent::Search(e) => match e {
            SearchEvent::Started { prompt_tokens } => {
                format!("search started: prompt {prompt_tokens} tokens")
            }
            SearchEvent::Expanded {
                depth,
                parents,
                children,
                generated_tokens,
            } => format!(
                "depth {depth}: expanded {parents} nodes into {children} children \
                 ({generated_tokens} tokens)"
            ),
            SearchEvent::Scored {
                depth,
                scored,
                dropped,
            } => format!("depth {depth}: scored {scored} steps, dropped {dropped}"),
            SearchEvent::Finished {
                depth,
                node,
                score,
                answer,
            } => format!(
                "depth {depth}: node {node} finished, score {score:.3}, answer {}",
                answer
                    .as_deref()
                    .map_or("none".to_owned(), |a| short(a, 40))
            ),
            SearchEvent::Pruned {
                depth,
                candidates,
                kept,
            } => format!(
                "depth {depth}: kept {} of {candidates} candidates",
                kept.len()
            ),
            SearchEvent::DepthDone {
                depth,
                frontier,
                finished,
                truncated,
                live_tokens,
                live_bytes,
            } => format!(
                "depth {depth} done: {frontier} open, {finished} finished, {truncated} \
                 truncated, live KV {} tok / {}",
                count(*live_tokens),
                bytes(*live_bytes)
            ),
            SearchEvent::BestAnswer {
                depth,
                answer,
                support,
                share,
                votes,
            } => format!(
                "best answer after depth {depth}: {} ({:.0}% of the vote, {votes} votes, \
                 support {support:.2})",
                short(answer, 40),
                share * 100.0
            ),
        },
    };
    format!("job {job}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_of_words() {
        use ets_client::{JobEvent, SearchEvent};
        let e = JobEvent::Search(SearchEvent::DepthDone {
            depth: 2,
            frontier: 3,
            finished: 1,
            truncated: 0,
            live_tokens: 1234,
            live_bytes: 2048,
        });
        assert_eq!(
            event(7, &e),
            "job 7: depth 2 done: 3 open, 1 finished, 0 truncated, live KV 1,234 tok / 2.0 KiB"
        );
        assert_eq!(
            event(7, &JobEvent::Queued { position: 2 }),
            "job 7: queued, 2 ahead"
        );
        assert!(!event(1, &JobEvent::LoadingModels).contains('{'));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(123), "123");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(3723)), "1h02m03s");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("ab\ncd", 10), "ab…");
        assert_eq!(short("ab", 10), "ab");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["JOB", "PROBLEM"],
            &[
                vec!["1".into(), "x".into()],
                vec!["12345".into(), "y".into()],
            ],
        );
        assert_eq!(t, "JOB    PROBLEM\n1      x\n12345  y\n");
    }
}
