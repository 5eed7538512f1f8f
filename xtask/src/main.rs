//! `cargo xtask <task>`: project automation that needs nothing but cargo.
//!
//! **Owns**: repository rules checked as tests ([`tidy`]), the test-model fixtures
//! ([`models`]: `cargo xtask models`), the engine benchmark ([`bench_engine`]:
//! `cargo xtask bench-engine`; [`bench_vs_llama`]: `--vs-llama-cpp`, side by side with
//! llama.cpp), the end-to-end search benchmark of both engines
//! ([`bench_search`]: `cargo xtask bench-search`), the llama.cpp reference binaries built from
//! source ([`llama_cpp`]: `cargo xtask llama-cpp`), the daemon soak ([`soak`]:
//! `cargo xtask soak`), the fuzz runs ([`fuzz`]: `cargo xtask fuzz --minutes N`), and later the
//! evaluation runners.
//! **Must not**: be a dependency of any product crate.

#[cfg(feature = "engines")]
mod bench_engine;
#[cfg(feature = "engines")]
mod bench_remote;
#[cfg(feature = "engines")]
mod bench_search;
#[cfg(feature = "engines")]
mod bench_vs_llama;
mod fuzz;
mod llama_cpp;
#[cfg(feature = "engines")]
mod models;
#[cfg(feature = "engines")]
mod soak;
mod tidy;

use anyhow::{bail, Result};

const TASKS: &str = "tidy, models, bench-engine, bench-search, soak, llama-cpp, fuzz";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => {
            let problems = tidy::check(&tidy::workspace_root())?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                bail!("tidy: {} problem(s)", problems.len())
            }
        }
        #[cfg(feature = "engines")]
        Some("models") => models::run(&args[1..]),
        #[cfg(feature = "engines")]
        Some("bench-engine") if args.iter().any(|a| a == "--vs-llama-cpp") => {
            bench_vs_llama::run(&args[1..])
        }
        #[cfg(feature = "engines")]
        Some("bench-engine") => bench_engine::run(&args[1..]),
        #[cfg(feature = "engines")]
        Some("bench-search") => bench_search::run(&args[1..]),
        #[cfg(feature = "engines")]
        Some("soak") => soak::run(&args[1..]),
        #[cfg(not(feature = "engines"))]
        Some(task @ ("models" | "bench-engine" | "bench-search" | "soak")) => {
            bail!("`{task}` needs xtask's `engines` feature (this build has none)")
        }
        Some("llama-cpp") => llama_cpp::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some(other) => bail!("unknown task `{other}`; tasks: {TASKS}"),
        None => bail!("usage: cargo xtask <task>; tasks: {TASKS}"),
    }
}
