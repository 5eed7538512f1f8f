//! Why a search ended: one test per [`EndReason`] rule and per way a search runs out (width,
//! token cap, depth cap, empty frontier, stop, deadline), on a scripted toy policy whose steps
//! are fixed by depth, so each scenario is built on purpose rather than found by seed.
//!
//! Checked by breaking the driver: with the old rule (width spent only while open nodes remain)
//! `token_cap_truncating_every_trajectory_spends_the_width` and `finishing_every_trajectory_
//! spends_the_width` fail with `FrontierEmpty`; with the depth cap checked after the width,
//! `the_depth_cap_truncating_open_trajectories_is_the_depth_cap` fails with `WidthSpent`; with
//! any stop reported as `Stopped`, `a_stop_after_the_last_depth_keeps_the_natural_reason` fails.

mod support;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use ets_core::retention::BruteForceRetention;
use ets_core::search::{run_search, Backends, EndReason, NodeState, SearchEvent, SearchOutcome};
use ets_core::{
    BackendError, Continuation, ExpandRequest, FinishReason, Method, Policy, Reward, ScoreRequest,
    SearchConfig,
};
use ets_kvtree::KvTree;
use support::ToyClusterer;

/// Steps fixed by depth: child `c` at depth `d` says `s<d><c>` (5 tokens with the delimiter),
/// except that from depth `answer_at` on the first `answers` children of every node say
/// `The answer is: 2`. Each generated token advances `clock` by one tick (a stand-in for
/// wall-clock time).
struct ScriptPolicy<'c> {
    answer_at: usize,
    answers: usize,
    clock: &'c AtomicU64,
}

impl Policy for ScriptPolicy<'_> {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        Ok(format!("Q: {problem}\n\n").bytes().map(u32::from).collect())
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        Ok(requests
            .iter()
            .map(|r| {
                let context: Vec<u8> = r.context.iter().map(|&t| t as u8).collect();
                // The prompt holds one delimiter, so the children are at this depth.
                let depth = String::from_utf8_lossy(&context)
                    .matches(r.step_delimiter)
                    .count();
                (0..r.num_children)
                    .map(|c| {
                        let text = if depth >= self.answer_at && c < self.answers {
                            format!("The answer is: 2{}", r.step_delimiter)
                        } else {
                            let c = (b'a' + (c % 26) as u8) as char;
                            format!("s{}{c}{}", depth % 10, r.step_delimiter)
                        };
                        let mut token_ids: Vec<u32> = text.bytes().map(u32::from).collect();
                        let mut finish = FinishReason::Delimiter;
                        if token_ids.len() > r.max_tokens {
                            token_ids.truncate(r.max_tokens);
                            finish = FinishReason::Length;
                        }
                        self.clock
                            .fetch_add(token_ids.len() as u64, Ordering::Relaxed);
                        Continuation {
                            logprobs: vec![-1.0; token_ids.len()],
                            text: token_ids.iter().map(|&t| t as u8 as char).collect(),
                            token_ids,
                            finish,
                        }
                    })
                    .collect()
            })
            .collect())
    }
}

/// Answers score 0.9; a step `s<d><c>` scores 0.5 minus a little per letter, so earlier
/// children rank first; steps containing `drop_marker` get no score.
struct ScriptReward {
    drop_marker: Option<String>,
}

impl Reward for ScriptReward {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        Ok(requests
            .iter()
            .map(|r| {
                let last = r.steps.last().copied().unwrap_or("");
                if self
                    .drop_marker
                    .as_deref()
                    .is_some_and(|m| last.contains(m))
                {
                    None
                } else if last.contains("answer") {
                    Some(0.9)
                } else {
                    let letter = last.as_bytes().get(2).copied().unwrap_or(b'a');
                    Some(0.5 - 0.01 * f64::from(letter - b'a'))
                }
            })
            .collect())
    }
}

fn config(method: Method, width: usize, max_depth: usize) -> SearchConfig {
    SearchConfig {
        method,
        width,
        max_depth,
        lambda_s: Some(0.0),
        ..SearchConfig::default()
    }
}

/// What the scripted backends do: answers from `answer_at` on (`answers` children of each
/// node, all by default), steps with `drop_marker` unscored.
#[derive(Clone, Copy)]
struct Script<'a> {
    answer_at: usize,
    answers: usize,
    drop_marker: Option<&'a str>,
}

/// Answers from `answer_at` on, by every child.
fn answers_at(answer_at: usize) -> Script<'static> {
    Script {
        answer_at,
        answers: usize::MAX,
        drop_marker: None,
    }
}

/// No answers ever.
const NEVER: Script<'static> = Script {
    answer_at: usize::MAX,
    answers: 0,
    drop_marker: None,
};

/// Runs a scripted search; `stop` sees every event with the tick count so far and may stop it.
fn run_with(
    c: &SearchConfig,
    script: Script<'_>,
    stop: &mut dyn FnMut(&SearchEvent, u64) -> bool,
) -> SearchOutcome {
    let clock = AtomicU64::new(0);
    let mut policy = ScriptPolicy {
        answer_at: script.answer_at,
        answers: script.answers,
        clock: &clock,
    };
    let mut reward = ScriptReward {
        drop_marker: script.drop_marker.map(str::to_owned),
    };
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: None,
        solver: &BruteForceRetention,
        clusterer: &ToyClusterer,
    };
    let mut kv = KvTree::new(1);
    let mut observer = |e: &SearchEvent| {
        if stop(e, clock.load(Ordering::Relaxed)) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let outcome = run_search("q", c, backends, &mut kv, &mut observer).expect("search runs");
    assert_eq!(kv.stats().live_tokens, 0, "every KV reference is released");
    if let Some(limit) = c.kv_limit {
        assert!(
            kv.stats().peak_live_tokens <= limit,
            "live KV over the limit"
        );
    }
    outcome
}

fn run(c: &SearchConfig, script: Script<'_>) -> SearchOutcome {
    run_with(c, script, &mut |_, _| false)
}

fn states(o: &SearchOutcome, state: NodeState) -> usize {
    o.nodes.iter().filter(|n| n.state == state).count()
}

#[test]
fn finishing_every_trajectory_spends_the_width() {
    for method in Method::ALL {
        let o = run(&config(method, 4, 8), answers_at(3));
        assert_eq!(o.stats.finished, 4, "{method}");
        assert_eq!(o.depths.len(), 3, "{method}: all finish at depth 3");
        assert_eq!(o.end, EndReason::WidthSpent, "{method}");
    }
}

#[test]
fn token_cap_truncating_every_trajectory_spends_the_width() {
    // The case: width 2, both trajectories truncated by the token cap at depth 2 of 8.
    let mut c = config(Method::Rebase, 2, 8);
    c.max_total_tokens = 6;
    let o = run(&c, NEVER);
    assert_eq!((o.stats.finished, o.stats.truncated), (0, 2));
    assert_eq!(o.depths.len(), 2);
    assert!(o
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Truncated)
        .all(|n| n.path_tokens >= 6));
    assert_eq!(o.end, EndReason::WidthSpent);
}

#[test]
fn token_cap_at_the_last_depth_is_not_the_depth_cap() {
    // Depth 2 is both the depth cap and where the token cap cuts every step: the depth cap
    // truncated nothing the token cap had not, so the width is what ran out.
    let mut c = config(Method::Rebase, 3, 2);
    c.max_total_tokens = 6;
    let o = run(&c, NEVER);
    assert_eq!((o.stats.truncated, o.depths.len()), (3, 2));
    assert_eq!(o.end, EndReason::WidthSpent);
}

#[test]
fn the_depth_cap_truncating_open_trajectories_is_the_depth_cap() {
    for method in Method::ALL {
        let o = run(&config(method, 4, 3), NEVER);
        assert_eq!(o.depths.len(), 3, "{method}");
        assert!(o.stats.truncated > 0, "{method}");
        assert_eq!(o.end, EndReason::DepthCap, "{method}");
    }
    // Some finish at the cap and some are cut by it: still the depth cap.
    let mut c = config(Method::Rebase, 4, 3);
    c.answer_markers = vec!["s3a".into()];
    let o = run(&c, NEVER);
    assert!(
        o.stats.finished > 0 && o.stats.truncated > 0,
        "{:?}",
        o.stats
    );
    assert_eq!(o.end, EndReason::DepthCap);
}

#[test]
fn finishing_exactly_at_the_depth_cap_is_not_the_depth_cap() {
    let o = run(&config(Method::Rebase, 4, 3), answers_at(3));
    assert_eq!((o.stats.finished, o.depths.len()), (4, 3));
    assert_eq!(o.end, EndReason::WidthSpent);
}

#[test]
fn children_all_dropped_leave_the_frontier_empty() {
    // Every depth-2 step goes unscored: nothing is closed, width remains, nothing to expand.
    let script = Script {
        drop_marker: Some("s2"),
        ..NEVER
    };
    let o = run(&config(Method::Rebase, 4, 8), script);
    assert_eq!(o.stats.finished + o.stats.truncated, 0);
    assert_eq!(states(&o, NodeState::Dropped), 4);
    assert_eq!(o.end, EndReason::FrontierEmpty);
}

#[test]
fn dvts_ends_with_an_empty_frontier_when_its_subtrees_end() {
    // Width 4: two subtrees of two root children each. Root children 0 and 1 answer (the best
    // score) and fall in different subtrees, so both subtrees end at depth 1 with 2 of the
    // width's 4 trajectories closed; the two open children are pruned.
    let script = Script {
        answer_at: 1,
        answers: 2,
        drop_marker: None,
    };
    let o = run(&config(Method::Dvts, 4, 8), script);
    assert_eq!((o.depths.len(), o.stats.finished), (1, 2));
    assert_eq!(states(&o, NodeState::Pruned), 2);
    assert_eq!(o.end, EndReason::FrontierEmpty);
}

#[test]
fn a_stop_mid_search_is_stopped_and_leaves_nodes_open() {
    let c = config(Method::Rebase, 4, 8);
    let o = run_with(&c, NEVER, &mut |e, _| {
        matches!(e, SearchEvent::DepthDone { depth: 2, .. })
    });
    assert_eq!(o.end, EndReason::Stopped);
    assert_eq!(o.depths.len(), 2);
    assert!(
        states(&o, NodeState::Open) > 0,
        "the planned nodes stay open"
    );
    // A stop right after expansion: the new children are open and unscored.
    let o = run_with(&c, NEVER, &mut |e, _| {
        matches!(e, SearchEvent::Expanded { depth: 1, .. })
    });
    assert_eq!(o.end, EndReason::Stopped);
    assert_eq!(states(&o, NodeState::Open), 4);
}

#[test]
fn a_stop_after_the_last_depth_keeps_the_natural_reason() {
    // Every trajectory finishes at depth 3; the stop lands when nothing is left to do.
    let c = config(Method::Rebase, 4, 8);
    let o = run_with(&c, answers_at(3), &mut |e, _| {
        matches!(e, SearchEvent::DepthDone { depth: 3, .. })
    });
    assert_eq!(o.end, EndReason::WidthSpent);
    assert_eq!(states(&o, NodeState::Open), 0);
}

#[test]
fn a_deadline_ends_the_search_as_stopped() {
    // The daemon turns a passed deadline into a stop from its observer; here the deadline is
    // on a clock of generated tokens, so the test is exact on any machine. Each depth of
    // width 4 generates 20 tokens; a deadline at 30 ticks passes during depth 2.
    let c = config(Method::Rebase, 4, 8);
    let deadline = 30;
    let o = run_with(&c, NEVER, &mut |_, now| now >= deadline);
    assert_eq!(o.end, EndReason::Stopped);
    assert_eq!(o.depths.len(), 2);
    // A deadline the search never reaches changes nothing.
    let o = run_with(&c, NEVER, &mut |_, now| now >= 10_000);
    assert_eq!(o.end, EndReason::DepthCap);
}

#[test]
fn a_kv_limit_without_room_for_one_more_child_ends_the_search_keeping_its_answers() {
    // Prompt `Q: q` and steps `s<d><c>` are 6 and 5 tokens, and steps are capped at 5, so a
    // limit of 32 leaves room for 5 root children, then (one path kept each time) 4, 3, 2 and
    // 1 children, and none at depth 5. `s2a` finishes its trajectory on the way.
    for method in [Method::Ets, Method::Rebase] {
        let mut c = config(method, 8, 12);
        c.max_step_tokens = 5;
        c.kv_limit = Some(32);
        c.answer_markers = vec!["s2a".into()];
        let o = run(&c, NEVER);
        assert_eq!(o.end, EndReason::KvLimit, "{method}");
        assert_eq!(o.depths.len(), 5, "{method}");
        let created: Vec<usize> = o.depths.iter().map(|d| d.children_created).collect();
        assert_eq!(created, [5, 4, 3, 2, 1], "{method}");
        assert_eq!(
            o.stats.finished, 1,
            "{method}: the finished trajectory is kept"
        );
        assert_eq!(o.trajectories.len(), 1, "{method}");
        assert!(!o.end.is_partial());
        assert!(
            states(&o, NodeState::Open) == 0,
            "{method}: nothing is left open"
        );
        // The same search without the limit spends its width.
        c.kv_limit = None;
        assert_ne!(run(&c, NEVER).end, EndReason::KvLimit);
    }
}

#[test]
fn a_frontier_that_runs_out_after_the_kv_limit_narrowed_a_depth_ends_at_the_kv_limit() {
    // As above, but the lone child of depth 5 finishes: nothing is left open, with width
    // unspent because the limit narrowed every depth, so the reason is the limit, not an
    // empty frontier. Without the limit the same finishes leave the width to spend.
    for method in [Method::Ets, Method::Rebase] {
        let mut c = config(method, 8, 12);
        c.max_step_tokens = 5;
        c.kv_limit = Some(32);
        c.answer_markers = vec!["s2a".into(), "s5a".into()];
        let o = run(&c, NEVER);
        assert_eq!(o.depths.len(), 5, "{method}");
        assert_eq!(o.stats.finished, 2, "{method}");
        assert_eq!(states(&o, NodeState::Open), 0, "{method}");
        assert_eq!(o.end, EndReason::KvLimit, "{method}");
    }
}

#[test]
fn a_kv_limit_below_the_prompt_and_one_child_ends_before_the_first_depth() {
    let mut c = config(Method::Ets, 4, 8);
    c.max_step_tokens = 5;
    c.kv_limit = Some(10); // the prompt (6) and one step (5) need 11
    let o = run(&c, NEVER);
    assert_eq!(o.end, EndReason::KvLimit);
    assert!(o.depths.is_empty());
    assert_eq!(o.nodes.len(), 1);
    assert_eq!(o.nodes[0].state, NodeState::Pruned);
    assert_eq!(o.answer, None);
    c.kv_limit = Some(11);
    let o = run(&c, NEVER);
    assert_eq!(
        o.depths[0].children_created, 1,
        "one child fits beside the prompt"
    );
}

#[test]
fn end_reasons_print_kebab_case_names() {
    let names: Vec<String> = EndReason::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        names,
        [
            "stopped",
            "depth-cap",
            "width-spent",
            "decided",
            "share-reached",
            "kv-limit",
            "frontier-empty",
            "deadline"
        ]
    );
    for r in EndReason::ALL {
        // The wire name (serde) and the log name agree.
        assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
    }
    assert_eq!(NodeState::Truncated.to_string(), "truncated");
    assert_eq!(FinishReason::EndOfSequence.to_string(), "end-of-sequence");
}

/// A policy that, from its `fail_at`-th call on, answers as a backend stopped mid-call does:
/// with an error (and raises `stop_asked`, standing for the job's stop signal).
struct StoppingPolicy<'c> {
    inner: ScriptPolicy<'c>,
    calls: usize,
    fail_at: usize,
    stop_asked: &'c std::sync::atomic::AtomicBool,
}

impl Policy for StoppingPolicy<'_> {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        self.inner.encode_prompt(problem)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        self.calls += 1;
        if self.calls >= self.fail_at {
            self.stop_asked.store(true, Ordering::Relaxed);
            return Err("stopped between forward passes".into());
        }
        self.inner.expand(requests)
    }
}

/// An observer whose stop signal is `stop_asked` and that never breaks on an event.
struct SignalObserver<'c>(&'c std::sync::atomic::AtomicBool, bool);

impl ets_core::search::SearchObserver for SignalObserver<'_> {
    fn on_event(&mut self, _: &SearchEvent) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    fn should_stop(&mut self) -> bool {
        self.1 && self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn a_backend_stopped_mid_call_ends_the_search_as_stopped_with_what_it_found() {
    // With the signal heard: the search keeps its depths and ends as stopped. Without it the
    // same backend error fails the search. (Before `should_stop`, both failed: a deadline that
    // landed inside a batched call lost the whole search.)
    for signal in [true, false] {
        let clock = AtomicU64::new(0);
        let stop_asked = std::sync::atomic::AtomicBool::new(false);
        let mut policy = StoppingPolicy {
            inner: ScriptPolicy {
                answer_at: 2,
                answers: 1,
                clock: &clock,
            },
            calls: 0,
            fail_at: 3,
            stop_asked: &stop_asked,
        };
        let mut reward = ScriptReward { drop_marker: None };
        let backends = Backends {
            policy: &mut policy,
            reward: &mut reward,
            embedder: None,
            solver: &BruteForceRetention,
            clusterer: &ToyClusterer,
        };
        let mut kv = KvTree::new(1);
        let mut observer = SignalObserver(&stop_asked, signal);
        let c = config(Method::Rebase, 4, 10);
        let result = run_search("q", &c, backends, &mut kv, &mut observer);
        assert_eq!(kv.stats().live_tokens, 0, "every KV reference is released");
        if signal {
            let o = result.expect("a stopped search returns its outcome");
            assert_eq!(o.end, EndReason::Stopped);
            assert_eq!(o.depths.len(), 2, "the two depths before the failed call");
            assert!(
                o.stats.finished >= 1 && o.answer.is_some(),
                "{:?}",
                o.answer
            );
            assert!(states(&o, NodeState::Open) > 0);
        } else {
            assert!(result.is_err());
        }
    }
}
