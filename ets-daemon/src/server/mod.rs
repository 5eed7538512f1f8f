//! The daemon: a local socket, the model registry, the job queue and the searches.
//!
//! Layout:
//! - `args`: [`DaemonArgs`], the daemon's settings (flags of `etsd`; `ets serve` passes its own
//!   through to `etsd`).
//! - `socket`: the socket directory, the one-daemon-per-socket lock, stale socket files, the
//!   peer-credential check.
//! - `connection`: one client: handshake, framed requests, one reply per request in order.
//! - `registry`: models loaded once, shared, kept warm, pinned, unloaded.
//! - `jobs`: the job table, the FIFO queue with search slots and KV reservations, stop flags.
//! - `runner`: one job from acceptance to its final message; the search runs on a plain thread.
//! - `backends`: a job's policy, PRM and embedder on the engine its models were loaded on.
//! - `report`: counters, status, the store listing, Prometheus metrics.
//!
//! State lives in one [`Daemon`] shared by every task; a search's KV tree lives on its own
//! thread and is released (every reference) before the job's final message is sent.

mod args;
mod backends;
mod connection;
mod jobs;
mod outbox;
mod registry;
mod remotes;
mod report;
mod runner;
mod socket;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::sync::watch;

pub use args::{keep_alive_duration, parse_bytes, DaemonArgs};
pub use report::Counters;
pub use socket::{check_peer, PeerRefused};

use ets_engine::store::Store;
use jobs::{Jobs, StopReason};
use registry::{drop_off_runtime, Loaded, Registry};

/// How long running searches get to stop at shutdown before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Everything the daemon's tasks share.
pub struct Daemon {
    args: DaemonArgs,
    socket: PathBuf,
    started: Instant,
    registry: Registry,
    jobs: Jobs,
    counters: Arc<Counters>,
    clients: AtomicUsize,
    shutdown: watch::Sender<bool>,
    last_activity: Mutex<Instant>,
}

impl Daemon {
    /// Starts shutting down: no new jobs, running ones end with "shutting down".
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn shutdown_started(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Records activity (a job or a client came or went) for the idle exit.
    pub fn wake_idle_watch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        let idle = self.jobs.all().is_empty() && self.clients.load(Ordering::Relaxed) == 0;
        idle.then(|| {
            self.last_activity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
        })
    }
}

/// Runs the daemon until SIGTERM/SIGINT, a `shutdown` request or the idle exit; returns once the
/// socket file is removed. Fails (with a message naming the socket) when another daemon holds
/// the socket.
pub fn run(args: DaemonArgs) -> Result<()> {
    // Library errors (candle's) capture a stack backtrace when RUST_BACKTRACE is set, at a cost
    // per error and into their text; panics keep theirs. Set before any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    init_logging(&args)?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(ets_core::protocol::default_socket_path);
    let lock = socket::lock(&socket)?;
    let store = match &args.models_dir {
        Some(dir) => Store::at(dir),
        None => Store::open_default()?,
    };
    let config = args.config.clone().or_else(remotes::default_config_path);
    let configured = match &config {
        Some(path) => remotes::read_config(path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let remotes = remotes::Remotes::new(configured, &args.remote);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("etsd")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(args, socket, store, remotes));
    runtime.shutdown_timeout(Duration::from_secs(2));
    // Engines own runtimes of their own: they are dropped here, outside any async context.
    let engines = result?;
    drop(engines);
    drop(lock);
    tracing::info!("etsd stopped");
    Ok(())
}

async fn serve(
    args: DaemonArgs,
    socket: PathBuf,
    store: Store,
    remotes: remotes::Remotes,
) -> Result<Vec<Loaded>> {
    let listener = socket::bind(&socket)?;
    let (shutdown, _) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        registry: Registry::new(
            store,
            remotes,
            args.keep_alive(),
            args.auto_pull,
            args.prompt_cache,
        ),
        jobs: Jobs::new(args.max_concurrent, args.max_queue, args.kv_budget),
        socket: socket.clone(),
        started: Instant::now(),
        counters: Arc::new(Counters::default()),
        clients: AtomicUsize::new(0),
        shutdown,
        last_activity: Mutex::new(Instant::now()),
        args,
    });
    daemon
        .jobs
        .hold_in_budget(Box::new(WarmPrompts(Arc::downgrade(&daemon))));
    tracing::info!(
        socket = %socket.display(),
        pid = std::process::id(),
        models = %daemon.registry.store().root().display(),
        max_concurrent = daemon.jobs.max_concurrent(),
        kv_budget = ?daemon.jobs.kv_budget(),
        "etsd listening"
    );
    tokio::spawn(reap_idle_models(daemon.clone()));
    if let Some(after) = daemon.args.idle_exit {
        tokio::spawn(idle_exit(daemon.clone(), after));
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut next_conn = 0u64;
    let slots = Arc::new(tokio::sync::Semaphore::new(
        daemon.args.limits.max_connections.max(1),
    ));
    let mut accept_warned: Option<Instant> = None;
    let mut accept_failures = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    next_conn += 1;
                    daemon.counters.connections.fetch_add(1, Ordering::Relaxed);
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let daemon = daemon.clone();
                            tokio::spawn(async move {
                                connection::serve(daemon, stream, next_conn).await;
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            tokio::spawn(connection::refuse_full(
                                stream,
                                daemon.args.limits.max_connections,
                            ));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors, say: warn at most every 10 s, not 20 times a
                    // second.
                    accept_failures += 1;
                    if accept_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, failures = accept_failures, "accept failed");
                        accept_warned = Some(Instant::now());
                        accept_failures = 0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: shutting down");
                daemon.begin_shutdown();
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: shutting down");
                daemon.begin_shutdown();
            }
            _ = daemon.shutdown_started() => break,
        }
    }
    // No new connections: the socket file goes first.
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    daemon.jobs.stop_all(StopReason::ShuttingDown);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !daemon.jobs.all().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !daemon.jobs.all().is_empty() {
        tracing::warn!("searches did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    // Let connections flush their final messages.
    let flush_deadline = Instant::now() + Duration::from_secs(2);
    while daemon.clients.load(Ordering::Relaxed) > 0 && Instant::now() < flush_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(daemon.registry.clear())
}

async fn reap_idle_models(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let dropped = daemon.registry.reap(Instant::now());
        if !dropped.is_empty() {
            drop_off_runtime(dropped);
        }
    }
}

async fn idle_exit(daemon: Arc<Daemon>, after: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if daemon.idle_for().is_some_and(|idle| idle >= after) {
            tracing::info!(idle_secs = after.as_secs(), "idle: exiting");
            daemon.begin_shutdown();
            return;
        }
    }
}

/// Logs go to stderr, or to `--log-file`, or to the XDG state dir with `--log-to-state-dir`;
/// `RUST_LOG` sets the filter (default: info, mistral.rs at warn).
fn init_logging(args: &DaemonArgs) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,mistralrs_core=warn,mistralrs=warn"));
    let path = match (&args.log_file, args.log_to_state_dir) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(state_dir()?.join("etsd.log")),
        (None, false) => None,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match path {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating log directory {}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    Ok(())
}

/// `$XDG_STATE_HOME/ets`, else `~/.local/state/ets`.
fn state_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(state).join("ets"));
    }
    let home = var("HOME").context("no log directory: set XDG_STATE_HOME or HOME")?;
    Ok(PathBuf::from(home).join(".local/state/ets"))
}

/// The models' warm prompts, as the KV budget sees them (see [`jobs::YieldingKv`]).
struct WarmPrompts(std::sync::Weak<Daemon>);

impl jobs::YieldingKv for WarmPrompts {
    fn bytes(&self) -> u64 {
        self.0
            .upgrade()
            .map_or(0, |daemon| daemon.registry.prompt_cache_bytes())
    }

    fn trim(&self, max_bytes: u64) {
        if let Some(daemon) = self.0.upgrade() {
            daemon.registry.trim_prompt_caches(max_bytes);
        }
    }
}
