//! The model registry: policy/PRM engines and embedders loaded once, shared by every job that
//! names them, kept warm for their keep-alive, pinned or unloaded on request.
//!
//! A model is named by a store alias or a path; both resolve to files, and the files (plus the
//! kind of engine) are the registry key, so `smollm2-135m` as policy and as PRM is one engine.
//! A causal LM runs on the native engine or on mistral.rs ([`EngineChoice`]); `Auto` picks
//! native for llama-family GGUF files on the CPU, mistral.rs for anything else.
//! Loading runs on a plain thread (engines block on their own runtime) and at most once per key
//! at a time; a failed load is not remembered, so the next job tries again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ets_core::protocol::{EngineChoice, ModelInfo, ModelRole, ModelState};
use tokio::sync::OnceCell;

use crate::backend::{BertEmbedder, LlmEngine, LoadOptions, ModelFiles};
use crate::native::{NativeEngine, WeightMode, NATIVE_ARCHITECTURES};
use crate::store::{builtin_alias, PullOptions, Store, BUILTIN_ALIASES};

/// A loaded model.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// A causal LM (policy or PRM) on mistral.rs.
    Llm(Arc<LlmEngine>),
    /// A causal LM (policy or PRM) on the native tree-attention engine.
    Native(Arc<NativeEngine>),
    /// A sentence embedder.
    Embedder(Arc<BertEmbedder>),
}

/// Which engine runs a causal LM, once `Auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LlmEngineKind {
    /// [`NativeEngine`].
    Native,
    /// [`LlmEngine`] (mistral.rs).
    MistralRs,
}

/// What kind of engine a registry entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Llm(LlmEngineKind),
    Embedder,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Llm(LlmEngineKind::Native) => "native",
            Kind::Llm(LlmEngineKind::MistralRs) => "mistralrs",
            Kind::Embedder => "embedder",
        }
    }
}

/// Where a model name points.
#[derive(Debug, Clone)]
struct Resolved {
    /// Store alias, when it is one.
    alias: Option<String>,
    /// Folder or file it loads from.
    path: PathBuf,
}

#[derive(Debug)]
struct Usage {
    roles: Vec<ModelRole>,
    pinned: bool,
    keep_alive: Option<Duration>,
    last_used: Instant,
    in_use: usize,
    unload_when_idle: bool,
}

/// One registered model.
#[derive(Debug)]
struct Entry {
    name: String,
    resolved: Resolved,
    kind: Kind,
    cell: OnceCell<(Loaded, u64)>,
    usage: Mutex<Usage>,
}

/// A job's hold on a model: counts as use until dropped.
#[derive(Debug)]
pub struct ModelLease {
    entry: Arc<Entry>,
    loaded: Loaded,
}

impl ModelLease {
    /// What it holds.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// The embedder, for an embedder lease.
    pub fn embedder(&self) -> Option<&Arc<BertEmbedder>> {
        match &self.loaded {
            Loaded::Embedder(e) => Some(e),
            Loaded::Llm(_) | Loaded::Native(_) => None,
        }
    }
}

impl Drop for ModelLease {
    fn drop(&mut self) {
        let mut usage = lock(&self.entry.usage);
        usage.in_use = usage.in_use.saturating_sub(1);
        usage.last_used = Instant::now();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops engines on a plain thread: an engine owns a tokio runtime, which must not be dropped
/// inside an async task.
pub fn drop_off_runtime<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("ets-unload".into())
        .spawn(move || drop(value));
}

/// Error of a registry operation, for people.
pub type RegistryError = String;

/// The registry.
#[derive(Debug)]
pub struct Registry {
    store: Store,
    default_keep_alive: Option<Duration>,
    auto_pull: bool,
    entries: Mutex<HashMap<(Kind, PathBuf), Arc<Entry>>>,
    /// One pull at a time (pip and the store's rename are not meant to race).
    pull_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// An empty registry over `store`.
    pub fn new(store: Store, default_keep_alive: Option<Duration>, auto_pull: bool) -> Self {
        Self {
            store,
            default_keep_alive,
            auto_pull,
            entries: Mutex::new(HashMap::new()),
            pull_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The model store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn resolve(&self, name: &str) -> Result<Resolved, RegistryError> {
        let is_alias = BUILTIN_ALIASES.iter().any(|a| a.name == name)
            || (!name.contains('/') && self.store.dir(name).join("manifest.toml").is_file());
        if is_alias {
            return Ok(Resolved {
                alias: Some(name.to_owned()),
                path: self.store.dir(name),
            });
        }
        let path = Path::new(name);
        if path.exists() {
            let path = path
                .canonicalize()
                .map_err(|e| format!("model path {name}: {e}"))?;
            return Ok(Resolved { alias: None, path });
        }
        Err(format!(
            "model `{name}` is neither a store alias (built-in: {}) nor an existing path",
            BUILTIN_ALIASES
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Loads (or finds loaded) `name` for `role` and leases it; a policy or PRM runs on the
    /// engine `engine` picks.
    pub async fn acquire(
        &self,
        name: &str,
        role: ModelRole,
        engine: EngineChoice,
    ) -> Result<ModelLease, RegistryError> {
        let resolved = self.resolve(name)?;
        let kind = match role {
            ModelRole::Embedder => Kind::Embedder,
            ModelRole::Policy | ModelRole::Prm => {
                Kind::Llm(self.pick_engine(&resolved, engine).await?)
            }
        };
        let entry = {
            let mut entries = lock(&self.entries);
            let entry = entries
                .entry((kind, resolved.path.clone()))
                .or_insert_with(|| {
                    Arc::new(Entry {
                        name: name.to_owned(),
                        resolved: resolved.clone(),
                        kind,
                        cell: OnceCell::new(),
                        usage: Mutex::new(Usage {
                            roles: Vec::new(),
                            pinned: false,
                            keep_alive: self.default_keep_alive,
                            last_used: Instant::now(),
                            in_use: 0,
                            unload_when_idle: false,
                        }),
                    })
                })
                .clone();
            // Counted as in use before the map's lock is released, so `reap` never removes an
            // entry a job is about to use.
            let mut usage = lock(&entry.usage);
            usage.in_use += 1;
            usage.unload_when_idle = false;
            if !usage.roles.contains(&role) {
                usage.roles.push(role);
            }
            drop(usage);
            entry
        };
        let loaded = entry
            .cell
            .get_or_try_init(|| self.load(&entry.resolved, kind))
            .await;
        match loaded {
            Ok((loaded, _)) => Ok(ModelLease {
                loaded: loaded.clone(),
                entry,
            }),
            Err(e) => {
                {
                    let mut usage = lock(&entry.usage);
                    usage.in_use -= 1;
                }
                // Forget an entry that never loaded, unless another job is waiting on it.
                let mut entries = lock(&self.entries);
                if entry.cell.get().is_none() && lock(&entry.usage).in_use == 0 {
                    entries.remove(&(kind, entry.resolved.path.clone()));
                }
                Err(e)
            }
        }
    }

    /// Pulls a missing built-in alias when auto-pull is on; errors (saying how to pull it)
    /// when the alias is missing otherwise.
    async fn ensure_present(&self, resolved: &Resolved) -> Result<(), RegistryError> {
        let Some(alias) = &resolved.alias else {
            return Ok(());
        };
        if self
            .store
            .manifest(alias)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        if self.auto_pull && builtin_alias(alias).is_ok() {
            self.pull(alias).await?;
            Ok(())
        } else {
            Err(self.store.require(alias).unwrap_err().to_string())
        }
    }

    /// The files of a causal LM.
    fn llm_files(store: &Store, resolved: &Resolved) -> Result<ModelFiles, String> {
        match &resolved.alias {
            Some(alias) => store.model_files(alias).map_err(|e| e.to_string()),
            None => files_at(&resolved.path),
        }
    }

    /// The engine a causal LM runs on: as asked, or for `Auto` native when the files are one
    /// GGUF of a llama-family architecture and the build has no GPU, else mistral.rs.
    async fn pick_engine(
        &self,
        resolved: &Resolved,
        choice: EngineChoice,
    ) -> Result<LlmEngineKind, RegistryError> {
        match choice {
            EngineChoice::Native => return Ok(LlmEngineKind::Native),
            EngineChoice::MistralRs => return Ok(LlmEngineKind::MistralRs),
            EngineChoice::Auto if cfg!(feature = "cuda") => return Ok(LlmEngineKind::MistralRs),
            EngineChoice::Auto => {}
        }
        self.ensure_present(resolved).await?;
        let files = Self::llm_files(&self.store, resolved)?;
        let ModelFiles::Gguf { dir, file } = files else {
            return Ok(LlmEngineKind::MistralRs);
        };
        let path = dir.join(file);
        run_on_thread("ets-inspect", move || {
            let arch = crate::native::gguf_architecture(&path).map_err(|e| e.to_string())?;
            Ok(if NATIVE_ARCHITECTURES.contains(&arch.as_str()) {
                LlmEngineKind::Native
            } else {
                LlmEngineKind::MistralRs
            })
        })
        .await
    }

    async fn load(&self, resolved: &Resolved, kind: Kind) -> Result<(Loaded, u64), RegistryError> {
        self.ensure_present(resolved).await?;
        let store = self.store.clone();
        let path = resolved.path.display().to_string();
        let resolved = resolved.clone();
        let started = Instant::now();
        let result = run_on_thread("ets-load", move || -> Result<(Loaded, u64), String> {
            let bytes = disk_bytes(&resolved.path);
            let loaded = match kind {
                Kind::Llm(LlmEngineKind::MistralRs) => {
                    let files = Self::llm_files(&store, &resolved)?;
                    let engine = LlmEngine::load(&files, &LoadOptions::new(store.hf_home()))
                        .map_err(|e| e.to_string())?;
                    Loaded::Llm(Arc::new(engine))
                }
                Kind::Llm(LlmEngineKind::Native) => {
                    let path = match Self::llm_files(&store, &resolved)? {
                        ModelFiles::Gguf { dir, file } => dir.join(file),
                        ModelFiles::Safetensors { dir } => {
                            return Err(format!(
                                "the native engine runs GGUF files only, and {} is a \
                                 safetensors folder; use the mistralrs engine for it",
                                dir.display()
                            ))
                        }
                    };
                    let engine = NativeEngine::load(&path, WeightMode::Quantized)
                        .map_err(|e| format!("native engine: {e}"))?;
                    Loaded::Native(Arc::new(engine))
                }
                Kind::Embedder => {
                    let dir = match &resolved.alias {
                        Some(alias) => store.model_dir(alias).map_err(|e| e.to_string())?,
                        None => resolved.path.clone(),
                    };
                    Loaded::Embedder(Arc::new(
                        BertEmbedder::load(&dir).map_err(|e| e.to_string())?,
                    ))
                }
            };
            Ok((loaded, bytes))
        })
        .await?;
        tracing::info!(
            %path,
            ?kind,
            secs = started.elapsed().as_secs_f64(),
            "model loaded"
        );
        Ok(result)
    }

    /// Pulls a built-in alias into the store; returns (folder, bytes, already present).
    pub async fn pull(&self, alias: &str) -> Result<(PathBuf, u64, bool), RegistryError> {
        builtin_alias(alias).map_err(|e| e.to_string())?;
        let _one_at_a_time = self.pull_lock.lock().await;
        let store = self.store.clone();
        let alias = alias.to_owned();
        run_on_thread("ets-pull", move || {
            tracing::info!(%alias, "pulling model");
            let options = PullOptions {
                quiet: true,
                ..PullOptions::default()
            };
            let outcome = store
                .pull_builtin(&alias, &options)
                .map_err(|e| e.to_string())?;
            let dir = store.dir(&alias);
            Ok((dir.clone(), disk_bytes(&dir), !outcome.fetched))
        })
        .await
    }

    /// Sets a model's keep-alive (negative: forever) after loading it.
    pub fn set_keep_alive(&self, lease: &ModelLease, keep_alive: Option<Duration>) {
        lock(&lease.entry.usage).keep_alive = keep_alive;
    }

    fn find(&self, name: &str) -> Vec<Arc<Entry>> {
        let resolved = self.resolve(name).ok();
        lock(&self.entries)
            .values()
            .filter(|e| {
                e.name == name || resolved.as_ref().is_some_and(|r| r.path == e.resolved.path)
            })
            .cloned()
            .collect()
    }

    /// Pins or unpins every loaded entry of `name`.
    pub fn pin(&self, name: &str, pinned: bool) -> Result<(), RegistryError> {
        let found = self.find(name);
        if found.is_empty() {
            return Err(format!(
                "model `{name}` is not loaded (load it first: `ets models load {name}`)"
            ));
        }
        for e in found {
            lock(&e.usage).pinned = pinned;
        }
        Ok(())
    }

    /// Unloads `name` now if no job uses it, else as soon as the last job using it ends.
    /// Returns the engines dropped now (drop them off the runtime).
    pub fn unload(&self, name: &str) -> Result<Vec<Loaded>, RegistryError> {
        let found = self.find(name);
        if found.is_empty() {
            return Err(format!("model `{name}` is not loaded"));
        }
        for e in &found {
            let mut usage = lock(&e.usage);
            usage.unload_when_idle = true;
            usage.pinned = false;
        }
        Ok(self.reap(Instant::now()))
    }

    /// Removes entries that are idle past their keep-alive or marked for unloading; returns the
    /// engines removed (drop them off the runtime).
    pub fn reap(&self, now: Instant) -> Vec<Loaded> {
        let mut entries = lock(&self.entries);
        let mut dropped = Vec::new();
        entries.retain(|_, e| {
            let usage = lock(&e.usage);
            let idle = now.saturating_duration_since(usage.last_used);
            let expired = usage.unload_when_idle
                || (!usage.pinned && usage.keep_alive.is_some_and(|k| idle >= k));
            if usage.in_use == 0 && expired && e.cell.initialized() {
                tracing::info!(model = %e.name, idle_secs = idle.as_secs(), "unloading model");
                if let Some((loaded, _)) = e.cell.get() {
                    dropped.push(loaded.clone());
                }
                false
            } else {
                true
            }
        });
        dropped
    }

    /// Every registered model, for status.
    pub fn infos(&self) -> Vec<ModelInfo> {
        let now = Instant::now();
        let mut infos: Vec<ModelInfo> = lock(&self.entries)
            .values()
            .map(|e| {
                let usage = lock(&e.usage);
                ModelInfo {
                    model: e.name.clone(),
                    path: e.resolved.path.display().to_string(),
                    state: if e.cell.initialized() {
                        ModelState::Ready
                    } else {
                        ModelState::Loading
                    },
                    engine: e.kind.name().to_owned(),
                    in_use: usage.in_use,
                    roles: usage.roles.clone(),
                    pinned: usage.pinned,
                    bytes: e.cell.get().map_or(0, |(_, b)| *b),
                    idle_secs: if usage.in_use > 0 {
                        0
                    } else {
                        now.saturating_duration_since(usage.last_used).as_secs()
                    },
                    keep_alive_secs: usage.keep_alive.map_or(-1, |k| k.as_secs() as i64),
                }
            })
            .collect();
        infos.sort_by(|a, b| a.model.cmp(&b.model).then(a.path.cmp(&b.path)));
        infos
    }

    /// Whether an entry for `alias` exists (loaded or loading).
    pub fn has(&self, alias: &str) -> bool {
        let dir = self.store.dir(alias);
        lock(&self.entries).values().any(|e| e.resolved.path == dir)
    }

    /// Removes every entry (shutdown); returns the engines to drop.
    pub fn clear(&self) -> Vec<Loaded> {
        lock(&self.entries)
            .drain()
            .filter_map(|(_, e)| e.cell.get().map(|(l, _)| l.clone()))
            .collect()
    }
}

/// The files of a causal LM given by path: a `.gguf` file, a folder with one `.gguf`, or a
/// safetensors folder.
fn files_at(path: &Path) -> Result<ModelFiles, String> {
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(ModelFiles::Gguf { dir, file });
    }
    let ggufs: Vec<String> = std::fs::read_dir(path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?
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
        many => Err(format!(
            "{} holds {} GGUF files ({}); name the one to load",
            path.display(),
            many.len(),
            many.join(", ")
        )),
    }
}

/// Bytes of a file, or of the files directly inside a folder.
fn disk_bytes(path: &Path) -> u64 {
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

/// Runs blocking work on a fresh plain thread and awaits its result.
pub async fn run_on_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.await
        .unwrap_or_else(|_| Err("the loading thread panicked".into()))
}
