//! Text side of a GGUF model: its tokenizer, chat template and end-of-sequence ids, read from
//! the file's `tokenizer.*` metadata.
//!
//! The tokenizer follows the file's own rules: byte-level BPE for `gpt2` with the split of its
//! `tokenizer.ggml.pre` family (`bpe_split.rs`), SentencePiece BPE with byte fallback for
//! `llama` (`spm.rs`), every token whose type is not "normal" added as a special token; both
//! checked id for id against Hugging Face's tokenizations (`tests/tests/daemon/
//! tokenizer_reference.rs`).
//! mistral.rs 0.8.1 gives every `gpt2` file Qwen2's split instead, which tokenizes SmolLM2's
//! paragraph breaks differently from the way the model was trained; the mistral.rs engine
//! therefore encodes GGUF text with this tokenizer too. The chat template is rendered with
//! minijinja under the settings mistral.rs uses (`trim_blocks`, `lstrip_blocks`, Python string
//! methods).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::{byte_fallback::ByteFallback, fuse::Fuse, strip::Strip};
use tokenizers::models::bpe::{BpeBuilder, Vocab};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::{AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, Tokenizer};

mod bpe_split;
mod spm;

use crate::error::Error;
use bpe_split::BpeSplit;

/// End-of-sequence strings mistral.rs also stops on when the vocabulary and the chat template
/// both have them.
const ALTERNATE_EOS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<|end|>",
    "<|eot_id|>",
    "<|message|>",
    "<|start|>",
    "<|channel|>",
];

/// A chat role as the template sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    /// `system`
    System,
    /// `user`
    User,
    /// `assistant`
    Assistant,
}

impl ChatRole {
    /// The role's name in chat templates and chat APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// Token ids of a text with the byte range each token covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The ids.
    pub ids: Vec<u32>,
    /// `offsets[i]`: the byte range of token `i` in the text.
    pub offsets: Vec<(usize, usize)>,
}

/// Tokenizer, chat template and stop ids of one GGUF file.
#[derive(Debug, Clone)]
pub struct GgufText {
    tokenizer: Arc<Tokenizer>,
    template: Option<String>,
    bos: Option<String>,
    eos_text: Option<String>,
    unk: Option<String>,
    eos: Arc<Vec<u32>>,
    token_texts: Arc<Vec<String>>,
}

fn strings(content: &Content, key: &str) -> Option<Vec<String>> {
    let items = content.metadata.get(key)?.to_vec().ok()?;
    items.iter().map(|v| v.to_string().ok().cloned()).collect()
}

fn id(content: &Content, key: &str) -> Option<u32> {
    let v = content.metadata.get(key)?;
    v.to_u32()
        .ok()
        .or_else(|| v.to_u64().ok().map(|x| x as u32))
}

/// `tokenizer.ggml.token_type` (1 = normal, 2 = unknown, 3 = control, 6 = byte, …).
fn token_types(content: &Content) -> Option<Vec<i32>> {
    let items = content
        .metadata
        .get("tokenizer.ggml.token_type")?
        .to_vec()
        .ok()?;
    Some(items.iter().map(|v| v.to_i32().unwrap_or(1)).collect())
}

/// The normalizer and decoder of SentencePiece vocabularies: spaces are `▁`, a `▁` is put
/// before the text unless `tokenizer.ggml.add_space_prefix` is false, unknown bytes come back
/// from `<0xNN>` pieces.
fn sentencepiece_text(t: &mut Tokenizer, content: &Content) -> tokenizers::Result<()> {
    let prefix = content
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
    let replace = DecoderWrapper::Replace(tokenizers::normalizers::Replace::new("▁", " ")?);
    let mut decoders = vec![
        replace,
        DecoderWrapper::ByteFallback(ByteFallback::default()),
        DecoderWrapper::Fuse(Fuse::default()),
    ];
    let mut normalizers = vec![NormalizerWrapper::Replace(Replace::new(" ", "▁")?)];
    if prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        normalizers.insert(0, NormalizerWrapper::Prepend(Prepend::new("▁".into())));
    }
    t.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(
        decoders,
    ))));
    t.with_normalizer(Some(NormalizerWrapper::Sequence(NormalizerSequence::new(
        normalizers,
    ))));
    Ok(())
}

impl GgufText {
    /// Reads the text side of the GGUF file at `path` alone (its header is checked against the
    /// file's size first, as every GGUF the engines open is).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        crate::gguf::GgufHeader::read(path)?;
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let content = Content::read(&mut file).map_err(|e| Error::Candle {
            what: "reading GGUF header of",
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_gguf(&content, path)
    }

    /// Reads the tokenizer, template and stop ids from `content` (`path` names the file in
    /// errors).
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self, Error> {
        let bad = |message: String| Error::tokenizer(format!("{}: {message}", path.display()));
        let model = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| bad("no tokenizer.ggml.model".into()))?
            .clone();
        let tokens = strings(content, "tokenizer.ggml.tokens")
            .ok_or_else(|| bad("no tokenizer.ggml.tokens".into()))?;
        let eos_id = id(content, "tokenizer.ggml.eos_token_id")
            .ok_or_else(|| bad("no tokenizer.ggml.eos_token_id".into()))?;
        let bos_id = id(content, "tokenizer.ggml.bos_token_id");
        let unk_id = id(content, "tokenizer.ggml.unknown_token_id");
        let name = |i: u32| tokens.get(i as usize).cloned();
        let mut tokenizer = match model.as_str() {
            "gpt2" => {
                let merges = strings(content, "tokenizer.ggml.merges")
                    .ok_or_else(|| bad("a BPE tokenizer needs tokenizer.ggml.merges".into()))?
                    .into_iter()
                    .map(|m| match m.split_once(' ') {
                        Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
                        None => Err(bad(format!("merge {m:?} is not a pair"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let vocab: Vocab = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let pre = content
                    .metadata
                    .get("tokenizer.ggml.pre")
                    .and_then(|v| v.to_string().ok())
                    .map(String::as_str);
                let split = BpeSplit::for_pre(pre).map_err(&bad)?;
                let mut bpe = BpeBuilder::new()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(split.ignore_merges());
                if let Some(unk) = unk_id.and_then(name) {
                    bpe = bpe.unk_token(unk);
                }
                let bpe = bpe.build().map_err(|e| bad(e.to_string()))?;
                let mut t = Tokenizer::new(ModelWrapper::BPE(bpe));
                t.with_pre_tokenizer(Some(split.pre_tokenizer().map_err(&bad)?));
                t.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::new(
                    false, false, false,
                ))));
                t.with_post_processor(Some(ByteLevelProcessor::new(false, false, false)));
                t
            }
            "llama" => {
                let scores: Vec<f32> = match content.metadata.get("tokenizer.ggml.scores") {
                    Some(v) => v
                        .to_vec()
                        .map_err(|e| bad(e.to_string()))?
                        .iter()
                        .map(|s| s.to_f32().unwrap_or(f32::NEG_INFINITY))
                        .collect(),
                    None => return Err(bad("a SentencePiece tokenizer needs scores".into())),
                };
                // Only normal pieces (type 1) are merged; byte pieces (<0x0A>) are the fallback.
                let types = token_types(content);
                let normal = |i: usize| types.as_ref().is_none_or(|t| t.get(i) == Some(&1));
                let merges = spm::merges_by_score(&tokens, &scores, normal);
                let vocab: Vocab = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let mut bpe = BpeBuilder::new()
                    .vocab_and_merges(vocab, merges)
                    .byte_fallback(true)
                    .fuse_unk(true);
                if let Some(unk) = unk_id.and_then(name) {
                    bpe = bpe.unk_token(unk);
                }
                let bpe = bpe.build().map_err(|e| bad(e.to_string()))?;
                let mut t = Tokenizer::new(ModelWrapper::BPE(bpe));
                sentencepiece_text(&mut t, content).map_err(|e| bad(e.to_string()))?;
                t
            }
            "replit" => {
                let scores: Vec<f64> = match content.metadata.get("tokenizer.ggml.scores") {
                    Some(v) => v
                        .to_vec()
                        .map_err(|e| bad(e.to_string()))?
                        .iter()
                        .map(|s| s.to_f32().map(f64::from).unwrap_or(0.0))
                        .collect(),
                    None => return Err(bad("a Unigram tokenizer needs scores".into())),
                };
                let unk = unk_id.unwrap_or(0);
                let vocab = tokens.iter().cloned().zip(scores).collect();
                let unigram = Unigram::from(vocab, Some(unk as usize), true)
                    .map_err(|e| bad(e.to_string()))?;
                let mut t = Tokenizer::new(ModelWrapper::Unigram(unigram));
                sentencepiece_text(&mut t, content).map_err(|e| bad(e.to_string()))?;
                t
            }
            other => return Err(bad(format!("tokenizer model {other:?} is not supported"))),
        };
        if let Some(types) = token_types(content) {
            if types.len() == tokens.len() {
                for (t, ty) in tokens.iter().zip(types) {
                    if ty != 1 {
                        tokenizer.add_special_tokens(&[AddedToken::from(t.clone(), true)]);
                    }
                }
            }
        }
        for special in [bos_id, Some(eos_id), unk_id].into_iter().flatten() {
            if let Some(s) = name(special) {
                tokenizer.add_special_tokens(&[AddedToken::from(s, true)]);
            }
        }
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let vocab = tokenizer.get_vocab(true);
        let mut eos = vec![eos_id];
        if let Some(template) = &template {
            for alt in ALTERNATE_EOS {
                if let Some(&alt_id) = vocab.get(*alt) {
                    if template.contains(alt) && !eos.contains(&alt_id) {
                        eos.push(alt_id);
                    }
                }
            }
        }
        let token_texts = (0..tokenizer.get_vocab_size(true) as u32)
            .map(|id| tokenizer.decode(&[id], false).unwrap_or_default())
            .collect();
        Ok(Self {
            tokenizer: Arc::new(tokenizer),
            template,
            bos: bos_id.and_then(name),
            eos_text: name(eos_id),
            unk: unk_id.and_then(name),
            eos: Arc::new(eos),
            token_texts: Arc::new(token_texts),
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// End-of-sequence ids; the first is the file's own.
    pub fn eos(&self) -> &Arc<Vec<u32>> {
        &self.eos
    }

    /// Each token's own text (`decode(&[id])`), indexed by id.
    pub fn token_texts(&self) -> &[String] {
        &self.token_texts
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, Error> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(Error::tokenizer)
    }

    /// Token ids of `text` and each token's byte range in it.
    pub fn encode_with_offsets(&self, text: &str) -> Result<Encoded, Error> {
        let e = self
            .tokenizer
            .encode(text, true)
            .map_err(Error::tokenizer)?;
        Ok(Encoded {
            ids: e.get_ids().to_vec(),
            offsets: e.get_offsets().to_vec(),
        })
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        self.tokenizer.decode(ids, false).map_err(Error::tokenizer)
    }

    /// The chat rendered by the file's template, generation prompt appended.
    pub fn render_chat(&self, turns: &[(ChatRole, String)]) -> Result<String, Error> {
        let template = self
            .template
            .as_deref()
            .ok_or_else(|| Error::tokenizer("the model has no chat template"))?;
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_lstrip_blocks(true);
        env.set_trim_blocks(true);
        let template = template.replace("[::-1]", "|reverse");
        env.add_template("chat", &template)
            .map_err(|e| Error::tokenizer(format!("chat template: {e}")))?;
        let messages: Vec<HashMap<&str, &str>> = turns
            .iter()
            .map(|(role, content)| {
                HashMap::from([("role", role.as_str()), ("content", content.as_str())])
            })
            .collect();
        env.get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => self.bos,
                    eos_token => self.eos_text,
                    unk_token => self.unk,
                })
            })
            .map_err(|e| Error::tokenizer(format!("chat template: {e}")))
    }

    /// Token ids of a chat rendered by the template (generation prompt appended).
    pub fn encode_chat(&self, turns: &[(ChatRole, String)]) -> Result<Vec<u32>, Error> {
        self.encode(&self.render_chat(turns)?, true)
    }
}
