//! Diverse verifier tree search (DVTS): `ceil(sqrt(W))` independent subtrees. The root's W
//! children are dealt to the subtrees in turn; each subtree keeps only its best new child per
//! depth and gives it the subtree's whole budget (the number of root children it was dealt). A
//! subtree ends when its best child finishes or it has no open child left; its budget is not
//! handed to other subtrees.

/// Number of subtrees for a width.
pub fn num_subtrees(width: usize) -> usize {
    ((width as f64).sqrt().ceil() as usize).clamp(1, width.max(1))
}

/// The subtree a root child belongs to, by its index among the root's children.
pub fn subtree_of_root_child(child_index: usize, width: usize) -> usize {
    child_index % num_subtrees(width)
}

/// Budget of every subtree: how many root children it was dealt.
pub fn subtree_budgets(width: usize) -> Vec<usize> {
    let k = num_subtrees(width);
    (0..k)
        .map(|s| width / k + usize::from(s < width % k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_cover_the_width() {
        assert_eq!(subtree_budgets(16), vec![4, 4, 4, 4]);
        assert_eq!(subtree_budgets(8), vec![3, 3, 2]);
        assert_eq!(subtree_budgets(1), vec![1]);
        for w in 1..300 {
            let b = subtree_budgets(w);
            assert_eq!(b.iter().sum::<usize>(), w);
            assert_eq!(b.len(), num_subtrees(w));
            assert!((0..w).all(|i| subtree_of_root_child(i, w) < b.len()));
            // Dealing root children in turn gives each subtree exactly its budget.
            for (s, &n) in b.iter().enumerate() {
                assert_eq!(
                    (0..w).filter(|&i| subtree_of_root_child(i, w) == s).count(),
                    n
                );
            }
        }
    }
}
