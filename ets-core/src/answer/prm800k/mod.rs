//! The `prm800k` grader: PRM800K's `grade_answer` (`grading/grader.py` in openai/prm800k),
//! reproduced rule by rule so that accuracies are comparable with the papers that grade with it.
//!
//! An answer is correct when (a) its Hendrycks normal form ([`super::math_normalize`]) equals
//! the reference's, or (b) its PRM800K normal form ([`prm800k_normalize`]) does, or (c) both
//! split into the same number of tuple/interval elements (same outer brackets when the reference
//! has several) and every element pair passes: two fractions `a/b` must be the same string (an
//! unreduced fraction is wrong), an integer only matches an integer, and anything else must
//! have a zero difference under PRM800K's sympy rules (`sympy_eval`).
//!
//! The grader's quirks are kept on purpose, since they decide the published numbers: unit
//! words are cut wherever they occur (`monday` → `mon`), `\frac{x+1}{2}` reads as `x+1/2`,
//! `52_8` is the Python number 528, `10\,080` becomes `10+080`, commands it does not know
//! vanish (`\cot x` is `x`), and it is case-insensitive after normalization. Where the Rust
//! cannot follow sympy exactly, `sympy_eval`'s documentation says so.
//!
//! Layout: this file holds the normalizer and the element rules; `latex_text` renders LaTeX as
//! `pylatexenc` does; `sympy_eval` decides "the difference simplifies to 0" with
//! `numbers`' complex and exact rational arithmetic.

mod latex_text;
mod numbers;
mod sympy_eval;

use super::hendrycks::math_normalize;

/// Whether `given` is correct for `reference` under PRM800K's grader.
///
/// ```
/// use ets_core::answer::prm800k_equal;
/// assert!(prm800k_equal("10{,}080", "10,\\!080"));
/// assert!(prm800k_equal("\\{-2, 1\\}", "-2,1"));
/// assert!(prm800k_equal("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"));
/// assert!(!prm800k_equal("-3^{1/2}", "-\\sqrt{3}"));
/// assert!(!prm800k_equal("\\frac{6}{8}", "\\frac{3}{4}"));
/// ```
pub fn prm800k_equal(given: &str, reference: &str) -> bool {
    if math_normalize(given) == math_normalize(reference) {
        return true;
    }
    let reference = prm800k_normalize(reference);
    let given = prm800k_normalize(given);
    if reference == given {
        return true;
    }
    if given.is_empty() {
        return false;
    }
    let (ref_elems, given_elems) = (split_tuple(&reference), split_tuple(&given));
    if ref_elems.len() > 1
        && (reference.chars().next() != given.chars().next()
            || reference.chars().next_back() != given.chars().next_back())
    {
        return false;
    }
    if ref_elems.len() != given_elems.len() {
        return false;
    }
    ref_elems.iter().zip(&given_elems).all(|(r, g)| {
        if is_frac(r) && is_frac(g) {
            r == g
        } else if str_is_int(r) != str_is_int(g) {
            false
        } else if let (Some(r), Some(g)) = (exact_int(r), exact_int(g)) {
            r == g
        } else {
            sympy_eval::equal_under_sympy(r, g)
        }
    })
}

/// Units PRM800K deletes, in its order, wherever they occur (with `es`/`s` and `^N`).
const UNITS: &[&str] = &[
    "degree",
    "cm",
    "centimeter",
    "meter",
    "mile",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "foot",
    "feet",
    "inch",
    "yard",
];

/// PRM800K's answer normalizer (`_normalize` in its grader), step by step: unwrap an enclosing
/// `\text{…}`; `\%` and `\$` lose their backslash, then `$` and `%` go; ` or ` and ` and ` →
/// ` , `; `million`/`billion`/`trillion` → `*10^6`/`^9`/`^12`; unit words deleted; `^\circ`
/// deleted; one enclosing `{…}` stripped; `,\!` deleted; a number with an integral value printed
/// as an integer; if a backslash remains, LaTeX rendered as text (`\frac{1}{2}` → `1/2`, `√` →
/// `sqrt`, `π` → `pi`, `∞` → `inf`, `∪` → `U`, `·` and `×` → `*`); spaces after `-` dropped;
/// `7 3/4` → `7+3/4`; spaces and braces deleted; lower-cased; an integer (`1,000`, `18.0`)
/// printed canonically.
///
/// ```
/// use ets_core::answer::prm800k_normalize;
/// assert_eq!(prm800k_normalize("\\frac{\\sqrt{3}}{3}"), "sqrt(3)/3");
/// assert_eq!(prm800k_normalize("137 \\frac{1}{2}"), "137+1/2");
/// assert_eq!(prm800k_normalize("\\$1,000"), "1000");
/// assert_eq!(prm800k_normalize("\\text{Monday}"), "mon");
/// ```
pub fn prm800k_normalize(answer: &str) -> String {
    let mut s = unwrap_text(answer).to_string();
    s = s.replace("\\%", "%").replace("\\$", "$");
    s = s.replace(['$', '%'], "");
    s = s.replace(" or ", " , ").replace(" and ", " , ");
    s = s
        .replace("million", "*10^6")
        .replace("billion", "*10^9")
        .replace("trillion", "*10^12");
    for unit in UNITS {
        s = remove_unit(&s, unit);
    }
    s = remove_degree_marks(&s);
    if s.starts_with('{') && s.ends_with('}') && s.chars().count() >= 2 {
        s = s[1..s.len() - 1].to_string();
    }
    s = remove_comma_thin_space(&s);
    if let Some(n) = py_float(&s).filter(|x| is_int(*x)) {
        s = int_string(n.round());
    }
    if s.contains('\\') {
        if let Some(text) = parse_latex(&s) {
            s = text;
        }
    }
    s = spaces_after_minus_removed(&s);
    s = inject_mixed_numbers(&s);
    s = s.replace([' ', '{', '}'], "");
    s = s.to_lowercase();
    if str_is_int(&s) {
        if let Some(x) = py_float(&s.replace(',', "")) {
            s = int_string(x.trunc());
        }
    }
    s
}

/// The text of an enclosing `\text{…}` (PRM800K's `^\\text\{(?P<text>.+?)\}$`).
fn unwrap_text(s: &str) -> &str {
    match s.strip_prefix("\\text{").and_then(|r| r.strip_suffix('}')) {
        Some(inner) if !inner.is_empty() && !inner.contains('\n') => inner,
        _ => s,
    }
}

/// Deletes every `unit(es)?(s)? *(\^[0-9]+)?`, left to right.
fn remove_unit(s: &str, unit: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(k) = rest.find(unit) {
        out.push_str(&rest[..k]);
        let mut tail = &rest[k + unit.len()..];
        tail = tail.strip_prefix("es").unwrap_or(tail);
        tail = tail.strip_prefix('s').unwrap_or(tail);
        tail = tail.trim_start_matches(' ');
        if let Some(power) = tail.strip_prefix('^') {
            let digits = power.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                tail = &power[digits..];
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Deletes every `\^ *\\circ`.
fn remove_degree_marks(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(k) = rest.find('^') {
        out.push_str(&rest[..k]);
        let after = rest[k + 1..].trim_start_matches(' ');
        match after.strip_prefix("\\circ") {
            Some(tail) => rest = tail,
            None => {
                out.push('^');
                rest = &rest[k + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Deletes every `,\! *`.
fn remove_comma_thin_space(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(k) = rest.find(",\\!") {
        out.push_str(&rest[..k]);
        rest = rest[k + 3..].trim_start_matches(' ');
    }
    out.push_str(rest);
    out
}

/// PRM800K's `_parse_latex`: LaTeX rendered as text, then its Unicode turned into sympy's
/// spelling; `None` where the renderer fails.
fn parse_latex(s: &str) -> Option<String> {
    let s = s
        .replace("\\tfrac", "\\frac")
        .replace("\\dfrac", "\\frac")
        .replace("\\frac", " \\frac");
    let text = latex_text::latex_to_text(&s)?
        .replace('√', "sqrt")
        .replace('π', "pi")
        .replace('∞', "inf")
        .replace('∪', "U")
        .replace(['·', '×'], "*");
    Some(text.trim().to_string())
}

/// `- *` → `-`.
fn spaces_after_minus_removed(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_minus = false;
    for c in s.chars() {
        if after_minus && c == ' ' {
            continue;
        }
        after_minus = c == '-';
        out.push(c);
    }
    out
}

/// `([0-9]) +([0-9])` → `\1+\2`, as one left-to-right pass (`1 2 3` → `1+2 3`).
fn inject_mixed_numbers(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        i += 1;
        if c.is_ascii_digit() {
            let mut j = i;
            while chars.get(j) == Some(&' ') {
                j += 1;
            }
            if j > i && chars.get(j).is_some_and(char::is_ascii_digit) {
                out.push('+');
                out.push(chars[j]);
                i = j + 1;
            }
        }
    }
    out
}

/// Python's `float(s)`: surrounding whitespace, a sign, `inf`/`nan`, digits with single
/// underscores between them, a decimal point, an exponent.
fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return t.to_ascii_lowercase().parse().ok();
    }
    let b = body.as_bytes();
    let valid = !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_digit() || b"._eE+-".contains(c))
        && b.iter().enumerate().all(|(i, &c)| {
            c != b'_'
                || (i > 0
                    && b[i - 1].is_ascii_digit()
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        });
    if !valid {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// PRM800K's `_is_int` on a float: within 1e-7 of an integer.
fn is_int(x: f64) -> bool {
    x.is_finite() && (x - x.round()).abs() <= 1e-7
}

/// An integral float printed as Python's `str(int(x))`.
fn int_string(x: f64) -> String {
    let s = format!("{x:.0}");
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// `(\d)(,)(\d\d\d)($|\D)` → `\1\3\4`, repeated until nothing changes.
fn strip_properly_formatted_commas(s: &str) -> String {
    let mut current: Vec<char> = s.chars().collect();
    loop {
        let mut next = Vec::with_capacity(current.len());
        let mut i = 0;
        while i < current.len() {
            let is_match = current[i].is_ascii_digit()
                && current.get(i + 1) == Some(&',')
                && (2..5).all(|k| current.get(i + k).is_some_and(char::is_ascii_digit))
                && current.get(i + 5).is_none_or(|c| !c.is_ascii_digit());
            if is_match {
                next.push(current[i]);
                next.extend_from_slice(&current[i + 2..(i + 6).min(current.len())]);
                i += 6;
            } else {
                next.push(current[i]);
                i += 1;
            }
        }
        if next == current {
            return next.into_iter().collect();
        }
        current = next;
    }
}

/// PRM800K's `_str_is_int`: a Python float with an integral value once grouping commas go.
fn str_is_int(s: &str) -> bool {
    py_float(&strip_properly_formatted_commas(s)).is_some_and(is_int)
}

/// The canonical digits of a plain integer literal (`-0012` → `-12`), compared exactly where
/// floating point would round (sympy compares integers exactly).
fn exact_int(s: &str) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    Some(match (digits.is_empty(), neg) {
        (true, _) => "0".to_string(),
        (false, true) => format!("-{digits}"),
        (false, false) => digits.to_string(),
    })
}

/// PRM800K's `_is_frac`: `^-?[0-9]+.?/0*[1-9][0-9]*.?$` (`.` is any character).
fn is_frac(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let body = match chars.first() {
        Some('-') => &chars[1..],
        _ => &chars[..],
    };
    let lead = body.iter().take_while(|c| c.is_ascii_digit()).count();
    // `[0-9]+` takes 1..=lead digits, `.?` at most one more character, then `/`.
    (1..=lead).any(|k| {
        [k, k + 1].into_iter().any(|slash| {
            body.get(slash) == Some(&'/') && {
                let den = &body[slash + 1..];
                let den_ok = |d: &[char]| {
                    !d.is_empty()
                        && d.iter().all(char::is_ascii_digit)
                        && d.iter().any(|c| *c != '0')
                };
                den_ok(den) || (den.len() > 1 && den_ok(&den[..den.len() - 1]))
            }
        })
    })
}

/// PRM800K's `split_tuple`: the elements of a bracketed tuple or interval without nested
/// brackets, else the whole answer as one element.
fn split_tuple(s: &str) -> Vec<String> {
    let s = strip_properly_formatted_commas(s);
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let bracket = |c: &char| "()[]".contains(*c);
    if chars.len() > 2
        && bracket(&chars[0])
        && bracket(&chars[chars.len() - 1])
        && !chars[1..chars.len() - 1].iter().any(bracket)
    {
        let inner: String = chars[1..chars.len() - 1].iter().collect();
        return inner.split(',').map(|e| e.trim().to_string()).collect();
    }
    vec![s]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_prm800k() {
        let cases = [
            ("\\text{Evelyn}", "evelyn"),
            ("\\frac{x+1}{2}", "x+1/2"),
            ("10\\,080", "10+080"),
            ("10{,}080", "10080"),
            ("\\{-2, 1\\}", "-2,1"),
            ("1 \\pm \\sqrt{19}", "1±sqrt(19)"),
            ("(-\\INFTY, 0]", "(-,0]"),
            ("137 \\FRAC{1}{2}", "137+12"),
            ("52_8", "528"),
            ("864 \\mbox{ inches}^2", "864^2"),
            ("x \\in [-2,7]", "x∈[-2,7]"),
            ("2 million", "2*10^6"),
            ("\\$32,\\!348", "32348"),
            ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "[1;2]"),
            ("-0.0", "0"),
            ("1e3", "1000"),
        ];
        for (answer, normal) in cases {
            assert_eq!(prm800k_normalize(answer), normal, "{answer}");
        }
    }

    #[test]
    fn fraction_pattern_matches_as_the_regex() {
        for yes in ["1/2", "-3/4", "10/007", "1a/2b", "1//2", "12/3."] {
            assert!(is_frac(yes), "{yes}");
        }
        for no in ["1/0", "/2", "a/2", "1/2/3", "-1.5/2", "sqrt(3)/3"] {
            assert!(!is_frac(no), "{no}");
        }
    }

    #[test]
    fn python_floats_parse_as_python_does() {
        assert_eq!(py_float(" 18.0 "), Some(18.0));
        assert_eq!(py_float("52_8"), Some(528.0));
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(py_float("_1"), None);
        assert_eq!(py_float("1,000"), None);
        assert!(str_is_int("1,000") && str_is_int("-7") && !str_is_int("inf"));
        assert_eq!(strip_properly_formatted_commas("1,234,567"), "1234567");
        assert_eq!(strip_properly_formatted_commas("(1,234,5)"), "(1234,5)");
    }

    #[test]
    fn tuples_split_only_without_nested_brackets() {
        assert_eq!(split_tuple("(1,2]"), ["1", "2"]);
        assert_eq!(split_tuple("(sqrt(2),1)"), ["(sqrt(2),1)"]);
        assert_eq!(split_tuple("1,2"), ["1,2"]);
        assert_eq!(split_tuple("(1,000,2)"), ["1000", "2"]);
    }
}
