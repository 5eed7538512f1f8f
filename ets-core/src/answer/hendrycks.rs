//! The Hendrycks MATH normalizer ([`math_normalize`]): the first test of both graders, and the
//! whole of the original MATH benchmark's `is_equiv`.
//!
//! String to string and total: it never fails, whatever the input.

/// Normalizes a MATH answer the way Hendrycks et al.'s `math_equivalence` does (and PRM800K's
/// `math_normalize`, its first grading step): two answers whose normal forms are equal strings
/// are equivalent.
///
/// Steps, in order: trim; unwrap an enclosing `\text{…}`; drop newlines and `\!`; `\\` → `\`;
/// `tfrac`/`dfrac` → `frac`; drop `\left`, `\right`, `^{\circ}`, `^\circ`, `\$`; cut a trailing
/// unit written as `\text{ unit}`; drop `\%`; `" ."` → `" 0."`, `"{."` → `"{0."`, a leading `.`
/// gains a `0`; a left-hand side of at most two characters before a single `=` is dropped
/// (`x = 5` → `5`); `\sqrt2` → `\sqrt{2}`; spaces removed; `\frac12` → `\frac{1}{2}`;
/// `0.5` → `\frac{1}{2}`; `a/b` of two integers → `\frac{a}{b}`.
///
/// Where the reference implementation would raise (two `\text{ ` units, a `\sqrt` or `\frac`
/// at the very end), the trimmed, `\text`-unwrapped input is returned unchanged, as there.
///
/// ```
/// use ets_core::answer::math_normalize;
/// assert_eq!(math_normalize("\\dfrac12"), "\\frac{1}{2}");
/// assert_eq!(math_normalize("x = 3/4"), "\\frac{3}{4}");
/// assert_eq!(math_normalize("0.5"), "\\frac{1}{2}");
/// ```
pub fn math_normalize(answer: &str) -> String {
    let answer = answer.trim();
    let answer = match answer
        .strip_prefix("\\text{")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(inner) if !inner.is_empty() && !inner.contains('\n') => inner.trim(),
        _ => answer,
    };
    hendrycks_strip(answer).unwrap_or_else(|| answer.to_string())
}

/// The body of [`math_normalize`]; `None` where the reference implementation raises.
fn hendrycks_strip(s: &str) -> Option<String> {
    let mut s = s.replace('\n', "").replace("\\!", "");
    s = s.replace("\\\\", "\\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s.replace("\\$", "");
    if s.contains("\\text{ ") {
        let parts: Vec<&str> = s.split("\\text{ ").collect();
        if parts.len() != 2 {
            return None;
        }
        s = parts[0].to_string();
    }
    s = s.replace("\\%", "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.is_empty() {
        return Some(s);
    }
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    if let Some((lhs, rhs)) = s.split_once('=') {
        if !rhs.contains('=') && lhs.chars().count() <= 2 {
            s = rhs.to_string();
        }
    }
    s = hendrycks_fix_sqrt(&s)?;
    s = s.replace(' ', "");
    s = hendrycks_fix_fracs(&s)?;
    if s == "0.5" {
        s = "\\frac{1}{2}".to_string();
    }
    Some(hendrycks_fix_slash(s))
}

/// `\sqrt2` → `\sqrt{2}` (the first character after `\sqrt` becomes the argument).
fn hendrycks_fix_sqrt(s: &str) -> Option<String> {
    let mut parts = s.split("\\sqrt");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let mut chars = part.chars();
        let first = chars.next()?;
        out.push_str("\\sqrt");
        if first == '{' {
            out.push_str(part);
        } else {
            out.push('{');
            out.push(first);
            out.push('}');
            out.push_str(chars.as_str());
        }
    }
    Some(out)
}

/// `\frac12` → `\frac{1}{2}`, `\frac1{72}` → `\frac{1}{72}`.
fn hendrycks_fix_fracs(s: &str) -> Option<String> {
    let mut parts = s.split("\\frac");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        out.push_str("\\frac");
        let mut chars = part.chars();
        let a = chars.next()?;
        if a == '{' {
            out.push_str(part);
            continue;
        }
        let Some(b) = chars.next() else {
            return Some(s.to_string());
        };
        out.push('{');
        out.push(a);
        out.push('}');
        if b != '{' {
            out.push('{');
            out.push(b);
            out.push('}');
        } else {
            out.push(b);
        }
        out.push_str(chars.as_str());
    }
    Some(out)
}

/// `3/4` → `\frac{3}{4}` when the whole string is two canonical integers around one `/`.
fn hendrycks_fix_slash(s: String) -> String {
    match s.split_once('/') {
        Some((a, b)) if !b.contains('/') && is_canonical_int(a) && is_canonical_int(b) => {
            format!("\\frac{{{a}}}{{{b}}}")
        }
        _ => s,
    }
}

/// `-?(0|[1-9][0-9]*)`, as Python's `str(int(x)) == x`.
fn is_canonical_int(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    ok && (digits == "0" || !digits.starts_with('0')) && s != "-0"
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(cases: &[&str], f: fn(&str) -> String, expect: Expect) {
        let table: String = cases
            .iter()
            .map(|c| format!("{c:<40} => {}\n", f(c)))
            .collect();
        expect.assert_eq(&table);
    }

    #[test]
    fn hendrycks_normalizer() {
        check(
            &[
                "\\text{Evelyn}",
                "\\dfrac{3}{4}",
                "\\tfrac12",
                "\\frac1{72}",
                "\\frac 59",
                "3/4",
                "0.5",
                ".5",
                "x = 5",
                "k=-2",
                "abc = 5",
                "\\sqrt2",
                "11\\sqrt2",
                "\\left( 3, \\frac{\\pi}{2} \\right)",
                "90^\\circ",
                "90^{\\circ}",
                "50\\%",
                "\\$18.90",
                "10,\\!080",
                "5.4 \\text{ cents}",
                "1 \\text{ a} \\text{ b}",
                "2\\sqrt",
                "\\frac",
                "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            ],
            math_normalize,
            expect![[r#"
                \text{Evelyn}                            => Evelyn
                \dfrac{3}{4}                             => \frac{3}{4}
                \tfrac12                                 => \frac{1}{2}
                \frac1{72}                               => \frac{1}{72}
                \frac 59                                 => \frac{5}{9}
                3/4                                      => \frac{3}{4}
                0.5                                      => \frac{1}{2}
                .5                                       => \frac{1}{2}
                x = 5                                    => 5
                k=-2                                     => -2
                abc = 5                                  => abc=5
                \sqrt2                                   => \sqrt{2}
                11\sqrt2                                 => 11\sqrt{2}
                \left( 3, \frac{\pi}{2} \right)          => (3,\frac{\pi}{2})
                90^\circ                                 => 90
                90^{\circ}                               => 90
                50\%                                     => 50
                \$18.90                                  => 18.90
                10,\!080                                 => 10,080
                5.4 \text{ cents}                        => 5.4
                1 \text{ a} \text{ b}                    => 1 \text{ a} \text{ b}
                2\sqrt                                   => 2\sqrt
                \frac                                    => \frac
                \begin{pmatrix} 1 \\ 2 \end{pmatrix}     => \begin{pmatrix}1\2\end{pmatrix}
            "#]],
        );
    }
}
