//! Repository rules: every Rust file opens with a `//!` doc comment and stays under
//! [`MAX_LINES`] lines. Run by `cargo xtask tidy` and as a test, so `cargo test` enforces them.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Longest a Rust source file may be.
pub const MAX_LINES: usize = 800;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Every rule broken under `root`, one line each.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect_rust_files(root, &mut files)?;
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let shown = file.strip_prefix(root).unwrap_or(&file).display();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!("{shown}: does not open with a `//!` doc comment"));
        }
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{shown}: {lines} lines, more than {MAX_LINES}; split it by responsibility"
            ));
        }
    }
    Ok(problems)
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            if name.starts_with('.') || name == "target" || name.starts_with("target-") {
                continue;
            }
            collect_rust_files(&path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_is_tidy() {
        let problems = check(&workspace_root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn rules_catch_violations() {
        let dir = std::env::temp_dir().join(format!("ets-tidy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("good.rs"), "//! Documented.\nfn main() {}\n").unwrap();
        std::fs::write(dir.join("bare.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dir.join("long.rs"),
            format!("//! Long.\n{}", "\n".repeat(MAX_LINES + 1)),
        )
        .unwrap();
        let problems = check(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("bare.rs") && problems[0].contains("//!"));
        assert!(problems[1].contains("long.rs") && problems[1].contains("lines"));
    }
}
