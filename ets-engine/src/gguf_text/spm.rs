//! SentencePiece BPE vocabularies (`tokenizer.ggml.model = llama`: Llama 2, Mistral, …) as a
//! byte-fallback BPE.
//!
//! Their GGUF scores are merge priorities, not log-probabilities: SentencePiece BPE repeatedly
//! joins the adjacent pair whose joined piece has the highest score (`"▁Hello"` scores
//! -14,784, `"▁H"` -120). Read as a Unigram model's log-probabilities they make Viterbi prefer
//! many small pieces (`"Hello world"` came out as six pieces instead of `▁Hello ▁world`). The
//! equivalent BPE has one merge per way a piece splits into two pieces of the vocabulary, ranked
//! by the joined piece's score, as Hugging Face's conversion of these tokenizers does.

/// Merges `(left, right)` ranked first to last, from the pieces `tokens[i]` with `mergeable(i)`
/// and their `scores`.
pub(super) fn merges_by_score(
    tokens: &[String],
    scores: &[f32],
    mergeable: impl Fn(usize) -> bool,
) -> Vec<(String, String)> {
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| mergeable(i))
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    // (joined piece, left piece) for every split of a piece into two pieces.
    let mut ranked: Vec<(usize, usize)> = Vec::new();
    for (&piece, &joined) in &ids {
        for (cut, _) in piece.char_indices().skip(1) {
            if let (Some(&left), Some(_)) = (ids.get(&piece[..cut]), ids.get(&piece[cut..])) {
                ranked.push((joined, left));
            }
        }
    }
    let score = |i: usize| scores.get(i).copied().unwrap_or(f32::NEG_INFINITY);
    ranked.sort_by(|a, b| {
        score(b.0)
            .total_cmp(&score(a.0))
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    ranked
        .into_iter()
        .map(|(joined, left)| {
            let left = &tokens[left];
            (left.clone(), tokens[joined][left.len()..].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_joined_pieces_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc", "<0x0A>"]
            .map(String::from)
            .to_vec();
        let scores = [0.0, 0.0, 0.0, -5.0, -1.0, -3.0, 0.0];
        let merges = merges_by_score(&tokens, &scores, |i| i != 6);
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        // bc (-1) before abc (-3: a+bc, ab+c) before ab (-5).
        assert_eq!(
            merges,
            vec![
                pair("b", "c"),
                pair("a", "bc"),
                pair("ab", "c"),
                pair("a", "b")
            ]
        );
    }
}
