//! How a byte-level BPE (`tokenizer.ggml.model = gpt2`) GGUF tokenizer splits text into words
//! before merging, chosen by the file's `tokenizer.ggml.pre`.
//!
//! A GGUF file does not carry its tokenizer's split rules, only the name of a known family
//! (`smollm`, `llama-bpe`, `qwen2`, …); the rules per name are those of each family's Hugging
//! Face `tokenizer.json`, as llama.cpp's `llama-vocab.cpp` also records them. Getting them wrong
//! does not fail loudly: it tokenizes the same text into other ids than the model was trained
//! on (SmolLM2's `"?\n\nIs"` became `? ĊĊ Is` instead of `? Ċ Ċ Is`). The families below are
//! checked id for id against the Hugging Face reference tokenizations llama.cpp ships with its
//! vocabulary test files (`tests/tests/daemon/tokenizer_reference.rs`).
//!
//! An unknown name is an error naming it (as in llama.cpp), never a guess; a missing one is the
//! GPT-2 rule with a warning, as llama.cpp's "default" is.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::tokenizer::normalizer::SplitDelimiterBehavior;

/// Llama 3's split (`tokenizer.json`'s, with the case-insensitive contractions spelled out):
/// up to three digits per word, punctuation keeps the line breaks after it.
const LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Qwen2's split: Llama 3's with one digit per word.
const QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// A BPE split family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpeSplit {
    /// GPT-2's byte-level regex (`ByteLevel` with `use_regex`): `gpt-2`, `mpt`, `olmo`, `phi-2`.
    Gpt2,
    /// Every digit its own word, then GPT-2's regex (`Digits` + `ByteLevel`): `smollm`,
    /// `starcoder`, `refact`, `command-r` and the others llama.cpp groups with them.
    DigitsThenGpt2,
    /// Llama 3's regex, whole-word vocabulary hits taken before merges (`ignore_merges`).
    Llama3,
    /// Qwen2's regex.
    Qwen2,
}

/// Names of `tokenizer.ggml.pre` per family.
const NAMES: &[(BpeSplit, &[&str])] = &[
    (
        BpeSplit::Gpt2,
        &["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "default"],
    ),
    (
        BpeSplit::DigitsThenGpt2,
        &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
    ),
    (
        BpeSplit::Llama3,
        &["llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"],
    ),
    (BpeSplit::Qwen2, &["qwen2", "deepseek-r1-qwen", "stablelm2"]),
];

impl BpeSplit {
    /// The family of a `tokenizer.ggml.pre` value (`None`: the key is missing).
    pub fn for_pre(pre: Option<&str>) -> Result<Self, String> {
        let Some(pre) = pre else {
            tracing::warn!("GGUF has no tokenizer.ggml.pre; splitting text as GPT-2 does");
            return Ok(BpeSplit::Gpt2);
        };
        NAMES
            .iter()
            .find(|(_, names)| names.contains(&pre))
            .map(|(family, _)| *family)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().flat_map(|(_, n)| n.iter().copied()).collect();
                format!(
                    "tokenizer.ggml.pre {pre:?} is not a pre-tokenizer this engine knows ({}); \
                     run the model on --engine mistralrs or a remote engine",
                    known.join(", ")
                )
            })
    }

    /// Whether a word found whole in the vocabulary is taken as one token before any merge.
    pub fn ignore_merges(self) -> bool {
        self == BpeSplit::Llama3
    }

    /// The pre-tokenizer: the split, then the byte-to-character mapping of byte-level BPE.
    pub fn pre_tokenizer(self) -> Result<PreTokenizerWrapper, String> {
        let regex = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
            let split = Split::new(
                SplitPattern::Regex(pattern.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| e.to_string())?;
            Ok(PreTokenizerWrapper::Split(split))
        };
        // (add_prefix_space, trim_offsets, use_regex): with use_regex, ByteLevel splits with
        // GPT-2's regex itself.
        let gpt2 = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, true));
        let bytes = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false));
        let steps = match self {
            BpeSplit::Gpt2 => vec![gpt2],
            BpeSplit::DigitsThenGpt2 => vec![PreTokenizerWrapper::Digits(Digits::new(true)), gpt2],
            BpeSplit::Llama3 => vec![regex(LLAMA3)?, bytes],
            BpeSplit::Qwen2 => vec![regex(QWEN2)?, bytes],
        };
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_one_family_each_and_unknown_names_are_refused_by_name() {
        let mut all: Vec<&str> = NAMES.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "a name in two families");
        assert_eq!(
            BpeSplit::for_pre(Some("smollm")),
            Ok(BpeSplit::DigitsThenGpt2)
        );
        assert_eq!(BpeSplit::for_pre(Some("llama-bpe")), Ok(BpeSplit::Llama3));
        assert_eq!(BpeSplit::for_pre(None), Ok(BpeSplit::Gpt2));
        let e = BpeSplit::for_pre(Some("tekken")).unwrap_err();
        assert!(
            e.contains("\"tekken\"") && e.contains("tokenizer.ggml.pre"),
            "{e}"
        );
    }

    #[test]
    fn every_family_builds_its_pre_tokenizer() {
        for (family, _) in NAMES {
            family.pre_tokenizer().unwrap();
        }
    }
}
