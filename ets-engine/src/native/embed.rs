//! Step embeddings from the policy itself: the mean of the final (normed) hidden state over a
//! step's tokens, read while the native policy decodes the step in its context, so ETS can
//! cluster steps without a separate embedding model.
//!
//! [`StepEmbeddings`] is the hand-off: a [`NativePolicy`](super::NativePolicy) built with it
//! records each finished step's vector under the step's text, and [`PolicyStepEmbedder`]
//! (ets-core's `Embedder`) answers from it. A text it has no vector for (a step the policy did
//! not generate) is run through the engine on its own, without context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ets_core::{BackendError, Embedder};

use super::engine::{Logits, NativeEngine, SeqInput};
use crate::error::Error;

/// Unit-length step vectors by step text, shared by a policy and its embedder.
#[derive(Debug, Clone, Default)]
pub struct StepEmbeddings(Arc<Mutex<HashMap<String, Vec<f32>>>>);

impl StepEmbeddings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<f32>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the vector of a step (normalised here).
    pub(crate) fn record(&self, text: &str, mut vector: Vec<f32>) {
        normalize(&mut vector);
        self.lock().insert(text.to_owned(), vector);
    }

    /// The vector recorded for `text`.
    pub fn get(&self, text: &str) -> Option<Vec<f32>> {
        self.lock().get(text).cloned()
    }

    /// Steps recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// ets-core's [`Embedder`] over the vectors a native policy recorded.
#[derive(Debug)]
pub struct PolicyStepEmbedder {
    engine: Arc<NativeEngine>,
    known: StepEmbeddings,
    computed_alone: u64,
}

impl PolicyStepEmbedder {
    /// An embedder answering from `known`, computing missing texts on `engine`.
    pub fn new(engine: Arc<NativeEngine>, known: StepEmbeddings) -> Self {
        Self {
            engine,
            known,
            computed_alone: 0,
        }
    }

    /// Texts it had no recorded vector for and ran on their own.
    pub fn computed_alone(&self) -> u64 {
        self.computed_alone
    }

    /// [`Embedder::embed`] with this crate's error type.
    pub fn embed_steps(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out: Vec<Option<Vec<f32>>> = texts.iter().map(|t| self.known.get(t)).collect();
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let tokens = missing
                .iter()
                .map(|&i| self.engine.text().encode(texts[i], false))
                .collect::<Result<Vec<_>, _>>()?;
            let seqs: Vec<SeqInput<'_>> = tokens
                .iter()
                .map(|t| SeqInput {
                    context: Vec::new(),
                    tokens: t,
                    logits: Logits::None,
                    hidden_mean: true,
                })
                .collect();
            let mut pendings: Vec<_> = seqs.iter().map(|_| self.engine.pending()).collect();
            let mut refs: Vec<_> = pendings.iter_mut().collect();
            let outputs = self.engine.forward(&seqs, &mut refs)?;
            let width = self.engine.config().hidden;
            for (&i, output) in missing.iter().zip(outputs) {
                // An empty text has no hidden state; all empty texts get one unit vector.
                let mut v = output.hidden_mean.unwrap_or_else(|| {
                    let mut e = vec![0.0; width];
                    e[0] = 1.0;
                    e
                });
                normalize(&mut v);
                out[i] = Some(v);
                self.computed_alone += 1;
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or_default()).collect())
    }
}

impl Embedder for PolicyStepEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(self.embed_steps(texts)?)
    }
}
