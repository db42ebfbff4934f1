//! Durations as written in fleet and scenario files and on the command line: an integer or
//! decimal number followed by a unit (`ms`, `s`, `m`, `h`, `d`), e.g. `250ms`, `5s`, `1.5m`, `24h`.
//! Kept in whole milliseconds because every timestamp on the wire is in milliseconds.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A parse failure, with the text that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(pub String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a duration (expected a number and a unit: ms, s, m, h or d, e.g. 5s)",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `text` into milliseconds.
pub fn parse_ms(text: &str) -> Result<u64, DurationError> {
    let t = text.trim();
    let err = || DurationError(text.to_string());
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(err)?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| err())?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(err()),
    };
    let ms = value * scale;
    if !ms.is_finite() || !(0.0..=1e15).contains(&ms) {
        return Err(err());
    }
    Ok(ms.round() as u64)
}

/// Formats milliseconds in the largest unit that divides them.
pub fn format_ms(ms: u64) -> String {
    for (unit, scale) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= scale && ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// Serde helper: a duration string in a TOML file.
pub fn de_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_ms(&s).map_err(serde::de::Error::custom)
}

/// Serde helper: an optional duration string.
pub fn de_opt_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_ms(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse_units() {
        assert_eq!(parse_ms("250ms").unwrap(), 250);
        assert_eq!(parse_ms("5s").unwrap(), 5_000);
        assert_eq!(parse_ms("1.5m").unwrap(), 90_000);
        assert_eq!(parse_ms("24h").unwrap(), 86_400_000);
        assert_eq!(parse_ms("1d").unwrap(), 86_400_000);
        assert_eq!(parse_ms(" 0s ").unwrap(), 0);
    }

    #[test]
    fn test_parse_refuses_garbage() {
        for bad in ["", "5", "s", "5 parsecs", "-1s", "1e99h", "..s"] {
            assert!(parse_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_format_round_trip() {
        for ms in [1, 250, 5_000, 90_000, 3_600_000, 86_400_000] {
            assert_eq!(parse_ms(&format_ms(ms)).unwrap(), ms);
        }
    }
}
