//! The daemon's settings, as `etsd` flags (and `ets serve` flags: the CLI flattens this struct).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ets_core::protocol::EngineChoice;
use ets_core::RequestLimits;

/// How `etsd` runs.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Socket to listen on [default: $ETS_SOCKET, else $XDG_RUNTIME_DIR/ets/etsd.sock, else
    /// /tmp/ets-$UID/etsd.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Model store [default: $ETS_MODELS_DIR, else $XDG_DATA_HOME/ets/models, else
    /// ~/.local/share/ets/models].
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,

    /// Searches that run at once; later jobs wait in the queue.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_concurrent: usize,

    /// Jobs allowed to load or wait beside the running ones; past it a solve is refused at
    /// once, newest first (seats go in submission order).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_queue: usize,

    /// Budget for the live KV of all running searches, in bytes (suffixes K, M, G, KiB, MiB,
    /// GiB). A job whose worst case does not fit waits; one that could never fit fails.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub kv_budget: Option<u64>,

    /// Byte cap of each native model's warm prompts: the K/V of root prompts kept across jobs
    /// so that a repeated problem, or one sharing a chat header, is not prefilled again (0
    /// keeps none). Under --kv-budget they count in the budget and give way to jobs.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = ets_engine::DEFAULT_PROMPT_CACHE_BYTES)]
    pub prompt_cache: u64,

    /// Idle keep-alive of a loaded model in seconds; -1 keeps models forever.
    #[arg(
        long,
        default_value_t = 1800,
        allow_negative_numbers = true,
        value_name = "SECS"
    )]
    pub keep_alive: i64,

    /// Exit after this long with no jobs and no clients: minutes (`30`), or with a unit
    /// (`90s`, `15m`, `2h`).
    #[arg(long, value_name = "MINUTES", value_parser = parse_idle_exit)]
    pub idle_exit: Option<Duration>,

    /// Write logs to this file instead of stderr (`RUST_LOG` sets the level; default info).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Write logs to `$XDG_STATE_HOME/ets/etsd.log` (else `~/.local/state/ets/etsd.log`).
    #[arg(long, conflicts_with = "log_file")]
    pub log_to_state_dir: bool,

    /// Default policy model (store alias or path).
    #[arg(long, default_value = "smollm2-135m", value_name = "MODEL")]
    pub policy: String,

    /// Default process reward model (store alias or path).
    #[arg(long, default_value = "smollm2-135m", value_name = "MODEL")]
    pub prm: String,

    /// Default PRM profile (built-in name or TOML file).
    #[arg(long, default_value = "judge", value_name = "PROFILE")]
    pub prm_profile: String,

    /// Default step embedder (store alias or path), or `policy`: the policy's own mean hidden
    /// state over each step (native engine only; no second model).
    #[arg(long, default_value = "minilm-l6", value_name = "MODEL")]
    pub embedder: String,

    /// Engine for policies and PRMs: `auto` (native for llama-family GGUF files on the CPU,
    /// mistral.rs for other models and in `cuda` builds), `native` or `mistralrs`; a remote
    /// model's name always runs on `remote`. A request may ask for another.
    #[arg(long, default_value_t = EngineChoice::Auto, value_name = "ENGINE")]
    pub engine: EngineChoice,

    /// Engine for one model, over --engine: `MODEL=ENGINE`, MODEL as jobs name it (alias or
    /// path). Repeatable.
    #[arg(long = "engine-for", value_name = "MODEL=ENGINE", value_parser = parse_engine_for)]
    pub engine_for: Vec<(String, EngineChoice)>,

    /// Pull a missing built-in model when a job needs it (otherwise the job fails and says how
    /// to pull it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub auto_pull: bool,

    /// Daemon config file with remote models [default: $XDG_CONFIG_HOME/ets/etsd.toml, read if
    /// present].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// A remote model: NAME=URL[,URL…] (llama.cpp server or vLLM endpoints). Repeatable;
    /// overrides a config-file entry of the same name.
    #[arg(long = "remote", value_name = "NAME=URL[,URL…]", value_parser = super::remotes::parse_remote_flag)]
    pub remote: Vec<ets_core::protocol::RemoteModelSpec>,

    /// The largest search accepted; a request over a limit is refused, naming it.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Request limits as daemon flags (defaults: [`RequestLimits::default`]).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most trajectories one search may grow (`width`).
    #[arg(long, default_value_t = RequestLimits::default().max_width, value_name = "N")]
    pub max_width: usize,
    /// Deepest depth cap a request may set (`max_depth`).
    #[arg(long, default_value_t = RequestLimits::default().max_depth, value_name = "N")]
    pub max_depth: usize,
    /// Most tokens of one step a request may set (`max_step_tokens`).
    #[arg(long, default_value_t = RequestLimits::default().max_step_tokens, value_name = "N")]
    pub max_step_tokens: usize,
    /// Most tokens of one trajectory a request may set (`max_total_tokens`).
    #[arg(long, default_value_t = RequestLimits::default().max_total_tokens, value_name = "N")]
    pub max_total_tokens: usize,
    /// Most bytes of a problem's text.
    #[arg(long, default_value_t = RequestLimits::default().max_problem_bytes, value_name = "BYTES")]
    pub max_problem_bytes: usize,
    /// Most client connections at once; more are refused with an error naming this flag.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections: usize,
    /// Most requests of one connection whose replies are not sent yet; the daemon reads no
    /// more of that connection's requests until one is answered.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_inflight_requests: usize,
    /// Most replies and events queued for a client that does not read them; past this the
    /// connection is closed and its jobs end as if it had left.
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    pub max_queued_replies: usize,
}

impl LimitArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            max_width: self.max_width,
            max_depth: self.max_depth,
            max_step_tokens: self.max_step_tokens,
            max_total_tokens: self.max_total_tokens,
            max_problem_bytes: self.max_problem_bytes,
        }
    }
}

impl Default for LimitArgs {
    fn default() -> Self {
        let d = RequestLimits::default();
        Self {
            max_width: d.max_width,
            max_depth: d.max_depth,
            max_step_tokens: d.max_step_tokens,
            max_total_tokens: d.max_total_tokens,
            max_problem_bytes: d.max_problem_bytes,
            max_connections: 256,
            max_inflight_requests: 1024,
            max_queued_replies: 65_536,
        }
    }
}

impl Default for DaemonArgs {
    fn default() -> Self {
        Self {
            socket: None,
            models_dir: None,
            max_concurrent: 2,
            max_queue: 1024,
            kv_budget: None,
            prompt_cache: ets_engine::DEFAULT_PROMPT_CACHE_BYTES,
            keep_alive: 1800,
            idle_exit: None,
            log_file: None,
            log_to_state_dir: false,
            policy: "smollm2-135m".into(),
            prm: "smollm2-135m".into(),
            prm_profile: "judge".into(),
            embedder: "minilm-l6".into(),
            engine: EngineChoice::Auto,
            engine_for: Vec::new(),
            auto_pull: true,
            limits: LimitArgs::default(),
            config: None,
            remote: Vec::new(),
        }
    }
}

impl DaemonArgs {
    /// The keep-alive as a duration; `None` means forever.
    pub fn keep_alive(&self) -> Option<Duration> {
        keep_alive_duration(self.keep_alive)
    }

    /// The engine for `model` when a request does not say: its `--engine-for`, else
    /// `--engine`.
    pub fn engine_for_model(&self, model: &str) -> EngineChoice {
        self.engine_for
            .iter()
            .rev()
            .find(|(name, _)| name == model)
            .map_or(self.engine, |&(_, engine)| engine)
    }
}

/// Parses `MODEL=ENGINE`.
fn parse_engine_for(text: &str) -> Result<(String, EngineChoice), String> {
    let (model, engine) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("`{text}` is not MODEL=ENGINE (e.g. smollm2-135m=native)"))?;
    if model.is_empty() {
        return Err(format!("`{text}` names no model before `=`"));
    }
    Ok((model.to_owned(), engine.parse()?))
}

/// A keep-alive in seconds as a duration; negative means forever (`None`).
pub fn keep_alive_duration(secs: i64) -> Option<Duration> {
    u64::try_from(secs).ok().map(Duration::from_secs)
}

/// Parses `--idle-exit`: a bare number is minutes; `s`, `m` and `h` name the unit.
fn parse_idle_exit(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 30, 90s, 15m or 2h)"))?;
    let secs = match unit {
        "" | "m" | "min" => 60,
        "s" => 1,
        "h" => 3600,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (a bare number is minutes; or use s, m, h)"
            ))
        }
    };
    if number == 0 {
        return Err(format!(
            "`{text}`: an idle exit after no time would exit at once"
        ));
    }
    number
        .checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses a byte count: `1048576`, `512M`, `4GiB`, `1.5G`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count (try 512M or 4GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use K, M, G, KiB, MiB or GiB)"
            ))
        }
    };
    Ok((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_exit_is_minutes_unless_a_unit_says_otherwise() {
        assert_eq!(parse_idle_exit("30"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_idle_exit("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_idle_exit("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_idle_exit("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "0", "5d", "1.5m", "-3", "99999999999999999999h"] {
            assert!(parse_idle_exit(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn byte_counts_parse_with_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512_000_000));
        assert_eq!(parse_bytes("1.5k"), Ok(1500));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse_bytes("lots").unwrap_err().contains("lots"));
    }

    #[test]
    fn engine_for_a_model_overrides_the_default() {
        let args = DaemonArgs {
            engine_for: vec![parse_engine_for("smollm2-135m=mistralrs").unwrap()],
            ..DaemonArgs::default()
        };
        assert_eq!(
            args.engine_for_model("smollm2-135m"),
            EngineChoice::MistralRs
        );
        assert_eq!(args.engine_for_model("other"), EngineChoice::Auto);
        assert!(parse_engine_for("smollm2-135m")
            .unwrap_err()
            .contains("MODEL=ENGINE"));
        assert!(parse_engine_for("x=turbo").unwrap_err().contains("turbo"));
        assert!(parse_engine_for("=native")
            .unwrap_err()
            .contains("no model"));
    }

    #[test]
    fn negative_keep_alive_is_forever() {
        assert_eq!(keep_alive_duration(-1), None);
        assert_eq!(keep_alive_duration(30), Some(Duration::from_secs(30)));
    }
}
