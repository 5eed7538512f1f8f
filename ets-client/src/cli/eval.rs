//! `ets eval`: every method × width × seed (× KV limit) on the same problems through one daemon connection,
//! one `results.jsonl` line per cell (resumable), then `summary.json`, `summary.md` and plots
//! (see `eval_output`). Voting, grading and aggregation are `ets_core::eval`'s.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ets_client::{ClientError, JobResult, SolveRequest};
use ets_core::answer::{Dataset, Grader};
use ets_core::eval::{
    infer_grader, load_problems, select_problems, CellKey, EvalRecord, Layout, Problem,
};
use ets_core::Method;

use super::batch::{failure, open_output_by, progress_bar};
use super::queue::{solve_all, QueueEnd};
use super::search_args::{Overrides, SettingsArgs};
use super::{eval_output, exit, Globals, Interrupts, UsageError};

const MATH500: &str = include_str!("../../../data/math500.jsonl");
const GSM8K: &str = include_str!("../../../data/gsm8k_test.jsonl");

/// Shown by `ets eval --help`.
pub const AFTER_HELP: &str = "\
Outputs in --out: results.jsonl (one line per problem × method × width × seed × KV limit, with
the full search tree and the vote), summary.json, summary.md, kv_per_depth_w<W>.svg (live KV
tokens per depth, one line per method; one file per limit with --kv-limits) and
accuracy_vs_kv.svg (one point per width and limit). Rerunning with the same --out skips the
cells already in results.jsonl. The built-in datasets are data/math500.jsonl and
data/gsm8k_test.jsonl (MIT); --dataset also takes a JSONL file of your own.
Exit: 0 every cell ran, 4 some failed (rerun to retry them), 130 interrupted (rerun to resume).";

/// `ets eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// `math500`, `gsm8k`, or a JSONL file (`problem`/`question`, `answer`/`reference`, `id`).
    #[arg(long, value_name = "NAME|FILE")]
    pub dataset: String,

    /// Grader of MATH answers (and of GSM8K answers that are not plain numbers): prm800k
    /// (PRM800K's grader, as most papers report) or lenient (mathematical equivalence, kinder to
    /// notation). Recorded in results.jsonl and summary.json.
    #[arg(long, value_name = "prm800k|lenient", default_value = "prm800k")]
    pub grader: String,

    /// Answer conventions for a file of your own [default: gsm8k for GSM8K-shaped lines, else
    /// math].
    #[arg(long, value_name = "math|gsm8k")]
    pub answers: Option<String>,

    /// Run only the first N problems (after --ids).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Run only these problem ids (comma-separated; MATH500: `unique_id`, GSM8K: `gsm8k/<line>`).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub ids: Vec<String>,

    /// Methods to compare (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "ets,rebase,beam,dvts,bon"
    )]
    pub methods: Vec<String>,

    /// Search widths (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "4,16,64"
    )]
    pub widths: Vec<usize>,

    /// Seeds (comma-separated); every method runs every problem with each.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,

    /// KV limits to sweep (comma-separated tokens; `none` runs without one): every method runs
    /// every problem under each, for accuracy against KV at equal limits.
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with = "kv_limit",
          value_parser = parse_kv_limit)]
    pub kv_limits: Vec<KvLimit>,

    /// Output directory (created; reused to resume).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Another eval's output directory to compare with: each cell beside the same cell there
    /// (same problem, method, width, seed and KV limit, else its cell without a limit), for
    /// answers kept and tokens and time saved by an early stop or a limit. Added to the
    /// summary; reports only, nothing there is rerun.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,

    /// Jobs in flight at once. 1 keeps each search's wall time its own (the throughput column).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Caps, models and sampling (the method, width and seed come from --methods, --widths,
    /// --seeds).
    #[command(flatten)]
    pub search: SettingsArgs,
}

/// One entry of `--kv-limits`: a limit in tokens, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvLimit(Option<u64>);

fn parse_kv_limit(text: &str) -> Result<KvLimit, String> {
    match text.trim() {
        "none" => Ok(KvLimit(None)),
        t => match t.parse::<u64>() {
            Ok(0) => Err("a KV limit must be at least 1 token (or `none`)".into()),
            Ok(n) => Ok(KvLimit(Some(n))),
            Err(_) => Err(format!("`{t}` is not a token count or `none`")),
        },
    }
}

/// What distinguishes two searches of one problem: method, width, seed and KV limit.
type Setting = (Method, usize, u64, Option<u64>);

/// The validated eval plan: problems, answer conventions, grader and every cell's request.
struct Plan {
    dataset: String,
    answers: Dataset,
    grader: Grader,
    problems: Vec<Problem>,
    methods: Vec<Method>,
    widths: Vec<usize>,
    seeds: Vec<u64>,
    kv_limits: Vec<Option<u64>>,
}

/// `items` without repeats, first occurrences kept in order.
fn dedup<T: Copy + Eq + std::hash::Hash>(mut items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.retain(|x| seen.insert(*x));
    items
}

/// The resume key of a cell (a cell without a KV limit keeps the key it had before limits).
fn key_string(key: &CellKey) -> String {
    let base = format!(
        "{}\t{}\t{}\t{}",
        key.problem_id, key.method, key.width, key.seed
    );
    match key.kv_limit {
        Some(limit) => format!("{base}\t{limit}"),
        None => base,
    }
}

/// The resume key of a results line: a line that reads back as a whole record.
fn results_key(line: &str) -> Option<String> {
    serde_json::from_str::<EvalRecord>(line)
        .ok()
        .map(|r| key_string(&r.key()))
}

fn parse_answers(name: &str) -> Option<Dataset> {
    match name {
        "math" | "math500" => Some(Dataset::Math),
        "gsm8k" => Some(Dataset::Gsm8k),
        _ => None,
    }
}

/// `--grader` and `--answers`. `--grader math|gsm8k`, the spelling of `--answers` before
/// graders could be chosen, is still read as `--answers` (with a warning).
fn parse_grading(args: &EvalArgs) -> Result<(Grader, Option<Dataset>), UsageError> {
    let answers = match &args.answers {
        Some(a) => Some(parse_answers(a).ok_or_else(|| {
            UsageError(format!(
                "--answers: unknown answer conventions `{a}` (expected math or gsm8k)"
            ))
        })?),
        None => None,
    };
    match (args.grader.parse::<Grader>(), parse_answers(&args.grader)) {
        (Ok(grader), _) => Ok((grader, answers)),
        (Err(_), Some(old)) if answers.is_none() => {
            eprintln!(
                "ets: warning: --grader {} now means --answers {}; the grader is prm800k \
                 (--grader prm800k|lenient)",
                args.grader, args.grader
            );
            Ok((Grader::default(), Some(old)))
        }
        (Err(e), _) => Err(UsageError(format!("--grader: {e}"))),
    }
}

fn plan(args: &EvalArgs) -> anyhow::Result<Plan> {
    let (grader, answers_override) = parse_grading(args)?;
    let (name, text, layout, answers) = match args.dataset.as_str() {
        "math500" => (
            "math500".to_owned(),
            MATH500.to_owned(),
            Layout::Math500,
            Dataset::Math,
        ),
        "gsm8k" => (
            "gsm8k".to_owned(),
            GSM8K.to_owned(),
            Layout::Gsm8k,
            Dataset::Gsm8k,
        ),
        path if path.ends_with(".jsonl") || Path::new(path).exists() => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--dataset: cannot read {path}"))?;
            let answers = infer_grader(&text);
            (path.to_owned(), text, Layout::Generic, answers)
        }
        other => {
            return Err(UsageError(format!(
                "--dataset: unknown dataset `{other}` (expected math500, gsm8k or a .jsonl file)"
            ))
            .into())
        }
    };
    let answers = answers_override.unwrap_or(answers);
    let problems = load_problems(&name, &text, layout)?;
    let problems = select_problems(problems, &args.ids, args.limit)?;
    if problems.is_empty() {
        return Err(UsageError("--limit 0 leaves no problem to run".into()).into());
    }
    let mut methods = Vec::new();
    for m in &args.methods {
        let method = m
            .trim()
            .parse::<Method>()
            .map_err(|e| UsageError(format!("--methods: {e}")))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    let (widths, seeds) = (dedup(args.widths.clone()), dedup(args.seeds.clone()));
    if methods.is_empty() || widths.is_empty() || seeds.is_empty() {
        return Err(UsageError("--methods, --widths and --seeds must not be empty".into()).into());
    }
    let kv_limits = match args.kv_limits.is_empty() {
        true => vec![args.search.kv_limit],
        false => dedup(args.kv_limits.clone())
            .into_iter()
            .map(|l| l.0)
            .collect(),
    };
    Ok(Plan {
        dataset: name,
        answers,
        grader,
        problems,
        methods,
        widths,
        seeds,
        kv_limits,
    })
}

impl Plan {
    /// Every cell, problems outermost so a partial run has whole comparisons.
    fn cells(&self) -> impl Iterator<Item = (&Problem, Setting)> + '_ {
        self.problems.iter().flat_map(move |p| {
            self.widths.iter().flat_map(move |&w| {
                self.kv_limits.iter().flat_map(move |&l| {
                    self.seeds
                        .iter()
                        .flat_map(move |&s| self.methods.iter().map(move |&m| (p, (m, w, s, l))))
                })
            })
        })
    }

    fn key(p: &Problem, (method, width, seed, kv_limit): Setting) -> CellKey {
        CellKey {
            problem_id: p.id.clone(),
            method: method.name(),
            width,
            seed,
            kv_limit,
        }
    }
}

/// The request of one cell: the flags' caps, the cell's method, width, seed and KV limit; GSM8K
/// adds "####" to the answer markers (small models end GSM8K answers with it).
fn request(
    search: &SettingsArgs,
    answers: Dataset,
    p: &Problem,
    setting: Setting,
) -> Result<SolveRequest, UsageError> {
    let (method, width, seed, kv_limit) = setting;
    let mut search = search.clone();
    search.kv_limit = kv_limit;
    if answers == Dataset::Gsm8k && !search.answer_markers.iter().any(|m| m == "####") {
        search.answer_markers.push("####".to_owned());
    }
    let overrides = Overrides {
        method: Some(method),
        width: Some(width),
        seed: Some(seed),
    };
    let mut request = search.request(p.problem.clone(), overrides)?;
    request.tag = Some(key_string(&Plan::key(p, setting)));
    request.stream_events = false;
    Ok(request)
}

/// Runs `ets eval`.
pub async fn run(g: &Globals, args: EvalArgs) -> anyhow::Result<u8> {
    let plan = plan(&args)?;
    if let Some(dir) = &args.baseline {
        if !dir.join("results.jsonl").is_file() {
            return Err(UsageError(format!(
                "--baseline: {} holds no results.jsonl (give the --out of an earlier eval)",
                dir.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let results_path = args.out.join("results.jsonl");
    let (file, done) = open_output_by(&results_path, results_key)?;
    let mut out = BufWriter::new(file);

    let mut todo = Vec::new();
    let mut skipped = 0usize;
    for (p, setting) in plan.cells() {
        if done.contains(&key_string(&Plan::key(p, setting))) {
            skipped += 1;
        } else {
            todo.push((
                (p.clone(), setting),
                request(&args.search, plan.answers, p, setting)?,
            ));
        }
    }
    eprintln!(
        "ets: eval on {} ({} problems × {} methods × {} widths × {} seeds × {} KV limits): {} to run, {} already in {}",
        plan.dataset,
        plan.problems.len(),
        plan.methods.len(),
        plan.widths.len(),
        plan.seeds.len(),
        plan.kv_limits.len(),
        todo.len(),
        skipped,
        results_path.display()
    );

    let mut interrupts = Interrupts::new()?;
    let (mut failed, mut interrupted) = (0usize, false);
    if !todo.is_empty() {
        let bar = progress_bar(todo.len() as u64, skipped);
        let on_result = |(p, (m, w, s, l)): (Problem, Setting),
                         result: Result<JobResult, ClientError>| {
            let limit = l.map_or_else(String::new, |l| format!(" kv-limit={l}"));
            let cell = format!("{} {} w={} seed={}{limit}", p.id, m.name(), w, s);
            match result {
                Ok(result) => {
                    let record = EvalRecord::new(
                        &p,
                        m,
                        w,
                        s,
                        plan.answers,
                        plan.grader,
                        result.job,
                        result.outcome,
                    )
                    .limited_to(l);
                    if record.kv_recount_tokens != record.outcome.stats.kv_metric_tokens {
                        bar.suspend(|| {
                            eprintln!(
                                "ets: warning: {cell}: KV metric {} but the tree recounts {}",
                                record.outcome.stats.kv_metric_tokens, record.kv_recount_tokens
                            )
                        });
                    }
                    writeln!(out, "{}", serde_json::to_string(&record)?)?;
                    out.flush()
                        .with_context(|| format!("cannot write {}", results_path.display()))?;
                }
                Err(e) if e.is_unreachable() => {
                    bar.abandon();
                    return Err(anyhow::Error::new(e).context(format!(
                        "eval stopped at {cell}; rerun the same command to resume"
                    )));
                }
                Err(e) => {
                    let (kind, message) = failure(&e);
                    bar.suspend(|| eprintln!("ets: {cell} failed ({kind}): {message}"));
                    failed += 1;
                }
            }
            bar.inc(1);
            bar.set_message(format!("{failed} failed"));
            Ok(())
        };
        match solve_all(
            g,
            &mut interrupts,
            todo,
            args.concurrency as usize,
            on_result,
        )
        .await?
        {
            QueueEnd::NotStarted => return Ok(exit::CANCELLED),
            QueueEnd::Interrupted => interrupted = true,
            QueueEnd::Finished => {}
        }
        bar.finish_and_clear();
    }
    drop(out);

    let wanted: HashSet<String> = plan
        .cells()
        .map(|(p, setting)| key_string(&Plan::key(p, setting)))
        .collect();
    let summary = eval_output::write_reports(
        &args.out,
        &plan.dataset,
        plan.grader,
        &wanted,
        args.baseline.as_deref(),
    )?;
    if g.json {
        super::print_json("eval-summary", &summary)?;
    } else {
        super::print_line(ets_core::eval::markdown_table(&summary))?;
    }
    if interrupted {
        eprintln!("ets: interrupted; rerun the same command to resume");
        Ok(exit::CANCELLED)
    } else if failed > 0 {
        eprintln!("ets: {failed} cells failed; rerun the same command to retry them");
        Ok(exit::JOB_FAILED)
    } else {
        Ok(exit::OK)
    }
}

/// Reads the records of `wanted` cells (every cell with `None`) back from `results.jsonl`.
pub fn read_records(
    path: &Path,
    wanted: Option<&HashSet<String>>,
) -> anyhow::Result<Vec<EvalRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<EvalRecord>(l).ok())
        .filter(|r| wanted.is_none_or(|w| w.contains(&key_string(&r.key()))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        eval: EvalArgs,
    }

    fn parse(args: &[&str]) -> EvalArgs {
        let argv = ["t", "--out", "/tmp/x"]
            .into_iter()
            .chain(args.iter().copied());
        Wrapper::try_parse_from(argv).unwrap().eval
    }

    #[test]
    fn the_plan_covers_every_cell_with_the_same_problems_and_seeds() {
        let args = parse(&[
            "--dataset",
            "gsm8k",
            "--limit",
            "2",
            "--widths",
            "4,8",
            "--seeds",
            "1,2",
        ]);
        let plan = plan(&args).unwrap();
        assert_eq!(plan.answers, Dataset::Gsm8k);
        assert_eq!(plan.grader, Grader::Prm800k);
        assert_eq!(plan.methods, Method::ALL);
        let cells: Vec<_> = plan.cells().collect();
        assert_eq!(cells.len(), 2 * 5 * 2 * 2);
        let (p, setting) = cells[0];
        let r = request(&args.search, plan.answers, p, setting).unwrap();
        assert!(r.config.answer_markers.iter().any(|m| m == "####"));
        assert_eq!(
            (r.config.method, r.config.width, r.config.seed),
            (Method::Ets, 4, 1)
        );
        assert_eq!(r.config.kv_limit, None);
    }

    #[test]
    fn kv_limits_sweep_every_cell_and_key_apart() {
        let args = parse(&[
            "--dataset",
            "gsm8k",
            "--limit",
            "1",
            "--methods",
            "ets,beam",
            "--widths",
            "8",
            "--kv-limits",
            "800,none,400,800",
        ]);
        let plan = plan(&args).unwrap();
        assert_eq!(plan.kv_limits, vec![Some(800), None, Some(400)]);
        let cells: Vec<_> = plan.cells().collect();
        assert_eq!(cells.len(), 2 * 3);
        let keys: HashSet<String> = cells
            .iter()
            .map(|&(p, setting)| key_string(&Plan::key(p, setting)))
            .collect();
        assert_eq!(keys.len(), cells.len(), "every limit is its own cell");
        for &(p, setting) in &cells {
            let r = request(&args.search, plan.answers, p, setting).unwrap();
            assert_eq!(r.config.kv_limit, setting.3);
            assert_eq!((r.config.method, r.config.width), (setting.0, 8));
        }
        // No limit keeps the key results files had before limits.
        let (p, setting) = cells.iter().find(|c| c.1 .3.is_none()).copied().unwrap();
        assert_eq!(key_string(&Plan::key(p, setting)).split('\t').count(), 4);
        // One --kv-limit is a sweep of one; both flags, a zero or a word are refused.
        let one = plan_of(&["--dataset", "gsm8k", "--limit", "1", "--kv-limit", "900"]);
        assert_eq!(one.kv_limits, vec![Some(900)]);
        let refused = |a: &[&str]| {
            let argv = ["t", "--out", "/tmp/x", "--dataset", "gsm8k"];
            Wrapper::try_parse_from(argv.into_iter().chain(a.iter().copied()))
                .err()
                .map(|e| e.to_string())
        };
        assert!(refused(&["--kv-limits", "900", "--kv-limit", "800"]).is_some());
        assert!(refused(&["--kv-limits", "0"])
            .unwrap()
            .contains("at least 1"));
        assert!(refused(&["--kv-limits", "lots"])
            .unwrap()
            .contains("`lots`"));
    }

    fn plan_of(args: &[&str]) -> Plan {
        plan(&parse(args)).unwrap()
    }

    #[test]
    fn bad_input_names_what_was_wrong() {
        let e = |a: &[&str]| plan(&parse(a)).err().unwrap().to_string();
        assert!(e(&["--dataset", "mnist"]).contains("`mnist`"));
        assert!(e(&["--dataset", "gsm8k", "--methods", "ets,mcts"]).contains("mcts"));
        assert!(e(&["--dataset", "gsm8k", "--ids", "gsm8k/99999"]).contains("gsm8k/99999"));
        assert!(e(&["--dataset", "/nonexistent.jsonl"]).contains("/nonexistent.jsonl"));
        assert!(e(&["--dataset", "gsm8k", "--grader", "nope"]).contains("nope"));
        assert!(e(&["--dataset", "gsm8k", "--answers", "nope"]).contains("nope"));
    }

    #[test]
    fn eval_has_no_single_method_width_or_seed_flag() {
        use clap::CommandFactory;
        for flag in ["--method", "--width", "--seed"] {
            let argv = ["t", "--out", "/tmp/x", "--dataset", "gsm8k", flag, "1"];
            let e = match Wrapper::try_parse_from(argv) {
                Ok(_) => panic!("{flag} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(&format!("{flag}s")), "{flag}: {e}");
        }
        let help = Wrapper::command().render_help().to_string();
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let flag = line.split_whitespace().next().unwrap();
            assert!(!["--method", "--width", "--seed"].contains(&flag), "{line}");
        }
    }

    #[test]
    fn the_grader_is_prm800k_unless_chosen_and_old_answer_flags_still_read() {
        let p = |a: &[&str]| plan(&parse(a)).unwrap();
        let math = p(&["--dataset", "math500", "--limit", "1"]);
        assert_eq!(
            (math.answers, math.grader),
            (Dataset::Math, Grader::Prm800k)
        );
        let lenient = p(&[
            "--dataset",
            "math500",
            "--grader",
            "lenient",
            "--limit",
            "1",
        ]);
        assert_eq!(lenient.grader, Grader::Lenient);
        let answers = p(&["--dataset", "math500", "--answers", "gsm8k", "--limit", "1"]);
        assert_eq!(
            (answers.answers, answers.grader),
            (Dataset::Gsm8k, Grader::Prm800k)
        );
        // `--grader gsm8k` meant the answer conventions before graders could be chosen.
        let old = p(&["--dataset", "math500", "--grader", "gsm8k", "--limit", "1"]);
        assert_eq!((old.answers, old.grader), (Dataset::Gsm8k, Grader::Prm800k));
    }
}
