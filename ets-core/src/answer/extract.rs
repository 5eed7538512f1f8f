//! Final-answer extraction from generated solution text.
//!
//! Three conventions, tried in order by [`extract_answer`]: a LaTeX box ([`last_boxed`], the
//! MATH convention), a closing sentence "The answer is: X" ([`answer_is`], Math-Shepherd's
//! format), and GSM8K's `#### N` line ([`gsm8k_hash`]).

/// Extracts the final answer of a solution: the last `\boxed{…}`/`\fbox{…}` if there is one,
/// else the text after the last "The answer is", else the text after the last `####`.
/// `None` when no convention yields a non-empty answer.
///
/// ```
/// use ets_core::answer::extract_answer;
/// assert_eq!(extract_answer("so $\\boxed{\\frac{1}{2}}$.").as_deref(), Some("\\frac{1}{2}"));
/// assert_eq!(extract_answer("The answer is: 18").as_deref(), Some("18"));
/// assert_eq!(extract_answer("9 * 2 = 18\n#### 18").as_deref(), Some("18"));
/// assert_eq!(extract_answer("no answer here"), None);
/// ```
pub fn extract_answer(text: &str) -> Option<String> {
    last_boxed(text)
        .or_else(|| answer_is(text))
        .or_else(|| gsm8k_hash(text))
}

/// The contents of the last `\boxed{…}` or `\fbox{…}` in `text`, braces balanced (nested
/// groups kept; `\{` and `\}` do not count), trimmed. Also reads the brace-less form
/// `\boxed 5`, up to the next `$` or line end (a trailing `.` dropped).
///
/// `None` when there is no box, when the last box is empty, or when its closing brace is
/// missing (a truncated generation: an earlier box is not taken instead, since it is usually
/// an intermediate result).
pub fn last_boxed(text: &str) -> Option<String> {
    let (start, name) = ["\\boxed", "\\fbox"]
        .into_iter()
        .flat_map(|name| {
            text.match_indices(name).filter_map(move |(i, _)| {
                let after = text.as_bytes().get(i + name.len());
                (!after.is_some_and(u8::is_ascii_alphabetic)).then_some((i, name))
            })
        })
        .max_by_key(|&(i, _)| i)?;
    let rest = &text[start + name.len()..];
    let trimmed = rest.trim_start();
    let content = if trimmed.starts_with('{') {
        let end = balanced_group_end(trimmed)?;
        trimmed[1..end - 1].trim()
    } else if rest.starts_with(char::is_whitespace) {
        let end = trimmed.find(['$', '\n']).unwrap_or(trimmed.len());
        let c = trimmed[..end].trim();
        c.strip_suffix('.').unwrap_or(c).trim_end()
    } else {
        return None;
    };
    (!content.is_empty()).then(|| content.to_string())
}

/// The byte index just past the `}` that closes the `{` at the start of `s`.
fn balanced_group_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
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

/// The answer stated by the last "The answer is X" / "The answer is: X" (any case) in `text`:
/// the rest of that line, trimmed, with one trailing `.` removed and enclosing `$…$`, `\(…\)`
/// or `\[…\]` delimiters and a `\boxed{…}` unwrapped. `None` if absent or empty.
///
/// ```
/// use ets_core::answer::answer_is;
/// assert_eq!(answer_is("The answer is: \\frac{1}{2}.").as_deref(), Some("\\frac{1}{2}"));
/// assert_eq!(answer_is("so the answer is $3.5$.\nDone").as_deref(), Some("3.5"));
/// ```
pub fn answer_is(text: &str) -> Option<String> {
    const PHRASE: &str = "the answer is";
    let start = text.to_ascii_lowercase().rfind(PHRASE)? + PHRASE.len();
    let line = &text[start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let mut answer = line.trim_start().strip_prefix(':').unwrap_or(line).trim();
    answer = answer.strip_suffix('.').unwrap_or(answer).trim_end();
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(inner) = answer
            .strip_prefix(open)
            .and_then(|a| a.strip_suffix(close))
        {
            answer = inner.trim();
            answer = answer.strip_suffix('.').unwrap_or(answer).trim_end();
            break;
        }
    }
    if answer.starts_with("\\boxed") || answer.starts_with("\\fbox") {
        return last_boxed(answer);
    }
    (!answer.is_empty()).then(|| answer.to_string())
}

/// The text after the last `####` in `text` (GSM8K's final-answer line), trimmed, as written.
/// `None` if there is no `####` or nothing follows it on its line.
pub fn gsm8k_hash(text: &str) -> Option<String> {
    let rest = &text[text.rfind("####")? + 4..];
    let answer = rest[..rest.find('\n').unwrap_or(rest.len())].trim();
    (!answer.is_empty()).then(|| answer.to_string())
}

/// The reference answer of a GSM8K solution: the number after `####`, commas removed
/// (`#### 1,234` gives `1234`).
///
/// ```
/// use ets_core::answer::gsm8k_reference;
/// assert_eq!(gsm8k_reference("4 * 2 = <<4*2=8>>8\n#### 1,234").as_deref(), Some("1234"));
/// ```
pub fn gsm8k_reference(solution: &str) -> Option<String> {
    let answer = gsm8k_hash(solution)?.replace(',', "");
    let answer = answer.trim();
    (!answer.is_empty()).then(|| answer.to_string())
}

/// Removes GSM8K's calculator annotations `<<expr=result>>` from `s`; an unclosed `<<` and
/// what follows it are kept.
///
/// ```
/// use ets_core::answer::strip_calculator_annotations;
/// assert_eq!(strip_calculator_annotations("16-3-4=<<16-3-4=9>>9 eggs"), "16-3-4=9 eggs");
/// ```
pub fn strip_calculator_annotations(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("<<") {
        let Some(close) = rest[open + 2..].find(">>") else {
            break;
        };
        out.push_str(&rest[..open]);
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(s: &str) -> Option<String> {
        last_boxed(s)
    }

    #[test]
    fn boxed_answers() {
        assert_eq!(boxed("x = \\boxed{5}").as_deref(), Some("5"));
        assert_eq!(
            boxed("\\boxed{\\frac{\\sqrt{3}}{2}}.").as_deref(),
            Some("\\frac{\\sqrt{3}}{2}")
        );
        assert_eq!(
            boxed("first \\boxed{1}, then \\boxed{2}, finally \\fbox{3}").as_deref(),
            Some("3")
        );
        assert_eq!(boxed("\\fbox{1} then \\boxed{ 2 }").as_deref(), Some("2"));
        assert_eq!(boxed("$\\boxed{\\{1,2\\}}$").as_deref(), Some("\\{1,2\\}"));
        assert_eq!(
            boxed("\\boxed{\\left\\{ 1 \\right.}").as_deref(),
            Some("\\left\\{ 1 \\right.")
        );
        assert_eq!(boxed("so $\\boxed 5$.").as_deref(), Some("5"));
        assert_eq!(boxed("so \\boxed 5.\nnext").as_deref(), Some("5"));
        assert_eq!(boxed("\\boxed {7}").as_deref(), Some("7"));
    }

    #[test]
    fn boxed_failures() {
        assert_eq!(boxed("no box"), None);
        assert_eq!(boxed("\\boxed{\\frac{1}{2}"), None, "missing close brace");
        assert_eq!(boxed("\\boxed{1} and \\boxed{2"), None, "last box unclosed");
        assert_eq!(boxed("\\boxed{}"), None);
        assert_eq!(boxed("\\boxed{  }"), None);
        assert_eq!(boxed("\\boxedanswer{3}"), None);
    }

    #[test]
    fn answer_is_sentences() {
        let a = |s| answer_is(s);
        assert_eq!(
            a("The answer is: \\frac{1}{2}.").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(a("The answer is 18").as_deref(), Some("18"));
        assert_eq!(a("The answer is: 3.5").as_deref(), Some("3.5"));
        assert_eq!(a("the answer is $\\pi$.").as_deref(), Some("\\pi"));
        assert_eq!(
            a("The answer is: 2\nThe answer is: (1, 2)\nbye").as_deref(),
            Some("(1, 2)")
        );
        assert_eq!(a("The answer is: \\boxed{7}.").as_deref(), Some("7"));
        assert_eq!(a("The answer is:"), None);
        assert_eq!(a("The answer is.\n5"), None);
        assert_eq!(a("no sentence"), None);
    }

    #[test]
    fn gsm8k_lines() {
        let sol = "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 1,234";
        assert_eq!(gsm8k_hash(sol).as_deref(), Some("1,234"));
        assert_eq!(gsm8k_reference(sol).as_deref(), Some("1234"));
        assert_eq!(gsm8k_hash("#### 5\n#### 6 \n").as_deref(), Some("6"));
        assert_eq!(gsm8k_hash("#### \nmore"), None);
        assert_eq!(gsm8k_reference("no hashes"), None);
        assert_eq!(
            strip_calculator_annotations(sol),
            "She makes 9 * 2 = $18 every day.\n#### 1,234"
        );
        assert_eq!(strip_calculator_annotations("a<<b>>c<<d"), "ac<<d");
    }

    #[test]
    fn preference_order() {
        let all = "The answer is: 2\n\\boxed{1}\n#### 3";
        assert_eq!(extract_answer(all).as_deref(), Some("1"));
        let no_box = "The answer is: 2\n#### 3";
        assert_eq!(extract_answer(no_box).as_deref(), Some("2"));
        assert_eq!(extract_answer("#### 3").as_deref(), Some("3"));
        let truncated = "\\boxed{1\nThe answer is: 1";
        assert_eq!(extract_answer(truncated).as_deref(), Some("1"));
    }
}
