//! Warm prompts across jobs: the K/V of root prompts a model has prefilled, kept by its
//! [`NativeEngine`](super::NativeEngine) so that another job whose context starts with one
//! (the same problem asked again, an eval's repeated item, a second method on the same
//! problem) starts from it instead of prefilling. The PRM's first kept span (its header and
//! the problem) is kept and found the same way, by exact match.
//!
//! Each job's policy still has its own tree (the search's exact logical K/V account); a warm
//! prompt enters it as the root's first node, sharing the cached tensors (candle tensors are
//! reference-counted, so the bytes exist once however many jobs hold them). An entry evicted
//! here stays alive in every job that holds it: eviction only stops new jobs from finding it.
//! Entries are whole prompts, least recently used evicted first above the byte cap. The
//! segment is exactly what a prefill of those tokens computes, and a row's result does not
//! depend on how its context is split into segments, so a warm start changes no logit.

use super::kv::KvSegment;
pub use crate::engines::PromptCacheStats;

/// Default byte cap of an engine's prompt cache.
pub const DEFAULT_PROMPT_CACHE_BYTES: u64 = 256 << 20;

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

    /// The longest cached prompt that `context` starts with: its length and K/V.
    pub(crate) fn lookup(&mut self, context: &[u32]) -> Option<(usize, KvSegment)> {
        let found = (self.entries.iter().enumerate())
            .filter(|(_, e)| context.starts_with(&e.tokens))
            .max_by_key(|(_, e)| e.tokens.len())
            .map(|(i, _)| i);
        self.take(found)
    }

    /// The cached K/V of exactly `tokens` (a PRM's root span must match its cut).
    pub(crate) fn lookup_exact(&mut self, tokens: &[u32]) -> Option<KvSegment> {
        let found = self.entries.iter().position(|e| e.tokens == tokens);
        self.take(found).map(|(_, segment)| segment)
    }

    /// Counts a lookup's hit (entry `found`, now the most recently used) or miss.
    fn take(&mut self, found: Option<usize>) -> Option<(usize, KvSegment)> {
        self.clock += 1;
        let Some(i) = found else {
            self.stats.misses += 1;
            return None;
        };
        let entry = &mut self.entries[i];
        entry.last_used = self.clock;
        self.stats.hits += 1;
        self.stats.tokens_reused += entry.tokens.len() as u64;
        Some((entry.tokens.len(), entry.segment.clone()))
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

    pub(crate) fn stats(&self) -> PromptCacheStats {
        PromptCacheStats {
            entries: self.entries.len(),
            ..self.stats
        }
    }
}
