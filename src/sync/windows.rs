//! Window and paging arithmetic, as pure functions.
//!
//! Postmark answers at most 10,000 rows per query (`count ≤ 500`, `count + offset ≤ 10,000`,
//! api.md §2). A window whose first page reports `TotalCount ≥ 10,000` is split before
//! anything is emitted from it. The number of pieces comes from that `TotalCount`, aiming at
//! [`TARGET_ROWS`] per piece, so one wasted request usually settles a whole range instead of
//! halving it level by level.

use chrono::{DateTime, Datelike, Duration, Utc};

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

/// What the first page of a too-large window showed: its rows (newest first) reach back to
/// `oldest`. It tells how dense the newest part of the window is.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub oldest: DateTime<Utc>,
    pub rows: u64,
}

/// Splits `window` into pieces of about [`TARGET_ROWS`] rows each. Without a sample, or when
/// the sample matches an even spread, the pieces are even in time. When the sample shows the
/// rows crowding the newest part (a long `start_date` over a short retention, say), the
/// pieces go where the rows are and the sparse older part becomes a single piece, so empty
/// windows do not each cost a request. Boundaries are whole seconds moved out of the
/// repeated autumn hour. Returns `None` when the window cannot be split in time (one
/// second, or no legal boundary inside).
pub fn split_time(
    window: Window,
    total: Option<u64>,
    sample: Option<Sample>,
) -> Option<Vec<Window>> {
    let (start, end) = window;
    let span = (end - start).num_seconds();
    if span <= 1 {
        return None;
    }
    let pieces = total
        .map(|t| t.div_ceil(TARGET_ROWS))
        .unwrap_or(2)
        .clamp(2, MAX_PIECES);
    let dense_from = match (total, sample) {
        (Some(t), Some(s)) if s.rows > 0 && s.oldest > start && s.oldest < end => {
            // Seconds the whole count would need at the newest part's density, with margin.
            let newest_span = (end - s.oldest).num_seconds().max(1) as f64;
            let needed = newest_span * t as f64 / s.rows as f64 * 1.25;
            (needed < span as f64 / 2.0).then(|| end - Duration::seconds(needed.ceil() as i64))
        }
        _ => None,
    };
    let mut bounds = vec![start];
    let even_from = match dense_from {
        Some(d) => {
            push_bound(&mut bounds, d, end);
            *bounds.last().unwrap_or(&start)
        }
        None => start,
    };
    let even_span = (end - even_from).num_seconds();
    let n = pieces.min(even_span.max(1) as u64) as i64;
    for i in 1..n {
        push_bound(
            &mut bounds,
            even_from + Duration::seconds(even_span * i / n),
            end,
        );
    }
    if bounds.len() < 2 {
        return None;
    }
    bounds.push(end);
    Some(bounds.windows(2).map(|w| (w[0], w[1])).collect())
}

fn push_bound(bounds: &mut Vec<DateTime<Utc>>, b: DateTime<Utc>, end: DateTime<Utc>) {
    let Some(&last) = bounds.last() else { return };
    let b = floor_second(b);
    let mut cut = eastern::snap_boundary(b);
    if cut <= last && cut != b {
        // Moving back out of the repeated autumn hour lands on or before the previous cut
        // (a window starting just before that hour): cut just after it instead, or a window
        // with a legal cut inside would count as unsplittable (found by fuzzing).
        let (_, fall_back) = eastern::dst_transitions(b.year());
        cut = fall_back + Duration::hours(1) + Duration::seconds(1);
    }
    if cut > last && cut < end {
        bounds.push(cut);
    }
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
        let pieces = split_time(w, Some(80_000), None).unwrap();
        assert_eq!(pieces.len(), 10);
        assert_eq!(pieces[0].0, w.0);
        assert_eq!(pieces.last().unwrap().1, w.1);
        assert!(pieces.windows(2).all(|p| p[0].1 == p[1].0));
        assert_eq!(split_time(w, None, None).unwrap().len(), 2);
    }

    #[test]
    fn rows_crowding_the_newest_part_get_the_pieces_and_the_rest_is_one_window() {
        // 365 days asked for, but the newest 500 of 90,000 rows span 6 hours: the rows fit
        // in the last ~47 days, so that is where the pieces go.
        let w = (at("2025-11-20T00:00:00Z"), at("2026-11-20T00:00:00Z"));
        let sample = Sample {
            oldest: at("2026-11-19T18:00:00Z"),
            rows: 500,
        };
        let pieces = split_time(w, Some(90_000), Some(sample)).unwrap();
        assert_eq!(pieces[0].0, w.0);
        assert!(
            pieces[0].1 > at("2026-09-01T00:00:00Z") && pieces[0].1 < at("2026-10-15T00:00:00Z"),
            "{:?}",
            pieces[0]
        );
        assert_eq!(pieces.len(), 1 + 12);
        assert!(pieces.windows(2).all(|p| p[0].1 == p[1].0));
        assert_eq!(pieces.last().unwrap().1, w.1);
        // An even spread keeps even pieces.
        let even = Sample {
            oldest: at("2026-11-18T00:00:00Z"),
            rows: 500,
        };
        let pieces = split_time(w, Some(90_000), Some(even)).unwrap();
        assert_eq!(pieces.len(), 12);
    }

    #[test]
    fn one_second_cannot_be_split_in_time() {
        let s = at("2026-10-01T00:00:00Z");
        assert!(split_time((s, s + Duration::seconds(1)), Some(20_000), None).is_none());
        let two = split_time((s, s + Duration::seconds(2)), Some(1_000_000), None).unwrap();
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn no_boundary_lands_in_the_repeated_autumn_hour() {
        let w = (at("2026-11-01T04:00:00Z"), at("2026-11-01T08:00:00Z"));
        for p in split_time(w, Some(1_000_000), None).unwrap() {
            assert!(!eastern::is_ambiguous(p.0));
            assert!(!eastern::is_ambiguous(p.1 - Duration::seconds(1)));
        }
        // A window inside the ambiguous zone cannot be split in time at all.
        let inside = (at("2026-11-01T05:00:00Z"), at("2026-11-01T07:00:00Z"));
        assert!(split_time(inside, Some(50_000), None).is_none());
    }

    #[test]
    fn a_window_starting_just_before_the_autumn_hour_is_cut_just_after_it() {
        // Fuzzing finding: every even cut fell in the repeated hour and moved back onto the
        // window's start, so a window with legal cuts after that hour was reported
        // unsplittable (its rows then depended on filter splits, or were unreachable).
        let w = (at("2026-11-01T04:59:59Z"), at("2026-11-01T07:30:00Z"));
        let pieces = split_time(w, Some(12_000), None).unwrap();
        assert_eq!(
            pieces,
            vec![
                (w.0, at("2026-11-01T07:00:01Z")),
                (at("2026-11-01T07:00:01Z"), w.1)
            ]
        );
        // A window that starts inside the hour is cut after it too.
        let w = (at("2026-11-01T06:22:08Z"), at("2026-11-01T07:00:44Z"));
        let pieces = split_time(w, Some(157_082), None).unwrap();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].1, at("2026-11-01T07:00:01Z"));
        // When even that cut is outside the window, it cannot be split.
        let w = (at("2026-11-01T04:59:59Z"), at("2026-11-01T07:00:01Z"));
        assert!(split_time(w, Some(12_000), None).is_none());
    }
}
