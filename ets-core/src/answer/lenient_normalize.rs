//! The `lenient` grader's normalizer ([`lenient_normalize`]): a PRM800K-like normal form, kinder
//! to notation (Unicode, `\text` anywhere, spacing commands, unit words), whose output
//! [`super::grade`] compares element by element.
//!
//! String to string and total: it never fails, whatever the input.

/// Unit words removed by [`lenient_normalize`] (space-separated), with optional plural and `^n`:
/// PRM800K's list plus currency, percent and area words; longer words first so that
/// `centimeter` goes whole.
const UNITS: &str = "centimeter millimeter kilometer percent degree meter mile second \
    minute hour day week month year foot feet inch yard cent dollar unit square cm";

/// Commands whose braced argument is kept and the command itself dropped.
const TEXT_COMMANDS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textnormal",
    "mathrm",
    "mathbf",
    "mathit",
    "mbox",
    "emph",
    "boxed",
    "fbox",
];

/// Commands dropped outright (spacing, sizing, delimiters' markers, units markers).
const DROPPED_COMMANDS: &[&str] = &[
    "!",
    ",",
    ";",
    ":",
    " ",
    "quad",
    "qquad",
    "left",
    "right",
    "displaystyle",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "$",
    "%",
    "circ",
    "degree",
];

/// Normalizes an answer for the `lenient` grader, much as PRM800K's grader does before comparing
/// element by element; the output is a compact LaTeX-ish string that [`super::lenient_equal`]
/// splits and evaluates.
///
/// Steps: trim; a final sentence period goes (`52_8.`); unwrap an enclosing `\text{…}`; `{,}`
/// (a LaTeX thousands separator) → `,`; Unicode `√ π ∞ ∪ · × − ± ∓` become their LaTeX
/// commands and `°` goes; `\text{X}`, `\mbox{X}`, `\textbf{X}`, `\mathrm{X}`, `\boxed{X}` … → `X`;
/// `\dfrac`/`\tfrac` → `\frac`; spacing commands, `\left`/`\right`, `$`, `\$`, `%`, `\%`,
/// `^\circ`/`^{\circ}` dropped; ` or ` and ` and ` → `,`; unit words (`degrees`, `cm^2`,
/// `inches`, `cents`, …, as whole words) dropped; `million`/`billion`/`trillion` → `\cdot10^{k}`;
/// a digit, spaces, a digit → `+` (mixed numbers, `7 3/4`); whitespace removed (one space is
/// kept after a command name followed by a letter: `\cot x`); an enclosing `{…}` dropped;
/// `_{8}` → `_8`; a short left-hand side `x=`/`y =` or `x \in` dropped; a properly grouped
/// number `1,234,567.5` loses its commas; ASCII lowercased; an integral decimal (`18.00`,
/// `-0`) printed as an integer.
///
/// ```
/// use ets_core::answer::lenient_normalize;
/// assert_eq!(lenient_normalize("\\$32,\\!348"), "32348");
/// assert_eq!(lenient_normalize("\\left( 3, \\dfrac{\\pi}{2} \\right)"), "(3,\\frac{\\pi}{2})");
/// assert_eq!(lenient_normalize("864 \\mbox{ inches}^2"), "864");
/// assert_eq!(lenient_normalize("\\text{(C)}"), "(c)");
/// ```
pub fn lenient_normalize(answer: &str) -> String {
    let s = answer.trim();
    let s = s.strip_suffix('.').map_or(s, str::trim_end);
    let s = strip_enclosing(s, "\\text{", '}').unwrap_or(s);
    let s = s.replace("{,}", ",");
    let s = unicode_sqrt(&s);
    let s = s
        .replace('±', "\\pm ")
        .replace('∓', "\\mp ")
        .replace('π', "\\pi ")
        .replace('∞', "\\infty ")
        .replace('∪', "\\cup ")
        .replace('·', "\\cdot ")
        .replace('×', "\\times ")
        .replace('−', "-")
        .replace('°', "");
    let s = unwrap_text_commands(&s);
    let s = clean_commands(&s);
    let s = s.replace(" or ", ",").replace(" and ", ",");
    let s = remove_units(&s);
    let s = s
        .replace("trillion", "\\cdot10^{12}")
        .replace("billion", "\\cdot10^{9}")
        .replace("million", "\\cdot10^{6}");
    let s = squeeze_whitespace(&s);
    let s = strip_enclosing(&s, "{", '}').map_or(s.clone(), str::to_string);
    let s = unbrace_subscripts(&s);
    let s = strip_short_lhs(&s).to_string();
    let s = strip_thousands_commas(&s);
    let s = s.to_ascii_lowercase();
    match int_literal(&s) {
        Some(n) => n,
        None => s,
    }
}

/// `√` → `\sqrt`, its argument braced when it is a number (`√51` is √(51), not √5·1).
fn unicode_sqrt(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '√' {
            out.push(c);
            continue;
        }
        out.push_str("\\sqrt");
        let mut digits = String::new();
        while let Some(d) = chars.next_if(|d| d.is_ascii_digit() || *d == '.') {
            digits.push(d);
        }
        if !digits.is_empty() {
            out.push('{');
            out.push_str(&digits);
            out.push('}');
        }
    }
    out
}

/// `s` without `open` … `close` when the opening group closes exactly at the end of `s`.
fn strip_enclosing<'a>(s: &'a str, open: &str, close: char) -> Option<&'a str> {
    let inner = s.strip_prefix(open)?.strip_suffix(close)?;
    let mut depth = 0i32;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0 && !inner.trim().is_empty()).then(|| inner.trim())
}

/// The index just past the group that opens at `open` (a `{`), honouring `\{` and `\}`.
pub(crate) fn group_end(s: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            '\\' => i += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads the command name at `s[i] == '\\'`: letters, or one other character.
fn command_name(s: &[char], i: usize) -> (String, usize) {
    let mut end = i + 1;
    while end < s.len() && s[end].is_ascii_alphabetic() {
        end += 1;
    }
    if end == i + 1 && end < s.len() {
        end += 1;
    }
    (s[i + 1..end].iter().collect(), end)
}

/// `\text{X}` (and the other [`TEXT_COMMANDS`]) → `X`, wherever they occur.
fn unwrap_text_commands(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut closers: Vec<usize> = Vec::new();
    while i < chars.len() {
        if closers.last() == Some(&i) {
            closers.pop();
            out.push(' ');
            i += 1;
            continue;
        }
        if chars[i] == '\\' {
            let (name, end) = command_name(&chars, i);
            if TEXT_COMMANDS.contains(&name.as_str()) {
                let mut j = end;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                if chars.get(j) == Some(&'{') {
                    if let Some(close) = group_end(&chars, j) {
                        closers.push(close - 1);
                        out.push(' ');
                        i = j + 1;
                        continue;
                    }
                }
            }
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Drops spacing commands, `\left`/`\right`, dollars, percents and degree marks; renames
/// `\dfrac`/`\tfrac`/`\cfrac` to `\frac`; keeps `\\` (matrix rows) intact.
fn clean_commands(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '$' | '%' | '~' => i += 1,
            '^' => {
                if let Some(end) = degree_mark_end(&chars, i) {
                    i = end;
                } else {
                    out.push('^');
                    i += 1;
                }
            }
            '\\' => {
                let (name, end) = command_name(&chars, i);
                i = end;
                match name.as_str() {
                    "\\" => out.push_str("\\\\"),
                    "dfrac" | "tfrac" | "cfrac" => out.push_str("\\frac"),
                    "left" | "right" if chars.get(end) == Some(&'.') => i += 1,
                    n if DROPPED_COMMANDS.contains(&n) => {
                        // Between digits a spacing command is a thousands separator
                        // (`1\,000`); elsewhere it may separate a command from a letter.
                        let digits = out.ends_with(|c: char| c.is_ascii_digit())
                            && chars.get(i).is_some_and(char::is_ascii_digit);
                        if !digits {
                            out.push(' ');
                        }
                    }
                    n => {
                        out.push('\\');
                        out.push_str(n);
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// If `^` at `i` starts a degree mark (`^\circ`, `^{\circ}`, spaces allowed), its end.
fn degree_mark_end(s: &[char], i: usize) -> Option<usize> {
    let skip = |mut j: usize| {
        while j < s.len() && s[j] == ' ' {
            j += 1;
        }
        j
    };
    let circ = |j: usize| {
        let (name, end) = (s.get(j) == Some(&'\\')).then(|| command_name(s, j))?;
        (name == "circ").then_some(end)
    };
    let j = skip(i + 1);
    if let Some(end) = circ(j) {
        return Some(end);
    }
    if s.get(j) != Some(&'{') {
        return None;
    }
    let end = skip(circ(skip(j + 1))?);
    (s.get(end) == Some(&'}')).then_some(end + 1)
}

/// Drops the [`UNITS`] words (whole words, optional `s`/`es`, optional `^2`/`^{2}`).
fn remove_units(s: &str) -> String {
    let mut s = s.to_string();
    for unit in UNITS.split_whitespace() {
        let mut from = 0;
        while let Some(found) = s[from..].find(unit) {
            let start = from + found;
            let before_ok = !s[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '\\');
            let mut end = start + unit.len();
            let rest = &s[end..];
            if rest.starts_with("es") && !letter_at(rest, 2) {
                end += 2;
            } else if rest.starts_with('s') && !letter_at(rest, 1) {
                end += 1;
            }
            if !before_ok || letter_at(&s[end..], 0) {
                from = start + unit.len();
                continue;
            }
            end += power_suffix_len(&s[end..]);
            s.replace_range(start..end, " ");
            from = start;
        }
    }
    s
}

fn letter_at(s: &str, k: usize) -> bool {
    s.as_bytes().get(k).is_some_and(u8::is_ascii_alphabetic)
}

/// Length of a ` ^2` / `^{2}` suffix at the start of `s` (0 when there is none).
fn power_suffix_len(s: &str) -> usize {
    let t = s.trim_start_matches(' ');
    let Some(rest) = t.strip_prefix('^') else {
        return 0;
    };
    let rest_trim = rest.trim_start_matches(' ');
    let body = if let Some(inner) = rest_trim.strip_prefix('{') {
        match inner.find('}') {
            Some(k) if k > 0 && inner[..k].trim().bytes().all(|b| b.is_ascii_digit()) => k + 2,
            _ => return 0,
        }
    } else {
        let k = rest_trim.bytes().take_while(u8::is_ascii_digit).count();
        if k == 0 {
            return 0;
        }
        k
    };
    s.len() - t.len() + 1 + (rest.len() - rest_trim.len()) + body
}

/// Removes whitespace; a digit, spaces, a digit becomes `+` (a mixed number), and one space
/// survives between a command name and a following letter (`\cot x`).
fn squeeze_whitespace(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // Whether `out` ends in a command name made of letters.
    let mut in_command = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let prev = out.chars().next_back();
            let next = chars.get(j).copied();
            if prev.is_some_and(|p| p.is_ascii_digit()) && next.is_some_and(|n| n.is_ascii_digit())
            {
                out.push('+');
            } else if in_command && next.is_some_and(|n| n.is_ascii_alphabetic()) {
                out.push(' ');
            }
            in_command = false;
            i = j;
            continue;
        }
        if c == '\\' {
            in_command = chars.get(i + 1).is_some_and(char::is_ascii_alphabetic);
            out.push(c);
            if !in_command {
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                    i += 1;
                }
            }
        } else {
            in_command = in_command && c.is_ascii_alphabetic();
            out.push(c);
        }
        i += 1;
    }
    out
}

/// `_{8}` → `_8` (bases and indices), so that `52_{8}` and `52_8` agree.
fn unbrace_subscripts(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '_' && chars.get(i + 1) == Some(&'{') {
            if let Some(end) = group_end(&chars, i + 1) {
                let inner = &chars[i + 2..end - 1];
                if inner.iter().all(char::is_ascii_alphanumeric) {
                    out.push('_');
                    out.extend(inner);
                    i = end;
                    continue;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Drops `x=` / `xy=` (one or two letters before a single `=`) and `x\in`.
fn strip_short_lhs(s: &str) -> &str {
    let short =
        |lhs: &str| (1..=2).contains(&lhs.len()) && lhs.bytes().all(|b| b.is_ascii_alphabetic());
    if let Some((lhs, rhs)) = s.split_once('=') {
        if short(lhs) && !rhs.is_empty() && !rhs.contains('=') {
            return rhs;
        }
    }
    if let Some((lhs, rhs)) = s.split_once("\\in") {
        if short(lhs) && !rhs.is_empty() && !letter_at(rhs, 0) {
            return rhs;
        }
    }
    s
}

/// `1,234,567.5` → `1234567.5`, only when the whole string is such a number.
fn strip_thousands_commas(s: &str) -> String {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let groups: Vec<&str> = int_part.split(',').collect();
    let grouped = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if grouped {
        s.replace(',', "")
    } else {
        s.to_string()
    }
}

/// If `s` is a decimal literal with an integral value (`18`, `-18.00`, `+7`, `007`), its
/// canonical integer spelling.
pub(crate) fn int_literal(s: &str) -> Option<String> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b == b'0')
    {
        return None;
    }
    let digits = int_part.trim_start_matches('0');
    Some(match (digits.is_empty(), neg) {
        (true, _) => "0".to_string(),
        (false, true) => format!("-{digits}"),
        (false, false) => digits.to_string(),
    })
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
    fn lenient_normalizer() {
        check(
            &[
                "\\text{Evelyn}",
                "\\text{(C)}",
                "\\left( 3, \\dfrac{\\pi}{2} \\right)",
                "90^\\circ",
                "90^{ \\circ }",
                "90 degrees",
                "\\frac{270}7\\text{ degrees}",
                "864 \\mbox{ inches}^2",
                "15\\mbox{ cm}^2",
                "5.4 \\text{ cents}",
                "\\$32,\\!348",
                "11,\\! 111,\\! 111,\\! 100",
                "1,000",
                "1,-2",
                "3, 5, 7",
                "18.0",
                "-0",
                "50\\%",
                "2 million",
                "7 3/4",
                "137 \\frac{1}{2}",
                "\\cot x",
                "3R^2",
                "52_{8}",
                "x \\in [-2,7]",
                "y = 2x + 3",
                "5x - 7y + 11z + 4 = 0",
                "{5}",
                "1 or 2",
                "π/2",
                "2√51",
                "√(x+1)",
                "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
                "\\left\\{ 1, 2 \\right\\}",
                "\\boxed{42}",
                "Monday",
                "10{,}080",
                "1 ± \\sqrt{19}",
                "\\frac{\\sqrt{3}}{3}.",
                "52_8.",
            ],
            lenient_normalize,
            expect![[r#"
                \text{Evelyn}                            => evelyn
                \text{(C)}                               => (c)
                \left( 3, \dfrac{\pi}{2} \right)         => (3,\frac{\pi}{2})
                90^\circ                                 => 90
                90^{ \circ }                             => 90
                90 degrees                               => 90
                \frac{270}7\text{ degrees}               => \frac{270}7
                864 \mbox{ inches}^2                     => 864
                15\mbox{ cm}^2                           => 15
                5.4 \text{ cents}                        => 5.4
                \$32,\!348                               => 32348
                11,\! 111,\! 111,\! 100                  => 11111111100
                1,000                                    => 1000
                1,-2                                     => 1,-2
                3, 5, 7                                  => 3,5,7
                18.0                                     => 18
                -0                                       => 0
                50\%                                     => 50
                2 million                                => 2\cdot10^{6}
                7 3/4                                    => 7+3/4
                137 \frac{1}{2}                          => 137\frac{1}{2}
                \cot x                                   => \cot x
                3R^2                                     => 3r^2
                52_{8}                                   => 52_8
                x \in [-2,7]                             => [-2,7]
                y = 2x + 3                               => 2x+3
                5x - 7y + 11z + 4 = 0                    => 5x-7y+11z+4=0
                {5}                                      => 5
                1 or 2                                   => 1,2
                π/2                                      => \pi/2
                2√51                                     => 2\sqrt{51}
                √(x+1)                                   => \sqrt(x+1)
                \begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix} => \begin{pmatrix}-1&0\\0&-1\end{pmatrix}
                \left\{ 1, 2 \right\}                    => \{1,2\}
                \boxed{42}                               => 42
                Monday                                   => monday
                10{,}080                                 => 10080
                1 ± \sqrt{19}                            => 1\pm\sqrt{19}
                \frac{\sqrt{3}}{3}.                      => \frac{\sqrt{3}}{3}
                52_8.                                    => 52_8
            "#]],
        );
    }

    #[test]
    fn int_literals() {
        assert_eq!(int_literal("18.00").as_deref(), Some("18"));
        assert_eq!(int_literal("-007").as_deref(), Some("-7"));
        assert_eq!(int_literal("-0.0").as_deref(), Some("0"));
        assert_eq!(int_literal("18.5"), None);
        assert_eq!(int_literal(".5"), None);
        assert_eq!(int_literal("52_8"), None);
        assert_eq!(int_literal("1e3"), None);
    }
}
