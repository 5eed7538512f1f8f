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
use mistralrs::CustomLogitsProcessor;

use crate::sampling::{sample_step, StepRecord, StepSpec};

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
