//! Warm prompts across jobs: the K/V of root prompts a model has prefilled, kept by its
//! [`NativeEngine`](super::NativeEngine) so that another job whose context starts with one
//! (the same problem asked again, an eval's repeated item, a second method on the same
//! problem) starts from it instead of prefilling. The PRM's first kept span (its header and
//! the problem) is kept and found the same way: by exact match, else by a shared start.
//!
//! Each job's policy still has its own tree (the search's exact logical K/V account); a warm
//! prompt enters it as the root's first node, sharing the cached tensors (candle tensors are
//! reference-counted, so the bytes exist once however many jobs hold them). An entry evicted
//! here stays alive in every job that holds it: eviction only stops new jobs from finding it.
//! Entries are whole prompts, least recently used evicted first above the byte cap.
//!
//! A prompt that is not cached whole may still share its start with one that is: the chat
//! template's header (system prompt, `<|im_start|>user`) is the same for every problem, and an
//! eval's prompts often share an instruction. A lookup then returns the longest such shared
//! start, at least [`MIN_SHARED_TOKENS`] long, as a view of the cached tensors; the job computes
//! only the rest of its prompt on top of it and joins the two into its own root node, which is
//! then kept whole like any other. The segment is exactly what a prefill of those tokens
//! computes, and a row's result does not depend on how its context is split into segments, so
//! a warm start changes no logit.

use super::kv::KvSegment;
pub use crate::engines::{PromptCacheStats, DEFAULT_PROMPT_CACHE_BYTES};

/// The shortest shared start of two prompts worth reusing: shorter ones are chance agreements
/// (a `<|im_start|>` token), not a header.
pub const MIN_SHARED_TOKENS: usize = 8;

/// What a lookup found for a context: K/V of its first `segment.len()` tokens.
pub(crate) enum WarmStart {
    /// A cached prompt the context starts with, whole.
    Whole(KvSegment),
    /// The first tokens of a cached prompt that the context shares (a header), as a view of
    /// their K/V, shorter than both the cached prompt and the context.
    Shared(KvSegment),
}

struct Entry {
    tokens: Vec<u32>,
    segment: KvSegment,
    bytes: u64,
    last_used: u64,
}

/// Whole prompts and their K/V, least recently used evicted above a byte cap.
pub(crate) struct PromptCache {
    entries: Vec<Entry>,
    bytes_per_token: u64,
    clock: u64,
    /// Counters, the cap, and the entries' total bytes (kept as they change).
    stats: PromptCacheStats,
}

impl PromptCache {
    pub(crate) fn new(bytes_per_token: u64, max_bytes: u64) -> Self {
        Self {
            entries: Vec::new(),
            bytes_per_token,
            clock: 0,
            stats: PromptCacheStats {
                max_bytes,
                ..PromptCacheStats::default()
            },
        }
    }

    /// The longest cached prompt that `context` starts with, whole; else the longest start
    /// (at least [`MIN_SHARED_TOKENS`]) it shares with a cached prompt. Counts a hit, a shared
    /// hit or a miss.
    pub(crate) fn lookup(&mut self, context: &[u32]) -> Option<WarmStart> {
        let whole = (self.entries.iter().enumerate())
            .filter(|(_, e)| context.starts_with(&e.tokens))
            .max_by_key(|(_, e)| e.tokens.len())
            .map(|(i, _)| i);
        self.warm_start(whole, context)
    }

    /// The cached K/V of exactly `tokens` (a PRM's root span must match its cut); else the
    /// longest start (at least [`MIN_SHARED_TOKENS`]) `tokens` shares with a cached prompt.
    /// Counts like [`lookup`](Self::lookup).
    pub(crate) fn lookup_span(&mut self, tokens: &[u32]) -> Option<WarmStart> {
        let exact = self.entries.iter().position(|e| e.tokens == tokens);
        self.warm_start(exact, tokens)
    }

    /// Entry `whole` if found, else the longest shared start of `tokens`; counts the outcome
    /// and marks the entry used.
    fn warm_start(&mut self, whole: Option<usize>, tokens: &[u32]) -> Option<WarmStart> {
        self.clock += 1;
        if let Some(i) = whole {
            let entry = &mut self.entries[i];
            entry.last_used = self.clock;
            self.stats.hits += 1;
            self.stats.tokens_reused += entry.tokens.len() as u64;
            return Some(WarmStart::Whole(entry.segment.clone()));
        }
        let shared = (self.entries.iter().enumerate())
            .map(|(i, e)| {
                let common = e.tokens.iter().zip(tokens).take_while(|(a, b)| a == b);
                // At least one token of `tokens` is left to compute.
                (i, common.count().min(tokens.len().saturating_sub(1)))
            })
            .filter(|&(i, n)| n >= MIN_SHARED_TOKENS && n < self.entries[i].tokens.len())
            .max_by_key(|&(_, n)| n);
        let Some((i, n)) = shared else {
            self.stats.misses += 1;
            return None;
        };
        let entry = &mut self.entries[i];
        entry.last_used = self.clock;
        self.stats.shared_hits += 1;
        self.stats.tokens_reused += n as u64;
        Some(WarmStart::Shared(entry.segment.prefix(n)))
    }

    /// Keeps `segment` as the K/V of `tokens` (replacing an entry for the same tokens), then
    /// evicts the least recently used entries above the cap. A prompt larger than the cap is
    /// not kept.
    pub(crate) fn insert(&mut self, tokens: &[u32], segment: KvSegment) {
        debug_assert_eq!(tokens.len(), segment.len());
        let bytes = tokens.len() as u64 * self.bytes_per_token;
        if tokens.is_empty() || bytes > self.stats.max_bytes {
            return;
        }
        self.clock += 1;
        if let Some(i) = self.entries.iter().position(|e| e.tokens == tokens) {
            self.stats.bytes -= self.entries.swap_remove(i).bytes;
        }
        self.stats.bytes += bytes;
        self.entries.push(Entry {
            tokens: tokens.to_vec(),
            segment,
            bytes,
            last_used: self.clock,
        });
        self.shrink_to(self.stats.max_bytes);
    }

    /// Sets the cap and evicts down to it.
    pub(crate) fn set_max_bytes(&mut self, max_bytes: u64) {
        self.stats.max_bytes = max_bytes;
        self.shrink_to(max_bytes);
    }

    fn shrink_to(&mut self, max_bytes: u64) {
        while self.stats.bytes > max_bytes {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
                .expect("over the cap means an entry");
            self.stats.bytes -= self.entries.swap_remove(oldest).bytes;
        }
    }

    /// Evicts down to `max_bytes`, the cap unchanged.
    pub(crate) fn trim(&mut self, max_bytes: u64) {
        self.shrink_to(max_bytes.min(self.stats.max_bytes));
    }

    pub(crate) fn stats(&self) -> PromptCacheStats {
        PromptCacheStats {
            entries: self.entries.len() as u64,
            ..self.stats
        }
    }
}
