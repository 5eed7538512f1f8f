//! Beam search selection: the `ceil(sqrt(W_rem))` best nodes each get `ceil(W_rem / keep)`
//! children, handed out in score order and clamped so the total never exceeds `W_rem` (with the
//! paper's square widths 16, 64, 256 the clamp never bites).

/// Children per node for beam search, in the input order. `ids` break score ties (lower first).
pub fn allocate(scores: &[f64], ids: &[u64], width: usize) -> Vec<usize> {
    let mut children = vec![0; scores.len()];
    if scores.is_empty() || width == 0 {
        return children;
    }
    let (keep, each) = shape(width, scores.len());
    let mut remaining = width;
    for i in ranked(scores, ids).into_iter().take(keep) {
        let n = each.min(remaining);
        children[i] = n;
        remaining -= n;
    }
    children
}

/// How many of `candidates` nodes the beam keeps at `width`, and the children each asks for:
/// `⌈√width⌉` (at most the candidates, at least 1) and `⌈width / keep⌉`.
pub(crate) fn shape(width: usize, candidates: usize) -> (usize, usize) {
    let keep = ((width as f64).sqrt().ceil() as usize).clamp(1, candidates.max(1));
    (keep, width.div_ceil(keep))
}

/// Indices by score descending, then id ascending.
pub(crate) fn ranked(scores: &[f64], ids: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(ids[a].cmp(&ids[b])));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_widths_split_evenly() {
        let scores = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8];
        let ids = [0, 1, 2, 3, 4, 5];
        assert_eq!(allocate(&scores, &ids, 16), vec![0, 4, 4, 4, 0, 4]);
        assert_eq!(allocate(&scores, &ids, 4), vec![0, 2, 0, 0, 0, 2]);
    }

    #[test]
    fn other_widths_are_clamped_and_ties_go_to_lower_ids() {
        let scores = [0.5, 0.5, 0.5, 0.5];
        let ids = [7, 3, 9, 1];
        // W = 8: keep 3, each ceil(8/3) = 3, clamped to 3, 3, 2.
        assert_eq!(allocate(&scores, &ids, 8), vec![2, 3, 0, 3]);
        // Fewer nodes than the beam: the ones there share the width.
        assert_eq!(allocate(&[0.2, 0.4], &[0, 1], 16), vec![8, 8]);
    }
}
