//! The logits processors that put sampling and scoring under our control.
//!
//! mistral.rs 0.8.1 has one engine-wide RNG, returns no token ids, reports log10 probabilities
//! after filtering and detects stop strings one token late. A [`StepController`] on every
//! expansion request fixes all of that: at each position it draws the token itself (seeded by
//! the child's stream and the position), records the id and its natural-log probability, and
//! forces the engine to take it by masking every other logit. Once the decoded step contains
//! the delimiter it forces end-of-sequence, so the step ends exactly at the delimiter. Tokens
//! that would run past the delimiter inside one token (`"\n\n\n"` for `"\n\n"`) are masked, so a
//! step's text never holds anything after it.
//!
//! A [`ScoreProbe`] reads the full-vocabulary logits at the first generated position of a
//! one-token request: the PRM's label logits, always computed by the same prefill path.

use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{Device, Tensor};
use ets_core::{FinishReason, SamplingConfig};
use mistralrs::CustomLogitsProcessor;
use tokenizers::Tokenizer;

use super::sample::{self, Draw};

/// Tokens that can complete a delimiter, with their text, for one delimiter string.
#[derive(Debug)]
pub(crate) struct DelimiterGuard {
    delimiter: String,
    /// Tokens whose text holds the delimiter's last character.
    closers: Vec<(u32, String)>,
}

impl DelimiterGuard {
    /// Builds the guard from every token's text (`token_texts[id]`).
    pub(crate) fn new(delimiter: &str, token_texts: &[String]) -> Self {
        let last = delimiter.chars().last();
        let closers = match last {
            Some(last) => token_texts
                .iter()
                .enumerate()
                .filter(|(_, t)| t.contains(last))
                .map(|(i, t)| (i as u32, t.clone()))
                .collect(),
            None => Vec::new(),
        };
        Self {
            delimiter: delimiter.to_owned(),
            closers,
        }
    }

    /// Tokens that, appended to `text` (which does not hold the delimiter), would complete the
    /// delimiter and then carry more text.
    fn overshooting<'a>(&'a self, text: &'a str) -> impl Iterator<Item = u32> + 'a {
        // Only the tail that can start a delimiter matters.
        let keep = self.delimiter.len().saturating_sub(1);
        let mut start = text.len().saturating_sub(keep);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let tail = &text[start..];
        self.closers.iter().filter_map(move |(id, piece)| {
            let joined = format!("{tail}{piece}");
            match joined.find(&self.delimiter) {
                Some(at) if at + self.delimiter.len() < joined.len() => Some(*id),
                _ => None,
            }
        })
    }
}

/// What one child of an expansion produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepRecord {
    /// The step's token ids (end-of-sequence excluded).
    pub ids: Vec<u32>,
    /// ln p of each id.
    pub logprobs: Vec<f32>,
    /// The decoded step.
    pub text: String,
    /// Why it stopped, once it has.
    pub finish: Option<FinishReason>,
    /// A failure inside the processor (reported instead of the step).
    pub error: Option<String>,
}

/// Everything a [`StepController`] needs that does not change between children.
pub(crate) struct StepSpec {
    /// Length of the context the request carries.
    pub prompt_len: usize,
    /// Most tokens of the step.
    pub max_tokens: usize,
    /// How to sample.
    pub sampling: SamplingConfig,
    /// The model's end-of-sequence ids; the first is the one forced after a delimiter.
    pub eos: Arc<Vec<u32>>,
    /// The tokenizer that decodes the step.
    pub tokenizer: Arc<Tokenizer>,
    /// Tokens that can close the delimiter.
    pub guard: Arc<DelimiterGuard>,
}

/// Samples one child step itself and records it (see the module doc).
pub(crate) struct StepController {
    spec: Arc<StepSpec>,
    stream: u64,
    record: Mutex<StepRecord>,
}

impl StepController {
    pub(crate) fn new(spec: Arc<StepSpec>, stream: u64) -> Self {
        Self {
            spec,
            stream,
            record: Mutex::new(StepRecord::default()),
        }
    }

    /// The step as recorded so far.
    pub(crate) fn record(&self) -> StepRecord {
        lock(&self.record).clone()
    }

    fn step(&self, logits: &Tensor, context: &[u32]) -> Result<Option<u32>, String> {
        let spec = &self.spec;
        let position = context.len().saturating_sub(spec.prompt_len);
        let mut rec = lock(&self.record);
        if rec.finish.is_some() && position >= rec.ids.len() {
            // The step is over (delimiter or length): end the sequence now.
            return Ok(spec.eos.first().copied());
        }
        if rec.ids.len() > position {
            // A repeated call for an earlier position replaces what followed it.
            rec.ids.truncate(position);
            rec.logprobs.truncate(position);
            rec.text = spec
                .tokenizer
                .decode(&rec.ids, false)
                .map_err(|e| e.to_string())?;
        }
        rec.finish = None;
        let row: Vec<f32> = logits.to_vec1().map_err(|e| e.to_string())?;
        sample_step(spec, self.stream, position, &mut rec, row).map(Some)
    }
}

/// Draws the token at step position `position` of child stream `stream` from a full row of
/// logits and records it in `rec`: the sampling rule every engine shares. Tokens that would
/// run past the delimiter are masked first; end-of-sequence sets the finish reason and is not
/// recorded; a step whose text now holds the delimiter finishes with
/// [`FinishReason::Delimiter`], one at `spec.max_tokens` with [`FinishReason::Length`].
pub(crate) fn sample_step(
    spec: &StepSpec,
    stream: u64,
    position: usize,
    rec: &mut StepRecord,
    mut row: Vec<f32>,
) -> Result<u32, String> {
    for id in spec.guard.overshooting(&rec.text) {
        if let Some(l) = row.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
    let u = sample::uniform(stream, position);
    let Some(Draw { token, logprob }) = sample::draw(&row, &spec.sampling, u) else {
        return Err(format!(
            "no token can be sampled at step position {position}"
        ));
    };
    if spec.eos.contains(&token) {
        rec.finish = Some(FinishReason::EndOfSequence);
        return Ok(token);
    }
    rec.ids.push(token);
    rec.logprobs.push(logprob);
    rec.text = spec
        .tokenizer
        .decode(&rec.ids, false)
        .map_err(|e| e.to_string())?;
    if rec.text.contains(&spec.guard.delimiter) {
        rec.finish = Some(FinishReason::Delimiter);
    } else if rec.ids.len() >= spec.max_tokens {
        rec.finish = Some(FinishReason::Length);
    }
    Ok(token)
}

impl CustomLogitsProcessor for StepController {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> candle_core::Result<Tensor> {
        match self.step(logits, context) {
            Ok(Some(token)) => forced(logits, token),
            Ok(None) => Ok(logits.clone()),
            Err(e) => {
                lock(&self.record).error.get_or_insert(e);
                // Keep the engine going; the policy reports the error.
                let eos = self.spec.eos.first().copied();
                match eos {
                    Some(eos) => forced(logits, eos),
                    None => Ok(logits.clone()),
                }
            }
        }
    }
}

/// Reads two logits at the first generated position of a one-token request.
pub(crate) struct ScoreProbe {
    good: u32,
    bad: u32,
    seen: Mutex<Option<(f32, f32)>>,
}

impl ScoreProbe {
    pub(crate) fn new(good: u32, bad: u32) -> Self {
        Self {
            good,
            bad,
            seen: Mutex::new(None),
        }
    }

    /// P(good) / (P(good) + P(bad)) at the probed position, if it was reached.
    pub(crate) fn score(&self) -> Option<f64> {
        let (good, bad) = (*lock(&self.seen))?;
        if !(good.is_finite() && bad.is_finite()) {
            return None;
        }
        Some(1.0 / (1.0 + ((bad - good) as f64).exp()))
    }
}

impl CustomLogitsProcessor for ScoreProbe {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> candle_core::Result<Tensor> {
        let mut seen = lock(&self.seen);
        if seen.is_none() {
            let row: Vec<f32> = logits.to_vec1()?;
            let at = |id: u32| row.get(id as usize).copied().unwrap_or(f32::NAN);
            *seen = Some((at(self.good), at(self.bad)));
        }
        forced(logits, self.good)
    }
}

/// Keeps the full-vocabulary logits of the first generated position of a one-token request
/// (the engine's next-token logits after the context).
#[derive(Default)]
pub(crate) struct LogitsRecorder {
    seen: Mutex<Option<Vec<f32>>>,
}

impl LogitsRecorder {
    /// The recorded row, if the position was reached.
    pub(crate) fn logits(&self) -> Option<Vec<f32>> {
        lock(&self.seen).clone()
    }
}

impl CustomLogitsProcessor for LogitsRecorder {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> candle_core::Result<Tensor> {
        let mut seen = lock(&self.seen);
        if seen.is_none() {
            *seen = Some(logits.to_vec1()?);
        }
        let first = seen.as_ref().map_or(0, |row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32)
        });
        forced(logits, first)
    }
}

/// A logits row where only `token` is possible.
fn forced(logits: &Tensor, token: u32) -> candle_core::Result<Tensor> {
    let n = logits.dim(0)?;
    let mut row = vec![f32::NEG_INFINITY; n];
    if let Some(x) = row.get_mut(token as usize) {
        *x = 0.0;
    }
    Tensor::from_vec(row, n, &Device::Cpu)?.to_device(logits.device())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pieces: &[&str]) -> Vec<String> {
        pieces.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overshooting_tokens_are_the_ones_running_past_the_delimiter() {
        let vocab = texts(&["a", "\n", "\n\n", "\n\n\n", ".\n\n", "\nb", "b"]);
        let guard = DelimiterGuard::new("\n\n", &vocab);
        let mut after_text: Vec<u32> = guard.overshooting("step").collect();
        after_text.sort();
        assert_eq!(
            after_text,
            vec![3],
            "only \\n\\n\\n overshoots after plain text"
        );
        let mut after_newline: Vec<u32> = guard.overshooting("step\n").collect();
        after_newline.sort();
        // "\n" + "\n\n" = "\n\n\n", "\n" + "\n\n\n", "\n" + "\nb"
        assert_eq!(after_newline, vec![2, 3, 5]);
    }

    #[test]
    fn probe_score_is_the_two_way_softmax() {
        let p = ScoreProbe::new(0, 1);
        assert_eq!(p.score(), None);
        let logits = Tensor::new(&[2.0f32, 0.0, 5.0], &Device::Cpu).unwrap();
        let forced = p.apply(&logits, &[7]).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(forced[0], 0.0);
        assert!(forced[1].is_infinite() && forced[2].is_infinite());
        let s = p.score().unwrap();
        assert!((s - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-9);
    }
}
