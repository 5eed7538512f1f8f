//! Grading: is a given final answer equivalent to the reference answer?
//!
//! A [`Grader`] decides MATH answers: `prm800k` ([`prm800k_equal`], PRM800K's own grader,
//! reproduced in `super::prm800k`) or `lenient` ([`lenient_equal`], here): equal Hendrycks normal
//! forms, or equal lenient normal forms, or element-wise equality of unions, matrices, tuples,
//! intervals and lists, each element pair decided by exact rules for fractions and integers and
//! numerically otherwise (see [`lenient_equal`]). GSM8K answers are numbers and compare as
//! numbers ([`gsm8k_equal`]); the grader decides those that are not.

use serde::{Deserialize, Serialize};

use super::expr::{close, Expr};
use super::hendrycks::math_normalize;
use super::lenient_normalize::{int_literal, lenient_normalize};
use super::prm800k::prm800k_equal;

/// Which benchmark's answer conventions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    /// MATH / MATH500: LaTeX answers, graded by a [`Grader`].
    Math,
    /// GSM8K: numeric answers, graded by [`gsm8k_equal`].
    Gsm8k,
}

/// Which rules decide that a MATH answer is correct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grader {
    /// PRM800K's grader ([`prm800k_equal`]), the one most published MATH accuracies use.
    #[default]
    Prm800k,
    /// Mathematical equivalence, kinder to notation ([`lenient_equal`]).
    Lenient,
}

impl Grader {
    /// Every grader, default first.
    pub const ALL: [Grader; 2] = [Grader::Prm800k, Grader::Lenient];

    /// The grader's name: `prm800k` or `lenient`.
    pub fn name(self) -> &'static str {
        match self {
            Grader::Prm800k => "prm800k",
            Grader::Lenient => "lenient",
        }
    }

    /// Whether the MATH answer `given` is correct for `reference` under this grader.
    pub fn math_equal(self, given: &str, reference: &str) -> bool {
        match self {
            Grader::Prm800k => prm800k_equal(given, reference),
            Grader::Lenient => lenient_equal(given, reference),
        }
    }
}

impl std::fmt::Display for Grader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Grader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grader::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| format!("unknown grader `{s}` (expected prm800k or lenient)"))
    }
}

/// Whether `given` is equivalent to `reference` under `dataset`'s conventions, MATH answers
/// decided by `grader` (GSM8K answers are numbers, compared by [`gsm8k_equal`]).
pub fn answers_equal(dataset: Dataset, grader: Grader, given: &str, reference: &str) -> bool {
    match dataset {
        Dataset::Math => grader.math_equal(given, reference),
        Dataset::Gsm8k => gsm8k_equal_under(grader, given, reference),
    }
}

/// Whether the MATH answer `given` is equivalent to `reference` under the `lenient` grader:
/// PRM800K's structure with mathematical equivalence for the elements, kinder to notation.
///
/// 1. Equal under [`math_normalize`] (Hendrycks): equivalent.
/// 2. Equal under [`lenient_normalize`]: equivalent. An empty given answer is not.
/// 3. Unions (`A \cup B`) compare part by part; matrices (`\begin{pmatrix}…`) need the same
///    shape and compare entry by entry; a bracketed tuple, interval or set (`(a,b]`, `\{a,b\}`)
///    or a bare list `a, b` compares element by element, in order, and when the reference has
///    several elements the brackets must match too (`(3,4]` is not `(3,4)`).
/// 4. Elements: `a \pm b` compares `a` and `b`; equations compare `lhs − rhs`; two simple
///    fractions (`\frac{6}{8}`, `-3/4`) must have the same numerator and denominator (an
///    unreduced fraction is not the reduced one); an integer only equals an integer, by value
///    (`18.0` is `18`, but `\frac{4}{2}` is not `2`); anything else is parsed as arithmetic and
///    compared numerically, with relative tolerance 1e-9 — `0.75` is `\frac34`, `\pi/2` is
///    `\frac{\pi}{2}`, `1\frac{4}{5}` is `1.8`. The tolerance absorbs floating-point error
///    only: PRM800K rejects rounded decimals, so `3.14159` must not pass for `\pi`.
///    Expressions with variables (`2k+2`, `p-q`, `\cot x`) are compared by evaluating both at
///    several fixed sample points.
///
/// Out of scope: symbolic equivalence as sympy decides it. The numeric identity test covers most
/// of what `sympy.simplify` accepted in practice, but it is a test, not a proof; and what does not
/// parse as arithmetic (text, bases like `52_8`, inequalities) only matches as a normalized
/// string. Lists compare in order, as in PRM800K.
///
/// ```
/// use ets_core::answer::lenient_equal;
/// assert!(lenient_equal("3/4", "\\dfrac{3}{4}"));
/// assert!(lenient_equal("0.75", "\\frac34"));
/// assert!(lenient_equal("(3,\\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"));
/// assert!(!lenient_equal("\\frac{6}{8}", "\\frac{3}{4}"));
/// assert!(!lenient_equal("(3,4)", "(3,4]"));
/// ```
pub fn lenient_equal(given: &str, reference: &str) -> bool {
    if math_normalize(given) == math_normalize(reference) {
        return true;
    }
    let (given, reference) = (lenient_normalize(given), lenient_normalize(reference));
    if given == reference {
        return true;
    }
    if given.is_empty() || reference.is_empty() {
        return false;
    }
    let (g_parts, r_parts) = (split_top(&given, "\\cup"), split_top(&reference, "\\cup"));
    if g_parts.len() != r_parts.len() {
        return false;
    }
    g_parts
        .iter()
        .zip(&r_parts)
        .all(|(g, r)| structure_equal(g, r))
}

/// Whether the GSM8K answer `given` equals `reference`: both read as numbers after removing
/// `$`, `%`, commas and a trailing `.` and ignoring trailing words (units), and equal within a
/// relative 1e-9 (`18.0` is `18`, `$1,234.` is `1234`, `18 dollars` is `18`). When either is not
/// such a number, the two are compared with [`lenient_equal`] (with the chosen [`Grader`] when
/// called through [`answers_equal`]).
///
/// ```
/// use ets_core::answer::gsm8k_equal;
/// assert!(gsm8k_equal("$18.00", "18"));
/// assert!(gsm8k_equal("1,234", "1234"));
/// assert!(!gsm8k_equal("17", "18"));
/// ```
pub fn gsm8k_equal(given: &str, reference: &str) -> bool {
    gsm8k_equal_under(Grader::Lenient, given, reference)
}

/// [`gsm8k_equal`] with `grader` deciding the answers that are not plain numbers.
fn gsm8k_equal_under(grader: Grader, given: &str, reference: &str) -> bool {
    match (gsm8k_number(given), gsm8k_number(reference)) {
        (Some(g), Some(r)) => close(g, r),
        _ => grader.math_equal(given, reference),
    }
}

/// The number a GSM8K answer states, if it is one (see [`gsm8k_equal`]).
fn gsm8k_number(s: &str) -> Option<f64> {
    let cleaned: String = s
        .replace("\\$", "")
        .replace("\\%", "")
        .chars()
        .filter(|c| !matches!(c, '$' | '%' | ','))
        .collect();
    let cleaned = cleaned.trim().trim_end_matches('.').trim_end();
    let number_len = cleaned
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && matches!(c, '-' | '+'))))
        .map_or(cleaned.len(), |(i, _)| i);
    let (number, rest) = cleaned.split_at(number_len);
    let units_only = rest.starts_with(char::is_whitespace)
        && rest
            .chars()
            .all(|c| c.is_alphabetic() || c.is_whitespace() || c == '.');
    if !rest.is_empty() && !units_only {
        return None;
    }
    number.parse().ok().filter(|x: &f64| x.is_finite())
}

/// Compares two normalized answers (not unions): matrices, then tuples/intervals/lists.
fn structure_equal(given: &str, reference: &str) -> bool {
    if given == reference {
        return true;
    }
    match (matrix(given), matrix(reference)) {
        (Some(g), Some(r)) => {
            return g.len() == r.len()
                && g.iter().zip(&r).all(|(gr, rr)| {
                    gr.len() == rr.len() && gr.iter().zip(rr).all(|(a, b)| element_equal(a, b))
                });
        }
        (None, None) => {}
        _ => return false,
    }
    let (g, r) = (Tuple::split(given), Tuple::split(reference));
    // A one-element set `\{x\}` is the answer `x`.
    match (g.lone_set_element(), r.lone_set_element()) {
        (Some(g), _) => return structure_equal(g, reference),
        (None, Some(r)) => return structure_equal(given, r),
        (None, None) => {}
    }
    if r.elems.len() > 1 && g.bracket_kind() != r.bracket_kind() {
        return false;
    }
    g.elems.len() == r.elems.len()
        && g.elems
            .iter()
            .zip(&r.elems)
            .all(|(a, b)| element_equal(a, b))
}

/// Compares one element of a tuple (or a whole scalar answer).
fn element_equal(given: &str, reference: &str) -> bool {
    if given == reference {
        return true;
    }
    for sep in ["\\pm", "="] {
        let (g, r) = (split_top(given, sep), split_top(reference, sep));
        if g.len() > 1 || r.len() > 1 {
            if g.len() != r.len() {
                return false;
            }
            if sep == "=" && g.len() == 2 && equation_equal(&g, &r) {
                return true;
            }
            return g.iter().zip(&r).all(|(a, b)| element_equal(a, b));
        }
    }
    if let (Some(g), Some(r)) = (simple_fraction(given), simple_fraction(reference)) {
        return g == r;
    }
    match (int_literal(given), int_literal(reference)) {
        (Some(g), Some(r)) => return g == r,
        (None, None) => {}
        _ => return false,
    }
    match (Expr::parse(given), Expr::parse(reference)) {
        (Some(g), Some(r)) => g.equivalent(&r),
        _ => false,
    }
}

/// Two equations `l = r` agree when `l − r` agree.
fn equation_equal(given: &[&str], reference: &[&str]) -> bool {
    let diff = |sides: &[&str]| {
        let (l, r) = (Expr::parse(sides[0])?, Expr::parse(sides[1])?);
        Some(Expr::Sub(Box::new(l), Box::new(r)))
    };
    match (diff(given), diff(reference)) {
        (Some(g), Some(r)) => g.equivalent(&r),
        _ => false,
    }
}

/// A fraction of two integer literals: `(negative, numerator, denominator)` with leading
/// zeros removed. Accepts `a/b`, `\frac{a}{b}`, `\frac ab`, a leading `-` and `\frac{-a}{b}`.
fn simple_fraction(s: &str) -> Option<(bool, String, String)> {
    let (mut neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let digits = |t: &str| {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.trim_start_matches('0').to_string())
    };
    let (num, den) = if let Some(args) = body.strip_prefix("\\frac") {
        let (num, rest) = tex_int_arg(args)?;
        let (den, rest) = tex_int_arg(rest)?;
        if !rest.is_empty() {
            return None;
        }
        (num, den)
    } else {
        body.split_once('/')?
    };
    let num = match num.strip_prefix('-') {
        Some(n) => {
            neg = !neg;
            n
        }
        None => num,
    };
    Some((neg, digits(num)?, digits(den)?))
}

/// A TeX argument that is a braced group or one digit; returns it and the rest.
fn tex_int_arg(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('{') {
        let end = rest.find('}')?;
        Some((&rest[..end], &rest[end + 1..]))
    } else {
        let c = s.chars().next().filter(char::is_ascii_digit)?;
        Some(s.split_at(c.len_utf8()))
    }
}

/// Splits `s` at the occurrences of `sep` outside brackets (`()`, `[]`, `{}`, `\{\}`). A `sep`
/// that is a command (`\cup`) only matches whole command names.
fn split_top<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0i32, 0, 0);
    while i < b.len() {
        if depth == 0 && s.is_char_boundary(i) && s[i..].starts_with(sep) {
            let end = i + sep.len();
            let whole = !(sep.starts_with('\\') && b.get(end).is_some_and(u8::is_ascii_alphabetic));
            if whole {
                parts.push(&s[start..i]);
                start = end;
                i = end;
                continue;
            }
        }
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'{') => depth += 1,
                    Some(b'}') => depth -= 1,
                    _ => {}
                }
                i += 1;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// A normalized answer seen as a bracketed tuple/interval/set, or a bare comma list.
struct Tuple<'a> {
    open: Option<&'a str>,
    close: Option<&'a str>,
    elems: Vec<&'a str>,
}

impl<'a> Tuple<'a> {
    /// The brackets, with a set `\{…\}` the same as a bare list (`\{-2, 1\}` lists the
    /// solutions `-2, 1`).
    fn bracket_kind(&self) -> (Option<&'a str>, Option<&'a str>) {
        match (self.open, self.close) {
            (Some("\\{"), Some("\\}")) => (None, None),
            other => other,
        }
    }

    /// The element of a one-element set.
    fn lone_set_element(&self) -> Option<&'a str> {
        match (self.open, self.close, &self.elems[..]) {
            (Some("\\{"), Some("\\}"), [only]) => Some(only),
            _ => None,
        }
    }

    fn split(s: &'a str) -> Tuple<'a> {
        if let Some((open, inner, close)) = enclosed(s) {
            if !inner.is_empty() {
                return Tuple {
                    open: Some(open),
                    close: Some(close),
                    elems: split_top(inner, ","),
                };
            }
        }
        Tuple {
            open: None,
            close: None,
            elems: split_top(s, ","),
        }
    }
}

/// `(open, inner, close)` when one bracket pair (kinds may differ: `(3,4]`) encloses all of `s`.
fn enclosed(s: &str) -> Option<(&str, &str, &str)> {
    let open = ["\\{", "(", "["].into_iter().find(|o| s.starts_with(o))?;
    let close = ["\\}", ")", "]"].into_iter().find(|c| s.ends_with(c))?;
    if s.len() < open.len() + close.len() {
        return None;
    }
    let inner = &s[open.len()..s.len() - close.len()];
    // The opening bracket must stay open until the closing one.
    let mut depth = 0i32;
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'{') => depth += 1,
                    Some(b'}') => depth -= 1,
                    _ => {}
                }
                i += 1;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return None;
        }
        i += 1;
    }
    (depth == 0).then_some((open, inner, close))
}

/// The entries of a normalized `\begin{…matrix}` (or `array`), row by row.
fn matrix(s: &str) -> Option<Vec<Vec<&str>>> {
    // `\left(\begin{matrix}…\end{matrix}\right)` is a pmatrix written by hand.
    let s = match enclosed(s) {
        Some((_, inner, _)) if inner.starts_with("\\begin{") => inner,
        _ => s,
    };
    let rest = s.strip_prefix("\\begin{")?;
    let (env, mut body) = rest.split_once('}')?;
    if !(env.ends_with("matrix") || env == "array") {
        return None;
    }
    if env == "array" {
        body = body.strip_prefix('{')?.split_once('}')?.1;
    }
    let body = body.strip_suffix(&format!("\\end{{{env}}}"))?;
    let mut rows: Vec<Vec<&str>> = split_top(body, "\\\\")
        .into_iter()
        .map(|row| split_top(row, "&"))
        .collect();
    if rows.last().is_some_and(|r| r.len() == 1 && r[0].is_empty()) {
        rows.pop();
    }
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_splitting() {
        let t = Tuple::split("(3,4]");
        assert_eq!(
            (t.open, t.close, t.elems),
            (Some("("), Some("]"), vec!["3", "4"])
        );
        let t = Tuple::split("(a+5)(b+2)");
        assert_eq!((t.open, t.elems), (None, vec!["(a+5)(b+2)"]));
        let t = Tuple::split("\\{1\\pm\\sqrt{5},-2\\}");
        assert_eq!(t.elems, vec!["1\\pm\\sqrt{5}", "-2"]);
        let t = Tuple::split("1,-2");
        assert_eq!((t.open, t.elems), (None, vec!["1", "-2"]));
        assert_eq!(split_top("(0,9)\\cup(9,36)", "\\cup"), ["(0,9)", "(9,36)"]);
        assert_eq!(split_top("\\cupx", "\\cup"), ["\\cupx"]);
    }

    #[test]
    fn fractions_and_matrices_parse() {
        let f = |s| simple_fraction(s);
        assert_eq!(f("3/4"), Some((false, "3".into(), "4".into())));
        assert_eq!(f("-\\frac{3}{8}"), f("\\frac{-3}{8}"));
        assert_eq!(f("\\frac43"), Some((false, "4".into(), "3".into())));
        assert_eq!(f("\\frac{\\pi}{2}"), None);
        assert_eq!(f("1\\frac{4}{5}"), None);
        let m = matrix("\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}").unwrap();
        assert_eq!(m, vec![vec!["-1", "0"], vec!["0", "-1"]]);
    }

    #[test]
    fn equivalences() {
        let yes = [
            ("3/4", "\\dfrac{3}{4}"),
            ("0.75", "\\frac34"),
            ("\\frac{1}{2}", "0.5"),
            (".5", "0.5"),
            ("18.0", "18"),
            ("1,000", "1000"),
            ("x = 5", "5"),
            ("5", "x=5"),
            ("90", "90^\\circ"),
            ("90 degrees", "90^{\\circ}"),
            ("50", "50\\%"),
            ("50%", "50\\%"),
            ("(3,\\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
            ("C", "\\text{(C)}"),
            ("\\sqrt{117}", "3\\sqrt{13}"),
            ("9/5", "1\\frac{4}{5}"),
            ("2(k+1)", "2k+2"),
            ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
            ("3 \\pm \\sqrt{8}", "3 \\pm 2 \\sqrt{2}"),
            ("5x - 7y + 11z = -4", "5x - 7y + 11z + 4 = 0"),
            ("10{,}080", "10,\\!080"),
            ("\\{-2, 1\\}", "-2,1"),
            ("\\{(8,-2)\\}", "(8,-2)"),
            ("\\{5\\}", "5"),
            ("1 ± \\sqrt{19}", "1 \\pm \\sqrt{19}"),
            ("\\frac{\\sqrt{3}}{3}.", "\\frac{\\sqrt{3}}{3}"),
            ("52_8.", "52_8"),
            (
                "\\begin{bmatrix} -\\frac13 \\\\ 2/3 \\end{bmatrix}",
                "\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
            ),
        ];
        for (g, r) in yes {
            assert!(lenient_equal(g, r), "{g} should equal {r}");
        }
    }

    #[test]
    fn non_equivalences() {
        let no = [
            ("\\frac{6}{8}", "\\frac{3}{4}"),
            ("\\frac{4}{2}", "2"),
            ("0.33", "\\frac{1}{3}"),
            ("3.14", "\\pi"),
            ("(3,4)", "(3,4]"),
            ("3,4", "(3,4)"),
            ("-2,1", "1,-2"),
            ("\\{1,-2\\}", "-2,1"),
            ("(-2,1)", "\\{-2,1\\}"),
            ("(B)", "\\text{(C)}"),
            ("528", "52_8"),
            ("", "5"),
            ("x", "y"),
            ("east", "seat"),
            ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1,2)"),
            ("(0,9)", "(0,9) \\cup (9,36)"),
        ];
        for (g, r) in no {
            assert!(!lenient_equal(g, r), "{g} should not equal {r}");
        }
    }

    /// Fragments of LaTeX answers, glued at random by [`grading_is_total`].
    const TOKENS: &[&str] = &[
        "\\frac",
        "\\dfrac",
        "{",
        "}",
        "\\sqrt",
        "\\pi",
        "x",
        "1",
        "23",
        ",",
        "(",
        ")",
        "[",
        "]",
        "\\{",
        "\\}",
        "\\cup",
        "\\pm",
        "=",
        "\\text{",
        "\\begin{pmatrix}",
        "\\\\",
        "&",
        "\\end{pmatrix}",
        "^",
        "_",
        "-",
        ".",
        " ",
        "√",
        "π",
        "\\left(",
        "\\right]",
        "\\!",
        "$",
        "\\$",
        "%",
        " degrees",
        "^\\circ",
        "#### ",
        "\\boxed{",
        "The answer is: ",
        "\n",
        "/",
        "\\infty",
        "\\cot",
        "é",
        "<<",
        ">>",
        "inches^2",
        "\\",
        "\\text{ ",
    ];

    fn latexish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(proptest::sample::select(TOKENS), 0..24).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        /// Any input grades without panicking, and every answer equals itself.
        #[test]
        fn grading_is_total(a in latexish(), b in latexish()) {
            proptest::prop_assert!(lenient_equal(&a, &a));
            let _ = lenient_equal(&a, &b);
            let _ = gsm8k_equal(&a, &b);
            let _ = super::super::extract_answer(&a);
            let _ = super::super::gsm8k_reference(&a);
            let _ = super::super::strip_calculator_annotations(&a);
        }
    }

    #[test]
    fn gsm8k_numbers() {
        assert!(gsm8k_equal("18.0", "18"));
        assert!(gsm8k_equal("$18", "18"));
        assert!(gsm8k_equal("18.", "18"));
        assert!(gsm8k_equal("18 dollars", "18"));
        assert!(gsm8k_equal("1,450,000", "1450000"));
        assert!(gsm8k_equal("-10", "-10.00"));
        assert!(gsm8k_equal("\\frac{36}{2}", "\\frac{36}{2}"));
        assert!(!gsm8k_equal("18", "-18"));
        assert!(!gsm8k_equal("18 + 2", "20"));
        assert!(!gsm8k_equal("", "18"));
        assert!(answers_equal(
            Dataset::Gsm8k,
            Grader::Prm800k,
            "70,000",
            "70000"
        ));
        assert!(answers_equal(
            Dataset::Math,
            Grader::Prm800k,
            "\\dfrac{1}{2}",
            "0.5"
        ));
    }
}
