//! `Money` (US dollars as an exact decimal) and the one place where numbers written in JSON or
//! TOML become decimals.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of US dollars. Exact decimal arithmetic: 0.15 USD per million tokens times a
/// million tokens is 0.15, not 0.15000000000000002.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn new(amount: Decimal) -> Self {
        Money(amount)
    }

    /// The amount as a decimal.
    pub fn amount(self) -> Decimal {
        self.0
    }

    /// Parses `"12.50"`, `"1.5e-7"` or `"0"`; refuses negative amounts.
    pub fn parse(text: &str) -> Option<Money> {
        parse_decimal(text).filter(|d| !d.is_sign_negative()).map(Money)
    }

    /// Rounded to whole cents (banker's rounding), for display totals.
    pub fn round_cents(self) -> Money {
        Money(self.0.round_dp(2))
    }

    /// Rounded to `dp` decimal places (midpoint away from zero).
    pub fn round_dp(self, dp: u32) -> Money {
        Money(self.0.round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
    }

    /// `self × factor`, saturating instead of overflowing (costs never come near 7.9e28 USD).
    pub fn times(self, factor: Decimal) -> Money {
        Money(mul(self.0, factor))
    }
}

/// The amount with trailing zeros removed but at least two decimal places: `12.50`,
/// `0.000150`, `3.00` → `3.00`, `0.00000015`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.normalize();
        if n.scale() >= 2 {
            write!(f, "{n}")
        } else {
            write!(f, "{n:.2}")
        }
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.checked_add(rhs.0).unwrap_or(Decimal::MAX))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.checked_sub(rhs.0).unwrap_or(Decimal::MIN))
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

/// Money travels as a string (`"0.000150"`), so no JSON reader turns it into a float.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Amount(v) = Amount::deserialize(d)?;
        if v.is_sign_negative() {
            return Err(de::Error::custom("must not be negative"));
        }
        Ok(Money(v))
    }
}

/// `a × b`, saturating at the decimal's limits instead of panicking.
pub(crate) fn mul(a: Decimal, b: Decimal) -> Decimal {
    a.checked_mul(b).unwrap_or(if a.is_sign_negative() != b.is_sign_negative() { Decimal::MIN } else { Decimal::MAX })
}

/// `a ÷ b`; `None` when `b` is zero or the result overflows.
pub(crate) fn div(a: Decimal, b: Decimal) -> Option<Decimal> {
    a.checked_div(b)
}

/// Parses a decimal written plainly (`0.15`) or in scientific notation (`1.5e-07`, as LiteLLM
/// writes prices). `None` for anything else, or a value a decimal cannot hold exactly.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 {
        return None;
    }
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        Decimal::from_str_exact(t).or_else(|_| Decimal::from_str(t)).ok().filter(|_| t.len() <= 40)
    }
}

/// A JSON or TOML number as a decimal. Integers convert exactly. Without serde_json's
/// `arbitrary_precision` (a workspace-wide change) a fractional number arrives as the nearest
/// f64; its shortest round-trip text (Rust's `Display`) is then exactly the text that was
/// written whenever that had at most 15 significant digits, which every published price has.
pub fn decimal_from_f64(v: f64) -> Option<Decimal> {
    if !v.is_finite() {
        return None;
    }
    parse_decimal(&format!("{v}"))
}

/// A decimal read from a string (`"0.15"`, `"1.5e-7"`) or a number (`0.15`, `1.5e-07`, `3`).
/// Configuration and price files use it for every amount; errors say what was wrong without
/// quoting more than the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Decimal);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a decimal string such as \"0.15\" or \"1.5e-7\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                decimal_from_f64(v).map(Amount).ok_or_else(|| E::custom("is not a representable decimal"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                parse_decimal(v).map(Amount).ok_or_else(|| E::custom("is not a decimal number"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn display_keeps_precision_and_two_places() {
        assert_eq!(Money::parse("3").unwrap().to_string(), "3.00");
        assert_eq!(Money::parse("12.5").unwrap().to_string(), "12.50");
        assert_eq!(Money::parse("1.5e-7").unwrap().to_string(), "0.00000015");
        assert_eq!(Money::parse("0.000150").unwrap().to_string(), "0.00015");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert!(Money::parse("-1").is_none());
        assert!(Money::parse("abc").is_none());
    }

    #[test]
    fn json_numbers_become_the_decimal_that_was_written() {
        for (text, want) in [
            ("1.5e-07", "0.00000015"),
            ("6e-07", "0.0000006"),
            ("7.5e-08", "0.000000075"),
            ("2.5e-06", "0.0000025"),
            ("0.15", "0.15"),
            ("3", "3"),
        ] {
            let Amount(d) = serde_json::from_str(text).unwrap();
            assert_eq!(d, Decimal::from_str(want).unwrap(), "{text}");
        }
        let Amount(d) = serde_json::from_str("\"1.5e-7\"").unwrap();
        assert_eq!(d.to_string(), "0.00000015");
        assert!(serde_json::from_str::<Amount>("\"1,5\"").is_err());
        assert!(serde_json::from_str::<Money>("-2").is_err());
    }

    #[test]
    fn serde_is_a_string() {
        let m = Money::parse("0.1").unwrap() + Money::parse("0.2").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0.30\"");
        assert_eq!(m, Money::parse("0.3").unwrap());
    }
}
