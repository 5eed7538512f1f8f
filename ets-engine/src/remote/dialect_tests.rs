//! Parsing the servers' answers: each finish reason, the end-of-sequence token dropped, the
//! delimiter kept in the text, cache counts read, malformed answers refused by name.

use serde_json::json;

use super::*;

#[test]
fn a_llama_cpp_step_that_hit_the_delimiter_keeps_it_in_the_text() {
    let v = json!({
        "content": "2 + 2 = 4.", "tokens": [17, 18, 19, 198],
        "stop_type": "word", "stopping_word": "\n\n",
        "completion_probabilities": [{"prob": 0.5}, {"prob": 1.0}, {"prob": 0.25}, {"prob": 1.0}],
        "timings": {"prompt_n": 3, "cache_n": 40},
    });
    let step = parse_llama_step(&v, "\n\n").unwrap();
    assert_eq!(step.text, "2 + 2 = 4.\n\n");
    assert_eq!(step.ids, vec![17, 18, 19, 198]);
    assert_eq!(step.finish, FinishReason::Delimiter);
    assert!((step.logprobs[0] - 0.5f32.ln()).abs() < 1e-6);
    assert_eq!(
        (step.prompt_computed, step.prompt_reused),
        (Some(3), Some(40))
    );
}

#[test]
fn a_llama_cpp_step_ended_by_eos_drops_the_eos_token() {
    let v = json!({
        "content": "The answer is: 4", "tokens": [5, 6, 7, 2],
        "stop_type": "eos", "completion_probabilities": [
            {"prob": 0.9}, {"prob": 0.9}, {"prob": 0.9}, {"prob": 0.9}],
    });
    let step = parse_llama_step(&v, "\n\n").unwrap();
    assert_eq!(step.ids, vec![5, 6, 7]);
    assert_eq!(step.logprobs.len(), 3);
    assert_eq!(step.finish, FinishReason::EndOfSequence);
    assert_eq!(step.text, "The answer is: 4");
    assert_eq!(step.prompt_reused, None);
}

#[test]
fn a_llama_cpp_step_at_its_token_cap_is_length() {
    let v = json!({"content": "abc", "tokens": [1, 2], "stop_type": "limit"});
    let step = parse_llama_step(&v, "\n\n").unwrap();
    assert_eq!(step.finish, FinishReason::Length);
    assert!(step.logprobs.is_empty());
}

#[test]
fn a_llama_cpp_answer_without_tokens_or_stop_type_is_an_error_naming_the_field() {
    let e = parse_llama_step(&json!({"content": "x", "stop_type": "word"}), "\n\n").unwrap_err();
    assert!(format!("{e:?}").contains("tokens"), "{e:?}");
    let e = parse_llama_step(&json!({"content": "x", "tokens": [1]}), "\n\n").unwrap_err();
    assert!(format!("{e:?}").contains("stop_type"), "{e:?}");
    let e = parse_llama_step(&json!("<html>garbage</html>"), "\n\n").unwrap_err();
    assert!(format!("{e:?}").contains("content"), "{e:?}");
}

#[test]
fn a_vllm_step_reads_token_ids_and_the_stop_reason() {
    let v = json!({"choices": [{"text": "2 + 2 = 4.\n\n", "token_ids": [17, 18, 198],
        "finish_reason": "stop", "stop_reason": "\n\n"}],
        "usage": {"prompt_tokens": 50, "prompt_tokens_details": {"cached_tokens": 32}}});
    let step = parse_vllm_step(&v, "\n\n").unwrap();
    assert_eq!(step.finish, FinishReason::Delimiter);
    assert_eq!(step.ids, vec![17, 18, 198]);
    assert_eq!(step.prompt_reused, Some(32));
    let eos = json!({"choices": [{"text": "4", "token_ids": [19, 2],
        "finish_reason": "stop", "stop_reason": null}]});
    let step = parse_vllm_step(&eos, "\n\n").unwrap();
    assert_eq!(
        (step.ids, step.finish),
        (vec![19], FinishReason::EndOfSequence)
    );
    let old = json!({"choices": [{"text": "4", "finish_reason": "length"}]});
    let e = parse_vllm_step(&old, "\n\n").unwrap_err();
    assert!(format!("{e:?}").contains("0.10.2"), "{e:?}");
}

#[test]
fn vllm_top_logprobs_are_read_by_token_id() {
    let v = json!({"choices": [{"logprobs": {"top_logprobs": [
        {"token_id:9642": -0.1, "token_id:2822": -2.5}]}}]});
    let mut top = parse_vllm_top_logprobs(&v).unwrap();
    top.sort_by_key(|t| t.0);
    assert_eq!(top, vec![(2822, -2.5), (9642, -0.1)]);
    let bad = json!({"choices": [{"logprobs": {"top_logprobs": [{"Yes": -0.1}]}}]});
    assert!(parse_vllm_top_logprobs(&bad).is_err());
}

#[test]
fn dialect_names_parse_and_sglang_is_refused_by_name() {
    assert_eq!(Dialect::parse("llama.cpp").unwrap(), Dialect::LlamaCpp);
    assert_eq!(Dialect::parse("VLLM").unwrap(), Dialect::Vllm);
    assert!(Dialect::parse("sglang").unwrap_err().contains("SGLang"));
    assert!(Dialect::parse("tgi").unwrap_err().contains("tgi"));
}

#[test]
fn embeddings_come_back_in_input_order_at_unit_length_and_bad_answers_are_named() {
    let v = json!({"data": [
        {"index": 1, "embedding": [0.0, 2.0]},
        {"index": 0, "embedding": [3.0, 4.0]}]});
    let e = parse_embeddings(&v, 2).unwrap();
    assert_eq!(e, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
    let cases = [
        (
            json!({"data": [{"index": 0, "embedding": [1.0]}]}),
            2,
            "1 embeddings for 2",
        ),
        (json!({"error": "no"}), 1, "no `data`"),
        (
            json!({"data": [{"index": 5, "embedding": [1.0]}]}),
            1,
            "`index`",
        ),
        (
            json!({"data": [{"index": 0, "embedding": [0.0]}]}),
            1,
            "zero",
        ),
        (
            json!({"data": [{"index": 0, "embedding": ["x"]}]}),
            1,
            "non-number",
        ),
        (
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
            2,
            "share",
        ),
        (
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 1.0]}]}),
            2,
            "dimensions",
        ),
    ];
    for (answer, n, says) in cases {
        let e = format!("{:?}", parse_embeddings(&answer, n).unwrap_err());
        assert!(e.contains(says), "{answer}: {e}");
    }
}
