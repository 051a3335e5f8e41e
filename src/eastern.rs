//! US Eastern wall time, as Postmark's `fromdate`/`todate` filters expect it.
//!
//! Postmark reads `fromdate`/`todate` as America/New_York wall-clock time without an offset
//! (api.md §3, CONFIRMED by five sources), so every window the connector keeps in UTC is
//! converted here, and only here. The rule is the US rule in force since 2007: EDT (-04:00)
//! from the second Sunday of March 02:00 local (07:00 UTC) to the first Sunday of November
//! 02:00 local (06:00 UTC), EST (-05:00) otherwise. Postmark keeps data for at most 365
//! days, so no earlier rule is ever needed; this avoids shipping a time-zone database.
//!
//! The autumn hour 01:00–02:00 happens twice; how Postmark reads such a wall time is
//! unknown. [`snap_boundary`] therefore moves window boundaries out of that hour so no query
//! ever names an ambiguous wall time.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// The UTC instants at which DST starts and ends in `year`.
pub fn dst_transitions(year: i32) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = nth_sunday(year, 3, 2).and_hms_opt(7, 0, 0);
    let end = nth_sunday(year, 11, 1).and_hms_opt(6, 0, 0);
    match (start, end) {
        (Some(s), Some(e)) => (Utc.from_utc_datetime(&s), Utc.from_utc_datetime(&e)),
        // Unreachable for valid calendar input; fall back to "no DST" rather than panic.
        _ => (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MIN_UTC),
    }
}

fn nth_sunday(year: i32, month: u32, n: u32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    let offset = (7 - first.weekday().num_days_from_sunday()) % 7;
    first + Duration::days(i64::from(offset + 7 * (n - 1)))
}

/// The offset from UTC, in hours, of Eastern time at `utc` (-4 in summer, -5 in winter).
pub fn offset_hours(utc: DateTime<Utc>) -> i64 {
    let (start, end) = dst_transitions(utc.year());
    if utc >= start && utc < end {
        -4
    } else {
        -5
    }
}

/// Eastern wall time at `utc`.
pub fn to_wall(utc: DateTime<Utc>) -> NaiveDateTime {
    (utc + Duration::hours(offset_hours(utc))).naive_utc()
}

/// `YYYY-MM-DDTHH:MM:SS` in Eastern wall time, the form Postmark's date filters take.
pub fn format_filter(utc: DateTime<Utc>) -> String {
    to_wall(utc).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// True when the Eastern wall time of `utc` occurs twice (the repeated autumn hour).
pub fn is_ambiguous(utc: DateTime<Utc>) -> bool {
    let (_, end) = dst_transitions(utc.year());
    utc >= end - Duration::hours(1) && utc < end + Duration::hours(1)
}

/// Moves a window boundary so that neither it (as a window start) nor one second before it
/// (as an inclusive `todate`) falls in the repeated autumn hour. Boundaries inside
/// `[fall_back - 1h, fall_back + 1h]` move back to `fall_back - 1h - 1s`; everything else
/// stays. Moving back is safe for a sync's start (it re-reads a little) and its end (the
/// next sync reads the rest).
pub fn snap_boundary(b: DateTime<Utc>) -> DateTime<Utc> {
    let (_, end) = dst_transitions(b.year());
    let lo = end - Duration::hours(1);
    let hi = end + Duration::hours(1);
    if b >= lo && b <= hi {
        lo - Duration::seconds(1)
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn transitions_of_2026_fall_on_the_right_sundays() {
        let (s, e) = dst_transitions(2026);
        assert_eq!(s, t("2026-03-08T07:00:00Z"));
        assert_eq!(e, t("2026-11-01T06:00:00Z"));
        let (s, e) = dst_transitions(2025);
        assert_eq!(s, t("2025-03-09T07:00:00Z"));
        assert_eq!(e, t("2025-11-02T06:00:00Z"));
    }

    #[test]
    fn winter_and_summer_offsets_match_airbytes_examples() {
        // Airbyte's tests: 2025-01-02T00:00:00Z becomes 2025-01-01T19:00:00; in August 20:00.
        assert_eq!(
            format_filter(t("2025-01-02T00:00:00Z")),
            "2025-01-01T19:00:00"
        );
        assert_eq!(
            format_filter(t("2025-08-02T00:00:00Z")),
            "2025-08-01T20:00:00"
        );
    }

    #[test]
    fn spring_forward_skips_two_oclock() {
        assert_eq!(
            format_filter(t("2026-03-08T06:59:59Z")),
            "2026-03-08T01:59:59"
        );
        assert_eq!(
            format_filter(t("2026-03-08T07:00:00Z")),
            "2026-03-08T03:00:00"
        );
    }

    #[test]
    fn the_autumn_hour_is_ambiguous_on_both_occurrences() {
        assert_eq!(
            format_filter(t("2026-11-01T05:30:00Z")),
            "2026-11-01T01:30:00"
        );
        assert_eq!(
            format_filter(t("2026-11-01T06:30:00Z")),
            "2026-11-01T01:30:00"
        );
        assert!(is_ambiguous(t("2026-11-01T05:00:00Z")));
        assert!(is_ambiguous(t("2026-11-01T06:59:59Z")));
        assert!(!is_ambiguous(t("2026-11-01T04:59:59Z")));
        assert!(!is_ambiguous(t("2026-11-01T07:00:00Z")));
    }

    #[test]
    fn boundaries_never_name_an_ambiguous_wall_time() {
        let mut b = t("2026-11-01T04:00:00Z");
        while b < t("2026-11-01T08:00:00Z") {
            let s = snap_boundary(b);
            assert!(!is_ambiguous(s), "start {s}");
            assert!(!is_ambiguous(s - Duration::seconds(1)), "end {s}");
            b += Duration::seconds(1);
        }
        assert_eq!(
            snap_boundary(t("2026-07-01T00:00:00Z")),
            t("2026-07-01T00:00:00Z")
        );
    }
}
