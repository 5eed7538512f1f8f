//! The manifest each model folder carries: where the model came from and what is in it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::files::{read_text, MAX_SMALL_TEXT_BYTES};

/// File name of the manifest inside a model folder.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// How a model folder is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFormat {
    /// One GGUF file (a causal LM; tokenizer and chat template inside).
    Gguf,
    /// A safetensors directory with `config.json` and `tokenizer.json`.
    Safetensors,
}

impl ModelFormat {
    /// The name written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Gguf => "gguf",
            ModelFormat::Safetensors => "safetensors",
        }
    }
}

/// One file of a model folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the model folder.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// What a model folder holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The alias the folder is named after.
    pub alias: String,
    /// Where it came from: `pypi:NAME==VERSION#MEMBER` or the URL.
    pub source: String,
    /// sha256 of the downloaded artifact (wheel or file), checked before unpacking.
    pub sha256: String,
    /// Size in bytes of the downloaded artifact.
    pub size: u64,
    /// Layout of the folder.
    pub format: ModelFormat,
    /// For GGUF: the model file inside the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Weight quantization, when the store changed it (`Q8_0 (re-quantized from Q4_1)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Every file of the model, to check the folder is complete.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Reads a manifest.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = read_text(path, "manifest", MAX_SMALL_TEXT_BYTES)?;
        toml::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes a manifest.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| Error::io("writing", path, e))
    }

    /// The first file of the manifest that is missing from `dir` or has another size.
    pub fn first_damaged(&self, dir: &Path) -> Option<&ManifestFile> {
        self.files.iter().find(|f| {
            std::fs::metadata(dir.join(&f.path))
                .map(|m| !m.is_file() || m.len() != f.size)
                .unwrap_or(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_through_toml() {
        let m = Manifest {
            alias: "a".into(),
            source: "pypi:x==1#x/m.gguf".into(),
            sha256: "00".into(),
            size: 3,
            format: ModelFormat::Gguf,
            file: Some("m.gguf".into()),
            quantization: None,
            files: vec![ManifestFile {
                path: "m.gguf".into(),
                size: 3,
            }],
        };
        let dir = std::env::temp_dir().join(format!("ets-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(MANIFEST_FILE);
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);
        assert_eq!(
            m.first_damaged(&dir).map(|f| f.path.as_str()),
            Some("m.gguf")
        );
        std::fs::write(dir.join("m.gguf"), b"abc").unwrap();
        assert_eq!(m.first_damaged(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
