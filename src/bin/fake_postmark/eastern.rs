//! Calendar and US-Eastern (America/New_York) time arithmetic, written by hand.
//!
//! Postmark reads `fromdate`/`todate` as Eastern wall time and renders every timestamp in
//! Eastern time with its offset. A tz database would be overkill for one zone with one fixed
//! rule (since 2007: DST from the second Sunday of March 02:00 local to the first Sunday of
//! November 02:00 local), so the rule is implemented here and unit-tested around both
//! transitions. Instants are `i64` 100-ns ticks since the Unix epoch (the .NET resolution
//! Postmark prints: 7 fractional digits).

pub const TICKS_PER_SEC: i64 = 10_000_000;
pub const DAY: i64 = 86_400;
const EDT: i64 = -4 * 3600;
const EST: i64 = -5 * 3600;

/// How naive `fromdate`/`todate` wall times are read (`--zone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Zone {
    Eastern,
    Utc,
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
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

/// 0 = Sunday … 6 = Saturday (1970-01-01 was a Thursday).
pub fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day number of the `n`-th Sunday of a month.
fn nth_sunday(y: i64, m: u32, n: i64) -> i64 {
    let first = days_from_civil(y, m, 1);
    first + i64::from((7 - weekday(first)) % 7) + 7 * (n - 1)
}

/// UTC second at which DST starts in year `y` (02:00 EST = 07:00 UTC).
pub fn dst_start_utc(y: i64) -> i64 {
    nth_sunday(y, 3, 2) * DAY + 7 * 3600
}

/// UTC second at which DST ends in year `y` (02:00 EDT = 06:00 UTC).
pub fn dst_end_utc(y: i64) -> i64 {
    nth_sunday(y, 11, 1) * DAY + 6 * 3600
}

/// Eastern UTC offset in seconds (-14400 or -18000) at a UTC second.
pub fn eastern_offset(utc_secs: i64) -> i64 {
    // The UTC calendar year is the right one: transitions are far from New Year.
    let (y, _, _) = civil_from_days(utc_secs.div_euclid(DAY));
    if utc_secs >= dst_start_utc(y) && utc_secs < dst_end_utc(y) {
        EDT
    } else {
        EST
    }
}

/// Eastern wall time (naive seconds, as if it were UTC) to a UTC second. The repeated
/// autumn hour resolves to its first (EDT) occurrence; the skipped spring hour is read with
/// -05:00, so e.g. 02:30 on the spring-forward day becomes 07:30 UTC.
pub fn eastern_wall_to_utc(wall: i64) -> i64 {
    let (y, _, _) = civil_from_days(wall.div_euclid(DAY));
    let edt_from = nth_sunday(y, 3, 2) * DAY + 3 * 3600;
    let edt_until = nth_sunday(y, 11, 1) * DAY + 2 * 3600;
    let off = if wall >= edt_from && wall < edt_until {
        EDT
    } else {
        EST
    };
    wall - off
}

/// Outcome of parsing a `fromdate`/`todate` value.
#[derive(Debug, PartialEq, Eq)]
pub enum DateFilter {
    /// Boundary in ticks: inclusive start for `fromdate`, exclusive end for `todate`.
    At(i64),
    /// The value carried an explicit offset or `Z`: Postmark reportedly returns no rows.
    NoRows,
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS`. For `is_to`, the result is the exclusive
/// end: the named second plus one (a date-only value covers the whole day), because both
/// ends are inclusive at second granularity. `Err` means unparseable (422).
pub fn parse_filter(v: &str, is_to: bool, zone: Zone) -> Result<DateFilter, ()> {
    let b = v.trim().as_bytes();
    if b.len() < 10 {
        return Err(());
    }
    let (y, m, d) = parse_date(&b[..10])?;
    let day = days_from_civil(y, m, d);
    let wall = if b.len() == 10 {
        if is_to {
            day * DAY + DAY - 1
        } else {
            day * DAY
        }
    } else {
        if b.len() < 19 || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
            return Err(());
        }
        let (hh, mm, ss) = parse_time(&b[11..19])?;
        let rest = &b[19..];
        if !rest.is_empty() {
            return if is_offset_suffix(rest) {
                Ok(DateFilter::NoRows)
            } else {
                Err(())
            };
        }
        day * DAY + hh * 3600 + mm * 60 + ss
    };
    let utc = match zone {
        Zone::Eastern => eastern_wall_to_utc(wall),
        Zone::Utc => wall,
    };
    let secs = if is_to { utc + 1 } else { utc };
    Ok(DateFilter::At(secs * TICKS_PER_SEC))
}

fn digits(b: &[u8]) -> Result<i64, ()> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(b.iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0')))
}

fn parse_date(b: &[u8]) -> Result<(i64, u32, u32), ()> {
    if b[4] != b'-' || b[7] != b'-' {
        return Err(());
    }
    let y = digits(&b[0..4])?;
    let m = digits(&b[5..7])? as u32;
    let d = digits(&b[8..10])? as u32;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(());
    }
    Ok((y, m, d))
}

fn parse_time(b: &[u8]) -> Result<(i64, i64, i64), ()> {
    if b[2] != b':' || b[5] != b':' {
        return Err(());
    }
    let (h, m, s) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    if h > 23 || m > 59 || s > 59 {
        return Err(());
    }
    Ok((h, m, s))
}

/// `Z`, `+HH:MM`, `-HHMM`, `±HH`, optionally after a fraction. A space stands for `+`
/// because an unencoded `+` in a query string decodes to a space.
fn is_offset_suffix(rest: &[u8]) -> bool {
    let mut r = rest;
    if r.first() == Some(&b'.') {
        let n = r[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        r = &r[1 + n..];
    }
    match r {
        [b'Z' | b'z'] => true,
        [b'+' | b'-' | b' ', tail @ ..] => {
            let t: Vec<u8> = tail.iter().copied().filter(|c| *c != b':').collect();
            (t.len() == 2 || t.len() == 4) && t.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// Parses RFC 3339 (control endpoints, `--now`) into ticks. Tolerates an unencoded `+`
/// that arrived as a space.
pub fn parse_rfc3339_ticks(s: &str) -> Option<i64> {
    let s = s.trim();
    let dt = chrono::DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        let i = s.rfind(' ')?;
        let fixed = format!("{}+{}", &s[..i], &s[i + 1..]);
        chrono::DateTime::parse_from_rfc3339(&fixed).ok()
    })?;
    // Years 0001-9999 only, so tick arithmetic can never overflow.
    let secs = dt.timestamp();
    if !(-62_135_596_800..253_402_300_800).contains(&secs) {
        return None;
    }
    Some(secs * TICKS_PER_SEC + i64::from(dt.timestamp_subsec_nanos() / 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + s
    }

    fn from(v: &str) -> i64 {
        match parse_filter(v, false, Zone::Eastern) {
            Ok(DateFilter::At(t)) => t / TICKS_PER_SEC,
            other => panic!("{v}: {other:?}"),
        }
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000, -1, 0, 1, 19_000, 20_523, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(weekday(days_from_civil(2026, 3, 8)), 0);
    }

    #[test]
    fn transitions_2026() {
        assert_eq!(dst_start_utc(2026), utc(2026, 3, 8, 7, 0, 0));
        assert_eq!(dst_end_utc(2026), utc(2026, 11, 1, 6, 0, 0));
        assert_eq!(dst_start_utc(2025), utc(2025, 3, 9, 7, 0, 0));
        assert_eq!(dst_end_utc(2025), utc(2025, 11, 2, 6, 0, 0));
    }

    #[test]
    fn wall_to_utc_spring() {
        assert_eq!(from("2026-03-08T01:59:59"), utc(2026, 3, 8, 6, 59, 59));
        // Skipped hour: read with -05:00.
        assert_eq!(from("2026-03-08T02:30:00"), utc(2026, 3, 8, 7, 30, 0));
        assert_eq!(from("2026-03-08T03:00:00"), utc(2026, 3, 8, 7, 0, 0));
        assert_eq!(from("2026-07-01"), utc(2026, 7, 1, 4, 0, 0));
        assert_eq!(from("2026-01-15T12:00:00"), utc(2026, 1, 15, 17, 0, 0));
    }

    #[test]
    fn wall_to_utc_fall() {
        assert_eq!(from("2026-11-01T00:59:59"), utc(2026, 11, 1, 4, 59, 59));
        // Repeated hour: first (EDT) occurrence.
        assert_eq!(from("2026-11-01T01:30:00"), utc(2026, 11, 1, 5, 30, 0));
        assert_eq!(from("2026-11-01T02:00:00"), utc(2026, 11, 1, 7, 0, 0));
    }

    #[test]
    fn to_is_inclusive_at_second() {
        let to = |v: &str| parse_filter(v, true, Zone::Eastern);
        let end = utc(2026, 1, 15, 17, 0, 0) + 1;
        assert_eq!(
            to("2026-01-15T12:00:00"),
            Ok(DateFilter::At(end * TICKS_PER_SEC))
        );
        // Date-only todate covers the whole (Eastern) day.
        let day_end = utc(2026, 1, 16, 5, 0, 0);
        assert_eq!(
            to("2026-01-15"),
            Ok(DateFilter::At(day_end * TICKS_PER_SEC))
        );
        let z = parse_filter("2026-01-15T12:00:00", false, Zone::Utc);
        assert_eq!(
            z,
            Ok(DateFilter::At(utc(2026, 1, 15, 12, 0, 0) * TICKS_PER_SEC))
        );
    }

    #[test]
    fn rfc3339_range_is_bounded() {
        assert_eq!(
            parse_rfc3339_ticks("1970-01-01T00:00:01Z"),
            Some(TICKS_PER_SEC)
        );
        assert_eq!(
            parse_rfc3339_ticks("2026-11-20T12:00:00 00:00"),
            Some(1_795_176_000 * TICKS_PER_SEC)
        );
        assert_eq!(parse_rfc3339_ticks("+99999-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ticks("nope"), None);
    }

    #[test]
    fn offsets_and_garbage() {
        for v in [
            "2026-01-15T12:00:00Z",
            "2026-01-15T12:00:00-05:00",
            "2026-01-15T12:00:00 01:00",
        ] {
            assert_eq!(
                parse_filter(v, false, Zone::Eastern),
                Ok(DateFilter::NoRows),
                "{v}"
            );
        }
        assert_eq!(
            parse_filter("2026-01-15T12:00:00.5Z", true, Zone::Eastern),
            Ok(DateFilter::NoRows)
        );
        for v in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-01-15T25:00:00",
            "2026-01-15T12:00",
            "2026-01-15T12:00:00.123",
            "2026-01-15T12:00:00x",
            "２０２６-01-15",
        ] {
            assert_eq!(parse_filter(v, false, Zone::Eastern), Err(()), "{v}");
        }
    }
}
