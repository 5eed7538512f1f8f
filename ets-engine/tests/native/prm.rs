//! The native PRM: same inputs as the mistral.rs PRM, incremental scores equal to scores from
//! scratch, and each new step costs its own tokens plus the profile's suffix.

use ets_core::{Reward, ScoreRequest};
use ets_engine::mistralrs::MistralReward;
use ets_engine::native::NativeReward;
use ets_engine::PrmProfile;

use crate::support::{exclusive, mistral, native, native_f32, PROBLEM};

const STEPS: [&str; 5] = [
    "There are 3 boxes with 4 apples each.\n\n",
    "So there are 3 * 4 = 12 apples in total.\n\n",
    "Tom eats 2 apples.\n\n",
    "That leaves 12 - 2 = 10 apples.\n\n",
    "The answer is: 10\n\n",
];

fn judge() -> PrmProfile {
    PrmProfile::builtin("judge").unwrap()
}

#[test]
fn inputs_match_the_mistral_rs_prm_and_f32_scores_agree_within_1e_2() {
    let _g = exclusive();
    let ours = NativeReward::new(native_f32(), &judge(), 1 << 30).unwrap();
    let mut theirs = MistralReward::new(mistral(), &judge()).unwrap();
    for depth in [1, 3] {
        let steps = &STEPS[..depth];
        assert_eq!(
            ours.score_input(PROBLEM, steps).unwrap(),
            theirs.score_input(PROBLEM, steps).unwrap(),
            "depth {depth}"
        );
        let a = ours.score_from_scratch(PROBLEM, steps).unwrap().unwrap();
        let b = theirs
            .score(&[ScoreRequest {
                problem: PROBLEM,
                steps,
            }])
            .unwrap()[0]
            .unwrap();
        eprintln!("depth {depth}: native {a:.5}, mistral.rs {b:.5}");
        assert!((a - b).abs() < 1e-2, "{a} vs {b}");
    }
}

#[test]
fn incremental_scores_equal_scores_from_scratch_and_cost_one_step_each() {
    let _g = exclusive();
    let engine = native();
    // No warm header from other tests' jobs: depth 1 prefills it.
    engine.set_prompt_cache_bytes(0);
    engine.set_prompt_cache_bytes(ets_engine::native::DEFAULT_PROMPT_CACHE_BYTES);
    let mut prm = NativeReward::new(engine.clone(), &judge(), 1 << 30).unwrap();
    let mut worst = 0f64;
    let mut last = None;
    for depth in 1..=STEPS.len() {
        let steps = &STEPS[..depth];
        let layout = prm.layout(PROBLEM, steps).unwrap();
        let before = engine.tokens_processed();
        let got = prm
            .score(&[ScoreRequest {
                problem: PROBLEM,
                steps,
            }])
            .unwrap()[0]
            .unwrap();
        let ran = engine.tokens_processed() - before;
        let want = prm.score_from_scratch(PROBLEM, steps).unwrap().unwrap();
        worst = worst.max((got - want).abs());
        if depth == 3 {
            last = Some(got);
        }
        // Depth 1 prefills the header; later depths only the previous step's kept span
        // (cached from here on) and the suffix.
        let kept_before = if depth == 1 {
            0
        } else {
            layout.cuts[layout.cuts.len() - 2]
        };
        assert_eq!(
            ran as usize,
            layout.ids.len() - kept_before,
            "depth {depth}"
        );
        eprintln!(
            "depth {depth}: {} tokens in the trajectory, {ran} run; score {got:.6} (scratch {want:.6})",
            layout.ids.len()
        );
    }
    assert!(worst < 1e-3, "incremental vs scratch: {worst}");
    // Siblings share their parent's spans: two new steps at depth 3 prefill the depth-2 step
    // once. The header (first kept span: the judge's preamble and the problem) is warm: the
    // first PRM on this engine prefilled it, and this one takes its K/V.
    let mut fresh = NativeReward::new(engine.clone(), &judge(), 1 << 30).unwrap();
    let a = [STEPS[0], STEPS[1], STEPS[2]];
    let b = [STEPS[0], STEPS[1], "Tom eats 3 apples.\n\n"];
    let before = engine.tokens_processed();
    let scores = fresh
        .score(&[
            ScoreRequest {
                problem: PROBLEM,
                steps: &a,
            },
            ScoreRequest {
                problem: PROBLEM,
                steps: &b,
            },
        ])
        .unwrap();
    let ran = (engine.tokens_processed() - before) as usize;
    let (la, lb) = (
        fresh.layout(PROBLEM, &a).unwrap(),
        fresh.layout(PROBLEM, &b).unwrap(),
    );
    let kept = *la.cuts.last().unwrap();
    assert_eq!(la.cuts, lb.cuts);
    let header = la.cuts[0];
    assert_eq!(
        ran,
        (kept - header) + (la.ids.len() - kept) + (lb.ids.len() - kept)
    );
    assert!(scores.iter().all(|s| s.is_some()));
    assert_eq!(
        scores[0], last,
        "the same trajectory scores the same from a warm header"
    );
    let tree = fresh.tree();
    let payload: u64 = tree
        .nodes()
        .filter(|&id| id != tree.root())
        .map(|id| tree.payload(id).unwrap().bytes())
        .sum();
    assert_eq!(fresh.kv_stats().resident_bytes, payload);
    assert_eq!(fresh.kv_stats().resident_tokens as usize, kept);
}

#[test]
fn another_problem_computes_its_header_on_the_judges_shared_preamble() {
    let _g = exclusive();
    let engine = native();
    let other = "A farmer has 12 cows and buys 7 more. How many cows does the farmer have now?";
    let steps = ["The farmer buys 7 more cows.\n\n"];
    let score = |problem: &str| {
        let mut prm = NativeReward::new(engine.clone(), &judge(), 1 << 30).unwrap();
        let before = engine.tokens_processed();
        let got = prm
            .score(&[ScoreRequest {
                problem,
                steps: &steps,
            }])
            .unwrap()[0];
        let layout = prm.layout(problem, &steps).unwrap();
        (got, engine.tokens_processed() - before, layout)
    };
    engine.set_prompt_cache_bytes(0);
    let (cold, cold_ran, other_layout) = score(other);
    engine.set_prompt_cache_bytes(ets_engine::native::DEFAULT_PROMPT_CACHE_BYTES);
    let (_, _, first_layout) = score(PROBLEM);
    let start = engine.prompt_cache_stats();
    let (warm, warm_ran, _) = score(other);
    // The two headers (first kept spans) share the judge's preamble up to the problem.
    let (a, b) = (
        &first_layout.ids[..first_layout.cuts[0]],
        &other_layout.ids[..other_layout.cuts[0]],
    );
    let shared = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    assert!(
        shared >= ets_engine::native::MIN_SHARED_TOKENS,
        "{shared} tokens shared"
    );
    assert_eq!(
        cold_ran - warm_ran,
        shared as u64,
        "the shared preamble is not run again"
    );
    assert_eq!(
        engine.prompt_cache_stats().shared_hits - start.shared_hits,
        1
    );
    assert_eq!(warm, cold, "the same score from a shared preamble");
}

#[test]
fn retain_keeps_only_what_the_next_scores_extend() {
    let _g = exclusive();
    let engine = native();
    let mut prm = NativeReward::new(engine.clone(), &judge(), 1 << 30).unwrap();
    let kept = [STEPS[0], STEPS[1], STEPS[2]];
    let pruned = [
        STEPS[0],
        "So there are 3 + 4 = 7 apples in total.\n\n",
        STEPS[2],
    ];
    let request = |steps| ScoreRequest {
        problem: PROBLEM,
        steps,
    };
    prm.score(&[request(&kept), request(&pruned)]).unwrap();
    let before = prm.kv_stats();
    prm.retain(&[request(&kept)]).unwrap();
    let after = prm.kv_stats();
    assert!(
        after.resident_tokens < before.resident_tokens,
        "{before:?} → {after:?}"
    );
    assert_eq!(
        after.resident_tokens, after.live_tokens,
        "only held chains stay"
    );
    assert_eq!(
        after.live_tokens as usize,
        *prm.layout(PROBLEM, &kept).unwrap().cuts.last().unwrap(),
        "the kept trajectory's spans stay"
    );
    // Its child still costs only the newest kept span and the suffix.
    let child = [STEPS[0], STEPS[1], STEPS[2], STEPS[3]];
    let layout = prm.layout(PROBLEM, &child).unwrap();
    let start = engine.tokens_processed();
    prm.score(&[request(&child)]).unwrap();
    let ran = (engine.tokens_processed() - start) as usize;
    assert_eq!(ran, layout.ids.len() - layout.cuts[layout.cuts.len() - 2]);
}
