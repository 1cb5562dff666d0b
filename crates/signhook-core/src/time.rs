//! Time, injected. Everything that decides by the clock (leases, retry
//! schedules, secret overlap) asks a [`Clock`], so tests can run a week of
//! schedule in milliseconds and production simply reads the system clock.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock moved ahead by an adjustable offset. Time keeps
/// flowing (leases, retries and timeouts behave as in production) while a
/// test jumps over a deadline, a reminder interval or a link's lifetime in
/// one call instead of waiting for it.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl ShiftedClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_ms.load(std::sync::atomic::Ordering::SeqCst);
        Utc::now() + chrono::Duration::milliseconds(offset)
    }
}

/// Milliseconds since the unix epoch: how the store keeps instants, the same
/// way in every backend.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the unix epoch. Out-of-range values
/// (which no row of ours holds) clamp to the epoch rather than panic.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// RFC 3339 in UTC with milliseconds, the one format of every timestamp in
/// the API and in payloads (`2026-11-22T10:04:05.123Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A time as people read it, in UTC with its zone named, to the second:
/// `2026-12-01 10:04:05 UTC` — the one format of the pages, the e-mails,
/// the signed PDF and the audit certificate.
pub fn readable(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Serde helpers writing a timestamp as [`rfc3339`].
pub mod serde_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    /// Serializes as RFC 3339 with milliseconds.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    /// Optional variant.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::Serializer;

        /// Serializes `Some` as RFC 3339 with milliseconds and `None` as null.
        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::rfc3339(*t)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_times_carry_their_zone_to_the_second() {
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:04:05.987Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(readable(t), "2026-12-01 10:04:05 UTC");
    }

    #[test]
    fn millis_round_trip_and_format() {
        let t = from_millis(1_795_000_000_123);
        assert_eq!(to_millis(t), 1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
    }
}
