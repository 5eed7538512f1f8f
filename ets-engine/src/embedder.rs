//! The step embedder: a sentence-transformers BERT (all-MiniLM-L6-v2) through
//! candle-transformers, mean-pooled over real tokens and L2-normalised.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use ets_core::{BackendError, Embedder};
use tokenizers::Tokenizer;

use crate::error::Error;
use crate::files::{check_size, read_text, MAX_SMALL_TEXT_BYTES, MAX_TOKENIZER_BYTES};

/// Most tokens of one text (all-MiniLM-L6-v2 was trained on 256; longer input is cut).
pub const MAX_TOKENS: usize = 256;
/// Texts embedded in one forward pass.
const BATCH: usize = 32;

/// ets-core's [`Embedder`] on a BERT sentence encoder.
pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dir: PathBuf,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (tensor names
    /// with or without a `bert.` prefix), on the CPU.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::MissingPath {
                path: dir.to_path_buf(),
            });
        }
        let file = |name: &str| -> Result<PathBuf, Error> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::MissingFile {
                    dir: dir.to_path_buf(),
                    file: name.to_owned(),
                })
            }
        };
        let config_path = file("config.json")?;
        let weights = file("model.safetensors")?;
        let tokenizer_path = file("tokenizer.json")?;
        let config_text = read_text(&config_path, "config JSON", MAX_SMALL_TEXT_BYTES)?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| Error::Manifest {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        check_size(&tokenizer_path, "tokenizer JSON", MAX_TOKENIZER_BYTES)?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Tokenizer {
                message: format!("{}: {e}", tokenizer_path.display()),
            })?;
        // Padding is done here, per batch; truncation to the model's trained length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(Error::tokenizer)?;
        let device = Device::Cpu;
        let candle = |what: &'static str| {
            let path = weights.clone();
            move |source| Error::Candle { what, path, source }
        };
        // SAFETY: the weights file is memory-mapped read-only; the store never rewrites a
        // model in place (a pull replaces the whole folder by rename).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)
                .map_err(candle("mapping"))?
        };
        let model = BertModel::load(vb, &config).map_err(candle("loading BERT from"))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dir: dir.to_path_buf(),
        })
    }

    /// Unit-length embeddings of `texts`, one per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(Error::tokenizer)?;
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let n = encodings.len();
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, e) in encodings.iter().enumerate() {
            for (col, &id) in e.get_ids().iter().enumerate() {
                ids[row * len + col] = id;
                mask[row * len + col] = 1;
            }
        }
        let candle = |source| Error::Candle {
            what: "embedding with",
            path: self.dir.clone(),
            source,
        };
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?; // [n, len, d]
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [n, len, 1]
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // [n, d]
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // [n, 1]
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        run().map_err(candle)
    }
}

impl Embedder for BertEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(self.embed_texts(texts)?)
    }
}
