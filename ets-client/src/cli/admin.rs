//! The commands that manage a running daemon: `ps`, `cancel`, `models …`, `status`, `metrics`,
//! `shutdown`. None of them starts the daemon; `models list` reads the store from disk when no
//! daemon runs. With `--json` each prints the protocol's own types as JSON.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use ets_client::EngineChoice;
use ets_client::{
    Client, ClientError, JobId, JobInfo, JobState, ModelRole, StatusReport, StoreModel,
};
use ets_core::protocol::{EndpointInfo, ModelInfo, RemoteModelSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::render::{bytes, count, duration, short, table};
use super::{exit, print_json, print_line, Globals};

/// `ets models …`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models the store knows (built-in aliases and pulled ones) and which are loaded;
    /// without a running daemon, the store on disk ($ETS_MODELS_DIR, else
    /// $XDG_DATA_HOME/ets/models, else ~/.local/share/ets/models).
    List,
    /// Download a model into the store.
    Pull {
        /// Store alias (see `ets models list`).
        alias: String,
    },
    /// Load a model and keep it warm.
    Load {
        /// Store alias or path.
        model: String,
        /// The role it is loaded for.
        #[arg(long, value_enum, default_value_t = RoleArg::Policy)]
        role: RoleArg,
        /// Idle keep-alive in seconds; -1 keeps it forever [default: the daemon's].
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        keep_alive: Option<i64>,
        /// Engine for a policy or PRM: auto, native, mistralrs or remote [default: the daemon's].
        #[arg(long, value_name = "ENGINE")]
        engine: Option<EngineChoice>,
    },
    /// Add a model served by remote engines (llama.cpp server, vLLM), by name.
    Add {
        /// The name jobs use for it (`ets solve --policy NAME`).
        name: String,
        /// Endpoints, `http://host:port`, comma-separated.
        #[arg(
            long,
            value_name = "URL[,URL…]",
            value_delimiter = ',',
            required = true
        )]
        remote: Vec<String>,
        /// The model name the servers expect [default: the first one they list].
        #[arg(long, value_name = "NAME")]
        served_name: Option<String>,
        /// The role it is meant for.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// PRM profile to use with it when it is the PRM and a job names none.
        #[arg(long, value_name = "PROFILE")]
        prm_profile: Option<String>,
        /// Server dialect: llama.cpp or vllm [default: detected].
        #[arg(long, value_name = "DIALECT")]
        dialect: Option<String>,
        /// Seconds one request may take before it is retried elsewhere [default: 120].
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3600))]
        timeout: Option<u32>,
    },
    /// Unload a model.
    Unload {
        /// Store alias or path.
        model: String,
    },
    /// Pin a model so idleness never unloads it (or unpin it).
    Pin {
        /// Store alias or path.
        model: String,
        /// Unpin instead.
        #[arg(long)]
        unpin: bool,
    },
}

/// A model role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The policy LLM.
    Policy,
    /// The process reward model.
    Prm,
    /// The step embedder.
    Embedder,
}

impl From<RoleArg> for ModelRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Policy => ModelRole::Policy,
            RoleArg::Prm => ModelRole::Prm,
            RoleArg::Embedder => ModelRole::Embedder,
        }
    }
}

async fn connect(g: &Globals) -> anyhow::Result<Client> {
    Ok(g.connect(false).await?)
}

/// `ets ps`.
pub async fn ps(g: &Globals) -> anyhow::Result<u8> {
    let jobs = connect(g).await?.list_jobs().await?;
    if g.json {
        print_json("jobs", &jobs)?;
    } else if jobs.is_empty() {
        print_line("no jobs")?;
    } else {
        print_line(jobs_table(&jobs).trim_end())?;
    }
    Ok(exit::OK)
}

fn jobs_table(jobs: &[JobInfo]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.job.to_string(),
                match j.state {
                    JobState::Queued => "queued".into(),
                    JobState::Running => "running".into(),
                },
                j.queue_position.map_or("-".into(), |p| p.to_string()),
                j.method.to_string(),
                j.width.to_string(),
                j.depth.to_string(),
                count(j.nodes as u64),
                format!("{} tok / {}", count(j.live_tokens), bytes(j.live_bytes)),
                duration(Duration::from_millis(j.age_ms)),
                short(&j.problem, 50),
            ]
        })
        .collect();
    let headers = [
        "JOB", "STATE", "QUEUE", "METHOD", "WIDTH", "DEPTH", "NODES", "LIVE KV", "AGE", "PROBLEM",
    ];
    table(&headers, &rows)
}

/// `ets cancel <job>`.
pub async fn cancel(g: &Globals, job: JobId) -> anyhow::Result<u8> {
    connect(g).await?.cancel(job).await?;
    if g.json {
        print_json("cancelled", &json!({"job": job}))?;
    } else {
        print_line(format_args!("cancelled job {job}"))?;
    }
    Ok(exit::OK)
}

/// `ets models list`: the daemon's list when one runs (it marks what is loaded and adds remote
/// models), else the store read from disk, nothing loaded.
async fn list_models(g: &Globals) -> anyhow::Result<u8> {
    let models = match g.connect(false).await {
        Ok(client) => client.list_models().await?,
        Err(ClientError::DaemonNotRunning { socket }) => {
            let Some(root) = ets_client::store::default_store_dir() else {
                anyhow::bail!(
                    "no daemon at {} and no model store to read: set ${} or $HOME",
                    socket.display(),
                    ets_client::store::STORE_ENV
                );
            };
            if !g.json {
                eprintln!(
                    "no daemon at {}: the store at {} (nothing is loaded)",
                    socket.display(),
                    root.display()
                );
            }
            ets_client::store::list_store(&root)
        }
        Err(e) => return Err(e.into()),
    };
    if g.json {
        print_json("models", &models)?;
    } else {
        print_line(models_table(&models).trim_end())?;
    }
    Ok(exit::OK)
}

/// `ets models …`.
pub async fn models(g: &Globals, command: ModelsCommand) -> anyhow::Result<u8> {
    if let ModelsCommand::List = command {
        return list_models(g).await;
    }
    let client = connect(g).await?;
    let done = |what: String| -> anyhow::Result<u8> {
        if g.json {
            print_json("done", &json!({"message": what}))?;
        } else {
            print_line(what)?;
        }
        Ok(exit::OK)
    };
    match command {
        ModelsCommand::List => unreachable!("listed above"),
        ModelsCommand::Pull { alias } => {
            let spinner = spinner(g, format!("pulling {alias}"));
            let pulled = client.pull(alias).await;
            spinner.finish_and_clear();
            let pulled = pulled?;
            if g.json {
                print_json("pull", &pulled)?;
            } else if pulled.already_present {
                print_line(format_args!(
                    "{} is already in the store ({})",
                    pulled.alias, pulled.path
                ))?;
            } else {
                print_line(format_args!(
                    "pulled {} ({}) into {}",
                    pulled.alias,
                    bytes(pulled.bytes),
                    pulled.path
                ))?;
            }
            Ok(exit::OK)
        }
        ModelsCommand::Load {
            model,
            role,
            keep_alive,
            engine,
        } => {
            let spinner = spinner(g, format!("loading {model}"));
            let loaded = client
                .load_model(&model, role.into(), keep_alive, engine)
                .await;
            spinner.finish_and_clear();
            loaded?;
            done(format!("loaded {model} as {role:?}").to_lowercase())
        }
        ModelsCommand::Add {
            name,
            remote,
            served_name,
            role,
            prm_profile,
            dialect,
            timeout,
        } => {
            let endpoints = remote.len();
            client
                .add_remote_model(RemoteModelSpec {
                    name: name.clone(),
                    endpoints: remote,
                    served_name,
                    role: role.map(Into::into),
                    prm_profile,
                    dialect,
                    timeout_secs: timeout,
                })
                .await?;
            done(format!("added remote model {name} ({endpoints} endpoints)"))
        }
        ModelsCommand::Unload { model } => {
            client.unload_model(&model).await?;
            done(format!("unloaded {model}"))
        }
        ModelsCommand::Pin { model, unpin } => {
            client.pin_model(&model, !unpin).await?;
            done(format!(
                "{} {model}",
                if unpin { "unpinned" } else { "pinned" }
            ))
        }
    }
}

fn spinner(g: &Globals, message: String) -> ProgressBar {
    if g.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid"));
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn models_table(models: &[StoreModel]) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                m.alias.clone(),
                yes(m.pulled),
                yes(m.loaded),
                if m.pulled { bytes(m.bytes) } else { "-".into() },
                m.description.clone(),
            ]
        })
        .collect();
    table(&["ALIAS", "PULLED", "LOADED", "SIZE", "DESCRIPTION"], &rows)
}

/// `ets status`.
pub async fn status(g: &Globals) -> anyhow::Result<u8> {
    let report = connect(g).await?.status().await?;
    if g.json {
        print_json("status", &report)?;
    } else {
        print_line(status_text(&report).trim_end())?;
    }
    Ok(exit::OK)
}

fn status_text(r: &StatusReport) -> String {
    let budget = r
        .kv_budget_bytes
        .map_or(String::new(), |b| format!(" (budget {})", bytes(b)));
    let mut out = format!(
        "etsd {} (pid {}) on {}, up {}\n\
         models dir     {}\n\
         clients        {}, searches at once {}\n\
         jobs           {} queued or running; {} done, {} failed, {} cancelled\n\
         live KV        {} tokens / {}{budget}\n",
        r.version,
        r.pid,
        r.socket,
        duration(Duration::from_secs(r.uptime_secs)),
        r.models_dir,
        r.clients,
        r.max_concurrent,
        r.jobs.len(),
        r.jobs_done,
        r.jobs_failed,
        r.jobs_cancelled,
        count(r.live_kv_tokens),
        bytes(r.live_kv_bytes),
    );
    if r.kv_nodes_leaked > 0 {
        out.push_str(&format!("KV leaked      {} nodes\n", r.kv_nodes_leaked));
    }
    let in_budget = match r.kv_budget_bytes {
        Some(_) => " (in the budget, giving way to jobs)",
        None => "",
    };
    let warm_models = r.models.iter().filter(|m| m.prompt_cache.is_some()).count();
    if warm_models > 0 {
        out.push_str(&format!(
            "warm prompts   {}{in_budget}\n",
            bytes(r.prompt_cache_bytes)
        ));
    }
    if r.models.is_empty() {
        out.push_str("\nno models loaded\n");
    } else {
        out.push('\n');
        out.push_str(&loaded_table(&r.models));
    }
    if warm_models > 0 {
        out.push_str("\nwarm prompts across jobs\n");
        out.push_str(&prompt_cache_table(&r.models));
    }
    for m in r.models.iter().filter(|m| !m.endpoints.is_empty()) {
        out.push_str(&format!("\nendpoints of {}\n", m.model));
        out.push_str(&endpoints_table(&m.endpoints));
    }
    if !r.jobs.is_empty() {
        out.push('\n');
        out.push_str(&jobs_table(&r.jobs));
    }
    out
}

fn prompt_cache_table(models: &[ModelInfo]) -> String {
    let rows: Vec<Vec<String>> = models
        .iter()
        .filter_map(|m| m.prompt_cache.map(|c| (m, c)))
        .map(|(m, c)| {
            vec![
                m.model.clone(),
                count(c.entries),
                bytes(c.bytes),
                bytes(c.max_bytes),
                count(c.hits),
                count(c.shared_hits),
                count(c.misses),
                count(c.tokens_reused),
            ]
        })
        .collect();
    table(
        &[
            "MODEL",
            "PROMPTS",
            "BYTES",
            "CAP",
            "HITS",
            "SHARED",
            "MISSES",
            "TOKENS REUSED",
        ],
        &rows,
    )
}

fn endpoints_table(endpoints: &[EndpointInfo]) -> String {
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.url.clone(),
                if e.up { "up" } else { "down" }.into(),
                e.in_flight.to_string(),
                count(e.requests),
                count(e.errors),
                format!("{:.0} ms", e.mean_latency_ms),
                e.last_error.as_deref().map_or("-".into(), |m| short(m, 60)),
            ]
        })
        .collect();
    table(
        &[
            "ENDPOINT",
            "HEALTH",
            "IN FLIGHT",
            "REQUESTS",
            "ERRORS",
            "LATENCY",
            "LAST ERROR",
        ],
        &rows,
    )
}

fn loaded_table(models: &[ModelInfo]) -> String {
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let roles: Vec<String> = m
                .roles
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect();
            vec![
                m.model.clone(),
                format!("{:?}", m.state).to_lowercase(),
                m.engine.clone(),
                roles.join(","),
                if m.pinned { "yes" } else { "no" }.into(),
                m.in_use.to_string(),
                bytes(m.bytes),
                duration(Duration::from_secs(m.idle_secs)),
                if m.keep_alive_secs < 0 {
                    "forever".into()
                } else {
                    duration(Duration::from_secs(m.keep_alive_secs as u64))
                },
            ]
        })
        .collect();
    let headers = [
        "MODEL",
        "STATE",
        "ENGINE",
        "ROLES",
        "PINNED",
        "IN USE",
        "SIZE",
        "IDLE",
        "KEEP-ALIVE",
    ];
    table(&headers, &rows)
}

/// `ets metrics`.
pub async fn metrics(g: &Globals) -> anyhow::Result<u8> {
    let text = connect(g).await?.metrics().await?;
    if g.json {
        print_json("metrics", &json!({ "text": text }))?;
    } else {
        print_line(text.trim_end())?;
    }
    Ok(exit::OK)
}

/// `ets shutdown`.
pub async fn shutdown(g: &Globals) -> anyhow::Result<u8> {
    let client = connect(g).await?;
    let socket = client.socket().display().to_string();
    client.shutdown().await?;
    if g.json {
        print_json("shutdown", &json!({"socket": socket}))?;
    } else {
        print_line(format_args!("daemon at {socket} is shutting down"))?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_text_names_what_matters() {
        let report = StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            socket: "/tmp/e.sock".into(),
            kv_budget_bytes: Some(1 << 30),
            ..StatusReport::default()
        };
        let text = status_text(&report);
        assert!(
            text.contains("pid 42") && text.contains("/tmp/e.sock"),
            "{text}"
        );
        assert!(text.contains("budget 1.0 GiB"), "{text}");
        assert!(text.contains("no models loaded"), "{text}");
        assert!(!text.contains("warm prompts"), "{text}");
    }

    #[test]
    fn the_status_text_shows_warm_prompts_per_model() {
        let model = ModelInfo {
            model: "smollm2-135m".into(),
            path: "/m".into(),
            state: ets_core::protocol::ModelState::Ready,
            engine: "native".into(),
            in_use: 0,
            roles: Vec::new(),
            pinned: false,
            bytes: 1,
            idle_secs: 0,
            keep_alive_secs: 60,
            endpoints: Vec::new(),
            prompt_cache: Some(ets_core::protocol::PromptCacheStats {
                hits: 7,
                shared_hits: 3,
                misses: 2,
                tokens_reused: 1234,
                entries: 5,
                bytes: 3 << 20,
                max_bytes: 256 << 20,
            }),
        };
        let report = StatusReport {
            models: vec![model],
            kv_budget_bytes: Some(1 << 30),
            prompt_cache_bytes: 3 << 20,
            ..StatusReport::default()
        };
        let text = status_text(&report);
        assert!(
            text.contains("warm prompts   3.0 MiB (in the budget"),
            "{text}"
        );
        let row = text
            .lines()
            .find(|l| l.starts_with("smollm2-135m") && l.contains("256.0 MiB"))
            .unwrap_or_else(|| panic!("no warm prompt row: {text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "smollm2-135m",
                "5",
                "3.0",
                "MiB",
                "256.0",
                "MiB",
                "7",
                "3",
                "2",
                "1,234"
            ],
            "{text}"
        );
    }
}
