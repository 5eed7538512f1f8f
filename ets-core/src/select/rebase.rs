//! REBASE allocation: children proportional to `softmax(score / T)`, made exact by a sequential
//! ceiling over the nodes in descending score order.
//!
//! With `e_i = exp(s_i / T)`, `W_rem = width` and `S = Σ e`, each node in order gets
//! `n_i = min(ceil(W_rem · e_i / S), W_rem)`, then `W_rem −= n_i` and `S −= e_i`. The total is
//! exactly `width` whenever there is at least one node.

/// Children per node for REBASE, in the input order. Equal scores keep their input order.
///
/// Scores are shifted by their maximum before exponentiation, which leaves every ratio `e_i / S`
/// unchanged and keeps `exp` finite for any temperature.
pub fn allocate(scores: &[f64], width: usize, temperature: f64) -> Vec<usize> {
    let mut children = vec![0; scores.len()];
    if scores.is_empty() || width == 0 {
        return children;
    }
    let order = descending_order(scores);
    let max = scores[order[0]];
    let weights: Vec<f64> = scores
        .iter()
        .map(|&s| ((s - max) / temperature).exp())
        .collect();
    let mut remaining_width = width;
    let mut remaining_weight: f64 = order.iter().map(|&i| weights[i]).sum();
    for &i in &order {
        if remaining_width == 0 {
            break;
        }
        let share = if remaining_weight > 0.0 {
            remaining_width as f64 * weights[i] / remaining_weight
        } else {
            0.0
        };
        let n = (share.ceil() as usize).min(remaining_width);
        children[i] = n;
        remaining_width -= n;
        remaining_weight -= weights[i];
    }
    children
}

/// Indices sorted by score, highest first; ties keep input order.
pub fn descending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(scores: &[f64], width: usize, expect: Expect) {
        let got = allocate(scores, width, 0.2);
        assert_eq!(
            got.iter().sum::<usize>(),
            width.min(if scores.is_empty() { 0 } else { width })
        );
        expect.assert_eq(&format!("{got:?}"));
    }

    #[test]
    fn issue_vector() {
        check(
            &[0.9, 0.8, 0.8, 0.5, 0.3, 0.1],
            16,
            expect!["[7, 4, 4, 1, 0, 0]"],
        );
    }

    #[test]
    fn allocation_table() {
        check(&[0.9, 0.85, 0.4, 0.6, 0.55], 16, expect!["[8, 5, 0, 2, 1]"]);
        check(&[0.9, 0.85, 0.4, 0.6, 0.55], 8, expect!["[4, 3, 0, 1, 0]"]);
        check(&[0.5], 16, expect!["[16]"]);
        check(&[0.5, 0.5, 0.5, 0.5], 4, expect!["[1, 1, 1, 1]"]);
        check(&[0.5, 0.5, 0.5, 0.5], 3, expect!["[1, 1, 1, 0]"]);
        check(&[0.1, 0.9], 1, expect!["[0, 1]"]);
        check(&[], 16, expect!["[]"]);
    }

    #[test]
    fn extreme_scores_stay_finite() {
        let got = allocate(&[1000.0, -1000.0, 999.9], 10, 0.01);
        assert_eq!(got.iter().sum::<usize>(), 10);
        assert_eq!(got[1], 0);
    }
}
