//! Voting over finished trajectories: group equivalent answers, weigh the groups, pick one.

use serde::{Deserialize, Serialize};

use super::grade::{answers_equal, Dataset, Grader};

/// How a trajectory's per-step PRM scores combine into one score.
///
/// Every rule gives 0 for a trajectory without scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepAggregate {
    /// The last step's score (the PRM's view of the whole solution).
    Last,
    /// The lowest step score (a solution is as good as its worst step).
    Min,
    /// The arithmetic mean of the step scores.
    Mean,
    /// The product of the step scores (the chance that every step is right).
    Product,
}

/// How [`vote`] chooses among finished trajectories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VoteRule {
    /// Sum of the aggregated scores per answer group; the heaviest group wins.
    WeightedMajority(StepAggregate),
    /// Number of trajectories per answer group; the largest group wins.
    Majority,
    /// The single trajectory with the highest aggregated score wins.
    BestOf(StepAggregate),
}

/// One finished trajectory, as [`vote`] sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoteCandidate<'a> {
    /// The extracted final answer; `None` (no answer) makes the candidate abstain.
    pub answer: Option<&'a str>,
    /// The PRM score of each step, in order.
    pub step_scores: &'a [f64],
}

/// The result of [`vote`].
#[derive(Debug, Clone, PartialEq)]
pub struct VoteOutcome {
    /// The winning answer (its group's representative: the first answer seen in the group);
    /// `None` when no candidate had an answer.
    pub answer: Option<String>,
    /// Index into the candidates of a trajectory that gave the winning answer: the group's
    /// first member for the majority rules, the best-scoring trajectory for
    /// [`VoteRule::BestOf`].
    pub winner: Option<usize>,
    /// The winning group's weight (see [`VoteOutcome::groups`]); 0 when there is no winner.
    pub support: f64,
    /// Every answer group in order of first appearance: `(representative, weight, count)`.
    /// The weight is the sum of aggregated scores ([`VoteRule::WeightedMajority`]), the
    /// count ([`VoteRule::Majority`]), or the best aggregated score in the group
    /// ([`VoteRule::BestOf`]).
    pub groups: Vec<(String, f64, usize)>,
}

/// Combines step scores into one. The aggregate of no scores is 0 for every rule.
///
/// ```
/// use ets_core::answer::{aggregate, StepAggregate};
/// let s = [0.9, 0.5, 0.8];
/// assert_eq!(aggregate(&s, StepAggregate::Last), 0.8);
/// assert_eq!(aggregate(&s, StepAggregate::Min), 0.5);
/// assert!((aggregate(&s, StepAggregate::Mean) - 2.2 / 3.0).abs() < 1e-12);
/// assert!((aggregate(&s, StepAggregate::Product) - 0.36).abs() < 1e-12);
/// assert_eq!(aggregate(&[], StepAggregate::Product), 0.0);
/// ```
pub fn aggregate(scores: &[f64], how: StepAggregate) -> f64 {
    let Some(&last) = scores.last() else {
        return 0.0;
    };
    match how {
        StepAggregate::Last => last,
        StepAggregate::Min => scores.iter().copied().fold(f64::INFINITY, f64::min),
        StepAggregate::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
        StepAggregate::Product => scores.iter().product(),
    }
}

/// Chooses a final answer among `candidates` by `rule`.
///
/// Candidates without an answer are ignored. The others are grouped by equivalence under
/// `dataset`'s conventions and `grader` ([`answers_equal`], the candidate's answer as the given one and the
/// group's representative as the reference); a candidate joins the first group it matches,
/// and a group's representative is the first answer seen. The group with the highest weight
/// wins; ties go to the larger count, then to the group that appeared first. A NaN weight
/// loses to every number.
///
/// ```
/// use ets_core::answer::{vote, Dataset, Grader, StepAggregate, VoteCandidate, VoteRule};
/// let c = |answer, step_scores| VoteCandidate { answer: Some(answer), step_scores };
/// let cands = [c("1/2", &[0.9][..]), c("0.5", &[0.8][..]), c("3", &[0.95][..])];
/// let out = vote(&cands, VoteRule::Majority, Dataset::Math, Grader::Lenient);
/// assert_eq!((out.answer.as_deref(), out.winner, out.support), (Some("1/2"), Some(0), 2.0));
/// let out = vote(&cands, VoteRule::BestOf(StepAggregate::Last), Dataset::Math, Grader::Lenient);
/// assert_eq!((out.answer.as_deref(), out.winner), (Some("3"), Some(2)));
/// ```
pub fn vote(
    candidates: &[VoteCandidate<'_>],
    rule: VoteRule,
    dataset: Dataset,
    grader: Grader,
) -> VoteOutcome {
    struct Group<'a> {
        answer: &'a str,
        weight: f64,
        count: usize,
        /// The member that represents the group in [`VoteOutcome::winner`].
        pick: usize,
        pick_score: f64,
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (i, cand) in candidates.iter().enumerate() {
        let Some(answer) = cand.answer else {
            continue;
        };
        let score = match rule {
            VoteRule::WeightedMajority(how) | VoteRule::BestOf(how) => {
                aggregate(cand.step_scores, how)
            }
            VoteRule::Majority => 1.0,
        };
        match groups
            .iter_mut()
            .find(|g| answers_equal(dataset, grader, answer, g.answer))
        {
            Some(g) => {
                g.count += 1;
                match rule {
                    VoteRule::BestOf(_) => {
                        if rank(score) > rank(g.pick_score) {
                            (g.weight, g.pick, g.pick_score) = (score, i, score);
                        }
                    }
                    _ => g.weight += score,
                }
            }
            None => groups.push(Group {
                answer,
                weight: score,
                count: 1,
                pick: i,
                pick_score: score,
            }),
        }
    }
    // `max_by` keeps the last of equal elements, so scan in reverse to favour early groups.
    let best = groups.iter().rev().max_by(|a, b| {
        rank(a.weight)
            .total_cmp(&rank(b.weight))
            .then(a.count.cmp(&b.count))
    });
    VoteOutcome {
        answer: best.map(|g| g.answer.to_string()),
        winner: best.map(|g| g.pick),
        support: best.map_or(0.0, |g| g.weight),
        groups: groups
            .iter()
            .map(|g| (g.answer.to_string(), g.weight, g.count))
            .collect(),
    }
}

/// Whether `remaining` more candidates could change the winner of `outcome` (a vote by `rule`),
/// when each adds at most `max_score` (the top aggregated score, 1 for PRM probabilities) to
/// one group: an existing one or a new one. `false` means it might; `true` that the winner
/// stays whatever they answer. Conservative: ties count as undecided, a NaN weight makes the
/// vote undecided, and [`VoteRule::BestOf`] is decided only when nothing remains.
///
/// ```
/// use ets_core::answer::{vote, vote_is_decided, Dataset, Grader, StepAggregate, VoteCandidate, VoteRule};
/// let c = |answer, step_scores| VoteCandidate { answer: Some(answer), step_scores };
/// let rule = VoteRule::WeightedMajority(StepAggregate::Last);
/// let cands = [c("7", &[0.9][..]), c("7", &[0.8][..]), c("3", &[0.4][..])];
/// let out = vote(&cands, rule, Dataset::Math, Grader::Lenient);
/// // 7 leads 1.7 to 0.4: one more candidate (+1 at most) cannot catch up, two could.
/// assert!(vote_is_decided(&out, rule, 1, 1.0));
/// assert!(!vote_is_decided(&out, rule, 2, 1.0));
/// ```
pub fn vote_is_decided(
    outcome: &VoteOutcome,
    rule: VoteRule,
    remaining: usize,
    max_score: f64,
) -> bool {
    let Some(winner) = outcome.answer.as_deref() else {
        return remaining == 0;
    };
    let gain = match rule {
        VoteRule::Majority => remaining as f64,
        VoteRule::WeightedMajority(_) => remaining as f64 * max_score,
        VoteRule::BestOf(_) => return remaining == 0,
    };
    let mut weights = outcome.groups.iter().map(|g| g.1);
    if !outcome.support.is_finite() || !gain.is_finite() || weights.any(f64::is_nan) {
        return false;
    }
    // The strongest other group, or a new one (weight 0), given every remaining candidate.
    let challenger = outcome
        .groups
        .iter()
        .filter(|g| g.0 != winner)
        .map(|g| g.1)
        .fold(0.0, f64::max);
    outcome.support > challenger + gain
}

/// The winner's share of the vote in `outcome` (a vote by `rule`): its weight over the weight
/// of every group, or for [`VoteRule::BestOf`] (whose weights are maxima, not sums) its share
/// of the candidates with an answer. `None` without a winner or when the weights do not make a
/// share (NaN, negative or all zero).
///
/// ```
/// use ets_core::answer::{vote, vote_share, Dataset, Grader, StepAggregate, VoteCandidate, VoteRule};
/// let c = |answer, step_scores| VoteCandidate { answer: Some(answer), step_scores };
/// let rule = VoteRule::WeightedMajority(StepAggregate::Last);
/// let cands = [c("7", &[0.9][..]), c("7", &[0.7][..]), c("3", &[0.4][..])];
/// let out = vote(&cands, rule, Dataset::Math, Grader::Lenient);
/// assert!((vote_share(&out, rule).unwrap() - 0.8).abs() < 1e-12);
/// ```
pub fn vote_share(outcome: &VoteOutcome, rule: VoteRule) -> Option<f64> {
    let winner = outcome.answer.as_deref()?;
    let (mine, total) = match rule {
        VoteRule::BestOf(_) => {
            let count = |g: &(String, f64, usize)| g.2 as f64;
            let mine = outcome.groups.iter().find(|g| g.0 == winner).map(count)?;
            (mine, outcome.groups.iter().map(count).sum::<f64>())
        }
        VoteRule::Majority | VoteRule::WeightedMajority(_) => {
            if outcome.groups.iter().any(|g| g.1.is_nan() || g.1 < 0.0) {
                return None;
            }
            (
                outcome.support,
                outcome.groups.iter().map(|g| g.1).sum::<f64>(),
            )
        }
    };
    (total > 0.0 && mine.is_finite() && total.is_finite()).then(|| mine / total)
}

/// Orders weights with NaN below every number.
fn rank(x: f64) -> f64 {
    if x.is_nan() {
        f64::NEG_INFINITY
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(answer: &'a str, step_scores: &'a [f64]) -> VoteCandidate<'a> {
        VoteCandidate {
            answer: Some(answer),
            step_scores,
        }
    }

    #[test]
    fn aggregates() {
        let s = [0.5, 0.9, 0.4];
        assert_eq!(aggregate(&s, StepAggregate::Last), 0.4);
        assert_eq!(aggregate(&s, StepAggregate::Min), 0.4);
        assert!((aggregate(&s, StepAggregate::Mean) - 0.6).abs() < 1e-12);
        assert!((aggregate(&s, StepAggregate::Product) - 0.18).abs() < 1e-12);
        for how in [
            StepAggregate::Last,
            StepAggregate::Min,
            StepAggregate::Mean,
            StepAggregate::Product,
        ] {
            assert_eq!(aggregate(&[], how), 0.0);
            assert_eq!(aggregate(&[0.7], how), 0.7);
        }
    }

    #[test]
    fn weighted_and_plain_majority_disagree() {
        let cands = [
            cand("5", &[0.2]),
            cand("5.0", &[0.1]),
            cand("x=5", &[0.2]),
            cand("\\frac{1}{2}", &[0.9]),
            cand("0.5", &[0.8]),
        ];
        let plain = vote(&cands, VoteRule::Majority, Dataset::Math, Grader::Lenient);
        assert_eq!(plain.answer.as_deref(), Some("5"));
        assert_eq!((plain.winner, plain.support), (Some(0), 3.0));
        let weighted = vote(
            &cands,
            VoteRule::WeightedMajority(StepAggregate::Last),
            Dataset::Math,
            Grader::Lenient,
        );
        assert_eq!(weighted.answer.as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(weighted.winner, Some(3));
        assert!((weighted.support - 1.7).abs() < 1e-12);
        assert_eq!(weighted.groups.len(), 2);
        assert_eq!(
            (weighted.groups[0].0.as_str(), weighted.groups[0].2),
            ("5", 3)
        );
        assert!((weighted.groups[0].1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn aggregate_choice_changes_the_winner() {
        // "A": steady; "B": a great finish after a weak step.
        let steady = [0.7, 0.7, 0.7];
        let shaky = [0.95, 0.2, 0.9];
        let cands = [cand("1", &steady), cand("2", &shaky)];
        let winner = |how| {
            vote(
                &cands,
                VoteRule::BestOf(how),
                Dataset::Math,
                Grader::Lenient,
            )
            .answer
            .unwrap()
        };
        assert_eq!(winner(StepAggregate::Last), "2");
        assert_eq!(winner(StepAggregate::Min), "1");
        assert_eq!(winner(StepAggregate::Mean), "1");
        assert_eq!(winner(StepAggregate::Product), "1");
        let weighted = |how| {
            vote(
                &cands,
                VoteRule::WeightedMajority(how),
                Dataset::Math,
                Grader::Lenient,
            )
            .answer
            .unwrap()
        };
        assert_eq!(weighted(StepAggregate::Last), "2");
        assert_eq!(weighted(StepAggregate::Product), "1");
    }

    #[test]
    fn best_of_picks_the_single_best_trajectory() {
        let cands = [
            cand("7", &[0.5]),
            cand("8", &[0.6]),
            cand("7", &[0.9]),
            cand("7", &[0.1]),
        ];
        let out = vote(
            &cands,
            VoteRule::BestOf(StepAggregate::Last),
            Dataset::Math,
            Grader::Lenient,
        );
        assert_eq!((out.answer.as_deref(), out.winner), (Some("7"), Some(2)));
        assert_eq!(out.support, 0.9);
        assert_eq!(
            out.groups,
            vec![("7".to_string(), 0.9, 3), ("8".to_string(), 0.6, 1)]
        );
    }

    #[test]
    fn ties_break_by_count_then_first_appearance() {
        // Equal weight 1.0: the group of two beats the group of one.
        let cands = [cand("1", &[1.0]), cand("2", &[0.5]), cand("2", &[0.5])];
        let out = vote(
            &cands,
            VoteRule::WeightedMajority(StepAggregate::Last),
            Dataset::Math,
            Grader::Lenient,
        );
        assert_eq!((out.answer.as_deref(), out.winner), (Some("2"), Some(1)));
        // Equal weight and count: the earlier group wins, whatever the order of scores.
        let cands = [cand("3", &[0.5]), cand("4", &[0.5])];
        for rule in [
            VoteRule::Majority,
            VoteRule::WeightedMajority(StepAggregate::Mean),
            VoteRule::BestOf(StepAggregate::Min),
        ] {
            let out = vote(&cands, rule, Dataset::Math, Grader::Lenient);
            assert_eq!((out.answer.as_deref(), out.winner), (Some("3"), Some(0)));
        }
        // Best-of: equal scores inside a group keep the earliest member.
        let cands = [cand("9", &[0.4]), cand("9.0", &[0.4])];
        let out = vote(
            &cands,
            VoteRule::BestOf(StepAggregate::Last),
            Dataset::Math,
            Grader::Lenient,
        );
        assert_eq!(out.winner, Some(0));
    }

    #[test]
    fn abstentions_nan_and_empty_input() {
        let none = VoteCandidate {
            answer: None,
            step_scores: &[1.0],
        };
        let out = vote(
            &[none, none],
            VoteRule::Majority,
            Dataset::Gsm8k,
            Grader::Lenient,
        );
        assert_eq!(
            out,
            VoteOutcome {
                answer: None,
                winner: None,
                support: 0.0,
                groups: vec![]
            }
        );
        let cands = [none, cand("1,000", &[f64::NAN]), cand("12", &[])];
        let out = vote(
            &cands,
            VoteRule::WeightedMajority(StepAggregate::Mean),
            Dataset::Gsm8k,
            Grader::Lenient,
        );
        assert_eq!((out.answer.as_deref(), out.winner), (Some("12"), Some(2)));
        assert_eq!(out.support, 0.0);
        let cands = [cand("1,000", &[0.5]), cand("1000.0", &[0.25])];
        let out = vote(
            &cands,
            VoteRule::WeightedMajority(StepAggregate::Last),
            Dataset::Gsm8k,
            Grader::Lenient,
        );
        assert_eq!(out.groups, vec![("1,000".to_string(), 0.75, 2)]);
    }

    #[test]
    fn serde_names_are_kebab_case() {
        let json = serde_json::to_string(&VoteRule::WeightedMajority(StepAggregate::Product));
        assert_eq!(json.unwrap(), r#"{"weighted-majority":"product"}"#);
        assert_eq!(
            serde_json::to_string(&VoteRule::Majority).unwrap(),
            r#""majority""#
        );
        let rule: VoteRule = serde_json::from_str(r#"{"best-of":"min"}"#).unwrap();
        assert_eq!(rule, VoteRule::BestOf(StepAggregate::Min));
        assert_eq!(
            serde_json::to_string(&Dataset::Gsm8k).unwrap(),
            r#""gsm8k""#
        );
    }

    #[test]
    fn a_vote_is_decided_only_when_no_remaining_outcome_can_even_tie_it() {
        // Three for "4", one for "5": two more trajectories for "5" would tie it (3 to 3),
        // and a tie is not a decision (the tie-break could pick either); one more cannot.
        let cands = [
            cand("4", &[1.0]),
            cand("4", &[1.0]),
            cand("4", &[1.0]),
            cand("5", &[1.0]),
        ];
        let outcome = vote(&cands, VoteRule::Majority, Dataset::Math, Grader::Lenient);
        assert!(!vote_is_decided(&outcome, VoteRule::Majority, 2, 1.0));
        assert!(vote_is_decided(&outcome, VoteRule::Majority, 1, 1.0));
        // A new answer starts at 0: three remaining could tie a lone winner's 3 as well.
        let alone = vote(
            &cands[..3],
            VoteRule::Majority,
            Dataset::Math,
            Grader::Lenient,
        );
        assert!(!vote_is_decided(&alone, VoteRule::Majority, 3, 1.0));
        assert!(vote_is_decided(&alone, VoteRule::Majority, 2, 1.0));
        // Weighted: each remaining trajectory adds at most max_score.
        let weighted = VoteRule::WeightedMajority(StepAggregate::Last);
        let outcome = vote(&cands, weighted, Dataset::Math, Grader::Lenient);
        assert!(!vote_is_decided(&outcome, weighted, 4, 0.5));
        assert!(vote_is_decided(&outcome, weighted, 3, 0.5));
    }
}
