//! Where a model's files are: [`ModelFiles`] for a causal LM (one GGUF file, or a safetensors
//! folder), found from a path the user gave ([`ModelFiles::at`]), checked before any engine
//! reads them.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where a causal LM's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// One GGUF file (tokenizer and chat template inside it).
    Gguf {
        /// Its directory.
        dir: PathBuf,
        /// Its file name inside `dir`.
        file: String,
    },
    /// A safetensors model directory: `config.json`, `tokenizer.json`, `*.safetensors`.
    Safetensors {
        /// The directory.
        dir: PathBuf,
    },
}

impl ModelFiles {
    /// The directory the model lives in.
    pub fn dir(&self) -> &Path {
        match self {
            ModelFiles::Gguf { dir, .. } | ModelFiles::Safetensors { dir } => dir,
        }
    }

    /// Checks that every file the format needs exists; the error names the first missing one.
    pub fn check(&self) -> Result<(), Error> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Err(Error::MissingPath {
                path: dir.to_path_buf(),
            });
        }
        let needed: Vec<String> = match self {
            ModelFiles::Gguf { file, .. } => vec![file.clone()],
            ModelFiles::Safetensors { .. } => vec!["config.json".into(), "tokenizer.json".into()],
        };
        for file in needed {
            if !dir.join(&file).is_file() {
                return Err(Error::MissingPath {
                    path: dir.join(file),
                });
            }
        }
        if matches!(self, ModelFiles::Safetensors { .. }) {
            let has_weights = std::fs::read_dir(dir)
                .map_err(|e| Error::io("reading", dir, e))?
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
            if !has_weights {
                return Err(Error::MissingFile {
                    dir: dir.to_path_buf(),
                    file: "*.safetensors".into(),
                });
            }
        }
        Ok(())
    }
}

impl ModelFiles {
    /// The files of a causal LM given by path: a `.gguf` file, a folder with one `.gguf`, or a
    /// safetensors folder.
    pub fn at(path: &Path) -> Result<ModelFiles, Error> {
        if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(ModelFiles::Gguf { dir, file });
        }
        let ggufs: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| Error::io("reading", path, e))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".gguf"))
            .collect();
        match ggufs.as_slice() {
            [one] => Ok(ModelFiles::Gguf {
                dir: path.to_path_buf(),
                file: one.clone(),
            }),
            [] => Ok(ModelFiles::Safetensors {
                dir: path.to_path_buf(),
            }),
            many => Err(Error::Ambiguous {
                dir: path.to_path_buf(),
                message: format!(
                    "holds {} GGUF files ({}); name the one to load",
                    many.len(),
                    many.join(", ")
                ),
            }),
        }
    }

    /// The GGUF file, for a GGUF model.
    pub fn gguf_path(&self) -> Option<PathBuf> {
        match self {
            ModelFiles::Gguf { dir, file } => Some(dir.join(file)),
            ModelFiles::Safetensors { .. } => None,
        }
    }
}

/// Bytes of a file, or of the files directly inside a folder.
pub fn disk_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    }
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Largest JSON/TOML text a model folder may hold for ETS to parse: `tokenizer.json` files of
/// 256k-token vocabularies are ~20 MiB; configs, manifests and PRM profiles are kilobytes.
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;
/// Largest config, manifest or PRM profile.
pub const MAX_SMALL_TEXT_BYTES: u64 = 1 << 20;

/// Checks that the file at `path` (a `format` file) is a regular file of at most `max` bytes,
/// before any parser reads it whole.
pub(crate) fn check_size(path: &Path, format: &'static str, max: u64) -> Result<(), Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
    if !meta.is_file() {
        return Err(Error::Malformed {
            path: path.to_path_buf(),
            format,
            field: "file".into(),
            message: "not a regular file".into(),
        });
    }
    if meta.len() > max {
        return Err(Error::Malformed {
            path: path.to_path_buf(),
            format,
            field: "size".into(),
            message: format!(
                "{} bytes, more than the {max} a {format} file may have",
                meta.len()
            ),
        });
    }
    Ok(())
}

/// The text of the `format` file at `path`, refused before reading when it is larger than `max`.
pub(crate) fn read_text(path: &Path, format: &'static str, max: u64) -> Result<String, Error> {
    check_size(path, format, max)?;
    std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir();
        let missing_file = ModelFiles::Gguf {
            dir: dir.clone(),
            file: "no-such-model.gguf".into(),
        };
        let e = missing_file.check().unwrap_err().to_string();
        assert!(e.contains("no-such-model.gguf"), "{e}");
        let missing_dir = ModelFiles::Gguf {
            dir: "/nonexistent/ets-model".into(),
            file: "m.gguf".into(),
        };
        let e = missing_dir.check().unwrap_err();
        assert!(matches!(e, Error::MissingPath { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ets-model"), "{e}");
    }
}
