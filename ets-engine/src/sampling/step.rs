//! One child step's sampling rule, shared by every engine that samples its own tokens (native
//! and the mistral.rs controller): the delimiter guard, the step record and `sample_step`.
//!
//! A child stops exactly at the delimiter: tokens that would complete the delimiter and then
//! carry more text are masked before the draw, so a step's text ends with the delimiter and
//! holds it nowhere else.

use std::sync::Arc;

use ets_core::{FinishReason, SamplingConfig};
use tokenizers::Tokenizer;

use super::draw::{self, Draw};

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
    pub(crate) fn overshooting<'a>(&'a self, text: &'a str) -> impl Iterator<Item = u32> + 'a {
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
    #[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
    pub error: Option<String>,
}

/// Everything a [`StepController`] needs that does not change between children.
pub(crate) struct StepSpec {
    /// Length of the context the request carries.
    #[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
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
    let u = draw::uniform(stream, position);
    let Some(Draw { token, logprob }) = draw::draw(&row, &spec.sampling, u) else {
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
}
