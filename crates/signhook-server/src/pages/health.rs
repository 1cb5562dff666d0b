//! An endpoint's health over the last 24 hours and 7 days, as the
//! dashboard draws it: the success rate and mean latency of its attempts,
//! and a small server-rendered SVG per window — one bar per slot (an hour,
//! or six for the week), as tall as the slot's attempts against the
//! busiest slot, green for the successes and red for the failures, with
//! the mean latency as a line over it.
//!
//! Everything is computed here from the store's hourly counts
//! ([`HourStats`]) into numbers the template places, so the SVG holds no
//! text from anyone.

use chrono::{DateTime, Duration, Utc};
use signhook_store::deliveries::{hour_of, HourStats};

/// The drawing's size, in SVG units.
const WIDTH: f64 = 168.0;
const HEIGHT: f64 = 32.0;

/// Both windows of one endpoint.
pub struct Health {
    /// The last 24 hours, by the hour.
    pub day: Window,
    /// The last 7 days, by six hours.
    pub week: Window,
}

/// One window's figures and drawing.
pub struct Window {
    /// `24 h` or `7 d`.
    pub label: &'static str,
    /// Attempts made in it.
    pub attempts: u64,
    /// The share answered 2xx, as text (`99.5 %`), when any were made.
    pub success: Option<String>,
    /// Their mean duration, as text (`42 ms`), when any were made.
    pub latency: Option<String>,
    /// What the drawing shows, in words (for screen readers).
    pub description: String,
    /// One bar per slot with attempts.
    pub bars: Vec<Bar>,
    /// The latency line's points (`x,y x,y …`), empty when under two slots.
    pub latency_line: String,
    /// The drawing's width and height.
    pub width: f64,
    /// See `width`.
    pub height: f64,
}

/// One slot's bar: the successes from the bottom, the failures above.
pub struct Bar {
    /// Left edge.
    pub x: f64,
    /// Bar width.
    pub width: f64,
    /// Top of the successes' part.
    pub ok_y: f64,
    /// Height of the successes' part.
    pub ok_height: f64,
    /// Top of the failures' part.
    pub failed_y: f64,
    /// Height of the failures' part.
    pub failed_height: f64,
}

/// Counts summed over one slot.
#[derive(Default, Clone, Copy)]
struct Slot {
    attempts: u64,
    successes: u64,
    duration_ms: u64,
}

impl Health {
    /// The health drawn from `hours` (one endpoint's, any order) as of `now`.
    pub fn new(hours: &[HourStats], now: DateTime<Utc>) -> Self {
        Health {
            day: Window::new("24 h", hours, now, 24, 1),
            week: Window::new("7 d", hours, now, 28, 6),
        }
    }

    /// How far back the store must look for [`Health::new`].
    pub fn since(now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::hours(24 * 7 - 1)
    }
}

impl Window {
    fn new(label: &'static str, hours: &[HourStats], now: DateTime<Utc>, slots: usize, hours_per_slot: i64) -> Self {
        const HOUR: i64 = 3_600_000;
        let span = slots as i64 * hours_per_slot;
        // The window ends with the current hour.
        let start = hour_of(now) - (span - 1) * HOUR;
        let mut counts = vec![Slot::default(); slots];
        for h in hours {
            let offset = (signhook_core::time::to_millis(h.hour) - start).div_euclid(HOUR);
            if (0..span).contains(&offset) {
                let slot = &mut counts[(offset / hours_per_slot) as usize];
                slot.attempts += h.attempts;
                slot.successes += h.successes.min(h.attempts);
                slot.duration_ms += h.duration_ms;
            }
        }
        let total = counts.iter().fold(Slot::default(), |sum, s| Slot {
            attempts: sum.attempts + s.attempts,
            successes: sum.successes + s.successes,
            duration_ms: sum.duration_ms.saturating_add(s.duration_ms),
        });
        let busiest = counts.iter().map(|s| s.attempts).max().unwrap_or(0).max(1) as f64;
        let slowest = counts
            .iter()
            .filter(|s| s.attempts > 0)
            .map(|s| s.duration_ms as f64 / s.attempts as f64)
            .fold(0.0_f64, f64::max)
            .max(1.0);
        let step = WIDTH / slots as f64;
        let mut bars = Vec::new();
        let mut line = Vec::new();
        for (i, slot) in counts.iter().enumerate().filter(|(_, s)| s.attempts > 0) {
            let x = i as f64 * step;
            let ok_height = HEIGHT * slot.successes as f64 / busiest;
            let failed_height = HEIGHT * (slot.attempts - slot.successes) as f64 / busiest;
            bars.push(Bar {
                x: round(x + step * 0.1),
                width: round(step * 0.8),
                ok_y: round(HEIGHT - ok_height),
                ok_height: round(ok_height),
                failed_y: round(HEIGHT - ok_height - failed_height),
                failed_height: round(failed_height),
            });
            let mean = slot.duration_ms as f64 / slot.attempts as f64;
            line.push(format!(
                "{},{}",
                round(x + step / 2.0),
                round(HEIGHT - HEIGHT * mean / slowest)
            ));
        }
        let success = (total.attempts > 0).then(|| percent(total.successes, total.attempts));
        let latency = (total.attempts > 0).then(|| format!("{} ms", total.duration_ms / total.attempts));
        let description = match (&success, &latency) {
            (Some(success), Some(latency)) => format!(
                "Over {label}: {} attempts, {success} succeeded, {latency} on average",
                total.attempts
            ),
            _ => format!("No attempts over {label}"),
        };
        Window {
            label,
            attempts: total.attempts,
            success,
            latency,
            description,
            bars,
            latency_line: if line.len() > 1 { line.join(" ") } else { String::new() },
            width: WIDTH,
            height: HEIGHT,
        }
    }
}

/// `part` of `whole` as a percentage with one decimal (`99.5 %`), never
/// rounded up to 100 while something failed.
fn percent(part: u64, whole: u64) -> String {
    let tenths = (part as u128 * 1000 / whole as u128) as u64;
    format!("{}.{} %", tenths / 10, tenths % 10)
}

/// Two decimals are plenty for a drawing 168 units wide.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours_ago: i64, attempts: u64, successes: u64, duration_ms: u64, now: DateTime<Utc>) -> HourStats {
        HourStats {
            hour: signhook_core::time::from_millis(hour_of(now - Duration::hours(hours_ago))),
            attempts,
            successes,
            duration_ms,
        }
    }

    #[test]
    fn windows_count_what_falls_in_them() {
        let now = "2026-12-06T10:30:00Z".parse().unwrap();
        let hours = [
            at(0, 10, 9, 1000, now),
            at(23, 10, 10, 3000, now),
            at(24, 100, 0, 100, now),
            at(167, 5, 5, 50, now),
            at(168, 1000, 0, 0, now),
        ];
        let health = Health::new(&hours, now);
        assert_eq!(health.day.attempts, 20);
        assert_eq!(health.day.success.as_deref(), Some("95.0 %"));
        assert_eq!(health.day.latency.as_deref(), Some("200 ms"));
        assert_eq!(health.day.bars.len(), 2);
        assert_eq!(health.week.attempts, 125);
        assert_eq!(health.week.success.as_deref(), Some("19.2 %"));
        // The busiest slot fills the height; its failures sit on its successes.
        let busiest = health.week.bars.iter().find(|b| b.failed_height == HEIGHT).unwrap();
        assert_eq!((busiest.ok_height, busiest.failed_y), (0.0, 0.0));
    }

    #[test]
    fn a_quiet_endpoint_says_so() {
        let health = Health::new(&[], Utc::now());
        assert!(health.day.success.is_none() && health.day.bars.is_empty());
        assert_eq!(health.week.description, "No attempts over 7 d");
        assert!(health.week.latency_line.is_empty());
    }

    #[test]
    fn percentages_are_never_rounded_up_to_all() {
        assert_eq!(percent(9999, 10000), "99.9 %");
        assert_eq!(percent(1, 3), "33.3 %");
        assert_eq!(percent(5, 5), "100.0 %");
    }
}
