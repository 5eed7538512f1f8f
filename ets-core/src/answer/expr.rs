//! A small parser and evaluator for the arithmetic found in final answers.
//!
//! It reads the output of [`super::lenient_normalize::lenient_normalize`]: LaTeX (`\frac`, `\sqrt[n]{}`,
//! `\pi`, `\infty`, `\cdot`, `\times`, `\div`, `^`, `\sin` and friends, greek letters) mixed with
//! plain text (`3/4`, `sqrt(2)`, `pi`, `2x`). Single letters and greek letters are variables;
//! juxtaposition multiplies, except that an integer directly followed by `\frac{int}{int}` is a
//! mixed number (`1\frac{4}{5}` is 9/5). A run of three or more letters that is not a known name
//! (`pi`, `sqrt`, `sin`, …) is text, and text does not parse: `east` is never `e·a·s·t`.
//!
//! Equality of two expressions is decided by evaluating both at a few fixed sample points
//! ([`Expr::equivalent`]): a numeric identity test, not a proof, and no substitute for a
//! computer-algebra system.

use std::collections::BTreeSet;

/// Relative tolerance for numeric equality.
pub(crate) const REL_TOL: f64 = 1e-9;

/// A parsed arithmetic expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    Var(String),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    /// `Root(degree, radicand)`.
    Root(Box<Expr>, Box<Expr>),
    Func(Func, Box<Expr>),
}

/// Named functions the parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Log,
    Exp,
    Sqrt,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "cot" => Func::Cot,
            "sec" => Func::Sec,
            "csc" => Func::Csc,
            "arcsin" => Func::Asin,
            "arccos" => Func::Acos,
            "arctan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" => Func::Ln,
            "log" => Func::Log,
            "exp" => Func::Exp,
            "sqrt" => Func::Sqrt,
            _ => return None,
        })
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Cot => 1.0 / x.tan(),
            Func::Sec => 1.0 / x.cos(),
            Func::Csc => 1.0 / x.sin(),
            Func::Asin => x.asin(),
            Func::Acos => x.acos(),
            Func::Atan => x.atan(),
            Func::Sinh => x.sinh(),
            Func::Cosh => x.cosh(),
            Func::Tanh => x.tanh(),
            Func::Ln => x.ln(),
            // MATH writes `\log` for the natural logarithm as often as for base 10; sympy
            // reads it as natural, and so do we.
            Func::Log => x.ln(),
            Func::Exp => x.exp(),
            Func::Sqrt => x.sqrt(),
        }
    }
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
];

/// Fixed sample values for variables: arbitrary, positive, away from poles of the
/// usual functions.
const SAMPLES: &[f64] = &[
    1.137_482, 2.253_917, 0.613_829, 1.781_346, 3.047_593, 0.842_271, 1.392_857, 2.519_634,
];

/// Number of sample points tried by [`Expr::equivalent`].
const TRIALS: usize = 5;

impl Expr {
    /// Parses `s` completely; `None` if any of it is not arithmetic.
    pub(crate) fn parse(s: &str) -> Option<Expr> {
        let mut p = Parser {
            s: s.chars().collect(),
            pos: 0,
            depth: 0,
        };
        let e = p.sum()?;
        p.skip_ws();
        (p.pos == p.s.len()).then_some(e)
    }

    /// Evaluates with variables looked up in `env`.
    pub(crate) fn eval(&self, env: &dyn Fn(&str) -> f64) -> f64 {
        match self {
            Expr::Num(x) => *x,
            Expr::Var(v) => env(v),
            Expr::Neg(a) => -a.eval(env),
            Expr::Add(a, b) => a.eval(env) + b.eval(env),
            Expr::Sub(a, b) => a.eval(env) - b.eval(env),
            Expr::Mul(a, b) => a.eval(env) * b.eval(env),
            Expr::Div(a, b) => a.eval(env) / b.eval(env),
            Expr::Pow(a, b) => a.eval(env).powf(b.eval(env)),
            Expr::Root(n, a) => {
                let (n, a) = (n.eval(env), a.eval(env));
                if a < 0.0 && n.fract() == 0.0 && n.rem_euclid(2.0) == 1.0 {
                    -(-a).powf(1.0 / n)
                } else {
                    a.powf(1.0 / n)
                }
            }
            Expr::Func(f, a) => f.apply(a.eval(env)),
        }
    }

    /// Adds the names of the variables in `self` to `out`.
    pub(crate) fn vars(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Num(_) => {}
            Expr::Var(v) => {
                out.insert(v.clone());
            }
            Expr::Neg(a) | Expr::Func(_, a) => a.vars(out),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Root(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }

    /// Whether `self` and `other` agree (within [`REL_TOL`]) at every sample point where
    /// either is defined, and are defined at one point at least. Without variables this is
    /// plain numeric equality.
    pub(crate) fn equivalent(&self, other: &Expr) -> bool {
        let mut names = BTreeSet::new();
        self.vars(&mut names);
        other.vars(&mut names);
        let names: Vec<String> = names.into_iter().collect();
        let trials = if names.is_empty() { 1 } else { TRIALS };
        let mut defined = 0;
        for t in 0..trials {
            let env = |v: &str| {
                let j = names.iter().position(|n| n == v).unwrap_or(0);
                SAMPLES[(j + 3 * t) % SAMPLES.len()] + 0.1 * j as f64
            };
            let (a, b) = (self.eval(&env), other.eval(&env));
            match (a.is_nan(), b.is_nan()) {
                (true, true) => continue,
                (false, false) if close(a, b) => defined += 1,
                _ => return false,
            }
        }
        defined > 0
    }
}

/// `a` and `b` are equal up to [`REL_TOL`] relative (infinities only to themselves).
pub(crate) fn close(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    if !a.is_finite() || !b.is_finite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= REL_TOL * a.abs().max(b.abs()) || diff <= 1e-12
}

struct Parser {
    s: Vec<char>,
    pos: usize,
    /// Current recursion depth, bounded by [`MAX_DEPTH`].
    depth: usize,
}

/// Deeper nesting than this does not parse (instead of overflowing the stack).
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.pos + k).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The name of the command at the cursor (`\frac` gives `frac`, `\{` gives `{`), without
    /// consuming it.
    fn peek_command(&self) -> Option<(String, usize)> {
        if self.peek() != Some('\\') {
            return None;
        }
        let start = self.pos + 1;
        let mut end = start;
        while self.s.get(end).is_some_and(char::is_ascii_alphabetic) {
            end += 1;
        }
        if end == start {
            let c = *self.s.get(start)?;
            return Some((c.to_string(), 2));
        }
        Some((self.s[start..end].iter().collect(), end - self.pos))
    }

    /// Runs `f` one level deeper; `None` past [`MAX_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn sum(&mut self) -> Option<Expr> {
        self.nested(Self::sum_inner)
    }

    fn sum_inner(&mut self) -> Option<Expr> {
        let mut lhs = self.term()?;
        loop {
            if self.eat('+') {
                lhs = Expr::Add(Box::new(lhs), Box::new(self.term()?));
            } else if self.eat('-') {
                lhs = Expr::Sub(Box::new(lhs), Box::new(self.term()?));
            } else {
                return Some(lhs);
            }
        }
    }

    fn term(&mut self) -> Option<Expr> {
        self.skip_ws();
        // `Some(negative)` when the term starts with a (signed) integer literal.
        let first_int = match self.peek() {
            Some('-') => {
                self.pos += 1;
                let at = self.at_int_literal();
                self.pos -= 1;
                at.then_some(true)
            }
            _ => self.at_int_literal().then_some(false),
        };
        let mut lhs = self.unary()?;
        let mut factors = 1;
        loop {
            self.skip_ws();
            let op = match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    '*'
                }
                Some('/') => {
                    self.pos += 1;
                    '/'
                }
                Some('\\') => match self.peek_command() {
                    Some((name, len)) if name == "cdot" || name == "times" => {
                        self.pos += len;
                        '*'
                    }
                    Some((name, len)) if name == "div" => {
                        self.pos += len;
                        '/'
                    }
                    Some((name, _)) if starts_atom_command(&name) => 'j',
                    _ => return Some(lhs),
                },
                Some(c) if c.is_ascii_alphanumeric() || matches!(c, '.' | '(' | '[' | '{') => 'j',
                _ => return Some(lhs),
            };
            if op == 'j' && factors == 1 && first_int.is_some() && self.at_int_frac() {
                let frac = Box::new(self.power()?);
                lhs = match first_int {
                    Some(true) => Expr::Sub(Box::new(lhs), frac),
                    _ => Expr::Add(Box::new(lhs), frac),
                };
            } else {
                let rhs = if op == 'j' {
                    self.power()?
                } else {
                    self.unary()?
                };
                lhs = if op == '/' {
                    Expr::Div(Box::new(lhs), Box::new(rhs))
                } else {
                    Expr::Mul(Box::new(lhs), Box::new(rhs))
                };
            }
            factors += 1;
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.eat('-') {
            Some(Expr::Neg(Box::new(self.nested(Self::unary)?)))
        } else if self.eat('+') {
            self.nested(Self::unary)
        } else {
            self.power()
        }
    }

    fn power(&mut self) -> Option<Expr> {
        let mut base = self.primary()?;
        while self.eat('^') {
            let exp = self.exponent()?;
            base = Expr::Pow(Box::new(base), Box::new(exp));
        }
        Some(base)
    }

    /// The operand of `^`: a braced group, a signed operand, a whole number, or one atom.
    fn exponent(&mut self) -> Option<Expr> {
        self.skip_ws();
        match self.peek()? {
            '-' => {
                self.pos += 1;
                Some(Expr::Neg(Box::new(self.nested(Self::exponent)?)))
            }
            '+' => {
                self.pos += 1;
                self.nested(Self::exponent)
            }
            c if c.is_ascii_alphabetic() => {
                self.pos += 1;
                Some(Expr::Var(c.to_string()))
            }
            _ => self.primary(),
        }
    }

    /// Whether the cursor is at an unsigned integer literal (digits not followed by `.`).
    fn at_int_literal(&self) -> bool {
        let mut k = 0;
        while self.peek_at(k).is_some_and(|c| c.is_ascii_digit()) {
            k += 1;
        }
        k > 0 && self.peek_at(k) != Some('.')
    }

    /// Whether the cursor is at `\frac{int}{int}` (or `\frac12`): the fractional part of a
    /// mixed number.
    fn at_int_frac(&self) -> bool {
        let Some((name, len)) = self.peek_command() else {
            return false;
        };
        if name != "frac" {
            return false;
        }
        let mut probe = Parser {
            s: self.s.clone(),
            pos: self.pos + len,
            depth: self.depth,
        };
        probe.int_arg() && probe.int_arg()
    }

    /// Consumes a TeX argument that is an integer (`{12}` or `7`); for [`Self::at_int_frac`].
    fn int_arg(&mut self) -> bool {
        self.skip_ws();
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                self.pos > start && self.eat('}')
            }
            Some(c) if c.is_ascii_digit() => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// One TeX argument: a braced group, a command atom, or a single character.
    fn tex_arg(&mut self) -> Option<Expr> {
        self.skip_ws();
        match self.peek()? {
            '{' => self.group('{', '}'),
            // Not TeX, but written: `\sqrt(2)`.
            '(' => self.group('(', ')'),
            '\\' => self.command(),
            c if c.is_ascii_digit() => {
                self.pos += 1;
                Some(Expr::Num(f64::from(c.to_digit(10)?)))
            }
            c if c.is_ascii_alphabetic() => {
                self.pos += 1;
                Some(Expr::Var(c.to_string()))
            }
            _ => None,
        }
    }

    fn group(&mut self, open: char, close: char) -> Option<Expr> {
        if !self.eat(open) {
            return None;
        }
        let e = self.sum()?;
        self.eat(close).then_some(e)
    }

    fn primary(&mut self) -> Option<Expr> {
        self.skip_ws();
        let c = self.peek()?;
        match c {
            '0'..='9' | '.' => self.number(),
            '(' => self.group('(', ')'),
            '[' => self.group('[', ']'),
            '{' => self.group('{', '}'),
            '\\' => self.command(),
            c if c.is_ascii_alphabetic() => self.word(),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Expr> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.peek() == Some('.') {
            self.pos += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        let text: String = self.s[start..self.pos].iter().collect();
        if text == "." {
            return None;
        }
        text.parse().ok().map(Expr::Num)
    }

    /// A run of letters: a known name (`pi`, `sqrt`, `inf`, a function), or up to two
    /// single-letter variables multiplied; longer unknown runs are text.
    fn word(&mut self) -> Option<Expr> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let word: String = self.s[start..self.pos].iter().collect();
        match word.as_str() {
            "pi" => return Some(Expr::Num(std::f64::consts::PI)),
            "inf" | "infty" | "infinity" | "oo" => return Some(Expr::Num(f64::INFINITY)),
            _ => {}
        }
        if let Some(f) = Func::from_name(&word) {
            return self.function(f);
        }
        if word.len() > 2 {
            return None;
        }
        let mut letters = word.chars().map(|c| Expr::Var(c.to_string()));
        let first = letters.next()?;
        Some(letters.fold(first, |acc, v| Expr::Mul(Box::new(acc), Box::new(v))))
    }

    /// A function applied to its argument, with an optional power written on the name
    /// (`\sin^2 x`).
    fn function(&mut self, f: Func) -> Option<Expr> {
        self.nested(|p| p.function_inner(f))
    }

    fn function_inner(&mut self, f: Func) -> Option<Expr> {
        self.skip_ws();
        let power = if self.eat('^') {
            Some(self.exponent()?)
        } else {
            None
        };
        let arg = self.power()?;
        let applied = Expr::Func(f, Box::new(arg));
        Some(match power {
            Some(p) => Expr::Pow(Box::new(applied), Box::new(p)),
            None => applied,
        })
    }

    fn command(&mut self) -> Option<Expr> {
        let (name, len) = self.peek_command()?;
        self.pos += len;
        match name.as_str() {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let num = self.nested(Self::tex_arg)?;
                let den = self.nested(Self::tex_arg)?;
                Some(Expr::Div(Box::new(num), Box::new(den)))
            }
            "sqrt" => {
                self.skip_ws();
                let degree = if self.peek() == Some('[') {
                    self.group('[', ']')?
                } else {
                    Expr::Num(2.0)
                };
                let arg = self.nested(Self::tex_arg)?;
                Some(Expr::Root(Box::new(degree), Box::new(arg)))
            }
            "pi" => Some(Expr::Num(std::f64::consts::PI)),
            "infty" => Some(Expr::Num(f64::INFINITY)),
            n if GREEK.contains(&n) => Some(Expr::Var(format!("\\{n}"))),
            n => self.function(Func::from_name(n)?),
        }
    }
}

/// Whether the command `name` starts an operand (so juxtaposition with it multiplies).
fn starts_atom_command(name: &str) -> bool {
    matches!(
        name,
        "frac" | "dfrac" | "tfrac" | "cfrac" | "sqrt" | "pi" | "infty"
    ) || GREEK.contains(&name)
        || Func::from_name(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Option<f64> {
        Expr::parse(s).map(|e| e.eval(&|_| f64::NAN))
    }

    fn same(a: &str, b: &str) -> bool {
        Expr::equivalent(&Expr::parse(a).unwrap(), &Expr::parse(b).unwrap())
    }

    #[test]
    fn numbers_and_operators() {
        assert_eq!(value("1+2*3"), Some(7.0));
        assert_eq!(value(".5"), Some(0.5));
        assert_eq!(value("2^10"), Some(1024.0));
        assert_eq!(value("2^{-1}"), Some(0.5));
        assert_eq!(value("-3^2"), Some(-9.0));
        assert_eq!(value("\\frac{3}{4}"), Some(0.75));
        assert_eq!(value("\\frac34"), Some(0.75));
        assert_eq!(value("\\frac{270}7"), Some(270.0 / 7.0));
        assert_eq!(value("6\\div4"), Some(1.5));
        assert_eq!(value("2\\cdot3\\times4"), Some(24.0));
        assert_eq!(value("\\sqrt[3]{-8}"), Some(-2.0));
        assert_eq!(value("\\sqrt{16}"), Some(4.0));
        assert_eq!(value("sqrt(16)"), Some(4.0));
        assert_eq!(value("\\sqrt(16)"), Some(4.0));
        assert_eq!(value("-\\infty"), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn mixed_numbers_add_and_other_juxtapositions_multiply() {
        assert_eq!(value("1\\frac{4}{5}"), Some(1.8));
        assert_eq!(value("137\\frac12"), Some(137.5));
        assert_eq!(value("-1\\frac{4}{5}"), Some(-1.8));
        assert_eq!(value("2\\frac{\\pi}{2}"), Some(std::f64::consts::PI));
        assert_eq!(value("2(3+4)"), Some(14.0));
        assert_eq!(value("3\\sqrt3/4"), Some(3.0 * 3f64.sqrt() / 4.0));
    }

    #[test]
    fn text_and_junk_do_not_parse() {
        for s in [
            "east", "evelyn", "52_8", "1\\pm2", "(1,2)", "3!", "", "x=", "\\{1\\}",
        ] {
            assert_eq!(Expr::parse(s), None, "{s}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(Expr::parse(&deep), None);
        assert_eq!(Expr::parse(&"-".repeat(10_000)), None);
        assert_eq!(Expr::parse(&"\\sqrt".repeat(10_000)), None);
        assert_eq!(Expr::parse(&"\\sin".repeat(10_000)), None);
        assert_eq!(Expr::parse(&"2^-".repeat(10_000)), None);
        let shallow = format!("{}1{}", "(".repeat(20), ")".repeat(20));
        assert_eq!(value(&shallow), Some(1.0));
    }

    #[test]
    fn identities_hold_at_sample_points() {
        assert!(same("2k+2", "2(k+1)"));
        assert!(same("p-q", "-q+p"));
        assert!(same("\\cot x", "\\frac{\\cos x}{\\sin x}"));
        assert!(same("(x-1)(x^4+x^2+1)", "x^5-x^4+x^3-x^2+x-1"));
        assert!(same("3\\sqrt{13}", "\\sqrt{117}"));
        assert!(!same("x", "y"));
        assert!(!same("2x", "x^2"));
        assert!(!same("\\sqrt{-1}", "\\sqrt{-1}"));
    }

    #[test]
    fn closeness_is_relative() {
        assert!(close(1.0, 1.0 + 1e-12));
        assert!(!close(std::f64::consts::PI, "3.14159".parse().unwrap()));
        assert!(close(6.72e-5, 0.0000672));
        assert!(!close(6.72e-5, 6.73e-5));
        assert!(!close(0.33, 1.0 / 3.0));
        assert!(close(f64::INFINITY, f64::INFINITY));
        assert!(!close(f64::INFINITY, f64::NEG_INFINITY));
    }
}
