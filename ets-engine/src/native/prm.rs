//! [`NativeReward`]: ets-core's [`Reward`] on a [`NativeEngine`] and a PRM profile, scoring
//! incrementally from its own kvtree.
//!
//! A trajectory's rendered text is cut into kept spans and a suffix. Kept spans are what a
//! deeper trajectory's render starts with too: the profile's header, then each step up to the
//! end of its text (for the judge layout, only the steps listed as "previous"). The suffix
//! (the step tag, or the judge's question with the newest step, or the chat template's answer
//! prompt) is run but never kept. Cut points are found from the profile itself: the header ends
//! where renders with one and with two (placeholder) steps part ways; a step's text ends where
//! the render with that step marked parts from the plain one; a cut is kept only if the render
//! with one more step starts with everything before it. The text is tokenized whole (the same
//! ids as [`MistralReward`](crate::mistralrs::MistralReward) scores), and each cut falls before
//! the first token that starts at or after it.
//!
//! Scoring a batch first prefills the kept spans not yet cached (deduplicated across the
//! batch: siblings share their parent's spans), then runs every suffix in one pass and reads
//! P(good) / (P(good) + P(bad)) after its last token. A new step therefore costs its own
//! tokens plus the suffix.
//!
//! After each depth the driver names the trajectories whose children it scores next
//! ([`Reward::retain`]): the reward holds the cached chain those children will extend (the
//! kept spans of the trajectory with one more placeholder step) and frees every other node.

use std::collections::HashMap;
use std::sync::Arc;

use ets_core::{BackendError, Reward, ScoreRequest, StopHandle};
use ets_kvtree::{KvStats, KvTree, NodeId};

use super::engine::{Logits, NativeEngine, SeqInput};
use super::kv::{KvSegment, PendingKv};
use super::policy::{hold_only, segments};
use super::prompt_cache::WarmStart;
use crate::error::Error;
use crate::gguf_text::Encoded;
use crate::profile::{PrmProfile, Rendered, ResolvedProfile};

/// Marks placeholder steps and step ends while finding cut points (never whitespace, so a
/// step's `trim` keeps it).
const MARK: &str = "\u{1}";
/// A second placeholder step, different from [`MARK`].
const OTHER_MARK: &str = "\u{2}";

/// A trajectory ready to score: its token ids and where its kept spans end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreLayout {
    /// Every token of the rendered trajectory (the verdict is read after the last one).
    pub ids: Vec<u32>,
    /// Token indices where kept spans end, strictly increasing, each below `ids.len()`;
    /// `ids[last cut..]` is the suffix.
    pub cuts: Vec<usize>,
}

impl ScoreLayout {
    fn spans(&self) -> impl Iterator<Item = &[u32]> + '_ {
        let mut start = 0;
        self.cuts.iter().map(move |&end| {
            let span = &self.ids[start..end];
            start = end;
            span
        })
    }

    fn kept(&self) -> usize {
        self.cuts.last().copied().unwrap_or(0)
    }
}

/// ets-core's [`Reward`] on a [`NativeEngine`] and a [`PrmProfile`].
pub struct NativeReward {
    engine: Arc<NativeEngine>,
    profile: ResolvedProfile,
    tree: KvTree<KvSegment>,
    max_cached_bytes: u64,
    /// Last nodes of the chains the next scores extend, one reference each.
    held: Vec<NodeId>,
    /// Asked before every prefill pass: a stopped job ends within one forward pass.
    stop: Option<StopHandle>,
}

impl std::fmt::Debug for NativeReward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeReward")
            .field("profile", &self.profile.profile.name)
            .field("tree", &self.tree)
            .finish_non_exhaustive()
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            return i;
        }
        n = i + x.len_utf8();
    }
    n
}

impl NativeReward {
    /// A PRM; fails if a tag or label of `profile` is not exactly one token.
    pub fn new(
        engine: Arc<NativeEngine>,
        profile: &PrmProfile,
        max_cached_bytes: u64,
    ) -> Result<Self, Error> {
        let profile = profile.resolve(engine.text().tokenizer())?;
        let tree = KvTree::new(engine.config().kv_bytes_per_token());
        Ok(Self {
            engine,
            profile,
            tree,
            max_cached_bytes,
            held: Vec::new(),
            stop: None,
        })
    }

    /// The K/V cache of scored trajectories (kept spans only).
    pub fn tree(&self) -> &KvTree<KvSegment> {
        &self.tree
    }

    /// Accounting of the K/V cache.
    pub fn kv_stats(&self) -> KvStats {
        self.tree.stats()
    }

    fn text(&self, problem: &str, steps: &[&str]) -> Result<String, Error> {
        match self.profile.render(problem, steps) {
            Rendered::Text(text) => Ok(text),
            Rendered::Chat(turns) => self.engine.text().render_chat(&turns),
        }
    }

    /// The token ids and kept spans of a trajectory (`steps` oldest first, never empty).
    pub fn layout(&self, problem: &str, steps: &[&str]) -> Result<ScoreLayout, Error> {
        let full = self.text(problem, steps)?;
        let mut longer: Vec<&str> = steps.to_vec();
        longer.push(MARK);
        let next = self.text(problem, &longer)?;
        let header = common_prefix(
            &self.text(problem, &[MARK])?,
            &self.text(problem, &[OTHER_MARK, MARK])?,
        );
        let mut bounds = vec![header];
        for j in 0..steps.len() {
            let marked_step = format!("{}{MARK}", steps[j].trim());
            let mut marked: Vec<&str> = steps.to_vec();
            marked[j] = &marked_step;
            bounds.push(common_prefix(&full, &self.text(problem, &marked)?));
        }
        let Encoded { ids, offsets } = self.engine.text().encode_with_offsets(&full)?;
        if let Some(tag) = self.profile.step_tag {
            if ids.last() != Some(&tag) {
                return Err(Error::Profile {
                    origin: self.profile.profile.name.clone(),
                    message: "the rendered trajectory does not end with the step tag token".into(),
                });
            }
        }
        let next_ids = self.engine.text().encode(&next, true)?;
        let mut cuts: Vec<usize> = Vec::new();
        for b in bounds {
            // Tokens that end by the bound; a token running across it goes to the next span.
            let cut = offsets.iter().take_while(|&&(_, end)| end <= b).count();
            let shared = next_ids.get(..cut) == Some(&ids[..cut]);
            if shared && cut > cuts.last().copied().unwrap_or(0) && cut < ids.len() {
                cuts.push(cut);
            }
        }
        Ok(ScoreLayout { ids, cuts })
    }

    /// The exact token ids a trajectory is scored on.
    pub fn score_input(&self, problem: &str, steps: &[&str]) -> Result<Vec<u32>, Error> {
        Ok(self.layout(problem, steps)?.ids)
    }

    fn verdict(&self, logits: &[f32]) -> Option<f64> {
        let at = |id: u32| logits.get(id as usize).copied().unwrap_or(f32::NAN);
        let (good, bad) = (at(self.profile.good), at(self.profile.bad));
        if !(good.is_finite() && bad.is_finite()) {
            return None;
        }
        Some(1.0 / (1.0 + ((bad - good) as f64).exp()))
    }

    /// The score of a trajectory computed from scratch (no cache), for checks.
    pub fn score_from_scratch(&self, problem: &str, steps: &[&str]) -> Result<Option<f64>, Error> {
        let ids = self.score_input(problem, steps)?;
        let logits = self.engine.logits_from_scratch(&ids)?;
        Ok(logits.last().and_then(|row| self.verdict(row)))
    }

    /// The cached chain of kept spans of `layout`, from the root.
    fn cached(&self, layout: &ScoreLayout) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut at = self.tree.root();
        for span in layout.spans() {
            match self.tree.find_child(at, span) {
                Some(child) => {
                    path.push(child);
                    at = child;
                }
                None => break,
            }
        }
        path
    }

    /// Prefills, one batched pass per round, the first missing kept span of every layout
    /// (each distinct span once) until all are cached; returns the chains, pinned at their
    /// last node.
    fn cache_kept(&mut self, layouts: &[ScoreLayout]) -> Result<Vec<Vec<NodeId>>, Error> {
        loop {
            if self.stop.as_ref().is_some_and(|s| s.should_stop()) {
                return Err(Error::Stopped);
            }
            // Chain so far, the span to compute, and for a root span the warm start it shares
            // with another job's (a header), computed on rather than again.
            let mut missing: Vec<(Vec<NodeId>, &[u32], Option<KvSegment>)> = Vec::new();
            let mut seen = HashMap::new();
            for layout in layouts {
                let path = self.cached(layout);
                if let Some(span) = layout.spans().nth(path.len()) {
                    let parent = path.last().copied().unwrap_or(self.tree.root());
                    if seen.contains_key(&(parent, span)) {
                        continue;
                    }
                    let mut shared = None;
                    if path.is_empty() {
                        // A root span another job of this engine computed: take its K/V.
                        match self.engine.warm_span(span) {
                            Some(WarmStart::Whole(segment)) => {
                                let node = self
                                    .tree
                                    .insert(parent, span, || segment)
                                    .map_err(Error::engine)?;
                                self.tree.release(node).map_err(Error::engine)?;
                                continue;
                            }
                            Some(WarmStart::Shared(segment)) => shared = Some(segment),
                            None => {}
                        }
                    }
                    seen.insert((parent, span), ());
                    missing.push((path, span, shared));
                }
            }
            if missing.is_empty() {
                break;
            }
            let mut pendings: Vec<PendingKv> =
                missing.iter().map(|_| self.engine.pending()).collect();
            {
                let mut seqs = Vec::with_capacity(missing.len());
                for (path, span, shared) in &missing {
                    let mut context = segments(&self.tree, path)?;
                    let from = shared.as_ref().map_or(0, |s| s.len());
                    context.extend(shared.iter().map(|s| (s, s.len())));
                    seqs.push(SeqInput {
                        context,
                        tokens: &span[from..],
                        logits: Logits::None,
                        hidden_mean: false,
                    });
                }
                let mut refs: Vec<&mut PendingKv> = pendings.iter_mut().collect();
                self.engine.forward(&seqs, &mut refs)?;
            }
            let inserts: Vec<(NodeId, Vec<u32>, Option<KvSegment>)> = missing
                .into_iter()
                .map(|(path, span, shared)| {
                    (
                        path.last().copied().unwrap_or(self.tree.root()),
                        span.to_vec(),
                        shared,
                    )
                })
                .collect();
            for ((parent, span, shared), pending) in inserts.into_iter().zip(pendings) {
                let computed = pending.to_segment()?;
                let segment = match shared {
                    Some(shared) => shared.join(&computed)?,
                    None => computed,
                };
                if parent == self.tree.root() {
                    self.engine.remember_prompt(&span, segment.clone());
                }
                let node = self
                    .tree
                    .insert(parent, &span, || segment)
                    .map_err(Error::engine)?;
                self.tree.release(node).map_err(Error::engine)?;
            }
        }
        let mut chains = Vec::with_capacity(layouts.len());
        for layout in layouts {
            let path = self.cached(layout);
            assert_eq!(path.len(), layout.cuts.len());
            if let Some(&leaf) = path.last() {
                self.tree.pin(leaf).map_err(Error::engine)?;
            }
            chains.push(path);
        }
        Ok(chains)
    }

    /// [`Reward::retain`] with this crate's error type: holds the cached chain that the
    /// children of every trajectory in `live` extend, and frees every other node.
    pub fn retain_trajectories(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), Error> {
        let mut leaves = Vec::with_capacity(live.len());
        for r in live {
            let mut steps = r.steps.to_vec();
            steps.push(MARK);
            let layout = self.layout(r.problem, &steps)?;
            leaves.extend(self.cached(&layout).last().copied());
        }
        hold_only(&mut self.tree, &mut self.held, leaves)
    }

    /// [`Reward::score`] with this crate's error type.
    pub fn score_steps(
        &mut self,
        requests: &[ScoreRequest<'_>],
    ) -> Result<Vec<Option<f64>>, Error> {
        let mut layouts = Vec::new();
        let mut which = Vec::with_capacity(requests.len());
        for r in requests {
            if r.steps.is_empty() {
                which.push(None);
            } else {
                which.push(Some(layouts.len()));
                layouts.push(self.layout(r.problem, r.steps)?);
            }
        }
        let chains = self.cache_kept(&layouts)?;
        let outputs = {
            let mut seqs = Vec::with_capacity(layouts.len());
            for (layout, path) in layouts.iter().zip(&chains) {
                seqs.push(SeqInput {
                    context: segments(&self.tree, path)?,
                    tokens: &layout.ids[layout.kept()..],
                    logits: Logits::Last,
                    hidden_mean: false,
                });
            }
            let mut pendings: Vec<PendingKv> = seqs.iter().map(|_| self.engine.pending()).collect();
            let mut refs: Vec<&mut PendingKv> = pendings.iter_mut().collect();
            self.engine.forward(&seqs, &mut refs)
        };
        for path in &chains {
            if let Some(&leaf) = path.last() {
                self.tree.unpin(leaf).map_err(Error::engine)?;
            }
        }
        self.tree.evict_to_bytes(self.max_cached_bytes);
        let outputs = outputs?;
        Ok(which
            .into_iter()
            .map(|i| {
                let row = outputs[i?].logits.first()?;
                self.verdict(row)
            })
            .collect())
    }
}

impl Reward for NativeReward {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        Ok(self.score_steps(requests)?)
    }

    fn retain(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), BackendError> {
        Ok(self.retain_trajectories(live)?)
    }

    fn set_stop(&mut self, stop: StopHandle) {
        self.stop = Some(stop);
    }
}
