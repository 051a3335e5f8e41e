//! Window and paging arithmetic, as pure functions.
//!
//! Postmark answers at most 10,000 rows per query (`count ≤ 500`, `count + offset ≤ 10,000`,
//! api.md §2). A window whose first page reports `TotalCount ≥ 10,000` is split before
//! anything is emitted from it. The number of pieces comes from that `TotalCount`, aiming at
//! [`TARGET_ROWS`] per piece, so one wasted request usually settles a whole range instead of
//! halving it level by level.

use chrono::{DateTime, Duration, Utc};

use crate::eastern;

pub const PAGE_SIZE: u32 = 500;
/// Postmark: `count + offset ≤ 10,000`.
pub const OFFSET_CAP: u32 = 10_000;
/// Rows per window the splitter aims for: below the cap with room for uneven traffic, large
/// enough that the partial last page of each window costs little.
pub const TARGET_ROWS: u64 = 8_000;
/// At most this many pieces per split.
const MAX_PIECES: u64 = 256;

pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// How many records to request at `offset`, or `None` once the cap is reached.
pub fn next_count(offset: u32) -> Option<u32> {
    let room = OFFSET_CAP.checked_sub(offset).filter(|r| *r > 0)?;
    Some(room.min(PAGE_SIZE))
}

/// `(offset, count)` of the pages from offset `from` on, for a window of `total` rows.
pub fn page_offsets(from: u32, total: u64) -> impl Iterator<Item = (u32, u32)> {
    let reachable = total.min(u64::from(OFFSET_CAP)) as u32;
    (0..)
        .map(move |i| from + i * PAGE_SIZE)
        .take_while(move |o| *o < reachable)
        .filter_map(|o| next_count(o).map(|c| (o, c)))
}

/// The offsets of the pages after the first, for a window of `total` rows.
pub fn remaining_offsets(total: u64) -> impl Iterator<Item = (u32, u32)> {
    page_offsets(PAGE_SIZE, total)
}

/// Splits `window` into pieces of about [`TARGET_ROWS`] rows each, assuming `total` rows spread
/// evenly. Boundaries are whole seconds moved out of the repeated autumn hour. Returns `None`
/// when the window cannot be split in time (one second, or no legal boundary inside).
pub fn split_time(window: Window, total: Option<u64>) -> Option<Vec<Window>> {
    let (start, end) = window;
    let span = (end - start).num_seconds();
    if span <= 1 {
        return None;
    }
    let pieces = total
        .map(|t| t.div_ceil(TARGET_ROWS))
        .unwrap_or(2)
        .clamp(2, MAX_PIECES)
        .min(span as u64) as i64;
    let mut bounds = vec![start];
    for i in 1..pieces {
        let b = start + Duration::seconds(span * i / pieces);
        let b = eastern::snap_boundary(b);
        if b > *bounds.last().unwrap_or(&start) && b < end {
            bounds.push(b);
        }
    }
    if bounds.len() < 2 {
        return None;
    }
    bounds.push(end);
    Some(bounds.windows(2).map(|w| (w[0], w[1])).collect())
}

/// Whole seconds: windows and their filters work at second granularity.
pub fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn last_request_shrinks_to_fit_the_cap() {
        assert_eq!(next_count(0), Some(500));
        assert_eq!(next_count(9_800), Some(200));
        assert_eq!(next_count(10_000), None);
    }

    #[test]
    fn pages_never_ask_past_the_cap() {
        let offsets: Vec<_> = remaining_offsets(12_000).collect();
        assert_eq!(offsets.len(), 19);
        assert!(offsets.iter().all(|(o, c)| o + c <= OFFSET_CAP));
        assert_eq!(remaining_offsets(500).count(), 0);
        assert_eq!(remaining_offsets(501).collect::<Vec<_>>(), vec![(500, 500)]);
    }

    #[test]
    fn splits_follow_the_total_and_cover_the_window_exactly() {
        let w = (at("2026-10-01T00:00:00Z"), at("2026-10-11T00:00:00Z"));
        let pieces = split_time(w, Some(80_000)).unwrap();
        assert_eq!(pieces.len(), 10);
        assert_eq!(pieces[0].0, w.0);
        assert_eq!(pieces.last().unwrap().1, w.1);
        assert!(pieces.windows(2).all(|p| p[0].1 == p[1].0));
        assert_eq!(split_time(w, None).unwrap().len(), 2);
    }

    #[test]
    fn one_second_cannot_be_split_in_time() {
        let s = at("2026-10-01T00:00:00Z");
        assert!(split_time((s, s + Duration::seconds(1)), Some(20_000)).is_none());
        let two = split_time((s, s + Duration::seconds(2)), Some(1_000_000)).unwrap();
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn no_boundary_lands_in_the_repeated_autumn_hour() {
        let w = (at("2026-11-01T04:00:00Z"), at("2026-11-01T08:00:00Z"));
        for p in split_time(w, Some(1_000_000)).unwrap() {
            assert!(!eastern::is_ambiguous(p.0));
            assert!(!eastern::is_ambiguous(p.1 - Duration::seconds(1)));
        }
        // A window inside the ambiguous zone cannot be split in time at all.
        let inside = (at("2026-11-01T05:00:00Z"), at("2026-11-01T07:00:00Z"));
        assert!(split_time(inside, Some(50_000)).is_none());
    }
}
