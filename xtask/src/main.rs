//! `cargo xtask <task>`: project automation that needs nothing but cargo.
//!
//! **Owns**: repository rules checked as tests ([`tidy`]), and later the model fixtures,
//! evaluation and benchmark runners.
//! **Must not**: be a dependency of any product crate.

mod tidy;

use anyhow::{bail, Result};

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
        Some(other) => bail!("unknown task `{other}`; tasks: tidy"),
        None => bail!("usage: cargo xtask <task>; tasks: tidy"),
    }
}
