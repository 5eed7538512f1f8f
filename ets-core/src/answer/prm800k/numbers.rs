//! The arithmetic behind `sympy_eval`: complex numbers with sympy's principal branches, and
//! exact rationals for answers made of numbers alone (where sympy is exact and floating point
//! is not: `0.3333333333333333` is not `1/3`).

/// A complex number with the principal branches sympy uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Complex {
    pub(super) re: f64,
    pub(super) im: f64,
}

impl Complex {
    pub(super) const fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }

    pub(super) fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }

    pub(super) fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }

    pub(super) fn neg(self) -> Self {
        Self::new(-self.re, -self.im)
    }

    pub(super) fn add(self, o: Self) -> Self {
        Self::new(self.re + o.re, self.im + o.im)
    }

    pub(super) fn sub(self, o: Self) -> Self {
        Self::new(self.re - o.re, self.im - o.im)
    }

    pub(super) fn mul(self, o: Self) -> Self {
        Self::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }

    pub(super) fn div(self, o: Self) -> Self {
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return Self::new(f64::NAN, f64::NAN);
        }
        Self::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }

    pub(super) fn ln(self) -> Self {
        if self.re == 0.0 && self.im == 0.0 {
            return Self::new(f64::NAN, f64::NAN);
        }
        Self::new(self.abs().ln(), self.im.atan2(self.re))
    }

    pub(super) fn exp(self) -> Self {
        let r = self.re.exp();
        Self::new(r * self.im.cos(), r * self.im.sin())
    }

    pub(super) fn sin(self) -> Self {
        Self::new(
            self.re.sin() * self.im.cosh(),
            self.re.cos() * self.im.sinh(),
        )
    }

    pub(super) fn sqrt(self) -> Self {
        if self.im == 0.0 {
            return if self.re >= 0.0 {
                Self::new(self.re.sqrt(), 0.0)
            } else {
                Self::new(0.0, (-self.re).sqrt())
            };
        }
        let r = self.abs();
        let re = ((r + self.re) / 2.0).sqrt();
        let im = ((r - self.re) / 2.0).sqrt().copysign(self.im);
        Self::new(re, im)
    }

    pub(super) fn pow(self, e: Self) -> Self {
        let integral = e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() <= 64.0;
        if integral {
            let mut n = e.re.abs() as u32;
            let (mut base, mut acc) = (self, Self::new(1.0, 0.0));
            while n > 0 {
                if n & 1 == 1 {
                    acc = acc.mul(base);
                }
                base = base.mul(base);
                n >>= 1;
            }
            return if e.re < 0.0 {
                Self::new(1.0, 0.0).div(acc)
            } else {
                acc
            };
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 {
                Self::new(0.0, 0.0)
            } else {
                Self::new(f64::NAN, f64::NAN)
            };
        }
        if e == Self::new(0.5, 0.0) {
            return self.sqrt();
        }
        e.mul(self.ln()).exp()
    }
}

/// An exact rational `num/den` (`den > 0`, lowest terms); every operation is checked and gives
/// `None` on overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ratio {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Ratio {
    pub(super) fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let sign = if den < 0 { -1 } else { 1 };
        Some(Self {
            num: num.checked_div(g)?.checked_mul(sign)?,
            den: den.checked_div(g)?.checked_mul(sign)?,
        })
    }

    /// The exact value of a Python decimal literal (`0.25`, `3.`, `.5`, `1e3`, `2.5e-2`).
    pub(super) fn from_decimal(text: &str) -> Option<Self> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(k) => (&text[..k], text[k + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 36 {
            return None;
        }
        let num: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let scale = exponent - i32::try_from(frac_part.len()).ok()?;
        let ten = |k: i32| 10i128.checked_pow(u32::try_from(k).ok()?);
        if scale >= 0 {
            Self::new(num.checked_mul(ten(scale)?)?, 1)
        } else {
            Self::new(num, ten(-scale)?)
        }
    }

    /// The nearest f64 (for these sizes, through one rounding of each part).
    pub(super) fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub(super) fn is_zero(self) -> bool {
        self.num == 0
    }

    /// `self` rounded to the nearest number with `bits` significant bits (ties to even), as
    /// `(mantissa, exponent)`; `None` when that does not fit.
    pub(super) fn round_to_bits(self, bits: u32) -> Option<(i128, i32)> {
        if self.num == 0 {
            return Some((0, 0));
        }
        if !(1..=120).contains(&bits) {
            return None;
        }
        let (n, d) = (self.num.unsigned_abs(), self.den.unsigned_abs());
        if d >= 1 << 126 {
            return None;
        }
        let bit_len = |x: u128| 128 - x.leading_zeros();
        let (int, mut rem) = (n / d, n % d);
        let (mut m, mut e, round_up);
        if bit_len(int) > bits {
            // More integer bits than fit: the dropped low bits decide the rounding.
            let shift = bit_len(int) - bits;
            m = int >> shift;
            e = i32::try_from(shift).ok()?;
            let (low, half) = (int & ((1u128 << shift) - 1), 1u128 << (shift - 1));
            round_up = low > half || (low == half && (rem > 0 || m % 2 == 1));
        } else {
            // Long division, one binary digit at a time, until `bits` significant bits.
            (m, e) = (int, 0);
            while bit_len(m) < bits {
                rem *= 2;
                m = m * 2 + u128::from(rem >= d);
                if rem >= d {
                    rem -= d;
                }
                e -= 1;
            }
            rem *= 2;
            let half = rem >= d;
            if half {
                rem -= d;
            }
            round_up = half && (rem > 0 || m % 2 == 1);
        }
        m += u128::from(round_up);
        if bit_len(m) > bits {
            m >>= 1;
            e += 1;
        }
        let m = i128::try_from(m).ok()?;
        Some((if self.num < 0 { -m } else { m }, e))
    }

    pub(super) fn neg(self) -> Option<Self> {
        Self::new(self.num.checked_neg()?, self.den)
    }

    pub(super) fn add(self, o: Self) -> Option<Self> {
        Self::new(
            self.num
                .checked_mul(o.den)?
                .checked_add(o.num.checked_mul(self.den)?)?,
            self.den.checked_mul(o.den)?,
        )
    }

    pub(super) fn sub(self, o: Self) -> Option<Self> {
        self.add(o.neg()?)
    }

    pub(super) fn mul(self, o: Self) -> Option<Self> {
        Self::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }

    pub(super) fn div(self, o: Self) -> Option<Self> {
        Self::new(self.num.checked_mul(o.den)?, self.den.checked_mul(o.num)?)
    }

    /// The square root when numerator and denominator are perfect squares.
    pub(super) fn sqrt(self) -> Option<Self> {
        let root = |n: i128| -> Option<i128> {
            if n < 0 {
                return None;
            }
            let guess = (n as f64).sqrt() as i128;
            (guess.saturating_sub(1)..=guess.saturating_add(1))
                .find(|r| *r >= 0 && r.checked_mul(*r) == Some(n))
        };
        Self::new(root(self.num)?, root(self.den)?)
    }

    /// `self` to an integer power; `None` for other exponents.
    pub(super) fn pow(self, e: Self) -> Option<Self> {
        if e.den != 1 || e.num.abs() > 64 {
            return None;
        }
        let n = u32::try_from(e.num.abs()).ok()?;
        let p = Self::new(self.num.checked_pow(n)?, self.den.checked_pow(n)?)?;
        if e.num < 0 {
            Self::new(1, 1)?.div(p)
        } else {
            Some(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ratio;

    #[test]
    fn decimals_are_exact() {
        let r = |n, d| Ratio::new(n, d);
        assert_eq!(Ratio::from_decimal("0.25"), r(1, 4));
        assert_eq!(Ratio::from_decimal("3."), r(3, 1));
        assert_eq!(Ratio::from_decimal(".5"), r(1, 2));
        assert_eq!(Ratio::from_decimal("2.5e-2"), r(1, 40));
        assert_eq!(Ratio::from_decimal("1e3"), r(1000, 1));
        assert_ne!(Ratio::from_decimal("0.3333333333333333"), r(1, 3));
        assert_eq!(r(2, 3).and_then(|x| x.pow(r(-2, 1)?)), r(9, 4));
        assert_eq!(r(1, 2).and_then(|x| x.pow(r(1, 2)?)), None);
        assert_eq!(r(1, 0), None);
        assert_eq!(r(9, 4).and_then(Ratio::sqrt), r(3, 2));
        assert_eq!(r(2, 1).and_then(Ratio::sqrt), None);
    }

    #[test]
    fn rounding_to_bits_matches_binary_floats() {
        let at = |text: &str, bits| Ratio::from_decimal(text)?.round_to_bits(bits);
        let third = Ratio::new(1, 3).unwrap();
        // At 53 bits a decimal rounds as an f64 does.
        let (m, e) = at("0.1", 53).unwrap();
        assert_eq!(m as f64 * 2f64.powi(e), 0.1);
        assert_eq!(at("0.3333333333333333", 53), third.round_to_bits(53));
        assert_ne!(at("0.3333333333333333", 56), third.round_to_bits(56));
        let r = Ratio::new(3840, 289).unwrap();
        assert_eq!(at("13.28719723183391", 56), r.round_to_bits(56));
        assert_eq!(at("-2.5", 56), Some((-(5i128 << 53), -54)));
    }
}
