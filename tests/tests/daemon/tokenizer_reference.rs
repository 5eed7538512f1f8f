//! The tokenizer the native engine builds from a GGUF file's metadata, id for id against
//! references: the Hugging Face tokenizations llama.cpp ships with its vocabulary test files
//! (`models/ggml-vocab-*.gguf` with `.inp` texts and `.out` ids produced by the `transformers`
//! tokenizer of each family, `tests/test-tokenizer-0.py`), and a real `llama-server` tokenizing
//! GSM8K problems with the default model (SmolLM2, `tokenizer.ggml.pre = smollm`).
//!
//! A wrong split rule fails no other test: prompts just get ids the model never saw in training
//! (before this test, SmolLM2's `"?\n\nIs"` was `? ĊĊ Is` natively and `? Ċ Ċ Is` in
//! llama.cpp and Hugging Face).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ets_engine::GgufText;

use crate::llama_server::{binary, free_port, smol_gguf, LlamaServer};

/// The vocabulary test files of the families the native engine supports: SentencePiece BPE
/// (`llama-spm`, `phi-3`: Llama 2, Mistral) and byte-level BPE of each `tokenizer.ggml.pre`
/// family (before this test, `llama-spm` gave `"Hello world"` six pieces instead of two).
const FAMILIES: &[&str] = &[
    "llama-spm",
    "phi-3",
    "mpt",
    "gpt-2",
    "starcoder",
    "refact",
    "command-r",
    "llama-bpe",
    "qwen2",
];

/// llama.cpp's `models/` folder in the source tree `xtask llama-cpp` unpacked.
fn llama_cpp_models() -> PathBuf {
    // Building (or finding) the server guarantees the source tree is there.
    let bin = binary();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/llama.cpp");
    let found = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (server at {})", root.display(), bin.display()))
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("src-"))
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path().join("llama.cpp/models"))
        .find(|p| p.join("ggml-vocab-gpt-2.gguf").is_file());
    found.unwrap_or_else(|| panic!("no llama.cpp source tree under {}", root.display()))
}

/// The `(text, ids)` pairs of one vocabulary test, split as llama.cpp's test-tokenizer-0 does.
fn reference_pairs(models: &Path, family: &str) -> Vec<(String, Vec<u32>)> {
    let base = models.join(format!("ggml-vocab-{family}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    // A separator at the very end opens no further test (llama.cpp's reader stops there).
    let texts: Vec<&str> = inp.strip_suffix(sep).unwrap_or(&inp).split(sep).collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{family}: .inp and .out disagree");
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

#[test]
fn gguf_tokenizers_match_the_hugging_face_references_id_for_id() {
    let models = llama_cpp_models();
    let mut failures = Vec::new();
    let mut checked = 0;
    for family in FAMILIES {
        let text = GgufText::from_file(&models.join(format!("ggml-vocab-{family}.gguf")))
            .unwrap_or_else(|e| panic!("{family}: {e}"));
        for (input, want) in reference_pairs(&models, family) {
            let got = text.encode(&input, false).unwrap();
            checked += 1;
            if got != want {
                failures.push(format!(
                    "{family}: {input:?}\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
    }
    eprintln!("{checked} reference texts over {} families", FAMILIES.len());
    assert!(checked > 200, "only {checked} texts read");
    assert!(
        failures.is_empty(),
        "{} of {checked} texts tokenize differently:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

/// POST a JSON body to loopback `port`; the response body.
fn post_json(port: u16, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (_, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn the_default_model_tokenizes_like_llama_server() {
    let server = LlamaServer::start(free_port());
    let text = GgufText::from_file(&smol_gguf()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/gsm8k_test.jsonl");
    let mut texts: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .take(40)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}\n\n{}",
                v["question"].as_str().unwrap(),
                v["answer"].as_str().unwrap()
            )
        })
        .collect();
    // Step texts as the policy writes them, and the judge's question after a step.
    texts.push("Step 1: 48 / 2 = 24 clips in May.\n\nStep 2: 48 + 24 = 72.\n\n".into());
    texts.push("Is this step correct?\n\nIs the answer (yes/no):".into());
    let mut differ = Vec::new();
    for t in &texts {
        let answer = post_json(
            server.port,
            "/tokenize",
            &serde_json::json!({ "content": t, "add_special": false }),
        );
        let want: Vec<u32> = answer["tokens"]
            .as_array()
            .unwrap_or_else(|| panic!("no tokens in {answer}"))
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = text.encode(t, false).unwrap();
        if got != want {
            differ.push(format!(
                "{t:?}\n  llama-server {want:?}\n  native       {got:?}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} texts differ:\n{}",
        differ.len(),
        texts.len(),
        differ[..differ.len().min(4)].join("\n")
    );
}
