//! LaTeX to plain text, as PRM800K's grader gets it from `pylatexenc`'s `latex2text` (default
//! settings): the step that turns `\frac{1}{2}` into `1/2` and `\sqrt{3}` into `√(3)` before
//! sympy parses the answer.
//!
//! Written from that converter's observable behaviour, for the LaTeX found in final answers:
//! - `\frac{a}{b}` → `a/b` with no parentheses added (`\frac{x+1}{2}` → `x+1/2`), `\sqrt[n]{a}`
//!   → `√(a)` (the index is dropped), `\text`, `\textbf`, `\mathrm`, `\overline` … → their
//!   argument, `\mbox`, `\textsf`, `\texttt`, `\hspace`, `\color` … → nothing;
//! - symbol commands → one character (`\pi` → `π`, `\pm` → `±`, `\le` → `≤`, Greek letters);
//! - any other command (`\cot`, `\boxed`, `\left`, `\INFTY`) → nothing, its braced groups
//!   rendered as text; spaces after a command word are swallowed (`\ln 2` → `ln2`);
//! - `\,` `\;` `\:` `\ ` → a space, `\!` → nothing, `\{` → `{`, `\\` → a newline, `&` → three
//!   spaces, `~` → a no-break space, `--` → `–`;
//! - `pmatrix`, `bmatrix`, `array` … → `[ a b; c d ]` (cells right-aligned to the widest).
//!
//! Where `latex2text` raises (a `\sqrt` with no argument), [`latex_to_text`] returns `None`, and
//! the grader keeps its input unconverted.

/// What a command does to its arguments and how it renders.
#[derive(Clone, Copy)]
enum Command {
    /// `\frac{a}{b}` → `a/b`.
    Frac,
    /// `\sqrt[n]{a}` → `√(a)`.
    Sqrt,
    /// One braced argument, rendered as is.
    Content,
    /// One braced argument (after an optional `*` or `[…]`), dropped.
    Discard,
    /// One argument, rendered followed by a combining accent.
    Accent(char),
    /// `\textcolor[model]{color}{text}` → `text`.
    TextColor,
    /// No arguments; a fixed text.
    Symbol(&'static str),
}

/// Commands taking one braced argument that is kept.
const CONTENT_COMMANDS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsc",
    "textsl",
    "emph",
    "mathrm",
    "ensuremath",
    "overline",
    "underline",
    "widehat",
    "widetilde",
    "overbrace",
    "underbrace",
    "overrightarrow",
    "overleftarrow",
    "mathbf",
    "mathit",
    "mathsf",
    "mathbb",
    "mathtt",
    "mathcal",
    "mathscr",
    "mathfrak",
];

/// Commands whose arguments are dropped.
const DISCARD_COMMANDS: &[&str] = &[
    "mbox", "textsf", "texttt", "hspace", "hphantom", "vphantom", "color",
];

/// Commands rendered as fixed text (no arguments).
const SYMBOLS: &[(&str, &str)] = &[
    ("pi", "π"),
    ("infty", "∞"),
    ("cup", "∪"),
    ("cap", "∩"),
    ("cdot", "·"),
    ("times", "×"),
    ("div", "÷"),
    ("pm", "±"),
    ("mp", "∓"),
    ("le", "≤"),
    ("leq", "≤"),
    ("ge", "≥"),
    ("geq", "≥"),
    ("leqslant", "⩽"),
    ("geqslant", "⩾"),
    ("neq", "≠"),
    ("approx", "≈"),
    ("sim", "∼"),
    ("simeq", "≃"),
    ("cong", "≅"),
    ("equiv", "≡"),
    ("propto", "∝"),
    ("in", "∈"),
    ("notin", "∉"),
    ("setminus", "∖"),
    ("emptyset", "∅"),
    ("varnothing", "∅"),
    ("subset", "⊂"),
    ("subseteq", "⊆"),
    ("supset", "⊃"),
    ("supseteq", "⊇"),
    ("circ", "∘"),
    ("angle", "∠"),
    ("perp", "⊥"),
    ("parallel", "∥"),
    ("ldots", "…"),
    ("dots", "…"),
    ("cdots", "⋯"),
    ("vdots", "⋮"),
    ("ddots", "⋱"),
    ("lfloor", "⌊"),
    ("rfloor", "⌋"),
    ("lceil", "⌈"),
    ("rceil", "⌉"),
    ("langle", "⟨"),
    ("rangle", "⟩"),
    ("vert", "|"),
    ("lvert", "|"),
    ("rvert", "|"),
    ("mid", "|"),
    ("Vert", "‖"),
    ("to", "→"),
    ("rightarrow", "→"),
    ("leftarrow", "←"),
    ("Rightarrow", "⇒"),
    ("therefore", "∴"),
    ("because", "∵"),
    ("sum", "∑"),
    ("prod", "∏"),
    ("int", "∫"),
    ("forall", "∀"),
    ("exists", "∃"),
    ("partial", "∂"),
    ("nabla", "∇"),
    ("wedge", "∧"),
    ("vee", "∨"),
    ("lnot", "¬"),
    ("ell", "ℓ"),
    ("hbar", "ħ"),
    ("aleph", "ℵ"),
    ("star", "⋆"),
    ("ast", "∗"),
    ("bullet", "∙"),
    ("prime", "'"),
    ("dagger", "†"),
    ("backslash", "\\"),
    ("quad", "  "),
    ("qquad", "    "),
    ("sin", "sin"),
    ("cos", "cos"),
    ("tan", "tan"),
    ("arcsin", "arcsin"),
    ("arccos", "arccos"),
    ("arctan", "arctan"),
    ("sinh", "sinh"),
    ("cosh", "cosh"),
    ("tanh", "tanh"),
    ("ln", "ln"),
    ("log", "log"),
    ("exp", "exp"),
    ("lim", "lim"),
    ("max", "max"),
    ("min", "min"),
    ("sup", "sup"),
    ("inf", "inf"),
    ("alpha", "α"),
    ("beta", "β"),
    ("gamma", "γ"),
    ("delta", "δ"),
    ("epsilon", "ϵ"),
    ("varepsilon", "ε"),
    ("zeta", "ζ"),
    ("eta", "η"),
    ("theta", "θ"),
    ("vartheta", "ϑ"),
    ("iota", "ι"),
    ("kappa", "κ"),
    ("lambda", "λ"),
    ("mu", "μ"),
    ("nu", "ν"),
    ("xi", "ξ"),
    ("rho", "ρ"),
    ("sigma", "σ"),
    ("tau", "τ"),
    ("upsilon", "υ"),
    ("phi", "ϕ"),
    ("varphi", "φ"),
    ("chi", "χ"),
    ("psi", "ψ"),
    ("omega", "ω"),
    ("Gamma", "Γ"),
    ("Delta", "Δ"),
    ("Theta", "Θ"),
    ("Lambda", "Λ"),
    ("Xi", "Ξ"),
    ("Pi", "Π"),
    ("Sigma", "Σ"),
    ("Phi", "Φ"),
    ("Psi", "Ψ"),
    ("Omega", "Ω"),
];

/// Control symbols (a backslash and one non-letter).
fn control_symbol(c: char) -> Option<&'static str> {
    Some(match c {
        ',' | ';' | ':' | ' ' => " ",
        '!' | '|' | '(' | ')' => "",
        '{' => "{",
        '}' => "}",
        '$' => "$",
        '%' => "%",
        '&' => "&",
        '#' => "#",
        '_' => "_",
        '~' => "~",
        '\\' => "\n",
        '[' => "\n    ",
        ']' => "\n",
        '-' => "\u{ad}",
        _ => return None,
    })
}

fn command(name: &str) -> Option<Command> {
    Some(match name {
        "frac" | "nicefrac" => Command::Frac,
        "sqrt" => Command::Sqrt,
        "textcolor" => Command::TextColor,
        "hat" => Command::Accent('\u{302}'),
        "vec" => Command::Accent('\u{20d7}'),
        "bar" => Command::Accent('\u{305}'),
        "tilde" => Command::Accent('\u{303}'),
        "dot" => Command::Accent('\u{307}'),
        "ddot" => Command::Accent('\u{308}'),
        "not" => Command::Accent('\u{338}'),
        n if CONTENT_COMMANDS.contains(&n) => Command::Content,
        n if DISCARD_COMMANDS.contains(&n) => Command::Discard,
        n => Command::Symbol(SYMBOLS.iter().find(|(k, _)| *k == n)?.1),
    })
}

/// Environments rendered as `[ a b; c d ]`.
const MATRIX_ENVIRONMENTS: &[&str] = &[
    "array",
    "pmatrix",
    "bmatrix",
    "smallmatrix",
    "psmallmatrix",
    "bsmallmatrix",
];

/// Renders `latex` as `latex2text` would; `None` where it raises.
pub(crate) fn latex_to_text(latex: &str) -> Option<String> {
    let mut walker = Walker {
        s: latex.chars().collect(),
        pos: 0,
        depth: 0,
    };
    walker.render_until(Stop::End)
}

/// Where a run of nodes ends.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    End,
    /// A closing `}` (consumed).
    Brace,
    /// A closing `]` (consumed; for optional arguments).
    Bracket,
    /// `\end{name}` (consumed).
    EndEnv,
}

/// One piece of a matrix environment's body.
enum Piece {
    Text(String),
    Column,
    Row,
}

struct Walker {
    s: Vec<char>,
    pos: usize,
    depth: usize,
}

/// Nesting deeper than this is refused (`None`) instead of overflowing the stack.
const MAX_DEPTH: usize = 64;

impl Walker {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn starts_with(&self, text: &str) -> bool {
        (self.pos..)
            .zip(text.chars())
            .all(|(k, c)| self.s.get(k) == Some(&c))
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn render_until(&mut self, stop: Stop) -> Option<String> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let mut pieces = Vec::new();
        let out = self.pieces_until(stop, &mut pieces).map(|()| {
            pieces
                .into_iter()
                .map(|p| match p {
                    Piece::Text(t) => t,
                    Piece::Column => "   ".to_string(),
                    Piece::Row => "\n".to_string(),
                })
                .collect()
        });
        self.depth -= 1;
        out
    }

    /// Reads nodes up to `stop`, keeping `&` and `\\` apart for matrix environments.
    fn pieces_until(&mut self, stop: Stop, out: &mut Vec<Piece>) -> Option<()> {
        let mut text = String::new();
        let flush = |text: &mut String, out: &mut Vec<Piece>| {
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(text)));
            }
        };
        while let Some(c) = self.peek() {
            match c {
                '}' if stop == Stop::Brace => {
                    self.pos += 1;
                    flush(&mut text, out);
                    return Some(());
                }
                ']' if stop == Stop::Bracket => {
                    self.pos += 1;
                    flush(&mut text, out);
                    return Some(());
                }
                '{' => {
                    self.pos += 1;
                    text.push_str(&self.render_until(Stop::Brace)?);
                }
                '&' => {
                    self.pos += 1;
                    flush(&mut text, out);
                    out.push(Piece::Column);
                }
                '~' => {
                    self.pos += 1;
                    text.push('\u{a0}');
                }
                '-' if self.starts_with("---") => {
                    self.pos += 3;
                    text.push('—');
                }
                '-' if self.starts_with("--") => {
                    self.pos += 2;
                    text.push('–');
                }
                '`' if self.starts_with("``") => {
                    self.pos += 2;
                    text.push('“');
                }
                '\'' if self.starts_with("''") => {
                    self.pos += 2;
                    text.push('”');
                }
                '\\' if self.starts_with("\\\\") => {
                    self.pos += 2;
                    flush(&mut text, out);
                    out.push(Piece::Row);
                }
                '\\' if self.starts_with("\\end{") && stop == Stop::EndEnv => {
                    self.pos += 5;
                    while self.peek().is_some_and(|c| c != '}') {
                        self.pos += 1;
                    }
                    self.pos += 1;
                    flush(&mut text, out);
                    return Some(());
                }
                '\\' => text.push_str(&self.macro_node()?),
                c => {
                    self.pos += 1;
                    text.push(c);
                }
            }
        }
        flush(&mut text, out);
        Some(())
    }

    /// A command at the cursor (a backslash), with its arguments.
    fn macro_node(&mut self) -> Option<String> {
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        if self.pos == start {
            let Some(c) = self.peek() else {
                return Some(String::new());
            };
            self.pos += 1;
            return Some(control_symbol(c).unwrap_or("").to_string());
        }
        let name: String = self.s[start..self.pos].iter().collect();
        self.skip_whitespace();
        if name == "begin" {
            return self.environment();
        }
        match command(&name) {
            Some(Command::Frac) => {
                let save = self.pos;
                match (self.argument(), self.argument()) {
                    (Some(Some(a)), Some(Some(b))) => Some(format!("{a}/{b}")),
                    _ => {
                        // latex2text prints its unfilled template and goes on.
                        self.pos = save;
                        Some("%s/%s".to_string())
                    }
                }
            }
            Some(Command::Sqrt) => {
                self.optional_argument()?;
                let a = self.argument()??;
                Some(format!("√({a})"))
            }
            Some(Command::Content) => Some(self.argument()?.unwrap_or_default()),
            Some(Command::Discard) => {
                if self.peek() == Some('*') {
                    self.pos += 1;
                }
                self.optional_argument()?;
                self.argument()?;
                Some(String::new())
            }
            Some(Command::Accent(mark)) => {
                let mut a = self.argument()?.unwrap_or_default();
                a.push(mark);
                Some(a)
            }
            Some(Command::TextColor) => {
                self.optional_argument()?;
                self.argument()?;
                self.argument()?
            }
            Some(Command::Symbol(text)) => Some(text.to_string()),
            None => Some(String::new()),
        }
    }

    /// A mandatory argument: `Some(None)` when the input ends first; `None` on failure.
    fn argument(&mut self) -> Option<Option<String>> {
        self.skip_whitespace();
        let Some(c) = self.peek() else {
            return Some(None);
        };
        Some(Some(match c {
            '{' => {
                self.pos += 1;
                self.render_until(Stop::Brace)?
            }
            '\\' => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    self.pos += 1;
                }
                if self.pos == start {
                    let c = self.peek()?;
                    self.pos += 1;
                    control_symbol(c).unwrap_or("").to_string()
                } else {
                    let name: String = self.s[start..self.pos].iter().collect();
                    self.skip_whitespace();
                    match command(&name) {
                        Some(Command::Symbol(text)) => text.to_string(),
                        _ => String::new(),
                    }
                }
            }
            c => {
                self.pos += 1;
                c.to_string()
            }
        }))
    }

    /// An optional `[…]` argument, skipped.
    fn optional_argument(&mut self) -> Option<()> {
        self.skip_whitespace();
        if self.peek() == Some('[') {
            self.pos += 1;
            self.render_until(Stop::Bracket)?;
        }
        Some(())
    }

    /// `\begin{name}…\end{name}` (the `\begin` already read).
    fn environment(&mut self) -> Option<String> {
        if self.peek() != Some('{') {
            return Some(String::new());
        }
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c != '}') {
            self.pos += 1;
        }
        let name: String = self.s[start..self.pos].iter().collect();
        self.pos += 1;
        if name == "array" {
            self.skip_whitespace();
            if self.peek() == Some('{') {
                self.pos += 1;
                self.render_until(Stop::Brace)?;
            }
        }
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let mut pieces = Vec::new();
        let read = self.pieces_until(Stop::EndEnv, &mut pieces);
        self.depth -= 1;
        read?;
        if !MATRIX_ENVIRONMENTS.contains(&name.as_str()) {
            return Some(
                pieces
                    .into_iter()
                    .map(|p| match p {
                        Piece::Text(t) => t,
                        Piece::Column => "   ".to_string(),
                        Piece::Row => "\n".to_string(),
                    })
                    .collect(),
            );
        }
        Some(format_matrix(pieces))
    }
}

/// `[ a b; c d ]`: cells trimmed and right-aligned to the widest; rows joined by `; `.
fn format_matrix(pieces: Vec<Piece>) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut cell: Option<String> = None;
    for piece in pieces.into_iter().chain([Piece::Row]) {
        match piece {
            Piece::Text(t) => cell.get_or_insert_with(String::new).push_str(&t),
            Piece::Column => {
                if let Some(c) = cell.take() {
                    row.push(c.trim().to_string());
                }
            }
            Piece::Row => {
                if let Some(c) = cell.take() {
                    row.push(c.trim().to_string());
                }
                rows.push(std::mem::take(&mut row));
            }
        }
    }
    let width = rows
        .iter()
        .flatten()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0);
    let body: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| format!("{c:>width$}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    format!("[ {} ]", body.join("; "))
}

#[cfg(test)]
mod tests {
    use super::latex_to_text;

    #[test]
    fn renders_like_latex2text() {
        let cases = [
            ("\\frac{1}{2}", "1/2"),
            ("\\frac{x+1}{2}", "x+1/2"),
            ("\\frac12", "1/2"),
            ("\\frac\\pi2", "π/2"),
            ("\\frac{1}", "%s/%s1"),
            ("\\sqrt{x+1}", "√(x+1)"),
            ("\\sqrt[3]{2}", "√(2)"),
            ("3\\sqrt2", "3√(2)"),
            ("\\left( 1, 2 \\right]", "( 1, 2 ]"),
            ("\\{1,2\\}", "{1,2}"),
            ("10\\,080", "10 080"),
            ("10\\, 080", "10  080"),
            ("10\\!080", "10080"),
            ("10{,}080", "10,080"),
            ("\\INFTY", ""),
            ("\\FRAC{1}{2}", "12"),
            ("\\sin x", "sinx"),
            ("\\cos^2 x", "cos^2 x"),
            ("\\cot x", "x"),
            ("\\mbox{ cm}", ""),
            ("5\\text{ cm}", "5 cm"),
            ("\\boxed{5}", "5"),
            ("a & b", "a     b"),
            ("a~b", "a\u{a0}b"),
            ("1 -- 2", "1 – 2"),
            (
                "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
                "[ -1  0;  0 -1 ]",
            ),
            (
                "\\begin{array}{cc} 1 & 2 \\\\ 3 & 4\\end{array}",
                "[ 1 2; 3 4 ]",
            ),
            ("\\begin{matrix} 1 & 2 \\end{matrix}", " 1     2 "),
            ("\\hat{x}", "x\u{302}"),
            ("\\pm\\le\\pi\\infty", "±≤π∞"),
        ];
        for (latex, text) in cases {
            assert_eq!(latex_to_text(latex).as_deref(), Some(text), "{latex}");
        }
        assert_eq!(latex_to_text("\\sqrt"), None);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}1{}", "{".repeat(10_000), "}".repeat(10_000));
        assert_eq!(latex_to_text(&deep), None);
    }
}
