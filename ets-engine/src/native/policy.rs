//! [`NativePolicy`]: ets-core's [`Policy`] on a [`NativeEngine`] whose K/V cache is a
//! `KvTree<KvSegment>` mirroring the search tree.
//!
//! An expansion finds the longest chain of cached nodes whose spans make up a prefix of the
//! request's context, prefills the rest as one new node, then decodes every child of every
//! request in one batch per token, all children of a node reading its segments in place.
//! A finished child's tokens become a node under its parent, so expanding it later prefills
//! nothing. Children are sampled by the same rule as [`MistralPolicy`](crate::mistralrs::MistralPolicy)
//! (`sample_step`: same per-child stream, same delimiter mask and stop rules), so the same
//! request with the same seed gives the same children, whatever else is in the batch.
//!
//! After each depth the driver says which contexts it expands next ([`Policy::retain`]): the
//! policy holds a reference on each one's cached chain and frees every other node, so its
//! resident K/V is the search's live K/V. Between those calls, unheld nodes (new children)
//! stay cached, and the least recently used are evicted when the resident K/V exceeds
//! [`NativePolicyOptions::max_cached_bytes`].

use std::collections::HashMap;
use std::sync::Arc;

use ets_core::{BackendError, Continuation, ExpandRequest, FinishReason, Policy, StopHandle};
use ets_kvtree::{KvStats, KvTree, NodeId};

use super::embed::StepEmbeddings;
use super::engine::{Logits, NativeEngine, SeqInput};
use super::kv::{KvSegment, PendingKv};
use super::prompt_cache::WarmStart;
use crate::error::Error;
use crate::gguf_text::ChatRole;
use crate::prompt::PolicyOptions;
use crate::sampling::{child_stream, sample_step, DelimiterGuard, StepRecord, StepSpec};

/// Settings of a [`NativePolicy`] beyond the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativePolicyOptions {
    /// How the problem becomes the root prompt (shared with the mistral.rs policy).
    pub prompt: PolicyOptions,
    /// Resident K/V above this is evicted (least recently used unheld nodes first) after each
    /// expansion.
    pub max_cached_bytes: u64,
}

impl Default for NativePolicyOptions {
    fn default() -> Self {
        Self {
            prompt: PolicyOptions::default(),
            max_cached_bytes: 2 << 30,
        }
    }
}

/// ets-core's [`Policy`] on a [`NativeEngine`].
pub struct NativePolicy {
    engine: Arc<NativeEngine>,
    options: NativePolicyOptions,
    tree: KvTree<KvSegment>,
    guards: HashMap<String, Arc<DelimiterGuard>>,
    /// Leaves of the contexts the search said it still expands, one reference each.
    held: Vec<NodeId>,
    /// Where finished steps' mean hidden states go, when asked for.
    step_embeddings: Option<StepEmbeddings>,
    /// Asked before every decode pass: a stopped job ends within one forward pass.
    stop: Option<StopHandle>,
}

impl std::fmt::Debug for NativePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePolicy")
            .field("tree", &self.tree)
            .finish_non_exhaustive()
    }
}

/// One child being decoded.
struct Child {
    request: usize,
    stream: u64,
    record: StepRecord,
    pending: PendingKv,
    /// The latest sampled token, not yet run through the model.
    unfed: Option<u32>,
    /// Sum of the final hidden states of the tokens fed so far (when embeddings are recorded).
    hidden_sum: Vec<f32>,
}

/// A context run through the cache: the chain of nodes that holds it (the last one pinned)
/// and the next-token logits after it.
pub(crate) struct Prefilled {
    pub path: Vec<NodeId>,
    pub logits: Vec<f32>,
}

impl Prefilled {
    fn leaf(&self) -> NodeId {
        *self.path.last().expect("a non-empty context has a node")
    }
}

/// The cached nodes whose spans make up the longest prefix of `context`, root first (root
/// excluded), and how many tokens they cover.
pub(crate) fn cached_prefix(tree: &KvTree<KvSegment>, context: &[u32]) -> (Vec<NodeId>, usize) {
    let mut path = Vec::new();
    let mut at = tree.root();
    let mut covered = 0;
    'walk: while covered < context.len() {
        let rest = &context[covered..];
        for child in tree.children(at) {
            let span = tree.tokens(child).unwrap_or(&[]);
            if !span.is_empty() && rest.starts_with(span) {
                path.push(child);
                covered += span.len();
                at = child;
                continue 'walk;
            }
        }
        break;
    }
    (path, covered)
}

/// Takes one reference on each of `leaves`, gives back those in `held` (then replaced by
/// `leaves`), and evicts every node no longer referenced: afterwards the tree holds exactly
/// the chains ending at `leaves`, plus whatever else is pinned.
pub(crate) fn hold_only(
    tree: &mut KvTree<KvSegment>,
    held: &mut Vec<NodeId>,
    leaves: Vec<NodeId>,
) -> Result<(), Error> {
    for &leaf in &leaves {
        tree.retain(leaf).map_err(Error::engine)?;
    }
    for old in std::mem::replace(held, leaves) {
        tree.release(old).map_err(Error::engine)?;
    }
    tree.evict_to_bytes(0);
    Ok(())
}

/// The payloads along `path`, each fully visible.
pub(crate) fn segments<'t>(
    tree: &'t KvTree<KvSegment>,
    path: &[NodeId],
) -> Result<Vec<(&'t KvSegment, usize)>, Error> {
    path.iter()
        .map(|&id| {
            let seg = tree.payload(id).map_err(Error::engine)?;
            Ok((seg, seg.len()))
        })
        .collect()
}

/// How a context's first node came to be, for the warm prompts.
enum RootStart {
    /// Already in the job's tree, or a whole warm prompt: nothing new to keep.
    Held,
    /// Prefilled from the root: kept for later jobs.
    Fresh,
    /// Computed on a warm shared start (a chat header): joined with it, then kept.
    OnShared(KvSegment),
}

/// Runs `context` through the cache: the chain of nodes that holds it afterwards (the last one
/// new if part of it was not cached) and the next-token logits after it, for every context in
/// one batch. Every returned chain's last node carries one extra pin the caller must drop.
pub(crate) fn prefill_contexts(
    engine: &NativeEngine,
    tree: &mut KvTree<KvSegment>,
    contexts: &[&[u32]],
) -> Result<Vec<Prefilled>, Error> {
    let mut plans = Vec::with_capacity(contexts.len());
    let mut fresh_roots: Vec<RootStart> = Vec::with_capacity(contexts.len());
    for &context in contexts {
        if context.is_empty() {
            return Err(Error::engine("cannot expand an empty context"));
        }
        let (mut path, mut covered) = cached_prefix(tree, context);
        let mut fresh_root = RootStart::Held;
        if covered == 0 {
            match engine.warm_prompt(context) {
                Some(WarmStart::Whole(segment)) => {
                    let len = segment.len();
                    let node = tree
                        .insert(tree.root(), &context[..len], || segment)
                        .map_err(Error::engine)?;
                    // Held by the chain's pin below, like a node this call computes.
                    tree.release(node).map_err(Error::engine)?;
                    (path, covered) = (vec![node], len);
                }
                Some(WarmStart::Shared(segment)) => {
                    covered = segment.len();
                    fresh_root = RootStart::OnShared(segment);
                }
                None => fresh_root = RootStart::Fresh,
            }
        }
        plans.push((path, covered));
        fresh_roots.push(fresh_root);
    }
    let mut pendings: Vec<PendingKv> = contexts.iter().map(|_| engine.pending()).collect();
    let outputs = {
        let mut seqs = Vec::with_capacity(contexts.len());
        for ((&context, (path, covered)), fresh_root) in
            contexts.iter().zip(&plans).zip(&fresh_roots)
        {
            let mut context_segments = segments(tree, path)?;
            if let RootStart::OnShared(shared) = fresh_root {
                // The shared start is context, not a node: the rest is computed on it.
                context_segments.push((shared, shared.len()));
            }
            let tokens = if *covered < context.len() {
                &context[*covered..]
            } else {
                // All cached: re-read the last token to get the logits after it.
                let last = context_segments
                    .last_mut()
                    .expect("a non-empty cached context");
                last.1 -= 1;
                &context[context.len() - 1..]
            };
            seqs.push(SeqInput {
                context: context_segments,
                tokens,
                logits: Logits::Last,
                hidden_mean: false,
            });
        }
        let mut refs: Vec<&mut PendingKv> = pendings.iter_mut().collect();
        engine.forward(&seqs, &mut refs)?
    };
    let mut out = Vec::with_capacity(contexts.len());
    for ((((&context, (mut path, covered)), pending), output), fresh_root) in contexts
        .iter()
        .zip(plans)
        .zip(pendings)
        .zip(outputs)
        .zip(fresh_roots)
    {
        let parent = path.last().copied().unwrap_or(tree.root());
        if covered < context.len() {
            let computed = pending.to_segment()?;
            // A root computed on a shared start is one node: that start and the rest.
            let (segment, from) = match &fresh_root {
                RootStart::OnShared(shared) => (shared.join(&computed)?, 0),
                _ => (computed, covered),
            };
            if !matches!(fresh_root, RootStart::Held) {
                engine.remember_prompt(context, segment.clone());
            }
            let node = tree
                .insert(parent, &context[from..], || segment)
                .map_err(Error::engine)?;
            // The insert's reference becomes the pin below.
            tree.release(node).map_err(Error::engine)?;
            path.push(node);
        }
        let leaf = *path.last().expect("a non-empty context has a node");
        tree.pin(leaf).map_err(Error::engine)?;
        let logits =
            output.logits.into_iter().next().ok_or_else(|| {
                Error::engine("the forward pass returned no logits for a context")
            })?;
        out.push(Prefilled { path, logits });
    }
    Ok(out)
}

impl NativePolicy {
    /// A policy on `engine`.
    pub fn new(engine: Arc<NativeEngine>, options: NativePolicyOptions) -> Self {
        let tree = KvTree::new(engine.config().kv_bytes_per_token());
        Self {
            engine,
            options,
            tree,
            guards: HashMap::new(),
            held: Vec::new(),
            stop: None,
            step_embeddings: None,
        }
    }

    /// Records, from now on, the mean final hidden state of every step it generates (read in
    /// the step's context while decoding) into the returned store, for a
    /// [`PolicyStepEmbedder`](super::PolicyStepEmbedder).
    pub fn record_step_embeddings(&mut self) -> StepEmbeddings {
        self.step_embeddings
            .get_or_insert_with(StepEmbeddings::default)
            .clone()
    }

    /// The engine it runs on.
    pub fn engine(&self) -> &Arc<NativeEngine> {
        &self.engine
    }

    /// The K/V cache (one node per prompt and per sampled step).
    pub fn tree(&self) -> &KvTree<KvSegment> {
        &self.tree
    }

    /// Accounting of the K/V cache.
    pub fn kv_stats(&self) -> KvStats {
        self.tree.stats()
    }

    /// The root prompt's token ids for `problem`.
    pub fn encode_problem(&self, problem: &str) -> Result<Vec<u32>, Error> {
        let mut turns = Vec::with_capacity(2);
        if let Some(system) = &self.options.prompt.system_prompt {
            turns.push((ChatRole::System, system.clone()));
        }
        turns.push((ChatRole::User, problem.to_owned()));
        self.engine.text().encode_chat(&turns)
    }

    fn spec(&mut self, r: &ExpandRequest<'_>) -> Arc<StepSpec> {
        let text = self.engine.text();
        let guard = self
            .guards
            .entry(r.step_delimiter.to_owned())
            .or_insert_with(|| Arc::new(DelimiterGuard::new(r.step_delimiter, text.token_texts())))
            .clone();
        Arc::new(StepSpec {
            prompt_len: r.context.len(),
            max_tokens: r.max_tokens,
            sampling: r.sampling.clone(),
            eos: text.eos().clone(),
            tokenizer: text.tokenizer().clone(),
            guard,
        })
    }

    /// [`Policy::retain`] with this crate's error type: holds the cached chain of every
    /// context in `live` and frees every other node.
    pub fn retain_contexts(&mut self, live: &[&[u32]]) -> Result<(), Error> {
        let leaves: Vec<NodeId> = live
            .iter()
            .filter_map(|context| cached_prefix(&self.tree, context).0.last().copied())
            .collect();
        hold_only(&mut self.tree, &mut self.held, leaves)
    }

    /// [`Policy::expand`] with this crate's error type.
    pub fn expand_steps(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, Error> {
        let contexts: Vec<&[u32]> = requests.iter().map(|r| r.context).collect();
        let specs: Vec<Arc<StepSpec>> = requests.iter().map(|r| self.spec(r)).collect();
        let engine = self.engine.clone();
        let prefilled = prefill_contexts(&engine, &mut self.tree, &contexts)?;
        let result = self.decode(requests, &specs, &prefilled);
        for p in &prefilled {
            self.tree.unpin(p.leaf()).map_err(Error::engine)?;
        }
        self.tree.evict_to_bytes(self.options.max_cached_bytes);
        result
    }

    fn decode(
        &mut self,
        requests: &[ExpandRequest<'_>],
        specs: &[Arc<StepSpec>],
        prefilled: &[Prefilled],
    ) -> Result<Vec<Vec<Continuation>>, Error> {
        let mut children = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            for c in 0..r.num_children {
                let mut child = Child {
                    request: i,
                    stream: child_stream(r.seed, c),
                    record: StepRecord::default(),
                    pending: self.engine.pending(),
                    unfed: None,
                    hidden_sum: Vec::new(),
                };
                if r.max_tokens > 0 {
                    child.unfed =
                        self.sample(&specs[i], &mut child, prefilled[i].logits.clone())?;
                }
                children.push(child);
            }
        }
        loop {
            if self.stop.as_ref().is_some_and(|s| s.should_stop()) {
                return Err(Error::Stopped);
            }
            let active: Vec<usize> = (0..children.len())
                .filter(|&i| children[i].unfed.is_some())
                .collect();
            if active.is_empty() {
                break;
            }
            let outputs = {
                let mut seqs = Vec::with_capacity(active.len());
                let feeds: Vec<[u32; 1]> = active
                    .iter()
                    .map(|&i| [children[i].unfed.expect("active")])
                    .collect();
                for (&i, feed) in active.iter().zip(&feeds) {
                    let child = &children[i];
                    seqs.push(SeqInput {
                        context: segments(&self.tree, &prefilled[child.request].path)?,
                        tokens: feed,
                        logits: match child.record.finish {
                            Some(_) => Logits::None,
                            None => Logits::Last,
                        },
                        hidden_mean: self.step_embeddings.is_some(),
                    });
                }
                let mut refs: Vec<&mut PendingKv> = children
                    .iter_mut()
                    .filter(|c| c.unfed.is_some())
                    .map(|c| &mut c.pending)
                    .collect();
                self.engine.forward(&seqs, &mut refs)?
            };
            for (&i, output) in active.iter().zip(outputs) {
                let child = &mut children[i];
                child.unfed = None;
                if let Some(hidden) = &output.hidden_mean {
                    if child.hidden_sum.is_empty() {
                        child.hidden_sum = vec![0.0; hidden.len()];
                    }
                    child
                        .hidden_sum
                        .iter_mut()
                        .zip(hidden)
                        .for_each(|(s, h)| *s += h);
                }
                if child.record.finish.is_none() {
                    let row = output
                        .logits
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::engine("no logits for a decoding child"))?;
                    let spec = specs[child.request].clone();
                    child.unfed = self.sample(&spec, child, row)?;
                }
            }
        }
        let mut out: Vec<Vec<Continuation>> = requests.iter().map(|_| Vec::new()).collect();
        for child in children {
            let parent = prefilled[child.request].leaf();
            let rec = child.record;
            if let Some(store) = &self.step_embeddings {
                if !child.hidden_sum.is_empty() {
                    // Normalised on record, so the sum serves as the mean.
                    store.record(&rec.text, child.hidden_sum);
                }
            }
            if !rec.ids.is_empty() {
                assert_eq!(child.pending.len(), rec.ids.len());
                let segment = child.pending.to_segment()?;
                let node = self
                    .tree
                    .insert(parent, &rec.ids, || segment)
                    .map_err(Error::engine)?;
                self.tree.release(node).map_err(Error::engine)?;
            }
            out[child.request].push(Continuation {
                token_ids: rec.ids,
                text: rec.text,
                finish: rec.finish.unwrap_or(FinishReason::Length),
                logprobs: rec.logprobs,
            });
        }
        Ok(out)
    }

    /// Samples the child's next token from `row`; returns it when it must still be run through
    /// the model (every recorded token is, so its node's K/V is complete).
    fn sample(
        &self,
        spec: &StepSpec,
        child: &mut Child,
        row: Vec<f32>,
    ) -> Result<Option<u32>, Error> {
        let position = child.record.ids.len();
        let token = sample_step(spec, child.stream, position, &mut child.record, row)
            .map_err(Error::engine)?;
        Ok(match child.record.finish {
            Some(FinishReason::EndOfSequence) => None,
            _ => Some(token),
        })
    }
}

impl Policy for NativePolicy {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        Ok(self.encode_problem(problem)?)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        Ok(self.expand_steps(requests)?)
    }

    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        Ok(self.retain_contexts(live)?)
    }

    fn set_stop(&mut self, stop: StopHandle) {
        self.stop = Some(stop);
    }
}
