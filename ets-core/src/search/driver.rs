//! The depth loop of one search: expansion, scoring, closing trajectories, selection.

use std::ops::ControlFlow;
use std::time::Instant;

use ets_kvtree::{KvTree, NodeId};

use super::kv_fit::KvRoom;
use super::lease::KvLease;
use super::outcome::{
    DepthRecord, EndReason, NodeRecord, NodeState, SearchOutcome, SearchStats, Trajectory,
};
use super::selection::{self, Plan};
use super::{request_seed, Backends, SearchEvent, SearchObserver};
use crate::answer;
use crate::backend::{ExpandRequest, FinishReason, ScoreRequest};
use crate::config::{Method, SearchConfig};
use crate::error::{BackendKind, SearchError};

/// A node as the driver keeps it: its record plus its place in the KV tree.
pub(super) struct Node {
    pub(super) record: NodeRecord,
    pub(super) kv: NodeId,
    /// Whether this node still holds its KV reference.
    pub(super) held: bool,
}

pub(super) struct Driver<'a, 't> {
    pub(super) problem: &'a str,
    pub(super) config: &'a SearchConfig,
    pub(super) lambda_s: f64,
    pub(super) backends: Backends<'a>,
    pub(super) lease: KvLease<'t>,
    observer: &'a mut dyn SearchObserver,
    pub(super) nodes: Vec<Node>,
    trajectories: Vec<Trajectory>,
    depths: Vec<DepthRecord>,
    pub(super) stats: SearchStats,
    stop: bool,
    /// Whether the KV limit made some depth spend less width than remained.
    pub(super) kv_narrowed: bool,
    best: Option<String>,
    /// DVTS: budget of each subtree, and whether it has ended.
    pub(super) subtree_budgets: Vec<usize>,
    pub(super) subtree_done: Vec<bool>,
}

impl<'a, 't> Driver<'a, 't> {
    pub(super) fn new(
        problem: &'a str,
        config: &'a SearchConfig,
        backends: Backends<'a>,
        kv: &'t mut KvTree<()>,
        observer: &'a mut dyn SearchObserver,
    ) -> Self {
        let subtree_budgets = match config.method {
            Method::Dvts => crate::select::dvts::subtree_budgets(config.width),
            _ => Vec::new(),
        };
        Self {
            problem,
            config,
            lambda_s: config.effective_lambda_s(),
            backends,
            lease: KvLease::new(kv),
            observer,
            nodes: Vec::new(),
            trajectories: Vec::new(),
            depths: Vec::new(),
            stats: SearchStats::default(),
            stop: false,
            kv_narrowed: false,
            best: None,
            subtree_done: vec![false; subtree_budgets.len()],
            subtree_budgets,
        }
    }

    /// Whether `error` is a backend that stopped mid-call because its job was asked to stop.
    fn stopped_by(&mut self, error: &SearchError) -> bool {
        if matches!(error, SearchError::Backend { .. })
            && (self.stop || self.observer.should_stop())
        {
            self.stop = true;
            return true;
        }
        false
    }

    pub(super) fn emit(&mut self, event: SearchEvent) {
        if let ControlFlow::Break(()) = self.observer.on_event(&event) {
            self.stop = true;
        }
    }

    pub(super) fn backend_error(
        kind: BackendKind,
        depth: usize,
    ) -> impl FnOnce(crate::BackendError) -> SearchError {
        move |source| SearchError::Backend {
            kind,
            depth,
            source,
        }
    }

    /// Gives back a node's KV reference and sets its final state.
    pub(super) fn close(&mut self, index: usize, state: NodeState) -> Result<(), SearchError> {
        let node = &mut self.nodes[index];
        node.record.state = state;
        if node.held {
            node.held = false;
            let kv = node.kv;
            self.lease.release(kv)?;
        }
        Ok(())
    }

    pub(super) fn run(mut self) -> Result<SearchOutcome, SearchError> {
        let started = Instant::now();
        let prompt = self
            .backends
            .policy
            .encode_prompt(self.problem)
            .map_err(Self::backend_error(BackendKind::Policy, 0))?;
        // Under a KV limit the root's children must fit beside the prompt; when not even one
        // does, the prompt never enters the KV tree and the search ends at once.
        let root_width = self.kv_width(prompt.len() as u64, self.child_room(0), self.config.width);
        self.kv_narrowed |= root_width < self.config.width;
        let root = self.lease.tree().root();
        let kv = match root_width {
            0 => root,
            _ => self.lease.insert(root, &prompt)?,
        };
        self.nodes.push(Node {
            record: NodeRecord {
                id: 0,
                parent: None,
                depth: 0,
                text: String::new(),
                tokens: prompt.len(),
                path_tokens: 0,
                score: None,
                finish: None,
                state: match root_width {
                    0 => NodeState::Pruned,
                    _ => NodeState::Open,
                },
                subtree: 0,
            },
            kv,
            held: root_width > 0,
        });
        self.stats.prompt_tokens = prompt.len();
        self.emit(SearchEvent::Started {
            prompt_tokens: prompt.len(),
        });
        let last_depth = match root_width {
            0 => {
                self.stats.pruned += 1;
                0
            }
            _ => self.config.max_depth,
        };

        let mut plan: Plan = vec![(0, root_width)];
        let mut contexts = match root_width {
            0 => Vec::new(),
            _ => self.contexts(&plan)?,
        };
        let mut end = None;
        for depth in 1..=last_depth {
            if self.stop {
                end = Some(EndReason::Stopped);
                break;
            }
            let created = match self.expand(depth, &plan, &contexts) {
                Ok(created) => created,
                Err(e) if self.stopped_by(&e) => {
                    end = Some(EndReason::Stopped);
                    break;
                }
                Err(e) => return Err(e),
            };
            let mut record = DepthRecord::new(depth, plan.len(), created.len());
            self.stats.depths = depth;
            if self.stop {
                self.depths.push(record);
                end = Some(EndReason::Stopped);
                break;
            }
            let scored = match self.score(depth, created) {
                Ok(scored) => scored,
                Err(e) if self.stopped_by(&e) => {
                    self.depths.push(record);
                    end = Some(EndReason::Stopped);
                    break;
                }
                Err(e) => return Err(e),
            };
            record.dropped = scored.dropped;
            let closed = self.close_trajectories(depth, &scored.scored, &mut record)?;
            // The vote over what has finished, once per depth: the answer so far, the stops
            // that read it and the BestAnswer event.
            let vote = self.current_vote();
            if let Some(answer) = &vote.answer {
                self.best = Some(answer.clone());
            }
            let open = closed.open;
            let kvs: Vec<NodeId> = open.iter().map(|&i| self.nodes[i].kv).collect();
            (record.union_tokens, record.union_bytes) = self.lease.union(&kvs)?;
            record.candidates = open.iter().map(|&i| self.nodes[i].record.id).collect();
            let remaining = self
                .config
                .width
                .saturating_sub(self.stats.finished + self.stats.truncated);
            let width_based = matches!(
                self.config.method,
                Method::Ets | Method::Rebase | Method::Beam
            );
            // A stop before selection leaves the open candidates open: the search is cut short
            // unless nothing was left open anyway.
            let cut_before_selection = self.stop && !open.is_empty();
            // Pruning because the vote is decided counts only where it cut work short.
            let decided = !open.is_empty()
                && !self.stop
                && remaining > 0
                && width_based
                && self.vote_decided(&vote, remaining);
            let share_reached = !open.is_empty()
                && !self.stop
                && remaining > 0
                && width_based
                && !decided
                && self.share_reached(&vote);
            // Under a KV limit: the width this depth may spend, so that the kept paths plus the
            // most one child of any open candidate may grow (`room`) per child fit (0: not even
            // the cheapest path and one child do).
            let mut room = self.config.max_step_tokens as u64;
            let kv_width = match self.config.kv_limit {
                Some(_) if !open.is_empty() && !self.stop => {
                    let prompt = self.nodes[0].record.tokens as u64;
                    let paths = open.iter().map(|&i| self.nodes[i].record.path_tokens);
                    let cheapest = prompt + paths.clone().min().unwrap_or(0) as u64;
                    room = paths.map(|p| self.child_room(p)).max().unwrap_or(room);
                    let width = self.kv_width(cheapest, room, remaining);
                    // DVTS spends its subtrees' budgets, not the width left; its fitting says
                    // when the limit narrowed it.
                    self.kv_narrowed |= width < remaining && self.config.method != Method::Dvts;
                    Some(width)
                }
                _ => None,
            };
            let kv_limited = kv_width == Some(0) && remaining > 0 && !decided && !share_reached;
            let next = if open.is_empty() || self.stop {
                Vec::new()
            } else if (remaining == 0 && width_based) || decided || share_reached || kv_limited {
                for &i in &open {
                    self.close(i, NodeState::Pruned)?;
                    self.stats.pruned += 1;
                }
                Vec::new()
            } else {
                let width = kv_width.unwrap_or(remaining);
                let kv = self.config.kv_limit.map(|limit| KvRoom { limit, room });
                let next = selection::select(
                    &mut self,
                    depth,
                    &open,
                    &scored.scored,
                    width,
                    kv,
                    &mut record,
                )?;
                let kept: Vec<NodeId> = next.iter().map(|&(i, _)| self.nodes[i].kv).collect();
                record.kept_tokens = self.lease.union(&kept)?.0;
                next
            };
            self.emit(SearchEvent::DepthDone {
                depth,
                frontier: open.len(),
                finished: self.stats.finished,
                truncated: self.stats.truncated,
                live_tokens: record.union_tokens,
                live_bytes: record.union_bytes,
            });
            self.report_best(depth, &vote);
            self.depths.push(record);
            if cut_before_selection || (self.stop && !next.is_empty()) {
                end = Some(EndReason::Stopped);
                break;
            }
            if next.is_empty() {
                end = Some(if decided {
                    EndReason::Decided
                } else if share_reached {
                    EndReason::ShareReached
                } else if kv_limited {
                    EndReason::KvLimit
                } else {
                    self.natural_end(depth, closed.depth_capped)
                });
                break;
            }
            plan = next;
            contexts = self.contexts(&plan)?;
            self.announce_live(depth, &plan, &contexts)?;
        }
        // Every depth up to the cap either plans the next one or breaks, and the last depth
        // closes every open child, so the loop always breaks with a reason, unless it never ran
        // because the KV limit left no room for the root's children.
        let end = end.unwrap_or(match last_depth {
            0 => EndReason::KvLimit,
            _ => EndReason::DepthCap,
        });
        self.finish_stats(started);
        let nodes = self.nodes.iter().map(|n| n.record.clone()).collect();
        Ok(SearchOutcome {
            answer: self.best.clone(),
            trajectories: std::mem::take(&mut self.trajectories),
            nodes,
            depths: std::mem::take(&mut self.depths),
            stats: self.stats.clone(),
            end,
        })
    }

    /// Why a search that planned nothing after `depth` ended, by the rules of [`EndReason`]:
    /// the depth cap if it truncated a child there (`depth_capped`), else the width if
    /// finished and truncated trajectories used it up, else an empty frontier.
    fn natural_end(&self, depth: usize, depth_capped: usize) -> EndReason {
        let closed = self.stats.finished + self.stats.truncated;
        if depth == self.config.max_depth && depth_capped > 0 {
            EndReason::DepthCap
        } else if closed >= self.config.width {
            EndReason::WidthSpent
        } else if self.kv_narrowed {
            // The frontier ran out with width unspent because the limit narrowed a depth.
            EndReason::KvLimit
        } else {
            EndReason::FrontierEmpty
        }
    }

    /// The width a depth may spend under `kv_limit` when its cheapest candidate's root path
    /// holds `cheapest` tokens and a child may grow by `room` tokens: the most children, at
    /// most `width`, that fit beside that path (0 when not one does). Without a limit, `width`.
    fn kv_width(&self, cheapest: u64, room: u64, width: usize) -> usize {
        match self.config.kv_limit {
            None => width,
            Some(limit) => {
                let children = limit.saturating_sub(cheapest) / room.max(1);
                children.min(width as u64) as usize
            }
        }
    }

    /// The most tokens a child of a node whose path generated `path_tokens` may hold: one
    /// step, or what is left of the trajectory's token cap (the `max_tokens` its request gets).
    fn child_room(&self, path_tokens: usize) -> u64 {
        let left = self.config.max_total_tokens.saturating_sub(path_tokens);
        self.config.max_step_tokens.min(left).max(1) as u64
    }

    /// Tells the backends which nodes the next depth expands, so they can free cached state
    /// of everything else.
    fn announce_live(
        &mut self,
        depth: usize,
        plan: &Plan,
        contexts: &[Vec<u32>],
    ) -> Result<(), SearchError> {
        let context_refs: Vec<&[u32]> = contexts.iter().map(Vec::as_slice).collect();
        self.backends
            .policy
            .retain(&context_refs)
            .map_err(Self::backend_error(BackendKind::Policy, depth))?;
        let texts: Vec<Vec<&str>> = plan
            .iter()
            .map(|&(i, _)| step_texts(&self.nodes, i))
            .collect();
        let live: Vec<ScoreRequest<'_>> = texts
            .iter()
            .map(|steps| ScoreRequest {
                problem: self.problem,
                steps,
            })
            .collect();
        self.backends
            .reward
            .retain(&live)
            .map_err(Self::backend_error(BackendKind::Reward, depth))
    }

    /// The full token context of every planned node.
    fn contexts(&self, plan: &Plan) -> Result<Vec<Vec<u32>>, SearchError> {
        Ok(plan
            .iter()
            .map(|&(i, _)| self.lease.tree().path_tokens(self.nodes[i].kv))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Samples children for every planned node (`contexts`: their full token contexts);
    /// returns the new nodes' indices.
    fn expand(
        &mut self,
        depth: usize,
        plan: &Plan,
        contexts: &[Vec<u32>],
    ) -> Result<Vec<usize>, SearchError> {
        let max_tokens: Vec<usize> = plan
            .iter()
            .map(|&(i, _)| {
                let node = &self.nodes[i].record;
                self.config
                    .max_step_tokens
                    .min(self.config.max_total_tokens - node.path_tokens)
            })
            .collect();
        let requests: Vec<ExpandRequest<'_>> = plan
            .iter()
            .zip(contexts)
            .zip(&max_tokens)
            .map(|((&(i, n), context), &max_tokens)| {
                let node = &self.nodes[i].record;
                ExpandRequest {
                    context,
                    num_children: n,
                    max_tokens,
                    seed: request_seed(self.config.seed, node.id),
                    sampling: &self.config.sampling,
                    step_delimiter: &self.config.step_delimiter,
                }
            })
            .collect();
        let results = self
            .backends
            .policy
            .expand(&requests)
            .map_err(Self::backend_error(BackendKind::Policy, depth))?;
        drop(requests);
        if results.len() != plan.len() {
            return Err(SearchError::BackendShape {
                kind: BackendKind::Policy,
                depth,
                expected: plan.len(),
                got: results.len(),
            });
        }
        self.stats.policy_calls += plan.len() as u64;
        let mut created = Vec::new();
        let mut generated = 0u64;
        for ((&(parent, asked), continuations), &max_tokens) in
            plan.iter().zip(results).zip(&max_tokens)
        {
            if continuations.len() > asked {
                return Err(SearchError::BackendShape {
                    kind: BackendKind::Policy,
                    depth,
                    expected: asked,
                    got: continuations.len(),
                });
            }
            // The KV limit's room assumes no step is longer than its request allowed.
            if self.config.kv_limit.is_some() {
                if let Some(c) = continuations
                    .iter()
                    .find(|c| c.token_ids.len() > max_tokens)
                {
                    return Err(SearchError::StepTooLong {
                        depth,
                        max_tokens,
                        got: c.token_ids.len(),
                    });
                }
            }
            for (k, c) in continuations.into_iter().enumerate() {
                let kv = self.lease.insert(self.nodes[parent].kv, &c.token_ids)?;
                let p = &self.nodes[parent].record;
                let subtree = if self.config.method == Method::Dvts && depth == 1 {
                    crate::select::dvts::subtree_of_root_child(k, self.config.width)
                } else {
                    p.subtree
                };
                generated += c.token_ids.len() as u64;
                let record = NodeRecord {
                    id: self.nodes.len() as u64,
                    parent: Some(p.id),
                    depth,
                    tokens: c.token_ids.len(),
                    path_tokens: p.path_tokens + c.token_ids.len(),
                    text: c.text,
                    score: None,
                    finish: Some(c.finish),
                    state: NodeState::Open,
                    subtree,
                };
                created.push(self.nodes.len());
                self.nodes.push(Node {
                    record,
                    kv,
                    held: true,
                });
            }
            self.close(parent, NodeState::Expanded)?;
        }
        self.stats.generated_tokens += generated;
        self.emit(SearchEvent::Expanded {
            depth,
            parents: plan.len(),
            children: created.len(),
            generated_tokens: generated,
        });
        Ok(created)
    }

    /// Scores new children; drops those without a (finite) score.
    fn score(&mut self, depth: usize, children: Vec<usize>) -> Result<Scored, SearchError> {
        if children.is_empty() {
            return Ok(Scored {
                scored: Vec::new(),
                dropped: 0,
            });
        }
        let texts: Vec<Vec<&str>> = children
            .iter()
            .map(|&i| step_texts(&self.nodes, i))
            .collect();
        let requests: Vec<ScoreRequest<'_>> = texts
            .iter()
            .map(|steps| ScoreRequest {
                problem: self.problem,
                steps,
            })
            .collect();
        let scores = self
            .backends
            .reward
            .score(&requests)
            .map_err(Self::backend_error(BackendKind::Reward, depth))?;
        drop(requests);
        drop(texts);
        if scores.len() != children.len() {
            return Err(SearchError::BackendShape {
                kind: BackendKind::Reward,
                depth,
                expected: children.len(),
                got: scores.len(),
            });
        }
        self.stats.prm_calls += children.len() as u64;
        let mut scored = Vec::with_capacity(children.len());
        let mut dropped = 0;
        for (&i, score) in children.iter().zip(scores) {
            match score.filter(|s| s.is_finite()) {
                Some(s) => {
                    self.nodes[i].record.score = Some(s);
                    scored.push(i);
                }
                None => {
                    self.close(i, NodeState::Dropped)?;
                    dropped += 1;
                }
            }
        }
        self.stats.dropped += dropped;
        self.emit(SearchEvent::Scored {
            depth,
            scored: scored.len(),
            dropped,
        });
        Ok(Scored { scored, dropped })
    }

    /// Closes finished and truncated children; returns the open ones and how many children
    /// only the depth cap truncated.
    fn close_trajectories(
        &mut self,
        depth: usize,
        scored: &[usize],
        record: &mut DepthRecord,
    ) -> Result<Closed, SearchError> {
        let mut open = Vec::new();
        let mut depth_capped = 0;
        for &i in scored {
            let r = &self.nodes[i].record;
            let finished = r.finish == Some(FinishReason::EndOfSequence)
                || self
                    .config
                    .answer_markers
                    .iter()
                    .any(|m| r.text.contains(m.as_str()));
            if finished {
                let trajectory = self.trajectory(i);
                self.emit(SearchEvent::Finished {
                    depth,
                    node: trajectory.leaf,
                    score: trajectory.step_scores.last().copied().unwrap_or(0.0),
                    answer: trajectory.answer.clone(),
                });
                self.trajectories.push(trajectory);
                self.close(i, NodeState::Finished)?;
                self.stats.finished += 1;
                record.finished += 1;
            } else if r.path_tokens >= self.config.max_total_tokens
                || depth == self.config.max_depth
            {
                if r.path_tokens < self.config.max_total_tokens {
                    depth_capped += 1;
                }
                self.close(i, NodeState::Truncated)?;
                self.stats.truncated += 1;
                record.truncated += 1;
            } else {
                open.push(i);
            }
        }
        Ok(Closed { open, depth_capped })
    }

    fn trajectory(&self, leaf: usize) -> Trajectory {
        let mut step_scores = Vec::new();
        let mut at = Some(leaf);
        while let Some(i) = at {
            let r = &self.nodes[i].record;
            if r.parent.is_some() {
                step_scores.push(r.score.unwrap_or(0.0));
            }
            at = r.parent.map(|p| p as usize);
        }
        step_scores.reverse();
        let text = step_texts(&self.nodes, leaf).concat();
        Trajectory {
            leaf: self.nodes[leaf].record.id,
            answer: answer::extract_answer(&text),
            tokens: self.nodes[leaf].record.path_tokens,
            text,
            step_scores,
        }
    }

    /// The vote over the trajectories finished so far.
    fn current_vote(&self) -> answer::VoteOutcome {
        let candidates: Vec<answer::VoteCandidate<'_>> = self
            .trajectories
            .iter()
            .map(Trajectory::vote_candidate)
            .collect();
        // The live pick groups answers by mathematical equivalence; `ets eval` votes again
        // from the trajectories under the grader it reports.
        answer::vote(
            &candidates,
            self.config.vote,
            answer::Dataset::Math,
            answer::Grader::Lenient,
        )
    }

    /// Whether `stop_when_decided` ends the search: `remaining` more trajectories could not
    /// change the vote's winner. PRM scores are probabilities (the [`Reward`] contract), so a
    /// trajectory adds at most 1; a score outside [0, 1] turns the stop off.
    ///
    /// [`Reward`]: crate::Reward
    fn vote_decided(&self, vote: &answer::VoteOutcome, remaining: usize) -> bool {
        if !self.config.stop_when_decided {
            return false;
        }
        let scores_are_probabilities = self
            .trajectories
            .iter()
            .flat_map(|t| &t.step_scores)
            .all(|s| (0.0..=1.0).contains(s));
        scores_are_probabilities && answer::vote_is_decided(vote, self.config.vote, remaining, 1.0)
    }

    /// Whether `stop_at_share` ends the search: `min_finished` trajectories have finished and
    /// the leading answer holds the share of `vote`.
    fn share_reached(&self, vote: &answer::VoteOutcome) -> bool {
        let Some(share) = self.config.stop_at_share else {
            return false;
        };
        self.stats.finished >= self.config.min_finished
            && answer::vote_share(vote, self.config.vote).is_some_and(|s| s >= share)
    }

    /// Sends `outcome`, the vote so far, after `depth`, once some trajectory has an answer.
    fn report_best(&mut self, depth: usize, outcome: &answer::VoteOutcome) {
        let Some(answer) = outcome.answer.clone() else {
            return;
        };
        let votes = outcome
            .groups
            .iter()
            .find(|g| g.0 == answer)
            .map_or(0, |g| g.2);
        let share = answer::vote_share(outcome, self.config.vote).unwrap_or(0.0);
        self.emit(SearchEvent::BestAnswer {
            depth,
            answer,
            support: outcome.support,
            share,
            votes,
        });
    }

    fn finish_stats(&mut self, started: Instant) {
        let live: Vec<(u64, u64)> = self
            .depths
            .iter()
            .filter(|d| !d.candidates.is_empty())
            .map(|d| (d.union_tokens, d.union_bytes))
            .collect();
        self.stats.kv_metric_tokens = live.iter().map(|l| l.0).sum();
        self.stats.peak_live_tokens = live.iter().map(|l| l.0).max().unwrap_or(0);
        self.stats.peak_live_bytes = live.iter().map(|l| l.1).max().unwrap_or(0);
        if !live.is_empty() {
            self.stats.mean_live_tokens = self.stats.kv_metric_tokens as f64 / live.len() as f64;
            self.stats.mean_live_bytes =
                live.iter().map(|l| l.1 as f64).sum::<f64>() / live.len() as f64;
        }
        self.stats.nodes = self.nodes.len();
        self.stats.selection_time = self.depths.iter().map(|d| d.selection_time).sum();
        self.stats.wall_time = started.elapsed();
    }
}

/// Step texts from the root's first child to `index`.
fn step_texts(nodes: &[Node], index: usize) -> Vec<&str> {
    let mut texts = Vec::new();
    let mut at = Some(index);
    while let Some(i) = at {
        let r = &nodes[i].record;
        if r.parent.is_some() {
            texts.push(r.text.as_str());
        }
        at = r.parent.map(|p| p as usize);
    }
    texts.reverse();
    texts
}

/// Children that survived scoring.
pub(super) struct Scored {
    pub(super) scored: Vec<usize>,
    pub(super) dropped: usize,
}

/// What closing a depth's trajectories left.
struct Closed {
    /// Children still open: the selection's candidates.
    open: Vec<usize>,
    /// Children truncated by the depth cap alone (below the token cap).
    depth_capped: usize,
}
