//! Grades answer pairs with both MATH graders: reads `reference<TAB>given` lines on stdin and
//! prints `prm800k<TAB>lenient<TAB>reference<TAB>given`, each verdict `=` or `!=`.
//!
//! `cargo run -p ets-core --example grade_pairs < pairs.tsv`
//!
//! Used to compare the graders with another implementation on many pairs (see the crate
//! README's grader section).

use std::io::{self, BufRead, Write};

use ets_core::answer::Grader;

fn main() -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for line in io::stdin().lock().lines() {
        let line = line?;
        let Some((reference, given)) = line.split_once('\t') else {
            continue;
        };
        let verdict = |g: Grader| {
            if g.math_equal(given, reference) {
                "="
            } else {
                "!="
            }
        };
        writeln!(
            out,
            "{}\t{}\t{reference}\t{given}",
            verdict(Grader::Prm800k),
            verdict(Grader::Lenient)
        )?;
    }
    Ok(())
}
