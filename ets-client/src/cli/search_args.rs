//! The search flags `solve` and `batch` share, and their validation into a [`SolveRequest`]
//! before anything connects.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use ets_client::{EngineChoice, SolveRequest};
use ets_core::{KvCost, Method, SearchConfig};

use super::UsageError;

/// Search settings of one search (`solve`, `batch`): the method, width and seed, and the
/// settings every search shares. Unset flags take the daemon's and the paper's defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct SearchArgs {
    /// Method, width, seed.
    #[command(flatten)]
    pub cell: CellArgs,
    /// Caps, sampling, models.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// The method, width and seed of a search (`ets eval` takes lists instead: `--methods`,
/// `--widths`, `--seeds`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Search options")]
pub struct CellArgs {
    /// Selection method [default: ets].
    #[arg(long, value_name = "METHOD", value_parser = method_parser())]
    pub method: Option<Method>,

    /// Search width: trajectories the search may finish [default: 16].
    #[arg(long, value_name = "W")]
    pub width: Option<usize>,

    /// Seed of every random choice [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Caps, sampling and models, shared by every search of a command.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Search options")]
pub struct SettingsArgs {
    /// Deepest step expanded [default: 25].
    #[arg(long, value_name = "D")]
    pub max_depth: Option<usize>,

    /// Most tokens in one step [default: 256].
    #[arg(long, value_name = "N")]
    pub max_step_tokens: Option<usize>,

    /// Most tokens one trajectory may generate [default: 1024].
    #[arg(long = "max-tokens", value_name = "N")]
    pub max_total_tokens: Option<usize>,

    /// Policy sampling temperature; 0 is greedy [default: 1.0].
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Stop once the answer is decided: no trajectory the unspent width could still finish
    /// can change the vote's winner (the same answer as the full search, fewer tokens; ETS,
    /// REBASE and beam).
    #[arg(long)]
    pub stop_when_decided: bool,

    /// Stop once one answer holds this share of the vote (0-1], e.g. 0.8; may change the
    /// answer the full search would give, so the result ends `share-reached` (ETS, REBASE
    /// and beam).
    #[arg(long, value_name = "SHARE")]
    pub stop_at_share: Option<f64>,

    /// Finished trajectories `--stop-at-share` waits for [default: 1].
    #[arg(long, value_name = "N", requires = "stop_at_share")]
    pub min_finished: Option<usize>,

    /// Hard limit on the search's live KV, in tokens of the policy's tree (prompt included):
    /// each depth spends only the width whose kept paths plus one full step per child fit, so
    /// the live KV never exceeds it; a search left without room ends `kv-limit` with the
    /// trajectories finished so far (every method: ETS and REBASE choose what to keep under it,
    /// beam, DVTS and best-of-N give their own picks only the children that fit). The daemon's
    /// `--kv-budget` reserves this limit instead of the search's worst case.
    #[arg(long, value_name = "TOKENS")]
    pub kv_limit: Option<u64>,

    /// ETS's weight on KV cost, λ_b: each kept node costs λ_b / (all nodes) of the objective
    /// [default: 1, the paper's].
    #[arg(long, value_name = "WEIGHT")]
    pub lambda_b: Option<f64>,

    /// ETS's weight on semantic coverage, λ_s: each cluster kept is worth λ_s / (clusters)
    /// [default: the paper's for the width: 1.5 at 16, 1.4 at 64, 1.45 at 256].
    #[arg(long, value_name = "WEIGHT")]
    pub lambda_s: Option<f64>,

    /// Cosine distance under which two steps are one cluster for ETS's coverage term; larger
    /// merges more [default: 0.05, the paper's].
    #[arg(long, value_name = "DISTANCE")]
    pub cluster_threshold: Option<f64>,

    /// What ETS's KV cost counts: `nodes` (the paper's) or `tokens` (a node weighs its own
    /// tokens, so a 250-token step costs 50 times a 5-token one) [default: nodes].
    #[arg(long, value_name = "COST", value_parser = kv_cost_parser())]
    pub kv_cost: Option<KvCost>,

    /// Wall-clock budget per job in seconds from acceptance; the job fails past it.
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<f64>,

    /// Extra text that marks a finished step (repeatable; added to "The answer is" and
    /// "\boxed").
    #[arg(long = "answer-marker", value_name = "TEXT")]
    pub answer_markers: Vec<String>,

    /// Policy model: store alias or path [default: the daemon's].
    #[arg(long, value_name = "MODEL")]
    pub policy: Option<String>,

    /// Process reward model: store alias or path [default: the daemon's].
    #[arg(long, value_name = "MODEL")]
    pub prm: Option<String>,

    /// PRM profile: built-in name or TOML file [default: the daemon's].
    #[arg(long, value_name = "PROFILE")]
    pub prm_profile: Option<String>,

    /// Step embedder for ETS clustering: store alias or path, or `policy` for the native
    /// policy's own hidden states [default: the daemon's].
    #[arg(long, value_name = "MODEL")]
    pub embedder: Option<String>,

    /// Engine for the policy and the PRM: auto (native for llama-family GGUF on the CPU),
    /// native, mistralrs or remote (a remote model's name always runs remotely) [default: the
    /// daemon's].
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<EngineChoice>,
}

fn kv_cost_parser() -> impl TypedValueParser<Value = KvCost> {
    let names = KvCost::ALL.map(KvCost::name);
    PossibleValuesParser::new(names).try_map(|name| name.parse::<KvCost>())
}

fn method_parser() -> impl TypedValueParser<Value = Method> {
    let names = Method::ALL.map(Method::name);
    PossibleValuesParser::new(names).try_map(|name| name.parse::<Method>())
}

/// Per-problem settings that override the flags (a batch line's `method`, `width`, `seed`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    /// Method.
    pub method: Option<Method>,
    /// Width.
    pub width: Option<usize>,
    /// Seed.
    pub seed: Option<u64>,
}

impl SearchArgs {
    /// A validated request for `problem`; `overrides` win over the flags.
    pub fn request(
        &self,
        problem: impl Into<String>,
        overrides: Overrides,
    ) -> Result<SolveRequest, UsageError> {
        let overrides = Overrides {
            method: overrides.method.or(self.cell.method),
            width: overrides.width.or(self.cell.width),
            seed: overrides.seed.or(self.cell.seed),
        };
        self.settings.request(problem, overrides)
    }
}

impl SettingsArgs {
    /// A validated request for `problem` with the method, width and seed of `cell` (the
    /// daemon's defaults where it has none).
    pub fn request(
        &self,
        problem: impl Into<String>,
        cell: Overrides,
    ) -> Result<SolveRequest, UsageError> {
        let mut request = SolveRequest::new(problem);
        let config = &mut request.config;
        set(&mut config.method, cell.method);
        set(&mut config.width, cell.width);
        set(&mut config.seed, cell.seed);
        set(&mut config.max_depth, self.max_depth);
        set(&mut config.max_step_tokens, self.max_step_tokens);
        set(&mut config.max_total_tokens, self.max_total_tokens);
        set(&mut config.sampling.temperature, self.temperature);
        config.stop_when_decided |= self.stop_when_decided;
        if self.stop_at_share.is_some() {
            config.stop_at_share = self.stop_at_share;
        }
        set(&mut config.min_finished, self.min_finished);
        set(&mut config.kv_cost, self.kv_cost);
        set(&mut config.lambda_b, self.lambda_b);
        if self.lambda_s.is_some() {
            config.lambda_s = self.lambda_s;
        }
        set(&mut config.cluster_threshold, self.cluster_threshold);
        if self.kv_limit.is_some() {
            config.kv_limit = self.kv_limit;
        }
        config
            .answer_markers
            .extend(self.answer_markers.iter().cloned());
        validate(config)?;
        if let Some(secs) = self.deadline {
            if !(secs.is_finite() && secs > 0.0) {
                return Err(UsageError(format!(
                    "--deadline must be a positive number of seconds, got {secs}"
                )));
            }
            request.deadline_ms = Some((secs * 1000.0).ceil() as u64);
        }
        let models = &mut request.models;
        models.policy = self.policy.clone();
        models.prm = self.prm.clone();
        models.prm_profile = self.prm_profile.clone();
        models.embedder = self.embedder.clone();
        models.engine = self.engine;
        Ok(request)
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

fn validate(config: &SearchConfig) -> Result<(), UsageError> {
    config.validate().map_err(|e| {
        let flag = match e.field {
            "max_total_tokens" => "--max-tokens".to_owned(),
            "sampling.temperature" => "--temperature".to_owned(),
            "answer_markers" => "--answer-marker".to_owned(),
            field => format!("--{}", field.replace('_', "-")),
        };
        UsageError(format!("{flag}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        search: SearchArgs,
    }

    fn parse(args: &[&str]) -> SearchArgs {
        let argv = std::iter::once("test").chain(args.iter().copied());
        Wrapper::try_parse_from(argv).unwrap().search
    }

    #[test]
    fn ets_weights_reach_the_config_and_bad_ones_name_the_flag() {
        let r = parse(&[
            "--lambda-b",
            "4",
            "--lambda-s",
            "0.5",
            "--cluster-threshold",
            "0.3",
        ])
        .request("x", Overrides::default())
        .unwrap();
        let c = &r.config;
        assert_eq!(
            (c.lambda_b, c.lambda_s, c.cluster_threshold),
            (4.0, Some(0.5), 0.3)
        );
        let defaults = parse(&[]).request("x", Overrides::default()).unwrap();
        let d = SearchConfig::default();
        assert_eq!(
            (defaults.config.lambda_b, defaults.config.lambda_s),
            (d.lambda_b, d.lambda_s)
        );
        for (flag, value) in [
            ("--lambda-b", "--lambda-b=-1"),
            ("--lambda-s", "--lambda-s=NaN"),
        ] {
            let e = parse(&[value])
                .request("x", Overrides::default())
                .unwrap_err();
            assert!(e.0.starts_with(flag), "{e}");
        }
    }

    #[test]
    fn flags_become_a_request() {
        let args = parse(&[
            "--method",
            "bon",
            "--width",
            "4",
            "--max-tokens",
            "300",
            "--deadline",
            "1.5",
            "--answer-marker",
            "ANSWER:",
            "--prm-profile",
            "judge",
            "--engine",
            "native",
        ]);
        let r = args.request("2+2?", Overrides::default()).unwrap();
        assert_eq!(r.models.engine, Some(EngineChoice::Native));
        assert_eq!(r.problem, "2+2?");
        assert_eq!(r.config.method, Method::BestOfN);
        assert_eq!(r.config.width, 4);
        assert_eq!(r.config.max_total_tokens, 300);
        assert_eq!(r.deadline_ms, Some(1500));
        assert_eq!(r.config.answer_markers.last().unwrap(), "ANSWER:");
        assert!(r.config.answer_markers.len() > 1, "markers are added");
        assert_eq!(r.models.prm_profile.as_deref(), Some("judge"));
        assert!(r.models.policy.is_none());
        let bad = Wrapper::try_parse_from(["x", "--engine", "turbo"]).unwrap_err();
        assert!(bad.to_string().contains("unknown engine `turbo`"), "{bad}");

        let o = Overrides {
            method: Some(Method::Beam),
            width: Some(9),
            seed: Some(7),
        };
        let r = args.request("x", o).unwrap();
        assert_eq!(
            (r.config.method, r.config.width, r.config.seed),
            (Method::Beam, 9, 7)
        );
    }

    #[test]
    fn documented_defaults_are_the_real_ones() {
        use clap::CommandFactory;
        let help = Wrapper::command().render_help().to_string();
        let d = SearchConfig::default();
        for (flag, value) in [
            ("--method", d.method.to_string()),
            ("--width", d.width.to_string()),
            ("--seed", d.seed.to_string()),
            ("--max-depth", d.max_depth.to_string()),
            ("--max-step-tokens", d.max_step_tokens.to_string()),
            ("--max-tokens", d.max_total_tokens.to_string()),
            ("--temperature", format!("{:.1}", d.sampling.temperature)),
        ] {
            let line = help.lines().find(|l| l.contains(flag)).unwrap();
            assert!(line.contains(&format!("[default: {value}]")), "{line}");
        }
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--width", "0"])
            .request("x", Overrides::default())
            .unwrap_err();
        assert!(e.0.starts_with("--width"), "{e}");
        let e = parse(&["--deadline", "0"])
            .request("x", Overrides::default())
            .unwrap_err();
        assert!(e.0.contains("--deadline"), "{e}");
        assert!(Wrapper::try_parse_from(["t", "--method", "mcts"]).is_err());
        let e = parse(&["--stop-at-share", "1.5"])
            .request("x", Overrides::default())
            .unwrap_err();
        assert!(e.0.starts_with("--stop-at-share"), "{e}");
        let e = parse(&[
            "--width",
            "4",
            "--stop-at-share",
            "0.8",
            "--min-finished",
            "5",
        ])
        .request("x", Overrides::default())
        .unwrap_err();
        assert!(e.0.starts_with("--min-finished"), "{e}");
        let alone = Wrapper::try_parse_from(["t", "--min-finished", "2"]).unwrap_err();
        assert!(alone.to_string().contains("--stop-at-share"), "{alone}");
    }

    #[test]
    fn share_stop_flags_reach_the_config() {
        let r = parse(&[
            "--width",
            "8",
            "--stop-at-share",
            "0.75",
            "--min-finished",
            "3",
        ])
        .request("x", Overrides::default())
        .unwrap();
        assert_eq!(r.config.stop_at_share, Some(0.75));
        assert_eq!(r.config.min_finished, 3);
        let r = parse(&[]).request("x", Overrides::default()).unwrap();
        assert_eq!(r.config.stop_at_share, None);
        assert_eq!(r.config.min_finished, SearchConfig::default().min_finished);
    }

    #[test]
    fn kv_flags_reach_the_config_and_bad_ones_name_the_flag() {
        let r = parse(&["--kv-limit", "1500", "--kv-cost", "tokens"])
            .request("x", Overrides::default())
            .unwrap();
        assert_eq!(r.config.kv_limit, Some(1500));
        assert_eq!(r.config.kv_cost, KvCost::Tokens);
        let r = parse(&[]).request("x", Overrides::default()).unwrap();
        assert_eq!((r.config.kv_limit, r.config.kv_cost), (None, KvCost::Nodes));
        let e = parse(&["--kv-limit", "0"])
            .request("x", Overrides::default())
            .unwrap_err();
        assert!(e.0.starts_with("--kv-limit"), "{e}");
        let r = parse(&["--method", "dvts", "--kv-limit", "900"])
            .request("x", Overrides::default())
            .unwrap();
        assert_eq!(r.config.kv_limit, Some(900));
        assert!(Wrapper::try_parse_from(["t", "--kv-cost", "bytes"]).is_err());
    }
}
