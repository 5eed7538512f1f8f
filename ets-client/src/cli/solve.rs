//! `ets solve`: one problem. Progress on stderr (a spinner line: loading models, queue
//! position, depth, nodes, live KV, the best answer so far), then the answer and a stats block
//! on stdout — or JSON (`--json`; `--stream` adds one line per event). Ctrl-C cancels the job
//! and waits for the daemon to confirm; a second Ctrl-C leaves at once (closing the connection
//! cancels the job too).

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ets_client::{ClientError, ErrorKind, Job, JobEvent, JobResult, SolveRequest};
use ets_core::search::{EndReason, SearchEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use super::search_args::{Overrides, SearchArgs};
use super::{exit, print_json, print_line, render, Globals, Interrupts};

/// `ets solve` arguments.
#[derive(Debug, Args)]
pub struct SolveArgs {
    /// The problem text; `-` reads it from standard input.
    pub problem: String,

    /// The search settings.
    #[command(flatten)]
    pub search: SearchArgs,

    /// With --json: print one JSON line per progress event, then the result line. Without
    /// --json: print each event on stderr instead of the spinner.
    #[arg(long)]
    pub stream: bool,

    /// When --deadline passes mid-search, the best answer found by then is printed (its end
    /// is `deadline`) and ets exits 4; with this flag it exits 0.
    #[arg(long)]
    pub accept_partial: bool,
}

/// Runs `ets solve`.
pub async fn run(g: &Globals, args: SolveArgs) -> anyhow::Result<u8> {
    let problem = if args.problem == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the problem from standard input")?;
        text
    } else {
        args.problem.clone()
    };
    let mut request = args.search.request(problem, Overrides::default())?;
    request.stream_events = !g.json || args.stream;
    let mut interrupts = Interrupts::new()?;
    let submitted = async {
        let client = g.connect(true).await?;
        client.solve(request.clone()).await
    };
    let job = tokio::select! {
        submitted = submitted => match submitted {
            Ok(job) => job,
            Err(ClientError::Server { kind, message }) => return refused(g, None, kind, &message),
            Err(e) => return Err(e.into()),
        },
        // Leaving closes the connection: a job accepted meanwhile is cancelled with it.
        _ = interrupts.recv() => {
            eprintln!("ets: interrupted before the job started");
            return Ok(exit::CANCELLED);
        }
    };
    let mode = if g.json && args.stream {
        Mode::JsonStream
    } else if g.json {
        Mode::Json
    } else if args.stream {
        Mode::TextStream
    } else {
        Mode::Spinner
    };
    let mut progress = Progress::new(mode);
    let watched = watch(job, &mut progress, &mut interrupts).await?;
    progress.bar.finish_and_clear();
    let (job, result) = match watched {
        Watched::Ended(job, result) => (job, result),
        Watched::Abandoned(id) => {
            eprintln!("ets: interrupted; job {id} is cancelled as ets exits");
            return Ok(exit::CANCELLED);
        }
    };
    match *result {
        Ok(result) => {
            if g.json {
                print_json("result", &result_json(&result, &request))?;
            } else {
                print_line(render::outcome(&result.outcome, &request.config).trim_end())?;
            }
            if result.outcome.end == EndReason::Deadline && !args.accept_partial {
                eprintln!(
                    "ets: job {job} passed its deadline; the answer above is partial \
                     (--accept-partial exits 0)"
                );
                return Ok(exit::JOB_FAILED);
            }
            Ok(exit::OK)
        }
        Err(ClientError::JobFailed { kind, message, .. }) => refused(g, Some(job), kind, &message),
        Err(ClientError::Cancelled { job }) => {
            if g.json {
                print_json("cancelled", &json!({"job": job}))?;
            }
            eprintln!("ets: job {job} was cancelled");
            Ok(exit::CANCELLED)
        }
        Err(e) => Err(e.into()),
    }
}

/// Reports a failed or refused job (exit 4).
fn refused(g: &Globals, job: Option<u64>, kind: ErrorKind, message: &str) -> anyhow::Result<u8> {
    if g.json {
        print_line(super::json_out::error_document(job, kind.name(), message))?;
    }
    match job {
        Some(job) => eprintln!("ets: job {job} failed ({kind}): {message}"),
        None => eprintln!("ets: the daemon refused the problem ({kind}): {message}"),
    }
    Ok(exit::JOB_FAILED)
}

enum Watched {
    Ended(u64, Box<Result<JobResult, ClientError>>),
    /// A second Ctrl-C: leave without waiting.
    Abandoned(u64),
}

/// Shows the job's events until it ends; the first Ctrl-C cancels it.
async fn watch(
    mut job: Job,
    progress: &mut Progress,
    interrupts: &mut Interrupts,
) -> anyhow::Result<Watched> {
    let id = job.id();
    let mut cancelled = false;
    loop {
        tokio::select! {
            event = job.next_event() => match event {
                Some(event) => progress.on_event(id, &event)?,
                None => break,
            },
            _ = interrupts.recv() => {
                if cancelled {
                    return Ok(Watched::Abandoned(id));
                }
                cancelled = true;
                progress.phase = format!("cancelling job {id} (Ctrl-C again to leave at once)");
                progress.redraw();
                match job.cancel().await {
                    // It ended first: its end is on the way.
                    Ok(()) | Err(ClientError::Server { kind: ErrorKind::UnknownJob, .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(Watched::Ended(id, Box::new(job.wait().await)))
}

/// The one JSON object `ets solve --json` prints: the outcome plus job, tag, method, width and
/// the KV limit and cost.
pub fn result_json(result: &JobResult, request: &SolveRequest) -> Value {
    let mut value = serde_json::to_value(&result.outcome).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("job".into(), json!(result.job));
        map.insert("problem".into(), json!(request.problem));
        map.insert("tag".into(), json!(result.tag));
        map.insert("method".into(), json!(request.config.method));
        map.insert("width".into(), json!(request.config.width));
        map.insert("kv_limit".into(), json!(request.config.kv_limit));
        map.insert("kv_cost".into(), json!(request.config.kv_cost));
    }
    value
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Spinner,
    TextStream,
    Json,
    JsonStream,
}

/// What the spinner line shows, built from the job's events.
struct Progress {
    mode: Mode,
    bar: ProgressBar,
    phase: String,
    depth: usize,
    nodes: usize,
    finished: usize,
    live_tokens: u64,
    live_bytes: u64,
    best: Option<String>,
}

impl Progress {
    fn new(mode: Mode) -> Self {
        let bar = if mode == Mode::Spinner {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        let progress = Self {
            mode,
            bar,
            phase: "submitted".into(),
            depth: 0,
            nodes: 0,
            finished: 0,
            live_tokens: 0,
            live_bytes: 0,
            best: None,
        };
        progress.redraw();
        progress
    }

    fn on_event(&mut self, job: u64, event: &JobEvent) -> anyhow::Result<()> {
        match self.mode {
            Mode::JsonStream => print_json("event", &json!({"job": job, "event": event}))?,
            Mode::TextStream => eprintln!("{}", render::event(job, event)),
            Mode::Spinner | Mode::Json => {}
        }
        match event {
            JobEvent::LoadingModels => self.phase = "loading models".into(),
            JobEvent::Queued { position } => {
                self.phase = format!("queued at position {} ({position} ahead)", position + 1)
            }
            JobEvent::Started => self.phase = "searching".into(),
            JobEvent::Search(event) => self.on_search(event),
        }
        self.redraw();
        Ok(())
    }

    fn on_search(&mut self, event: &SearchEvent) {
        match event {
            SearchEvent::Started { .. } => self.nodes = 1,
            SearchEvent::Expanded {
                depth, children, ..
            } => {
                self.depth = *depth;
                self.nodes += children;
            }
            SearchEvent::DepthDone {
                depth,
                finished,
                live_tokens,
                live_bytes,
                ..
            } => {
                self.depth = *depth;
                self.finished = *finished;
                self.live_tokens = *live_tokens;
                self.live_bytes = *live_bytes;
            }
            SearchEvent::BestAnswer { answer, share, .. } => {
                self.best = Some(format!(
                    "{} ({:.0}%)",
                    render::short(answer, 40),
                    share * 100.0
                ))
            }
            _ => {}
        }
    }

    fn redraw(&self) {
        if self.mode != Mode::Spinner {
            return;
        }
        let mut line = self.phase.clone();
        if self.nodes > 0 {
            line.push_str(&format!(
                " · depth {} · {} nodes · live KV {} tok / {} · {} finished",
                self.depth,
                render::count(self.nodes as u64),
                render::count(self.live_tokens),
                render::bytes(self.live_bytes),
                self.finished,
            ));
        }
        if let Some(best) = &self.best {
            line.push_str(&format!(" · best: {best}"));
        }
        self.bar.set_message(line);
    }
}
