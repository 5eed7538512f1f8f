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

use ets_core::protocol::RemoteModelSpec;
use ets_engine::store::{builtin_alias, PullOptions, Store, BUILTIN_ALIASES};
use ets_engine::{
    auto_engine, disk_bytes, load_causal_lm, load_embedder, load_remote_embedder,
    load_remote_model, CausalLm, EngineKind, LoadContext, ModelFiles, TextEmbedder,
};

use super::remotes::Remotes;

/// A loaded model, behind ets-engine's boundary (the registry names no engine type).
#[derive(Clone, Debug)]
pub enum Loaded {
    /// A causal LM (policy or PRM) on some engine.
    Lm(Arc<dyn CausalLm>),
    /// A sentence embedder.
    Embedder(Arc<dyn TextEmbedder>),
}

/// What kind of engine a registry entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Lm(EngineKind),
    Embedder,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lm(engine) => engine.name(),
            Kind::Embedder => "embedder",
        }
    }
}

/// Where a model name points.
#[derive(Debug, Clone)]
struct Resolved {
    /// Store alias, when it is one.
    alias: Option<String>,
    /// Folder or file it loads from (`remote:NAME` for a remote model).
    path: PathBuf,
    /// The remote model it names, if it is one.
    remote: Option<RemoteModelSpec>,
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
    pub fn embedder(&self) -> Option<&Arc<dyn TextEmbedder>> {
        match &self.loaded {
            Loaded::Embedder(e) => Some(e),
            Loaded::Lm(_) => None,
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
    remotes: Remotes,
    default_keep_alive: Option<Duration>,
    auto_pull: bool,
    /// Byte cap of each native model's warm prompts.
    prompt_cache_bytes: u64,
    entries: Mutex<HashMap<(Kind, PathBuf), Arc<Entry>>>,
    /// One pull at a time (pip and the store's rename are not meant to race).
    pull_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// An empty registry over `store`.
    pub fn new(
        store: Store,
        remotes: Remotes,
        default_keep_alive: Option<Duration>,
        auto_pull: bool,
        prompt_cache_bytes: u64,
    ) -> Self {
        Self {
            store,
            remotes,
            default_keep_alive,
            auto_pull,
            prompt_cache_bytes,
            entries: Mutex::new(HashMap::new()),
            pull_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The model store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The remote models it knows.
    pub fn remotes(&self) -> &Remotes {
        &self.remotes
    }

    /// Adds or replaces a remote model; refused while a job uses the one it replaces (an idle
    /// loaded one is unloaded, returned to be dropped off the runtime).
    pub fn add_remote(&self, spec: RemoteModelSpec) -> Result<Vec<Loaded>, RegistryError> {
        super::remotes::check(&spec)?;
        let path = remote_path(&spec.name);
        let mut entries = lock(&self.entries);
        let in_use = entries
            .iter()
            .filter(|((_, p), _)| *p == path)
            .any(|(_, e)| lock(&e.usage).in_use > 0);
        if in_use {
            return Err(format!(
                "remote model `{}` is in use by a job; add it again when the job ends",
                spec.name
            ));
        }
        let mut dropped = Vec::new();
        entries.retain(|(_, p), e| {
            if *p == path {
                dropped.extend(e.cell.get().map(|(l, _)| l.clone()));
                false
            } else {
                true
            }
        });
        drop(entries);
        self.remotes.insert(spec);
        Ok(dropped)
    }

    fn resolve(&self, name: &str) -> Result<Resolved, RegistryError> {
        if let Some(spec) = self.remotes.get(name) {
            return Ok(Resolved {
                alias: None,
                path: remote_path(name),
                remote: Some(spec),
            });
        }
        let is_alias = BUILTIN_ALIASES.iter().any(|a| a.name == name)
            || (!name.contains('/') && self.store.dir(name).join("manifest.toml").is_file());
        if is_alias {
            return Ok(Resolved {
                alias: Some(name.to_owned()),
                path: self.store.dir(name),
                remote: None,
            });
        }
        let path = Path::new(name);
        if path.exists() {
            let path = path
                .canonicalize()
                .map_err(|e| format!("model path {name}: {e}"))?;
            return Ok(Resolved {
                alias: None,
                path,
                remote: None,
            });
        }
        Err(format!(
            "model `{name}` is neither a store alias (built-in: {}), a remote model, nor an \
             existing path",
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
                Kind::Lm(self.pick_engine(&resolved, engine).await?)
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
            None => ModelFiles::at(&resolved.path).map_err(|e| e.to_string()),
        }
    }

    /// The engine a causal LM runs on: as asked, or for `Auto` what [`auto_engine`] picks
    /// (native for one GGUF of a llama-family architecture in a build without a GPU).
    async fn pick_engine(
        &self,
        resolved: &Resolved,
        choice: EngineChoice,
    ) -> Result<EngineKind, RegistryError> {
        // A remote model's name always means the remote engine.
        if resolved.remote.is_some() {
            return Ok(EngineKind::Remote);
        }
        let asked = match choice {
            EngineChoice::Remote => {
                return Err(format!(
                    "{} is not a remote model; add it first (`ets models add NAME --remote \
                     URL`, `etsd --remote NAME=URL` or etsd.toml)",
                    resolved.path.display()
                ))
            }
            EngineChoice::Native => EngineKind::Native,
            EngineChoice::MistralRs => EngineKind::MistralRs,
            EngineChoice::Auto => {
                self.ensure_present(resolved).await?;
                let files = Self::llm_files(&self.store, resolved)?;
                return run_on_thread("ets-inspect", move || {
                    auto_engine(&files).map_err(|e| e.to_string())
                })
                .await;
            }
        };
        if asked.is_built() {
            Ok(asked)
        } else {
            Err(ets_engine::Error::EngineNotBuilt {
                engine: asked.name(),
            }
            .to_string())
        }
    }

    async fn load(&self, resolved: &Resolved, kind: Kind) -> Result<(Loaded, u64), RegistryError> {
        self.ensure_present(resolved).await?;
        let store = self.store.clone();
        let path = resolved.path.display().to_string();
        let resolved = resolved.clone();
        let prompt_cache_bytes = self.prompt_cache_bytes;
        let started = Instant::now();
        let result = run_on_thread("ets-load", move || -> Result<(Loaded, u64), String> {
            let bytes = if resolved.remote.is_some() {
                0
            } else {
                disk_bytes(&resolved.path)
            };
            let loaded = match kind {
                Kind::Lm(EngineKind::Remote) => {
                    let spec = resolved
                        .remote
                        .as_ref()
                        .ok_or("the remote engine runs remote models only")?;
                    Loaded::Lm(load_remote_model(spec).map_err(|e| e.to_string())?)
                }
                Kind::Lm(engine) => {
                    let files = Self::llm_files(&store, &resolved)?;
                    let hf_home = store.hf_home();
                    let context = LoadContext {
                        hf_home: &hf_home,
                        prompt_cache_bytes,
                    };
                    let lm = load_causal_lm(engine, &files, &context)
                        .map_err(|e| format!("{engine} engine: {e}"))?;
                    Loaded::Lm(lm)
                }
                Kind::Embedder if resolved.remote.is_some() => {
                    let spec = resolved.remote.as_ref().expect("checked above");
                    Loaded::Embedder(load_remote_embedder(spec).map_err(|e| e.to_string())?)
                }
                Kind::Embedder => {
                    let dir = match &resolved.alias {
                        Some(alias) => store.model_dir(alias).map_err(|e| e.to_string())?,
                        None => resolved.path.clone(),
                    };
                    Loaded::Embedder(load_embedder(&dir).map_err(|e| e.to_string())?)
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
                    endpoints: match e.cell.get() {
                        Some((Loaded::Lm(lm), _)) => lm.endpoints(),
                        Some((Loaded::Embedder(e), _)) => e.endpoints(),
                        None => Vec::new(),
                    },
                    prompt_cache: match e.cell.get() {
                        Some((Loaded::Lm(lm), _)) => lm.prompt_cache(),
                        _ => None,
                    },
                }
            })
            .collect();
        infos.sort_by(|a, b| a.model.cmp(&b.model).then(a.path.cmp(&b.path)));
        infos
    }

    /// Every loaded model that keeps warm prompts across jobs, by name, with their bytes now.
    fn warm_models(&self) -> Vec<(String, Arc<dyn ets_engine::CausalLm>, u64)> {
        let mut out: Vec<_> = lock(&self.entries)
            .values()
            .filter_map(|e| match e.cell.get() {
                Some((Loaded::Lm(lm), _)) => lm
                    .prompt_cache()
                    .map(|s| (e.name.clone(), lm.clone(), s.bytes)),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Bytes of every loaded model's warm prompts.
    pub fn prompt_cache_bytes(&self) -> u64 {
        self.warm_models().iter().map(|m| m.2).sum()
    }

    /// Evicts warm prompts until all models' together hold at most `max_bytes`: each model
    /// gives up bytes in turn, alphabetically, its least recently used prompts first.
    pub fn trim_prompt_caches(&self, max_bytes: u64) {
        let caches = self.warm_models();
        let mut excess = caches
            .iter()
            .map(|c| c.2)
            .sum::<u64>()
            .saturating_sub(max_bytes);
        for (_, lm, bytes) in caches {
            if excess == 0 {
                break;
            }
            let give = excess.min(bytes);
            lm.trim_prompt_cache(bytes - give);
            let after = lm.prompt_cache().map_or(0, |s| s.bytes);
            excess = excess.saturating_sub(bytes - after);
        }
    }

    /// Whether an entry for `alias` exists (loaded or loading).
    pub fn has(&self, alias: &str) -> bool {
        let dir = self.store.dir(alias);
        lock(&self.entries).values().any(|e| e.resolved.path == dir)
    }

    /// Whether the remote model `name` is loaded (or loading).
    pub fn has_remote(&self, name: &str) -> bool {
        let path = remote_path(name);
        lock(&self.entries)
            .values()
            .any(|e| e.resolved.path == path)
    }

    /// Removes every entry (shutdown); returns the engines to drop.
    pub fn clear(&self) -> Vec<Loaded> {
        lock(&self.entries)
            .drain()
            .filter_map(|(_, e)| e.cell.get().map(|(l, _)| l.clone()))
            .collect()
    }
}

/// The registry key of a remote model.
fn remote_path(name: &str) -> PathBuf {
    PathBuf::from(format!("remote:{name}"))
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
        .map_err(|e| super::report::without_backtrace(&e))
}
