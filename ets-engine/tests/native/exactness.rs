//! The native forward pass against mistral.rs and against itself from scratch.

use ets_engine::native::{KvSegment, Logits, NativeEngine, PendingKv, SeqInput};

use crate::support::{
    exclusive, gsm8k_questions, log_softmax, max_abs_diff, mistral, native, native_f32,
};

/// Prompts of the mistral.rs comparison: 20 of 20, 40, ..., 400 tokens.
const PROMPTS: usize = 20;

/// A long token stream of chat-formatted GSM8K questions.
fn token_stream() -> Vec<u32> {
    let engine = native();
    let mut ids = Vec::new();
    for q in gsm8k_questions(40) {
        ids.extend(
            engine
                .text()
                .encode(&format!("Question: {q}\nAnswer:"), true)
                .unwrap(),
        );
        if ids.len() > 2500 {
            break;
        }
    }
    ids
}

#[test]
fn next_token_logprobs_match_mistral_rs_with_f32_weights() {
    let _g = exclusive();
    let native = native_f32();
    let mistral = mistral();
    let stream = token_stream();
    let (mut worst, mut worst_likely) = (0f64, 0f64);
    for i in 0..PROMPTS {
        // Different prompts: each starts at its own offset of the stream.
        let len = 20 * (i + 1);
        let prompt = &stream[i * 100..i * 100 + len];
        let ours = log_softmax(native.logits_from_scratch(prompt).unwrap().last().unwrap());
        let theirs = log_softmax(&mistral.next_token_logits(prompt).unwrap());
        let diff = max_abs_diff(&ours, &theirs);
        // Over the tokens either engine gives at least 1e-4.
        let likely = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a.max(**b) > (1e-4f64).ln())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("prompt of {len} tokens: max |Δ log p| = {diff:.2e} (p > 1e-4: {likely:.2e})");
        worst = worst.max(diff);
        worst_likely = worst_likely.max(likely);
    }
    eprintln!("worst over {PROMPTS} prompts: {worst:.2e} (p > 1e-4: {worst_likely:.2e})");
    // mistral.rs 0.8.1 runs a GGUF's Q/K/V and attention in bf16 on the CPU (its GGUF builder
    // always picks the automatic dtype, bf16 there), so 1e-2 is out of reach: measured 2.0e-2
    // at worst over these 20 prompts, likely tokens included (see the README).
    assert!(worst < 3e-2, "max |Δ log p| = {worst}");
}

/// Everything of a decode test: a shared prompt node, and two branches.
struct Branches {
    prompt: Vec<u32>,
    a: Vec<u32>,
    b: Vec<u32>,
}

fn branches() -> Branches {
    let text = native().text().clone();
    let prompt = text
        .encode(
            "Question: Tom has 3 boxes with 4 apples in each box. How many apples?\nAnswer:",
            true,
        )
        .unwrap();
    let a = text
        .encode(
            " There are 3 boxes, and each box holds 4 apples, so 12.",
            true,
        )
        .unwrap();
    let b = text
        .encode(" Multiply: 3 * 4 = 12 apples in total.\n\nThe answer", true)
        .unwrap();
    Branches { prompt, a, b }
}

#[test]
fn branches_decoded_through_shared_segments_match_prefill_from_scratch_within_1e_3() {
    let _g = exclusive();
    for engine in [native(), native_f32()] {
        branch_check(&engine);
    }
}

fn branch_check(engine: &NativeEngine) {
    let Branches { prompt, a, b } = branches();
    // The prompt becomes one segment; the first half of branch a becomes a second one.
    let mut p = engine.pending();
    let seq = SeqInput {
        context: vec![],
        tokens: &prompt,
        logits: Logits::None,
        hidden_mean: false,
    };
    engine.forward(&[seq], &mut [&mut p]).unwrap();
    let prompt_seg: KvSegment = p.to_segment().unwrap();
    let split = a.len() / 2;
    let mut a_head = engine.pending();
    let seq = SeqInput {
        context: vec![(&prompt_seg, prompt_seg.len())],
        tokens: &a[..split],
        logits: Logits::None,
        hidden_mean: false,
    };
    engine.forward(&[seq], &mut [&mut a_head]).unwrap();
    let a_seg = a_head.to_segment().unwrap();
    // Decode the rest of a and all of b one token per step, in one batch.
    let mut pa: PendingKv = engine.pending();
    let mut pb: PendingKv = engine.pending();
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let steps = (a.len() - split).max(b.len());
    for t in 0..steps {
        let mut seqs = Vec::new();
        let mut which = Vec::new();
        let a_tok = a.get(split + t).map(std::slice::from_ref);
        let b_tok = b.get(t).map(std::slice::from_ref);
        if let Some(tok) = a_tok {
            seqs.push(SeqInput {
                context: vec![(&prompt_seg, prompt_seg.len()), (&a_seg, a_seg.len())],
                tokens: tok,
                logits: Logits::Last,
                hidden_mean: false,
            });
            which.push('a');
        }
        if let Some(tok) = b_tok {
            seqs.push(SeqInput {
                context: vec![(&prompt_seg, prompt_seg.len())],
                tokens: tok,
                logits: Logits::Last,
                hidden_mean: false,
            });
            which.push('b');
        }
        let mut refs: Vec<&mut PendingKv> = Vec::new();
        if a_tok.is_some() {
            refs.push(&mut pa);
        }
        if b_tok.is_some() {
            refs.push(&mut pb);
        }
        let out = engine.forward(&seqs, &mut refs).unwrap();
        for (w, o) in which.iter().zip(out) {
            let row = o.logits.into_iter().next().unwrap();
            if *w == 'a' {
                got_a.push(row)
            } else {
                got_b.push(row)
            }
        }
    }
    let mut worst = 0f64;
    for (branch, got, skip) in [(&a, &got_a, split), (&b, &got_b, 0)] {
        let full: Vec<u32> = prompt.iter().chain(branch.iter()).copied().collect();
        let scratch = engine.logits_from_scratch(&full).unwrap();
        let want = &scratch[prompt.len() + skip..];
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(got) {
            let w: Vec<f64> = w.iter().map(|&x| x as f64).collect();
            let g: Vec<f64> = g.iter().map(|&x| x as f64).collect();
            worst = worst.max(max_abs_diff(&w, &g));
        }
    }
    eprintln!(
        "{:?}: shared-segment decode vs scratch prefill: max |Δ logit| = {worst:.2e}",
        engine.mode()
    );
    assert!(worst < 1e-3, "max |Δ logit| = {worst}");
    // Re-reading a segment's last token gives the logits after it, as the policy relies on.
    let mut scratchpad = engine.pending();
    let seq = SeqInput {
        context: vec![(&prompt_seg, prompt_seg.len() - 1)],
        tokens: &prompt[prompt.len() - 1..],
        logits: Logits::Last,
        hidden_mean: false,
    };
    let reread = engine.forward(&[seq], &mut [&mut scratchpad]).unwrap();
    let scratch = engine.logits_from_scratch(&prompt).unwrap();
    let diff = max_abs_diff(
        &reread[0].logits[0]
            .iter()
            .map(|&x| x as f64)
            .collect::<Vec<_>>(),
        &scratch
            .last()
            .unwrap()
            .iter()
            .map(|&x| x as f64)
            .collect::<Vec<_>>(),
    );
    assert!(diff < 1e-3, "re-read: {diff}");
}

#[test]
fn segment_bytes_are_exactly_their_tokens() {
    let _g = exclusive();
    let engine = native();
    let tokens = &branches().prompt;
    let mut p = engine.pending();
    let seq = SeqInput {
        context: vec![],
        tokens,
        logits: Logits::None,
        hidden_mean: true,
    };
    let out = engine.forward(&[seq], &mut [&mut p]).unwrap();
    assert_eq!(
        out[0].hidden_mean.as_ref().map(Vec::len),
        Some(engine.config().hidden)
    );
    assert!(out[0].logits.is_empty());
    let seg = p.to_segment().unwrap();
    assert_eq!(seg.len(), tokens.len());
    assert_eq!(
        seg.bytes(),
        tokens.len() as u64 * engine.config().kv_bytes_per_token()
    );
    let part = p.segment(2, 5).unwrap();
    assert_eq!(part.bytes(), 3 * engine.config().kv_bytes_per_token());
}
