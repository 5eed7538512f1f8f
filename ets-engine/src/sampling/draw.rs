//! Token sampling from one row of logits: temperature, top-k, top-p, driven by a uniform number
//! that the caller derives from a seed, so a draw is a pure function of (logits, config, seed).

use ets_core::SamplingConfig;

/// One sampled token and its natural-log probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Draw {
    /// The token id.
    pub token: u32,
    /// ln p(token): under the tempered, filtered distribution when sampling; under the model's
    /// own distribution (temperature 1, nothing filtered) when greedy.
    pub logprob: f32,
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The random stream of child `child` of a request with `seed`.
pub(crate) fn child_stream(seed: u64, child: usize) -> u64 {
    mix(seed ^ mix((child as u64).wrapping_add(0x2545_f491_4f6c_dd1d)))
}

/// The uniform number in [0, 1) that draws the token at `position` of a stream.
pub(crate) fn uniform(stream: u64, position: usize) -> f64 {
    let bits = mix(stream ^ mix(position as u64 ^ 0xd1b5_4a32_d192_ed03));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether this configuration always takes the most likely token.
pub(crate) fn is_greedy(config: &SamplingConfig) -> bool {
    config.temperature <= 0.0 || config.top_k == Some(1)
}

/// Draws a token from `logits` (tokens at `-inf` are never drawn). `None` when every logit is
/// `-inf` or NaN.
pub(crate) fn draw(logits: &[f32], config: &SamplingConfig, u: f64) -> Option<Draw> {
    if is_greedy(config) {
        return greedy(logits);
    }
    let inv_t = 1.0 / config.temperature;
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    // Unnormalised probabilities of the live tokens.
    let mut live: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, (((l - max) as f64) * inv_t).exp()))
        .collect();
    let top_k = config.top_k.filter(|&k| k > 0 && k < live.len());
    let filtered = top_k.is_some() || config.top_p < 1.0;
    if filtered {
        // Most likely first; ties by id so the order is a function of the logits alone.
        let by_prob = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = top_k {
            live.select_nth_unstable_by(k - 1, by_prob);
            live.truncate(k);
        }
        live.sort_unstable_by(by_prob);
        if config.top_p < 1.0 {
            let total: f64 = live.iter().map(|(_, p)| p).sum();
            let mut mass = 0.0;
            let keep = live
                .iter()
                .position(|(_, p)| {
                    mass += p / total;
                    mass >= config.top_p
                })
                .map_or(live.len(), |i| i + 1);
            live.truncate(keep);
        }
    }
    let total: f64 = live.iter().map(|(_, p)| p).sum();
    let target = u.clamp(0.0, 1.0) * total;
    let mut acc = 0.0;
    let mut chosen = live[live.len() - 1];
    for &(id, p) in &live {
        acc += p;
        if acc > target {
            chosen = (id, p);
            break;
        }
    }
    Some(Draw {
        token: chosen.0,
        logprob: (chosen.1 / total).ln() as f32,
    })
}

fn greedy(logits: &[f32]) -> Option<Draw> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_finite() && best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    let (token, top) = best?;
    let log_z: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| ((l - top) as f64).exp())
        .sum::<f64>()
        .ln();
    Some(Draw {
        token: token as u32,
        logprob: (-log_z) as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(temperature: f64, top_p: f64, top_k: Option<usize>) -> SamplingConfig {
        SamplingConfig {
            temperature,
            top_p,
            top_k,
        }
    }

    #[test]
    fn greedy_takes_the_argmax_and_reports_the_model_logprob() {
        let d = draw(&[0.0, 2.0, 1.0], &config(0.0, 1.0, None), 0.9).unwrap();
        assert_eq!(d.token, 1);
        let z = (0f64.exp() + 2f64.exp() + 1f64.exp()).ln();
        assert!((d.logprob as f64 - (2.0 - z)).abs() < 1e-6);
        assert_eq!(
            draw(&[3.0, 1.0], &config(1.0, 1.0, Some(1)), 0.99)
                .unwrap()
                .token,
            0
        );
    }

    #[test]
    fn masked_tokens_are_never_drawn() {
        let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
        for i in 0..100 {
            let d = draw(&logits, &config(1.0, 1.0, None), uniform(7, i)).unwrap();
            assert!(d.token == 1 || d.token == 3);
            assert!((d.logprob - 0.5f32.ln()).abs() < 1e-6);
        }
        assert_eq!(
            draw(&[f32::NEG_INFINITY; 3], &config(1.0, 1.0, None), 0.5),
            None
        );
    }

    #[test]
    fn draws_follow_the_distribution() {
        // p = [0.1, 0.2, 0.7]
        let logits = [0.1f32.ln(), 0.2f32.ln(), 0.7f32.ln()];
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            counts[draw(&logits, &config(1.0, 1.0, None), uniform(3, i))
                .unwrap()
                .token as usize] += 1;
        }
        let freq: Vec<f64> = counts.iter().map(|&c| c as f64 / 20_000.0).collect();
        assert!((freq[0] - 0.1).abs() < 0.015, "{freq:?}");
        assert!((freq[2] - 0.7).abs() < 0.015, "{freq:?}");
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [0.1f32.ln(), 0.2f32.ln(), 0.7f32.ln()];
        for i in 0..200 {
            let u = uniform(11, i);
            let k = draw(&logits, &config(1.0, 1.0, Some(2)), u).unwrap();
            assert_ne!(k.token, 0);
            let p = draw(&logits, &config(1.0, 0.6, None), u).unwrap();
            assert_eq!(p.token, 2);
            assert!(p.logprob.abs() < 1e-6, "only one token left: ln 1 = 0");
        }
    }

    #[test]
    fn streams_and_positions_give_different_uniforms() {
        assert_ne!(child_stream(1, 0), child_stream(1, 1));
        assert_ne!(child_stream(1, 0), child_stream(2, 0));
        assert_ne!(uniform(5, 0), uniform(5, 1));
        assert!((0.0..1.0).contains(&uniform(u64::MAX, usize::MAX)));
    }
}
