//! An independent oracle for US Eastern time: plain integer calendar arithmetic (Howard
//! Hinnant's `days_from_civil`), no chrono, written from the rule itself: EDT (UTC-4) from
//! 02:00 EST on the second Sunday of March to 02:00 EDT on the first Sunday of November.
//! The tz database (chrono-tz) checks this oracle for the years it knows the rule for.

pub const DAY: i64 = 86_400;
pub const HOUR: i64 = 3_600;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// 0 = Sunday.
fn weekday(days: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7)
}

/// Day number of the `n`th Sunday of `month`.
fn nth_sunday(year: i64, month: i64, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    first + (7 - weekday(first)) % 7 + 7 * (n - 1)
}

/// Unix seconds at which DST starts and ends in `year` (the year of the UTC instant: no
/// transition is near New Year, so UTC and Eastern agree on it there).
pub fn transitions(year: i64) -> (i64, i64) {
    // 02:00 EST = 07:00 UTC; 02:00 EDT = 06:00 UTC.
    (
        nth_sunday(year, 3, 2) * DAY + 7 * HOUR,
        nth_sunday(year, 11, 1) * DAY + 6 * HOUR,
    )
}

pub fn year_of(secs: i64) -> i64 {
    civil_from_days(secs.div_euclid(DAY)).0
}

/// UTC offset of Eastern time at `secs`, in hours.
pub fn offset_hours(secs: i64) -> i64 {
    let (start, end) = transitions(year_of(secs));
    if (start..end).contains(&secs) {
        -4
    } else {
        -5
    }
}

/// Eastern wall time at `secs`, as seconds of a naive clock.
pub fn wall(secs: i64) -> i64 {
    secs + offset_hours(secs) * HOUR
}

/// True when another instant has the same wall time (the repeated autumn hour).
pub fn ambiguous(secs: i64) -> bool {
    wall(secs + HOUR) == wall(secs) || wall(secs - HOUR) == wall(secs)
}

/// `YYYY-MM-DDTHH:MM:SS` of a naive clock value (years 0..=9999).
pub fn format_naive(w: i64) -> String {
    let (y, m, d) = civil_from_days(w.div_euclid(DAY));
    let s = w.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / HOUR,
        s % HOUR / 60,
        s % 60
    )
}

/// The first whole second `b` in `(start, end)` at which a window may be cut: neither `b`
/// (a window start) nor `b - 1 s` (an inclusive `todate`) is ambiguous. `start` and `end`
/// are whole seconds.
pub fn first_legal_cut(start: i64, end: i64) -> Option<i64> {
    let mut b = start + 1;
    // At most one ambiguous stretch (two hours) lies in any short run of seconds, so a few
    // jumps past ambiguous stretches settle it.
    for _ in 0..4 {
        if b >= end {
            return None;
        }
        if !ambiguous(b) && !ambiguous(b - 1) {
            return Some(b);
        }
        // Jump past the ambiguous stretch b (or b - 1) is in.
        let (_, fall_back) = transitions(year_of(b));
        b = b.max(fall_back + HOUR + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calendar_round_trips() {
        for z in [-719_468 - 366, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn transitions_match_known_dates() {
        // 2026-03-08T07:00Z and 2026-11-01T06:00Z.
        let (s, e) = transitions(2026);
        assert_eq!(format_naive(s), "2026-03-08T07:00:00");
        assert_eq!(format_naive(e), "2026-11-01T06:00:00");
        assert!(ambiguous(e - HOUR) && ambiguous(e + HOUR - 1));
        assert!(!ambiguous(e - HOUR - 1) && !ambiguous(e + HOUR));
        assert_eq!(
            first_legal_cut(e - HOUR - 1, e + 3 * HOUR),
            Some(e + HOUR + 1)
        );
        assert_eq!(
            first_legal_cut(e - HOUR - 2, e + 3 * HOUR),
            Some(e - HOUR - 1)
        );
        assert_eq!(first_legal_cut(e - HOUR - 1, e + HOUR + 1), None);
    }
}
