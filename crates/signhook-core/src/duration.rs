//! The duration syntax of flags and settings: an integer and a unit, `ms`,
//! `s`, `m`, `h` or `d` (`250ms`, `15s`, `30m`, `24h`, `7d`), and lists of
//! them separated by commas (`5s,30s,2m`).

use std::time::Duration;

/// The longest duration accepted: ten years. Every setting is added to
/// "now" somewhere, and a longer one would overflow the calendar.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Why a duration's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration: write a whole number and a unit (ms, s, m, h or d), like `15s` or `30m`, of at most 3650d")]
pub struct DurationError(pub String);

/// Parses one duration such as `15s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || DurationError(text.to_owned());
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(bad)
}

/// Parses a comma-separated list such as `5s,30s,2m`. An empty list is
/// allowed (it means "no retries").
pub fn parse_duration_list(text: &str) -> Result<Vec<Duration>, DurationError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(parse_duration).collect()
}

/// Writes a duration back in the same syntax, with the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        for (text, ms) in [
            ("250ms", 250),
            ("15s", 15_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "",
            "15",
            "s",
            "1.5s",
            "-1s",
            "10 weeks",
            "99999999999999999999d",
            "3651d",
            "99999999d",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(parse_duration_list("5s,,1m").is_err());
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration_list("").unwrap(), vec![]);
    }
}
