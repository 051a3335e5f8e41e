//! Target `windows`: the Eastern-time and window arithmetic (`eastern`, `sync::windows`,
//! `ReadPlan::range_start/range_end`) against the oracle in [`crate::civil`] and the tz
//! database.
//!
//! Properties:
//! - offset, wall time (`format_filter`) and ambiguity equal the oracle's; the oracle equals
//!   the tz database (America/New_York) in 2007..=2037;
//! - `snap_boundary` never moves forward, moves at most 2 h 1 s, leaves a legal boundary where
//!   it is, and returns a legal boundary (neither it nor the second before it ambiguous);
//! - `split_time` tiles its window exactly (first start, last end, contiguous, non-empty,
//!   half-open), cuts only at legal whole seconds, makes 2..=257 pieces, and says "cannot
//!   split" only when no legal cut exists inside the window;
//! - splitting recursively, as the engine does for windows of 10,000 rows or more, over rows
//!   clustered at random instants: the leaves tile the range exactly, every leaf holds fewer
//!   than 10,000 rows unless no legal cut exists inside it, and the number of windows stays
//!   bounded;
//! - page offsets never ask past `count + offset ≤ 10,000`, count ≤ 500, and cover every
//!   reachable row once;
//! - a read's range ends and starts are legal whole-second boundaries at most 2 h 1 s before
//!   the instant they were derived from.

use arbitrary::{Result, Unstructured};
use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::America::New_York;

use source_postmark::catalog::SelectedStream;
use source_postmark::config::Config;
use source_postmark::eastern;
use source_postmark::state::{InputState, StreamCursor};
use source_postmark::streams;
use source_postmark::sync::windows::{self as w, Sample};
use source_postmark::sync::ReadPlan;

use crate::civil::{self, days_from_civil, DAY, HOUR};

const CAP: u64 = 10_000;

fn utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("instant in range")
}

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// Years whose instants we generate: what an RFC 3339 input can name, less a day at each end
/// so that Eastern wall time stays in 0001..=9999 as well.
fn year(u: &mut Unstructured) -> Result<i64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.int_in_range(1..=9998)?,
        _ => u.int_in_range(2000..=2100)?,
    })
}

/// An instant, usually close to a DST transition.
fn instant(u: &mut Unstructured) -> Result<i64> {
    let y = year(u)?;
    let (spring, autumn) = civil::transitions(y);
    Ok(match u.int_in_range(0..=4u8)? {
        0 => days_from_civil(y, 1, 2) * DAY + u.int_in_range(0..=363 * DAY)?,
        1 | 2 => autumn + u.int_in_range(-3 * HOUR..=3 * HOUR)?,
        3 => spring + u.int_in_range(-3 * HOUR..=3 * HOUR)?,
        _ => autumn + u.int_in_range(-40 * DAY..=40 * DAY)?,
    })
}

fn length(u: &mut Unstructured) -> Result<i64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.int_in_range(0..=10)?,
        1 => u.int_in_range(0..=4 * HOUR)?,
        2 => u.int_in_range(0..=40 * DAY)?,
        _ => u.int_in_range(0..=400 * DAY)?,
    })
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
}

fn run(u: &mut Unstructured) -> Result<()> {
    let start = instant(u)?;
    let end = start + length(u)?;
    check_instant(start);
    check_instant(end);
    check_split(u, start, end)?;
    check_recursive_split(u, start, end)?;
    check_offsets(u)?;
    check_range(u, start)?;
    Ok(())
}

fn check_instant(s: i64) {
    let t = utc(s);
    let off = eastern::offset_hours(t);
    assert_eq!(off, civil::offset_hours(s), "offset at {t}");
    let y = civil::year_of(s);
    if (2007..=2037).contains(&y) {
        let tz = New_York
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc();
        assert_eq!(i64::from(tz), off * HOUR, "tz database offset at {t}");
    }
    assert_eq!(
        eastern::format_filter(t),
        civil::format_naive(civil::wall(s)),
        "wall time of {t}"
    );
    assert_eq!(
        eastern::is_ambiguous(t),
        civil::ambiguous(s),
        "ambiguity of {t}"
    );

    let snapped = secs(eastern::snap_boundary(t));
    assert!(snapped <= s, "snap_boundary moved {t} forward");
    assert!(
        s - snapped <= 2 * HOUR + 1,
        "snap_boundary moved {t} back by {} s",
        s - snapped
    );
    assert!(
        legal(snapped),
        "snap_boundary({t}) = {} names an ambiguous wall time",
        utc(snapped)
    );
    if legal(s) {
        assert_eq!(snapped, s, "snap_boundary moved the legal boundary {t}");
    }
    assert_eq!(
        secs(eastern::snap_boundary(utc(snapped))),
        snapped,
        "snap_boundary is not idempotent at {t}"
    );
    // Sub-second instants snap the same way as their second (floor first, as the callers do).
    let frac = t + Duration::milliseconds(500);
    assert!(eastern::snap_boundary(frac) <= frac);
}

/// A legal window boundary: neither it (as a start) nor the second before it (as an
/// inclusive end) names an ambiguous wall time.
fn legal(b: i64) -> bool {
    !civil::ambiguous(b) && !civil::ambiguous(b - 1)
}

fn sample(u: &mut Unstructured, start: i64, end: i64) -> Result<Option<Sample>> {
    if !u.arbitrary::<bool>()? {
        return Ok(None);
    }
    let oldest = u.int_in_range(start - 10..=end + 10)?;
    let rows = u.int_in_range(0..=600u64)?;
    Ok(Some(Sample {
        oldest: utc(oldest),
        rows,
    }))
}

fn check_split(u: &mut Unstructured, start: i64, end: i64) -> Result<()> {
    let total = match u.int_in_range(0..=3u8)? {
        0 => None,
        1 => Some(u.int_in_range(10_000..=40_000u64)?),
        2 => Some(u.arbitrary::<u64>()?),
        _ => Some(u.int_in_range(0..=3_000_000u64)?),
    };
    let sample = sample(u, start, end)?;
    let pieces = w::split_time((utc(start), utc(end)), total, sample);
    assert_tiling(start, end, pieces.as_deref(), total, sample);
    Ok(())
}

fn assert_tiling(
    start: i64,
    end: i64,
    pieces: Option<&[w::Window]>,
    total: Option<u64>,
    sample: Option<Sample>,
) {
    let ctx = || {
        format!(
            "split_time([{}, {}), {total:?}, {sample:?})",
            utc(start),
            utc(end)
        )
    };
    let Some(pieces) = pieces else {
        assert_eq!(
            civil::first_legal_cut(start, end).map(utc),
            None,
            "{} refused to split although this legal cut lies inside",
            ctx()
        );
        return;
    };
    assert!(
        (2..=257).contains(&pieces.len()),
        "{}: {} pieces",
        ctx(),
        pieces.len()
    );
    assert_eq!(secs(pieces[0].0), start, "{}: first start", ctx());
    assert_eq!(secs(pieces[pieces.len() - 1].1), end, "{}: last end", ctx());
    for p in pieces {
        assert!(p.0 < p.1, "{}: empty piece {p:?}", ctx());
    }
    for pair in pieces.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "{}: gap or overlap", ctx());
        let b = pair[0].1;
        assert_eq!(
            b.timestamp_subsec_nanos(),
            0,
            "{}: cut {b} not whole",
            ctx()
        );
        assert!(legal(secs(b)), "{}: cut {b} is ambiguous", ctx());
    }
}

/// Rows clustered at a few instants: `(instant, rows)`.
struct Rows(Vec<(i64, u64)>);

impl Rows {
    fn count(&self, (s, e): (i64, i64)) -> u64 {
        self.0
            .iter()
            .filter(|(t, _)| (s..e).contains(t))
            .map(|(_, n)| n)
            .sum()
    }

    /// What the engine's first page shows: the newest 500 rows reach back to `oldest`.
    fn sample(&self, (s, e): (i64, i64)) -> Option<Sample> {
        let mut inside: Vec<_> = self.0.iter().filter(|(t, _)| (s..e).contains(t)).collect();
        inside.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut seen = 0;
        for (t, n) in inside {
            seen += n;
            if seen >= 500 {
                return Some(Sample {
                    oldest: utc(*t),
                    rows: 500,
                });
            }
        }
        None
    }
}

fn check_recursive_split(u: &mut Unstructured, start: i64, end: i64) -> Result<()> {
    if end <= start {
        return Ok(());
    }
    let n = u.int_in_range(1..=8usize)?;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let t = u.int_in_range(start..=end - 1)?;
        let count = match u.int_in_range(0..=2u8)? {
            0 => u.int_in_range(1..=10_000u64)?,
            1 => u.int_in_range(1..=200_000u64)?,
            _ => u.int_in_range(9_990..=10_010u64)?,
        };
        rows.push((t, count));
    }
    let rows = Rows(rows);
    let with_sample = u.arbitrary::<bool>()?;

    let mut leaves: Vec<(i64, i64)> = Vec::new();
    let mut todo = vec![(start, end)];
    let mut windows = 0u64;
    let all: u64 = rows.0.iter().map(|(_, n)| n).sum();
    // Each split settles at least 10,000 rows into smaller windows; this bound is generous.
    let bound = 1_000 + 300 * (all / CAP + 1) * 64;
    while let Some(win) = todo.pop() {
        windows += 1;
        assert!(
            windows <= bound,
            "more than {bound} windows for {all} rows in [{}, {})",
            utc(start),
            utc(end)
        );
        let total = rows.count(win);
        if total < CAP {
            leaves.push(win);
            continue;
        }
        let sample = if with_sample { rows.sample(win) } else { None };
        let pieces = w::split_time((utc(win.0), utc(win.1)), Some(total), sample);
        assert_tiling(win.0, win.1, pieces.as_deref(), Some(total), sample);
        match pieces {
            Some(pieces) => {
                for p in pieces.iter().rev() {
                    let p = (secs(p.0), secs(p.1));
                    assert!(p.1 - p.0 < win.1 - win.0, "a piece is not smaller");
                    todo.push(p);
                }
            }
            // The engine goes on with filters or reports unreachable rows: only for a window
            // without a legal cut (asserted by assert_tiling).
            None => leaves.push(win),
        }
    }
    leaves.sort();
    assert_eq!(leaves.first().map(|l| l.0), Some(start));
    assert_eq!(leaves.last().map(|l| l.1), Some(end));
    for pair in leaves.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "leaves leave a gap or overlap");
    }
    let covered: u64 = leaves.iter().map(|l| rows.count(*l)).sum();
    assert_eq!(covered, all, "rows lost or doubled by splitting");
    Ok(())
}

fn check_offsets(u: &mut Unstructured) -> Result<()> {
    let from = match u.int_in_range(0..=2u8)? {
        0 => 0,
        1 => w::PAGE_SIZE,
        _ => u.arbitrary::<u32>()?,
    };
    let total = match u.int_in_range(0..=1u8)? {
        0 => u.int_in_range(0..=12_000u64)?,
        _ => u.arbitrary::<u64>()?,
    };
    let reachable = total.min(u64::from(w::OFFSET_CAP));
    let pages: Vec<(u32, u32)> = w::page_offsets(from, total).collect();
    let mut next = u64::from(from);
    for (o, c) in &pages {
        assert_eq!(
            u64::from(*o),
            next,
            "page_offsets({from}, {total}) skips or repeats"
        );
        assert!((1..=w::PAGE_SIZE).contains(c), "count {c}");
        assert!(o + c <= w::OFFSET_CAP, "asks past the cap: {o} + {c}");
        assert_eq!(w::next_count(*o), Some(*c));
        next += u64::from(*c);
    }
    if u64::from(from) < reachable {
        assert!(
            next >= reachable,
            "page_offsets({from}, {total}) stops at {next}"
        );
    } else {
        assert!(pages.is_empty());
    }
    Ok(())
}

fn check_range(u: &mut Unstructured, now: i64) -> Result<()> {
    let mut config = Config::with_token("fuzz-token", "https://api.postmarkapp.com")
        .expect("the default base_url is valid");
    config.window_lag = Duration::seconds(u.int_in_range(0..=86_400)?);
    config.lookback = Duration::hours(u.int_in_range(0..=720)?);
    config.start_date = if u.arbitrary::<bool>()? {
        Some(utc(now - u.int_in_range(0..=365 * DAY)?))
    } else {
        None
    };
    let mut state = InputState::default();
    let spec = &streams::STREAMS[u.int_in_range(0..=2usize)?];
    if u.arbitrary::<bool>()? {
        let cursor = now + u.int_in_range(-400 * DAY..=2 * DAY)?;
        state.cursors.insert(
            spec.name.to_string(),
            StreamCursor {
                synced_until: utc(cursor) + Duration::milliseconds(u.int_in_range(0..=999)?),
                in_progress: u.arbitrary()?,
            },
        );
    }
    let selected = SelectedStream {
        spec,
        incremental: true,
        excluded_fields: Vec::new(),
        // A server token's read (whole-account mode has its own tests).
        whole_account: false,
    };
    let lag = config.window_lag;
    let plan = ReadPlan {
        config,
        streams: vec![selected.clone()],
        unknown_streams: Vec::new(),
        state,
        now: utc(now) + Duration::milliseconds(u.int_in_range(0..=999)?),
        retry_base: std::time::Duration::from_millis(1),
        progress_every: std::time::Duration::from_secs(10),
        servers: Vec::new(),
    };
    let end = plan.range_end();
    let ideal = secs(plan.now - lag);
    assert_eq!(end.timestamp_subsec_nanos(), 0, "range_end {end} not whole");
    assert!(legal(secs(end)), "range_end {end} is ambiguous");
    assert!(
        (0..=2 * HOUR + 1).contains(&(ideal - secs(end))),
        "range_end {end} too far from now - lag"
    );
    let start = plan.range_start(&selected, None);
    assert_eq!(
        start.timestamp_subsec_nanos(),
        0,
        "range_start {start} not whole"
    );
    assert!(legal(secs(start)), "range_start {start} is ambiguous");
    Ok(())
}
