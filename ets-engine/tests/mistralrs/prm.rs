//! PRM scoring through profiles.

use ets_core::{Reward, ScoreRequest};
use ets_engine::mistralrs::MistralReward;
use ets_engine::Error;
use ets_engine::PrmProfile;

use crate::support::{engine, exclusive, PROBLEM};

#[test]
fn judge_scores_are_probabilities_and_repeatable() {
    let _g = exclusive();
    let mut prm = MistralReward::new(engine(), &PrmProfile::builtin("judge").unwrap()).unwrap();
    let good = ["There are 3 boxes with 4 apples each, so 3 * 4 = 12 apples.\n\n"];
    let bad = [
        good[0],
        "He eats 2 apples, so 12 + 2 = 15 apples are left.\n\n",
    ];
    let ok = [
        good[0],
        "He eats 2 apples, so 12 - 2 = 10 apples are left.\n\n",
    ];
    let reqs = [
        ScoreRequest {
            problem: PROBLEM,
            steps: &good,
        },
        ScoreRequest {
            problem: PROBLEM,
            steps: &bad,
        },
        ScoreRequest {
            problem: PROBLEM,
            steps: &ok,
        },
    ];
    let first = prm.score(&reqs).unwrap();
    let second = prm.score(&reqs).unwrap();
    let reversed = prm.score(&[reqs[2], reqs[1], reqs[0]]).unwrap();
    assert_eq!(first, second, "same trajectories, same scores");
    assert_eq!(
        first,
        reversed.into_iter().rev().collect::<Vec<_>>(),
        "order does not matter"
    );
    for s in &first {
        let s = s.expect("the judge always scores");
        assert!((0.0..=1.0).contains(&s), "{s}");
    }
    assert_eq!(prm.score(&[]).unwrap(), Vec::<Option<f64>>::new());
}

#[test]
fn a_multi_token_tag_is_rejected_with_its_tokenization() {
    let _g = exclusive();
    let e =
        MistralReward::new(engine(), &PrmProfile::builtin("math-shepherd").unwrap()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::NotOneToken { .. }), "{msg}");
    assert!(
        msg.contains("math-shepherd") && msg.contains("\"ки\""),
        "{msg}"
    );
    assert!(msg.contains("splits it into"), "{msg}");

    let custom = PrmProfile::from_toml(
        "name = \"mine\"\nformat = \"judge\"\ngood = \"Yes indeed\"\nbad = \"No\"\njudge_template = \"{step}\"",
        "mine.toml",
    )
    .unwrap();
    let msg = MistralReward::new(engine(), &custom)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("mine") && msg.contains("\"Yes indeed\"") && msg.contains("good label"),
        "{msg}"
    );
}
