//! `cargo xtask soak --minutes N`: one `etsd` under mixed load for N minutes, then quiet, with
//! its memory, descriptors and KV watched throughout.
//!
//! Load: clients that solve small searches to the end, cancel them midway, disconnect without
//! reading, send malformed frames (garbage, an oversized length, a frame cut off), load and
//! unload a model, and ask for status and metrics, all at random (seeded) against one daemon
//! with the default models. Every `--every` seconds a row: RSS and open descriptors from
//! `/proc`, live KV and leaked kvtree nodes from the daemon's status, jobs done / failed /
//! cancelled. After the load stops and the daemon is idle, it checks that RSS came back to
//! within 10% of its level after warm-up, that live KV is 0, that no kvtree node leaked and that
//! no descriptor stayed open; any failure is an error (exit status 1).
//!
//! Needs `target/debug/etsd` (build it with `cargo test --workspace --no-run` or
//! `cargo build -p ets-daemon`) and the default models in the store (`cargo xtask models`).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ets_core::protocol::{
    read_frame, write_frame, ModelRole, Request, Response, SolveRequest, StatusReport,
    PROTOCOL_VERSION,
};
use ets_core::{Method, SearchConfig};

struct Options {
    seconds: u64,
    every: u64,
    /// Seconds of load before the RSS the quiet daemon is compared with is taken; `None`: a
    /// tenth of the run, at least one row.
    warm: Option<u64>,
    /// How far above the post-warm-up RSS the quiet daemon may stay, in percent.
    rss_tolerance: f64,
    clients: usize,
    seed: u64,
    etsd: PathBuf,
}

fn parse(args: &[String]) -> Result<Options> {
    let root = crate::tidy::workspace_root();
    let mut o = Options {
        seconds: 600,
        every: 10,
        warm: None,
        rss_tolerance: 10.0,
        clients: 4,
        seed: 1,
        etsd: root.join("target/debug/etsd"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value"))
                .cloned()
        };
        match flag.as_str() {
            "--minutes" => o.seconds = value()?.parse::<u64>()? * 60,
            "--seconds" => o.seconds = value()?.parse()?,
            "--every" => o.every = value()?.parse::<u64>()?.max(1),
            "--warm" => o.warm = Some(value()?.parse()?),
            "--rss-tolerance" => o.rss_tolerance = value()?.parse()?,
            "--clients" => o.clients = value()?.parse::<usize>()?.max(1),
            "--seed" => o.seed = value()?.parse()?,
            "--etsd" => o.etsd = PathBuf::from(value()?),
            other => bail!(
                "unknown flag `{other}`; soak takes --minutes N | --seconds N, --every SECS, \
                 --warm SECS, --rss-tolerance PCT, --clients N, --seed N, --etsd PATH"
            ),
        }
    }
    if !o.etsd.is_file() {
        bail!(
            "{} is missing: build it first (cargo test --workspace --no-run)",
            o.etsd.display()
        );
    }
    Ok(o)
}

/// A small seeded generator (xorshift64*): the soak's choices repeat for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A connection that has said Hello, and the job messages that arrived while it waited for a
/// reply (kept for [`Client::wait_end`]).
struct Client(UnixStream, std::collections::VecDeque<Response>);

impl Client {
    fn open(socket: &Path) -> Result<Client> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(600)))?;
        let mut c = Client(stream, Default::default());
        c.send(&Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "soak".into(),
        })?;
        match c.recv()? {
            Response::Hello { .. } => Ok(c),
            other => bail!("expected Hello, got {other:?}"),
        }
    }

    fn send(&mut self, request: &Request) -> Result<()> {
        write_frame(&mut self.0, request)?;
        Ok(())
    }

    fn read(&mut self) -> Result<Response> {
        read_frame(&mut self.0)?.context("the daemon closed the connection")
    }

    /// The next message, a held job message first.
    fn recv(&mut self) -> Result<Response> {
        match self.1.pop_front() {
            Some(r) => Ok(r),
            None => self.read(),
        }
    }

    /// The reply to `request`; job messages in between are held, so a job's end that
    /// arrives before a Cancel's reply is not lost.
    fn request(&mut self, request: &Request) -> Result<Response> {
        self.send(request)?;
        loop {
            let r = self.read()?;
            if r.job().is_none() {
                return Ok(r);
            }
            self.1.push_back(r);
        }
    }

    fn status(&mut self) -> Result<StatusReport> {
        match self.request(&Request::Status)? {
            Response::Status(s) => Ok(*s),
            other => bail!("expected Status, got {other:?}"),
        }
    }

    /// Reads until job `job` ends.
    fn wait_end(&mut self, job: u64) -> Result<()> {
        loop {
            match self.recv()? {
                Response::Result { job: j, .. }
                | Response::Failed { job: j, .. }
                | Response::Cancelled { job: j }
                    if j == job =>
                {
                    return Ok(())
                }
                _ => {}
            }
        }
    }
}

fn small_solve(rng: &mut Rng) -> SolveRequest {
    let a = rng.below(90) + 10;
    let b = rng.below(90) + 10;
    let mut r = SolveRequest::new(format!("What is {a} + {b}?"));
    r.config = SearchConfig {
        method: [Method::Rebase, Method::Ets, Method::Beam][rng.below(3) as usize],
        width: 2 + rng.below(3) as usize,
        max_depth: 1 + rng.below(2) as usize,
        max_step_tokens: 16,
        max_total_tokens: 32,
        seed: rng.next(),
        ..SearchConfig::default()
    };
    r
}

/// Counts of what the clients did.
#[derive(Default)]
struct Tally {
    actions: AtomicU64,
    errors: AtomicU64,
}

/// One random action; errors the daemon answers are expected, lost connections are not.
fn act(socket: &Path, rng: &mut Rng) -> Result<()> {
    let roll = rng.below(100);
    let mut c = Client::open(socket)?;
    match roll {
        0..=34 => {
            let job = submit(&mut c, small_solve(rng))?;
            c.wait_end(job)?;
        }
        35..=54 => {
            let job = submit(&mut c, small_solve(rng))?;
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
            c.request(&Request::Cancel { job })?;
            c.wait_end(job)?;
        }
        55..=69 => {
            // Submit and leave without reading: the job must end as "client gone".
            c.send(&Request::Solve(Box::new(small_solve(rng))))?;
            std::thread::sleep(Duration::from_millis(rng.below(800)));
        }
        70..=84 => {
            let mut s = c.0;
            match rng.below(3) {
                0 => s.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])?,
                1 => s.write_all(&(u32::MAX).to_le_bytes())?,
                _ => {
                    s.write_all(&100u32.to_le_bytes())?;
                    s.write_all(&[7; 10])?;
                }
            }
            // Whatever the daemon answers, the connection is dropped here.
        }
        85..=94 => {
            let model = "minilm-l6".to_owned();
            c.request(&Request::LoadModel {
                model: model.clone(),
                role: ModelRole::Embedder,
                keep_alive_secs: Some(5),
                engine: None,
            })?;
            c.request(&Request::UnloadModel { model })?;
        }
        _ => {
            c.status()?;
            c.request(&Request::Metrics)?;
        }
    }
    Ok(())
}

fn submit(c: &mut Client, request: SolveRequest) -> Result<u64> {
    match c.request(&Request::Solve(Box::new(request)))? {
        Response::Accepted { job } => Ok(job),
        other => bail!("solve refused: {other:?}"),
    }
}

/// One row of measurements.
#[derive(Clone, Copy)]
struct Sample {
    secs: u64,
    rss_kib: u64,
    fds: usize,
    live_kv: u64,
    leaked: u64,
    jobs: usize,
    done: u64,
    failed: u64,
    cancelled: u64,
}

fn sample(pid: u32, socket: &Path, started: Instant) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let s = Client::open(socket)?.status()?;
    Ok(Sample {
        secs: started.elapsed().as_secs(),
        rss_kib,
        // This sampling connection is open while the count is read; it is not a leak.
        fds: fds.saturating_sub(1),
        live_kv: s.live_kv_tokens,
        leaked: s.kv_nodes_leaked,
        jobs: s.jobs.len(),
        done: s.jobs_done,
        failed: s.jobs_failed,
        cancelled: s.jobs_cancelled,
    })
}

fn print_row(label: &str, s: &Sample) {
    println!(
        "| {label} | {} | {:.1} | {} | {} | {} | {} | {} / {} / {} |",
        s.secs,
        s.rss_kib as f64 / 1024.0,
        s.fds,
        s.live_kv,
        s.leaked,
        s.jobs,
        s.done,
        s.failed,
        s.cancelled
    );
}

fn start_daemon(o: &Options, dir: &Path) -> Result<Child> {
    let socket = dir.join("etsd.sock");
    let log = std::fs::File::create(dir.join("etsd.log"))?;
    let child = Command::new(&o.etsd)
        .arg("--socket")
        .arg(&socket)
        .args(["--max-concurrent", "2", "--keep-alive", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", o.etsd.display()))?;
    let t = Instant::now();
    while Client::open(&socket).is_err() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("etsd did not answer on {} in 60 s", socket.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(child)
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let dir = std::env::temp_dir().join(format!("ets-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("etsd.sock");
    let mut daemon = start_daemon(&o, &dir)?;
    let result = soak(&o, &socket, &mut daemon);
    let _ = Client::open(&socket).and_then(|mut c| c.request(&Request::Shutdown));
    let _ = daemon.wait();
    if result.is_err() {
        let log = std::fs::read_to_string(dir.join("etsd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!("etsd log (last lines):");
        for line in tail.into_iter().rev() {
            eprintln!("  {line}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn soak(o: &Options, socket: &Path, daemon: &mut Child) -> Result<()> {
    let pid = daemon.id();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..o.clients)
        .map(|i| {
            let (socket, stop, tally) = (socket.to_path_buf(), stop.clone(), tally.clone());
            let mut rng = Rng(o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    tally.actions.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = act(&socket, &mut rng) {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("soak client {i}: {e:#}");
                    }
                }
            })
        })
        .collect();
    println!(
        "soak: {} s, {} clients, seed {}, etsd pid {pid}",
        o.seconds, o.clients, o.seed
    );
    println!("| phase | s | RSS MiB | fds | live KV tok | leaked nodes | jobs | done / failed / cancelled |");
    println!("|---|---|---|---|---|---|---|---|");
    let baseline = sample(pid, socket, started)?;
    print_row("start", &baseline);
    // Warm-up: the first tenth of the run (at least one sample period) loads the models and
    // fills the allocator's pools; its end is the level RSS must return to.
    let warm_until = Duration::from_secs(o.warm.unwrap_or((o.seconds / 10).max(o.every)));
    let mut warm: Option<Sample> = None;
    let end = Duration::from_secs(o.seconds);
    while started.elapsed() < end {
        std::thread::sleep(Duration::from_secs(o.every).min(end - started.elapsed()));
        let s = sample(pid, socket, started)?;
        if warm.is_none() && started.elapsed() >= warm_until {
            warm = Some(s);
            print_row("warm", &s);
        } else {
            print_row("load", &s);
        }
        if let Some(status) = daemon.try_wait()? {
            bail!("etsd exited during the soak ({status})");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    // Quiet: wait for every job to end and the models' keep-alive to pass.
    let quiet = Instant::now();
    let mut last = sample(pid, socket, started)?;
    while (last.jobs > 0 || quiet.elapsed() < Duration::from_secs(10))
        && quiet.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_secs(2));
        last = sample(pid, socket, started)?;
    }
    print_row("quiet", &last);
    let warm = warm.unwrap_or(baseline);
    let actions = tally.actions.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    println!(
        "{actions} client actions ({errors} lost connections or unexpected answers); RSS {:.1} MiB \
         after warm-up, {:.1} MiB when quiet ({:+.1}%)",
        warm.rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
        (last.rss_kib as f64 / warm.rss_kib as f64 - 1.0) * 100.0
    );
    let mut problems = Vec::new();
    if last.rss_kib as f64 > warm.rss_kib as f64 * (1.0 + o.rss_tolerance / 100.0) {
        problems.push(format!(
            "RSS did not come back within {}% of its post-warm-up level",
            o.rss_tolerance
        ));
    }
    if last.live_kv != 0 {
        problems.push(format!("{} tokens of KV still live", last.live_kv));
    }
    if last.leaked != 0 {
        problems.push(format!("{} kvtree nodes leaked", last.leaked));
    }
    if last.fds > baseline.fds {
        problems.push(format!(
            "{} descriptors open, {} at the start",
            last.fds, baseline.fds
        ));
    }
    if last.jobs != 0 {
        problems.push(format!("{} jobs still listed", last.jobs));
    }
    if errors > 0 {
        problems.push(format!("{errors} client actions failed"));
    }
    if problems.is_empty() {
        println!("soak: ok");
        Ok(())
    } else {
        bail!("soak failed: {}", problems.join("; "))
    }
}
