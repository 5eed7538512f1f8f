//! Deterministic toy backends for driver tests: no model, but real token ids, real text and
//! scores that depend on the whole trajectory.
//!
//! Tokens are the bytes of the text, so a context can be decoded back. A step is `s<a><b>\n\n`
//! with `a, b` from a small alphabet (siblings repeat, so the KV tree deduplicates and clusters
//! form), or from depth 2 on `The answer is: <v>\n\n`.

#![allow(dead_code)]

use std::ops::ControlFlow;

use ets_core::search::{Backends, IgnoreEvents, SearchEvent, SearchOutcome};
use ets_core::{
    BackendError, Clusterer, Continuation, Embedder, ExpandRequest, FinishReason, Policy,
    RetentionSolver, Reward, ScoreRequest, SearchConfig, SearchError,
};
use ets_kvtree::KvTree;

pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| mix(h ^ b as u64))
}

#[derive(Default)]
pub struct ToyPolicy {
    pub calls: usize,
    /// Fail on this expand call (1-based), to test error paths.
    pub fail_on_call: Option<usize>,
    /// Contexts of every expand call, in order.
    pub expanded: Vec<Vec<Vec<u32>>>,
    /// Contexts of every `retain` call, in order.
    pub retained: Vec<Vec<Vec<u32>>>,
}

impl Policy for ToyPolicy {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        Ok(format!("Q: {problem}\n\n").bytes().map(u32::from).collect())
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        self.calls += 1;
        if self.fail_on_call == Some(self.calls) {
            return Err("toy policy out of memory".into());
        }
        self.expanded
            .push(requests.iter().map(|r| r.context.to_vec()).collect());
        Ok(requests
            .iter()
            .map(|r| {
                let context: Vec<u8> = r.context.iter().map(|&t| t as u8).collect();
                let depth = String::from_utf8_lossy(&context)
                    .matches(r.step_delimiter)
                    .count();
                (0..r.num_children)
                    .map(|c| {
                        let x = mix(r.seed ^ mix(c as u64));
                        let text = if depth >= 2 && x % 3 == 0 {
                            format!("The answer is: {}{}", 1 + (x >> 8) % 3, r.step_delimiter)
                        } else {
                            let a = (b'a' + ((x >> 16) % 4) as u8) as char;
                            let b = (b'a' + ((x >> 24) % 3) as u8) as char;
                            format!("s{a}{b}{}", r.step_delimiter)
                        };
                        let mut token_ids: Vec<u32> = text.bytes().map(u32::from).collect();
                        let mut finish = FinishReason::Delimiter;
                        if token_ids.len() > r.max_tokens {
                            token_ids.truncate(r.max_tokens);
                            finish = FinishReason::Length;
                        }
                        let text = token_ids.iter().map(|&t| t as u8 as char).collect();
                        Continuation {
                            logprobs: vec![-1.0; token_ids.len()],
                            token_ids,
                            text,
                            finish,
                        }
                    })
                    .collect()
            })
            .collect())
    }

    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        self.retained
            .push(live.iter().map(|c| c.to_vec()).collect());
        Ok(())
    }
}

/// Scores from a hash of the trajectory; answer 2 scores high; steps containing `drop_marker`
/// get no score.
#[derive(Default)]
pub struct ToyReward {
    pub calls: usize,
    pub drop_marker: Option<String>,
    /// Step lists of every `retain` call, in order.
    pub retained: Vec<Vec<Vec<String>>>,
}

impl Reward for ToyReward {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        self.calls += requests.len();
        Ok(requests
            .iter()
            .map(|r| {
                let last = r.steps.last().copied().unwrap_or("");
                if self
                    .drop_marker
                    .as_deref()
                    .is_some_and(|m| last.contains(m))
                {
                    return None;
                }
                if last.contains("answer is: 2") {
                    return Some(0.95);
                }
                let joined = r.steps.concat();
                Some((hash(joined.as_bytes()) % 1000) as f64 / 1000.0)
            })
            .collect())
    }

    fn retain(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), BackendError> {
        self.retained.push(
            live.iter()
                .map(|r| r.steps.iter().map(|s| s.to_string()).collect())
                .collect(),
        );
        Ok(())
    }
}

/// `s<a><b>` embeds near axis `a` (siblings with the same `a` are within 0.01 cosine distance);
/// answers embed on their own axes.
#[derive(Default)]
pub struct ToyEmbedder {
    pub texts: usize,
}

impl Embedder for ToyEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        self.texts += texts.len();
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 12];
                let b = t.as_bytes();
                if b.first() == Some(&b's') && b.len() >= 3 {
                    v[(b[1] - b'a') as usize % 4] = 1.0;
                    v[4 + (b[2] - b'a') as usize % 3] = 0.1;
                } else {
                    v[7 + (hash(b) % 5) as usize] = 1.0;
                }
                v
            })
            .collect())
    }
}

/// Threshold clustering: joins a vector to the first cluster whose first member is within the
/// threshold. Exact for the toy embeddings, whose clusters are far apart.
pub struct ToyClusterer;

impl Clusterer for ToyClusterer {
    fn cluster(&self, embeddings: &[Vec<f32>], threshold: f64) -> Vec<usize> {
        let mut heads: Vec<usize> = Vec::new();
        embeddings
            .iter()
            .enumerate()
            .map(|(i, e)| {
                match heads
                    .iter()
                    .position(|&h| cosine_distance(&embeddings[h], e) <= threshold)
                {
                    Some(k) => k,
                    None => {
                        heads.push(i);
                        heads.len() - 1
                    }
                }
            })
            .collect()
    }
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (na * nb)
}

/// Runs a toy search with the given solver; returns the outcome and events.
/// [`run_toy`] with the exact retention solver on a fresh KV tree: the search must run and
/// release every KV reference it took.
pub fn run_exact(config: &SearchConfig) -> SearchOutcome {
    let mut kv = KvTree::new(4);
    let (outcome, _) = run_toy(config, &ets_core::retention::BruteForceRetention, &mut kv);
    let outcome = outcome.expect("toy search runs");
    assert_eq!(kv.stats().live_tokens, 0, "every KV reference released");
    outcome
}

pub fn run_toy(
    config: &SearchConfig,
    solver: &dyn RetentionSolver,
    kv: &mut KvTree<()>,
) -> (Result<SearchOutcome, SearchError>, Vec<SearchEvent>) {
    let mut policy = ToyPolicy::default();
    let mut reward = ToyReward::default();
    let mut embedder = ToyEmbedder::default();
    let mut events = Vec::new();
    let mut observer = |e: &SearchEvent| {
        events.push(e.clone());
        ControlFlow::Continue(())
    };
    let backends = Backends {
        policy: &mut policy,
        reward: &mut reward,
        embedder: Some(&mut embedder),
        solver,
        clusterer: &ToyClusterer,
    };
    let outcome = ets_core::search::run_search("what is 1+1?", config, backends, kv, &mut observer);
    let _ = IgnoreEvents;
    (outcome, events)
}
