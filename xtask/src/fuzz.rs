//! `cargo xtask fuzz --minutes N [--target NAME]...`: runs the coverage-guided fuzz targets of
//! `fuzz/` (cargo-fuzz, libFuzzer) one after another, each for N minutes, and prints what each
//! run did: executions, coverage (`cov:`, `ft:`), corpus size and crashes.
//!
//! Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when `cargo fuzz` is missing. Runs
//! on the stable toolchain (`RUSTC_BOOTSTRAP=1`, `--sanitizer none`), one libFuzzer process at
//! a time. New inputs go to `fuzz/target/corpus/<target>/` (ignored by git); the committed
//! seeds in `fuzz/corpus/<target>/` are only read. A crash leaves its input in
//! `fuzz/artifacts/<target>/`, the task goes on with the other targets and fails at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Parsed command line.
#[derive(Debug, PartialEq)]
struct Options {
    minutes: f64,
    targets: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut minutes = None;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                let m = it.next().context("--minutes needs a number")?;
                let m: f64 = m
                    .parse()
                    .with_context(|| format!("--minutes `{m}` is not a number"))?;
                if !(m.is_finite() && m > 0.0) {
                    bail!("--minutes must be above 0");
                }
                minutes = Some(m);
            }
            "--target" => targets.push(it.next().context("--target needs a name")?.clone()),
            other => bail!(
                "unknown argument `{other}`; usage: cargo xtask fuzz --minutes N [--target NAME]..."
            ),
        }
    }
    Ok(Options {
        minutes: minutes.context("usage: cargo xtask fuzz --minutes N [--target NAME]...")?,
        targets,
    })
}

/// What one libFuzzer run reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stats {
    execs: u64,
    cov: u64,
    ft: u64,
    corpus: String,
    exec_per_sec: u64,
    /// Seconds spent fuzzing (libFuzzer's `Done` line; the build is not counted).
    seconds: u64,
}

impl Stats {
    /// Takes what a libFuzzer status line (`#N ... cov: C ft: F corp: K/S ... exec/s: E`) or
    /// its `Done N runs in S second(s)` line says.
    fn update(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Done ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let Some(n) = words.first().and_then(|n| n.parse().ok()) {
                self.execs = n;
            }
            if let Some(s) = words.get(3).and_then(|s| s.parse().ok()) {
                self.seconds = s;
            }
            return;
        }
        let Some(rest) = line.strip_prefix('#') else {
            return;
        };
        let mut words = rest.split_whitespace();
        let Some(n) = words.next().and_then(|n| n.parse().ok()) else {
            return;
        };
        self.execs = n;
        let words: Vec<&str> = words.collect();
        for pair in words.windows(2) {
            match pair[0] {
                "cov:" => self.cov = pair[1].parse().unwrap_or(self.cov),
                "ft:" => self.ft = pair[1].parse().unwrap_or(self.ft),
                "corp:" => self.corpus = pair[1].to_owned(),
                "exec/s:" => self.exec_per_sec = pair[1].parse().unwrap_or(self.exec_per_sec),
                _ => {}
            }
        }
    }
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

/// The targets in `fuzz/fuzz_targets/`, sorted.
fn all_targets(fuzz: &Path) -> Result<Vec<String>> {
    let dir = fuzz.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs") {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Runs one target for `seconds`; its stats and whether it ended cleanly (no crash).
fn run_target(root: &Path, target: &str, seconds: u64) -> Result<(Stats, bool)> {
    let work = root.join("fuzz/target/corpus").join(target);
    std::fs::create_dir_all(&work)?;
    let seeds = root.join("fuzz/corpus").join(target);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target, "--sanitizer", "none"])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    eprintln!(
        "fuzz: {target} for {seconds} s (new inputs in {})",
        work.display()
    );
    let mut child = cmd.spawn().context("running cargo fuzz")?;
    let mut stats = Stats::default();
    let stderr = child.stderr.take().context("cargo fuzz's stderr")?;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        stats.update(&line);
        // New-coverage lines are many; the periodic `pulse` lines show progress.
        if !(line.contains("\tNEW ") || line.contains("\tREDUCE ")) {
            eprintln!("{line}");
        }
    }
    let status = child.wait()?;
    Ok((stats, status.success()))
}

/// Entry point of `cargo xtask fuzz`.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let root = crate::tidy::workspace_root();
    let fuzz = root.join("fuzz");
    let known = all_targets(&fuzz)?;
    let targets = if o.targets.is_empty() {
        known.clone()
    } else {
        o.targets.clone()
    };
    for t in &targets {
        if !known.contains(t) {
            bail!("no fuzz target `{t}`; targets: {}", known.join(", "));
        }
    }
    ensure_cargo_fuzz()?;
    let seconds = ((o.minutes * 60.0).round() as u64).max(1);
    let mut rows = Vec::new();
    for target in &targets {
        let started = Instant::now();
        let (stats, clean) = run_target(&root, target, seconds)?;
        rows.push((
            target.clone(),
            stats,
            clean,
            started.elapsed().as_secs_f64(),
        ));
    }
    println!(
        "{:<14} {:>12} {:>8} {:>7} {:>8} {:>14} {:>8}  result",
        "target", "execs", "exec/s", "cov", "ft", "corpus", "minutes"
    );
    for (target, s, clean, secs) in &rows {
        println!(
            "{:<14} {:>12} {:>8} {:>7} {:>8} {:>14} {:>8.1}  {}",
            target,
            s.execs,
            s.exec_per_sec,
            s.cov,
            s.ft,
            s.corpus,
            secs / 60.0,
            if *clean {
                "ok".to_owned()
            } else {
                format!("CRASH (fuzz/artifacts/{target}/)")
            }
        );
    }
    let crashed: Vec<&str> = rows.iter().filter(|r| !r.2).map(|r| r.0.as_str()).collect();
    if !crashed.is_empty() {
        bail!("fuzz: {} crashed or failed to run", crashed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse() {
        let o = parse(&args(&["--minutes", "2.5", "--target", "gguf_header"])).unwrap();
        assert_eq!(
            o,
            Options {
                minutes: 2.5,
                targets: vec!["gguf_header".into()],
            }
        );
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["--minutes", "0"])).is_err());
        assert!(parse(&args(&["--minutes", "1", "--jobs", "2"])).is_err());
    }

    #[test]
    fn libfuzzer_lines_are_read() {
        let mut s = Stats::default();
        s.update("INFO: Seed: 123");
        s.update("#2\tINITED cov: 10 ft: 11 corp: 3/40b exec/s: 0 rss: 30Mb");
        s.update(
            "#1048576\tpulse  cov: 1234 ft: 5678 corp: 345/12Kb lim: 4096 exec/s: 9000 rss: 60Mb",
        );
        assert_eq!(
            s,
            Stats {
                execs: 1_048_576,
                cov: 1234,
                ft: 5678,
                corpus: "345/12Kb".into(),
                exec_per_sec: 9000,
                seconds: 0,
            }
        );
        s.update("Done 1200000 runs in 60 second(s)");
        assert_eq!((s.execs, s.seconds), (1_200_000, 60));
    }
}
