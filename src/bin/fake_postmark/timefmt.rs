//! Rendering instants as text: Eastern RFC 3339 with 7 fractional digits (message and
//! bounce times), without a fraction (stream times), and RFC 2822 (inbound `Date`).
//!
//! Written digit by digit into the output buffer because it runs once or more per record
//! on every page.

use crate::eastern::{civil_from_days, eastern_offset, weekday, DAY, TICKS_PER_SEC};

fn push_num(out: &mut Vec<u8>, v: i64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let len = (buf.len() - i).max(width);
    out.extend_from_slice(&buf[buf.len() - len..]);
}

fn push_offset(out: &mut Vec<u8>, off: i64, colon: bool) {
    out.push(if off < 0 { b'-' } else { b'+' });
    let a = off.abs();
    push_num(out, a / 3600, 2);
    if colon {
        out.push(b':');
    }
    push_num(out, a % 3600 / 60, 2);
}

fn push_local(out: &mut Vec<u8>, local: i64) {
    let (y, m, d) = civil_from_days(local.div_euclid(DAY));
    let s = local.rem_euclid(DAY);
    push_num(out, y, 4);
    out.push(b'-');
    push_num(out, i64::from(m), 2);
    out.push(b'-');
    push_num(out, i64::from(d), 2);
    out.push(b'T');
    push_num(out, s / 3600, 2);
    out.push(b':');
    push_num(out, s % 3600 / 60, 2);
    out.push(b':');
    push_num(out, s % 60, 2);
}

/// `2025-03-11T14:02:37.5124831-04:00` (outbound `ReceivedAt`, bounce `BouncedAt`).
pub fn push_eastern_7(out: &mut Vec<u8>, ticks: i64) {
    let secs = ticks.div_euclid(TICKS_PER_SEC);
    let off = eastern_offset(secs);
    push_local(out, secs + off);
    out.push(b'.');
    push_num(out, ticks.rem_euclid(TICKS_PER_SEC), 7);
    push_offset(out, off, true);
}

/// `2022-11-01T12:48:26-04:00` (message stream timestamps: no fraction).
pub fn push_eastern_secs(out: &mut Vec<u8>, secs: i64) {
    let off = eastern_offset(secs);
    push_local(out, secs + off);
    push_offset(out, off, true);
}

/// RFC 2822 `Tue, 11 Mar 2025 19:15:02 +0100` in a fixed offset (inbound `Date`).
pub fn push_rfc2822(out: &mut Vec<u8>, utc_secs: i64, off_secs: i64) {
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = utc_secs + off_secs;
    let days = local.div_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let s = local.rem_euclid(DAY);
    out.extend_from_slice(WD[weekday(days) as usize].as_bytes());
    out.extend_from_slice(b", ");
    push_num(out, i64::from(d), 2);
    out.push(b' ');
    out.extend_from_slice(MON[(m - 1) as usize].as_bytes());
    out.push(b' ');
    push_num(out, y, 4);
    out.push(b' ');
    push_num(out, s / 3600, 2);
    out.push(b':');
    push_num(out, s % 3600 / 60, 2);
    out.push(b':');
    push_num(out, s % 60, 2);
    out.push(b' ');
    push_offset(out, off_secs, false);
}

/// `2026-11-30T12:34:56.123456Z`, or without a fraction on a whole second: the form the
/// connector normalises date-times to (truth listings).
pub fn push_utc(out: &mut Vec<u8>, ticks: i64) {
    let secs = ticks.div_euclid(TICKS_PER_SEC);
    push_local(out, secs);
    let frac = ticks.rem_euclid(TICKS_PER_SEC) / 10;
    if frac != 0 {
        out.push(b'.');
        push_num(out, frac, 6);
    }
    out.push(b'Z');
}

/// `2026-11-30`: a day number (days since 1970-01-01) as a date.
pub fn push_date(out: &mut Vec<u8>, day: i64) {
    let (y, m, d) = civil_from_days(day);
    push_num(out, y, 4);
    out.push(b'-');
    push_num(out, i64::from(m), 2);
    out.push(b'-');
    push_num(out, i64::from(d), 2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eastern::{days_from_civil, parse_rfc3339_ticks};

    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + s
    }

    fn fmt7(ticks: i64) -> String {
        let mut v = Vec::new();
        push_eastern_7(&mut v, ticks);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn utc_to_eastern_around_spring_forward() {
        let t = utc(2026, 3, 8, 7, 0, 0);
        assert_eq!(
            fmt7((t - 1) * TICKS_PER_SEC),
            "2026-03-08T01:59:59.0000000-05:00"
        );
        assert_eq!(fmt7(t * TICKS_PER_SEC), "2026-03-08T03:00:00.0000000-04:00");
    }

    #[test]
    fn utc_to_eastern_around_fall_back() {
        let t = utc(2026, 11, 1, 6, 0, 0);
        assert_eq!(
            fmt7((t - 1) * TICKS_PER_SEC + 5),
            "2026-11-01T01:59:59.0000005-04:00"
        );
        assert_eq!(fmt7(t * TICKS_PER_SEC), "2026-11-01T01:00:00.0000000-05:00");
        assert_eq!(
            fmt7((t + 3600) * TICKS_PER_SEC),
            "2026-11-01T02:00:00.0000000-05:00"
        );
    }

    #[test]
    fn rendered_instant_round_trips() {
        for secs in [
            utc(2026, 3, 8, 6, 59, 59),
            utc(2026, 11, 1, 5, 30, 0),
            utc(2026, 11, 1, 6, 30, 0),
        ] {
            let ticks = secs * TICKS_PER_SEC + 1_234_567;
            assert_eq!(parse_rfc3339_ticks(&fmt7(ticks)), Some(ticks));
        }
    }

    #[test]
    fn utc_and_dates() {
        let t = utc(2026, 11, 30, 12, 34, 56) * TICKS_PER_SEC;
        let f = |t: i64| {
            let mut v = Vec::new();
            push_utc(&mut v, t);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(f(t), "2026-11-30T12:34:56Z");
        assert_eq!(f(t + 1_234_560), "2026-11-30T12:34:56.123456Z");
        let mut v = Vec::new();
        push_date(&mut v, days_from_civil(2026, 3, 8));
        assert_eq!(v, b"2026-03-08");
    }

    #[test]
    fn rfc2822() {
        let mut v = Vec::new();
        push_rfc2822(&mut v, utc(2025, 3, 11, 18, 15, 2), 3600);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "Tue, 11 Mar 2025 19:15:02 +0100"
        );
        let mut v = Vec::new();
        push_eastern_secs(&mut v, utc(2022, 11, 1, 16, 48, 26));
        assert_eq!(String::from_utf8(v).unwrap(), "2022-11-01T12:48:26-04:00");
    }
}
