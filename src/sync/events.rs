//! Opens and clicks: reading every event whether or not Postmark honours `fromdate`/`todate`
//! on `/messages/outbound/opens` and `/clicks` (api.md §13.1, UNCONFIRMED either way).
//!
//! Everything here is a pure decision over plain data; the engine (`engine/events.rs`) does
//! the requests and the output.
//!
//! - **Detection**, once per sync and message stream. A windowed first page whose records
//!   lie outside its window proves the filter is ignored. A first page that fits under the
//!   cap needs no answer: its records are read and dropped outside the window either way. A
//!   first page at the cap whose records all lie inside the window proves nothing, so a
//!   *probe* asks for one second the page's newest record is not in: records outside that
//!   second, or a `TotalCount` that did not shrink, mean "ignored"; otherwise "honoured".
//!   An answer of 200 proves nothing. Doubt always resolves to "ignored", whose reading is
//!   complete either way, only dearer.
//! - **Honoured**: the engine's windows, time splits and then the `platform` filter.
//! - **Ignored**: [`NewestFirst`] reads a scope (message stream, then message stream and
//!   platform) without date filter from offset 0, newest first, emits records inside its
//!   windows, skips records a shift of offsets repeated (new events arrive on top), and stops
//!   at the first page reaching before its range. A scope holding more events in range than
//!   one query reaches is split by `platform` ([`PLATFORMS`], which partitions every event);
//!   what a platform scope still cannot reach is handed on as [`Uncovered`] time ranges, with
//!   the keys at the boundary instant that were already emitted.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use super::windows::{Window, OFFSET_CAP};
use crate::record::{normalise_datetime, RawObject, Record};
use crate::streams::StreamSpec;

/// Values of the `platform` filter. Postmark documents these four and every event has one
/// (`Unknown` when it cannot tell), so they partition a scope; a child count that does not
/// add up to its parent's is reported.
pub const PLATFORMS: &[&str] = crate::streams::PLATFORMS;

/// Records this far outside a window prove the date filter was not applied. Queries ask for
/// whole seconds with an inclusive end, so an honoured filter strays at most one second.
pub const TOLERANCE: Duration = Duration::seconds(2);

/// What the connector knows about the date filter of one endpoint and message stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFilter {
    Unknown,
    Honoured,
    Ignored,
}

impl DateFilter {
    pub fn describe(self) -> &'static str {
        match self {
            DateFilter::Unknown => "unknown",
            DateFilter::Honoured => "honoured",
            DateFilter::Ignored => "ignored",
        }
    }
}

/// One event of a page, reduced to what the decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The cursor (`ReceivedAt`); `None` when missing or unreadable.
    pub time: Option<DateTime<Utc>>,
    /// The composite key: the raw JSON of the key fields, joined.
    pub key: String,
    /// `Platform`, when the record has it as a string.
    pub platform: Option<String>,
}

/// Reads the cursor and key of every record of a page (records that are not objects get an
/// empty key and no time: the shaper reports them).
pub fn scan(records: &[Record], cursor: &str, key_fields: &[&str]) -> Vec<Event> {
    records
        .iter()
        .map(|record| {
            let Some(obj) = record.object() else {
                return Event {
                    time: None,
                    key: String::new(),
                    platform: None,
                };
            };
            let field = |name: &str| obj.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.get());
            let mut key = String::new();
            for (i, f) in key_fields.iter().enumerate() {
                if i > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(field(f).unwrap_or("null"));
            }
            Event {
                time: field(cursor).and_then(normalise_datetime),
                key,
                platform: field("Platform").and_then(|v| serde_json::from_str(v).ok()),
            }
        })
        .collect()
}

/// The time span of a page's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub newest: DateTime<Utc>,
    pub oldest: DateTime<Utc>,
    /// Events with a readable time.
    pub rows: u64,
}

pub fn span(events: &[Event]) -> Option<Span> {
    let mut times = events.iter().filter_map(|e| e.time);
    let first = times.next()?;
    let (mut newest, mut oldest, mut rows) = (first, first, 1);
    for t in times {
        newest = newest.max(t);
        oldest = oldest.min(t);
        rows += 1;
    }
    Some(Span {
        newest,
        oldest,
        rows,
    })
}

/// Events of the page more than [`TOLERANCE`] outside `window`.
pub fn strays(window: Window, span: Option<Span>) -> bool {
    span.is_some_and(|s| s.oldest < window.0 - TOLERANCE || s.newest >= window.1 + TOLERANCE)
}

/// What the first page of a windowed query of an events stream decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPage {
    /// Go on like any windowed stream: split if the page says so.
    Windowed,
    /// The filter is ignored (proved, or the doubt cannot be settled): read the scope
    /// newest-first; this page is its first page.
    Ignored,
    /// The page is at the cap and cannot tell: ask this one-second window first.
    Probe(Window),
}

pub fn first_page(
    known: DateFilter,
    window: Window,
    total: Option<u64>,
    span: Option<Span>,
) -> FirstPage {
    match known {
        DateFilter::Honoured => return FirstPage::Windowed,
        DateFilter::Ignored => return FirstPage::Ignored,
        DateFilter::Unknown => {}
    }
    if strays(window, span) {
        return FirstPage::Ignored;
    }
    if total.unwrap_or(0) < u64::from(OFFSET_CAP) {
        // Every row is reachable, and rows outside the window are dropped: right either way.
        return FirstPage::Windowed;
    }
    match span.and_then(|s| probe_window(window, s)) {
        Some(w) => FirstPage::Probe(w),
        None => FirstPage::Ignored,
    }
}

/// A one-second window inside `window` that the page's newest event lies well outside of:
/// an honoured filter answers without it, an ignored one with it.
pub fn probe_window(window: Window, span: Span) -> Option<Window> {
    let (start, end) = window;
    let second = Duration::seconds(1);
    if end - start < second * 2 {
        return None;
    }
    if span.newest >= start + second + TOLERANCE {
        return Some((start, start + second));
    }
    if span.newest + TOLERANCE < end - second {
        return Some((end - second, end));
    }
    None
}

/// The verdict of a probe: `probe` is the window asked, `root_total` the count of the wider
/// window whose first page raised the question.
pub fn judge_probe(
    probe: Window,
    root_total: u64,
    probe_total: Option<u64>,
    span: Option<Span>,
) -> DateFilter {
    if strays(probe, span) {
        return DateFilter::Ignored;
    }
    match probe_total {
        // One second of a window holding at least the cap, with events outside that
        // second, cannot hold as many as the whole window under an honoured filter.
        Some(t) if t >= root_total && root_total > 0 => DateFilter::Ignored,
        _ => DateFilter::Honoured,
    }
}

/// Events at one instant that were already emitted: where a newest-first read resumes, only
/// these can be seen twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    pub at: Option<DateTime<Utc>>,
    pub keys: HashSet<String>,
}

impl Boundary {
    fn covers(&self, t: DateTime<Utc>, key: &str) -> bool {
        self.at == Some(t) && self.keys.contains(key)
    }
}

/// What happens to one event of a newest-first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Emit,
    /// Outside the scope's windows (newer than its end, older than its start).
    Outside,
    /// Seen on the previous page already: offsets shifted as new events arrived on top.
    Repeated,
    /// Emitted by the scope this one was split from.
    Inherited,
    /// Of another platform than the scope asked for: the server did not apply the filter.
    OtherPlatform,
}

/// What a newest-first scope does after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Read the next page.
    More,
    /// The page reached before the range start, or the scope has no more events: done.
    Done,
    /// The last page one query reaches was read and the range start was not reached:
    /// `uncovered` (up to and including the instant of `boundary`) still has events, except
    /// those of `boundary` already emitted.
    Cap {
        uncovered: Vec<Window>,
        boundary: Boundary,
    },
}

/// A newest-first read of one scope (no date filter), over sorted disjoint `windows`.
/// Pages must be given in offset order.
#[derive(Debug, Clone)]
pub struct NewestFirst {
    windows: Vec<Window>,
    /// Emitted by the parent scope (a scope split at the cap).
    inherited: Boundary,
    /// The oldest instant of the pages read so far and the keys seen at it.
    last: Boundary,
    /// The `platform` the scope asked for.
    platform: Option<&'static str>,
    /// Offset of the next page to process.
    pub next: u32,
}

impl NewestFirst {
    pub fn new(
        windows: Vec<Window>,
        inherited: Boundary,
        platform: Option<&'static str>,
    ) -> NewestFirst {
        NewestFirst {
            windows,
            inherited,
            last: Boundary::default(),
            platform,
            next: 0,
        }
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub fn inherited(&self) -> &Boundary {
        &self.inherited
    }

    /// The range start: a page reaching before it ends the read.
    pub fn lo(&self) -> Option<DateTime<Utc>> {
        self.windows.first().map(|w| w.0)
    }

    pub fn fate(&self, e: &Event) -> Fate {
        if let (Some(want), Some(got)) = (self.platform, e.platform.as_deref()) {
            if want != got {
                return Fate::OtherPlatform;
            }
        }
        let Some(t) = e.time else {
            // No time to place it by: emitted (and counted by the shaper), like elsewhere.
            return Fate::Emit;
        };
        if let Some(last) = self.last.at {
            if t > last || self.last.covers(t, &e.key) {
                return Fate::Repeated;
            }
        }
        if self.inherited.covers(t, &e.key) {
            return Fate::Inherited;
        }
        if self.windows.iter().any(|(s, e)| t >= *s && t < *e) {
            Fate::Emit
        } else {
            Fate::Outside
        }
    }

    /// Decides the fate of each event of the page at `self.next` (asked with `count`, in a
    /// scope of `total` events) and what to do next.
    pub fn page(&mut self, count: u32, total: Option<u64>, events: &[Event]) -> (Vec<Fate>, After) {
        let fates: Vec<Fate> = events.iter().map(|e| self.fate(e)).collect();
        let offset = self.next;
        self.next = offset.saturating_add(count);
        if let Some(s) = span(events) {
            let at_oldest = events
                .iter()
                .filter(|e| e.time == Some(s.oldest))
                .map(|e| e.key.clone());
            match self.last.at {
                // A page of repeats only: the boundary stays.
                Some(last) if s.oldest > last => {}
                Some(last) if s.oldest == last => self.last.keys.extend(at_oldest),
                _ => {
                    self.last = Boundary {
                        at: Some(s.oldest),
                        keys: at_oldest.collect(),
                    }
                }
            }
        }
        let reached = match (self.last.at, self.lo()) {
            (Some(oldest), Some(lo)) => oldest < lo,
            (_, None) => true,
            (None, _) => false,
        };
        let exhausted = (events.len() as u64) < u64::from(count)
            || events.is_empty()
            || total.is_some_and(|t| u64::from(self.next) >= t);
        let after = if reached || exhausted {
            After::Done
        } else if self.next >= OFFSET_CAP {
            let at = self.last.at.unwrap_or_default();
            After::Cap {
                uncovered: clip(&self.windows, at),
                boundary: self.last.clone(),
            }
        } else {
            After::More
        };
        (fates, after)
    }
}

/// `windows` cut to end just after `at` (the instant itself stays in).
pub fn clip(windows: &[Window], at: DateTime<Utc>) -> Vec<Window> {
    let end = at + Duration::nanoseconds(1);
    windows
        .iter()
        .filter(|(s, _)| *s < end)
        .map(|(s, e)| (*s, (*e).min(end)))
        .collect()
}

/// Whether a scope's first page shows more events in range than one query reaches, so that
/// the scope is better split before reading on: `total` at the cap and the page's density
/// putting the range start at least 90 % of the cap deep.
pub fn crowded(total: Option<u64>, span: Option<Span>, lo: DateTime<Utc>) -> bool {
    let cap = u64::from(OFFSET_CAP);
    let Some(total) = total.filter(|t| *t >= cap) else {
        return false;
    };
    let Some(s) = span else { return false };
    if s.oldest < lo {
        return false;
    }
    let covered = (s.newest - s.oldest).num_milliseconds();
    if covered <= 0 {
        return true;
    }
    let depth = s.rows as f64 * (s.newest - lo).num_milliseconds() as f64 / covered as f64;
    depth.min(total as f64) >= cap as f64 * 0.9
}

/// How a scope goes on past the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrow {
    /// Split by the `platform` filter.
    Platforms(&'static [&'static str]),
    /// Already one platform: the events left must come per message.
    PerMessage,
}

pub fn narrow(platform: Option<&str>) -> Narrow {
    match platform {
        None => Narrow::Platforms(PLATFORMS),
        Some(_) => Narrow::PerMessage,
    }
}

/// Which kind of events a stream holds, for the per-message fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Opens,
    Clicks,
}

/// The events stream a row reads, if it is one: the only endpoints whose date filter is
/// disputed (api.md §13.1).
pub fn kind_of(spec: &StreamSpec) -> Option<Kind> {
    match spec.path {
        "/messages/outbound/opens" => Some(Kind::Opens),
        "/messages/outbound/clicks" => Some(Kind::Clicks),
        _ => None,
    }
}

/// Whether an outbound message (a `/messages/outbound` record) can have events of `kind`:
/// opens need `TrackOpens: true`, clicks a `TrackLinks` other than `"None"`. A message that
/// does not say is asked anyway.
pub fn tracked(kind: Kind, message: &RawObject) -> bool {
    let field = |name: &str| {
        message
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.get())
    };
    match kind {
        Kind::Opens => field("TrackOpens") != Some("false"),
        Kind::Clicks => field("TrackLinks") != Some("\"None\""),
    }
}

/// Time ranges of one message stream that no query reached, per platform, with the events of
/// each boundary instant already emitted: what the per-message fallback must still emit.
#[derive(Debug, Clone, Default)]
pub struct Uncovered {
    pieces: Vec<(Option<String>, Vec<Window>, Boundary)>,
}

impl Uncovered {
    pub fn add(&mut self, platform: Option<&str>, windows: Vec<Window>, boundary: Boundary) {
        if !windows.is_empty() {
            self.pieces
                .push((platform.map(str::to_string), windows, boundary));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The newest instant any piece still needs: messages sent after it cannot help.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        self.pieces
            .iter()
            .flat_map(|(_, w, _)| w.iter().map(|w| w.1))
            .max()
    }

    /// Whether an event of a message (from the per-message endpoint, which has no filters)
    /// is one no query reached.
    pub fn wants(&self, platform: Option<&str>, e: &Event) -> bool {
        let Some(t) = e.time else { return false };
        self.pieces.iter().any(|(p, windows, boundary)| {
            (p.is_none() || p.as_deref() == platform)
                && windows.iter().any(|(s, end)| t >= *s && t < *end)
                && !boundary.covers(t, &e.key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ev(t: &str, key: &str) -> Event {
        Event {
            time: Some(at(t)),
            key: key.into(),
            platform: None,
        }
    }

    fn day() -> Window {
        (at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:00Z"))
    }

    fn span_of(newest: &str, oldest: &str, rows: u64) -> Option<Span> {
        Some(Span {
            newest: at(newest),
            oldest: at(oldest),
            rows,
        })
    }

    #[test]
    fn scanning_reads_the_cursor_in_utc_and_a_key_from_every_key_field() {
        let body = r#"[{"MessageID":"m","Recipient":"r@x","ReceivedAt":"2026-10-01T08:00:00.1234567-04:00","OriginalLink":"https://a"},{"MessageID":"n"}]"#;
        let raws: Vec<&serde_json::value::RawValue> = serde_json::from_str(body).unwrap();
        let records: Vec<Record> = raws.iter().map(|r| Record::parse(r.get())).collect();
        let events = scan(
            &records,
            "ReceivedAt",
            &["MessageID", "Recipient", "ReceivedAt", "OriginalLink"],
        );
        assert_eq!(events[0].time, Some(at("2026-10-01T12:00:00.1234567Z")));
        assert!(events[0].key.contains("\"r@x\"") && events[0].key.contains("https://a"));
        assert_eq!(events[1].time, None);
        assert_ne!(events[0].key, events[1].key);
    }

    #[test]
    fn a_first_page_with_events_outside_its_window_proves_the_filter_ignored() {
        let outside = span_of("2026-10-03T00:00:00Z", "2026-10-01T12:00:00Z", 500);
        for total in [Some(300), Some(50_000)] {
            assert_eq!(
                first_page(DateFilter::Unknown, day(), total, outside),
                FirstPage::Ignored
            );
        }
        // One second past the inclusive end is what an honoured filter returns.
        let edge = span_of("2026-10-02T00:00:01Z", "2026-10-01T00:00:00Z", 500);
        assert_eq!(
            first_page(DateFilter::Unknown, day(), Some(600), edge),
            FirstPage::Windowed
        );
    }

    #[test]
    fn a_first_page_under_the_cap_needs_no_answer_and_one_at_the_cap_is_probed() {
        let inside = span_of("2026-10-01T23:00:00Z", "2026-10-01T22:00:00Z", 500);
        assert_eq!(
            first_page(DateFilter::Unknown, day(), Some(9_999), inside),
            FirstPage::Windowed
        );
        assert_eq!(
            first_page(DateFilter::Unknown, day(), Some(10_000), inside),
            FirstPage::Probe((day().0, day().0 + Duration::seconds(1)))
        );
        // Once known, nothing is probed again.
        assert_eq!(
            first_page(DateFilter::Honoured, day(), Some(90_000), inside),
            FirstPage::Windowed
        );
        assert_eq!(
            first_page(DateFilter::Ignored, day(), Some(10), inside),
            FirstPage::Ignored
        );
    }

    #[test]
    fn the_probe_second_never_holds_the_newest_event_and_doubt_means_ignored() {
        // Newest event in the first second: probe the last second instead.
        let early = Span {
            newest: day().0,
            oldest: day().0,
            rows: 500,
        };
        assert_eq!(
            probe_window(day(), early),
            Some((day().1 - Duration::seconds(1), day().1))
        );
        // A two-second window crowded in both seconds cannot be probed: read it newest-first.
        let tiny = (day().0, day().0 + Duration::seconds(2));
        let both = Span {
            newest: tiny.0 + Duration::milliseconds(1500),
            oldest: tiny.0,
            rows: 500,
        };
        assert_eq!(probe_window(tiny, both), None);
        assert_eq!(
            first_page(DateFilter::Unknown, tiny, Some(20_000), Some(both)),
            FirstPage::Ignored
        );
    }

    #[test]
    fn a_probe_answered_with_the_same_events_or_count_means_ignored() {
        let probe = (day().0, day().0 + Duration::seconds(1));
        let newest = span_of("2026-10-01T23:00:00Z", "2026-10-01T22:00:00Z", 500);
        assert_eq!(
            judge_probe(probe, 20_000, Some(20_000), newest),
            DateFilter::Ignored
        );
        // The count alone gives it away when the events happen to sit in the second.
        let inside = span_of("2026-10-01T00:00:00.5Z", "2026-10-01T00:00:00Z", 3);
        assert_eq!(
            judge_probe(probe, 20_000, Some(20_000), inside),
            DateFilter::Ignored
        );
        assert_eq!(
            judge_probe(probe, 20_000, Some(3), inside),
            DateFilter::Honoured
        );
        assert_eq!(
            judge_probe(probe, 20_000, Some(0), None),
            DateFilter::Honoured
        );
    }

    #[test]
    fn newest_first_emits_the_range_and_stops_at_the_first_page_reaching_before_it() {
        let mut r = NewestFirst::new(vec![day()], Boundary::default(), None);
        let page1 = vec![
            ev("2026-10-02T00:04:00Z", "lag"),
            ev("2026-10-01T23:00:00Z", "a"),
            ev("2026-10-01T12:00:00Z", "b"),
        ];
        let (fates, after) = r.page(3, Some(100), &page1);
        assert_eq!(fates, vec![Fate::Outside, Fate::Emit, Fate::Emit]);
        assert_eq!(after, After::More);
        let page2 = vec![
            ev("2026-10-01T01:00:00Z", "c"),
            ev("2026-10-01T00:00:00Z", "d"),
            ev("2026-09-30T23:59:59Z", "old"),
        ];
        let (fates, after) = r.page(3, Some(100), &page2);
        assert_eq!(fates, vec![Fate::Emit, Fate::Emit, Fate::Outside]);
        assert_eq!(after, After::Done);
    }

    #[test]
    fn events_pushed_onto_the_next_page_by_new_arrivals_are_skipped_once() {
        let mut r = NewestFirst::new(vec![day()], Boundary::default(), None);
        let page1 = vec![
            ev("2026-10-01T20:00:00Z", "a"),
            ev("2026-10-01T19:00:00Z", "b"),
            ev("2026-10-01T19:00:00Z", "c"),
        ];
        r.page(3, Some(100), &page1);
        // Two events arrived on top: b and c come again, and d shares their instant.
        let page2 = vec![
            ev("2026-10-01T19:00:00Z", "b"),
            ev("2026-10-01T19:00:00Z", "c"),
            ev("2026-10-01T19:00:00Z", "d"),
        ];
        let (fates, after) = r.page(3, Some(102), &page2);
        assert_eq!(fates, vec![Fate::Repeated, Fate::Repeated, Fate::Emit]);
        assert_eq!(after, After::More);
        let page3 = vec![
            ev("2026-10-01T19:00:00Z", "d"),
            ev("2026-10-01T18:00:00Z", "e"),
        ];
        let (fates, after) = r.page(3, Some(102), &page3);
        assert_eq!(fates, vec![Fate::Repeated, Fate::Emit]);
        assert_eq!(after, After::Done, "a short page ends the scope");
    }

    #[test]
    fn a_scope_that_reaches_the_cap_hands_on_its_older_part_with_the_boundary_keys() {
        let mut r = NewestFirst::new(vec![day()], Boundary::default(), None);
        r.next = OFFSET_CAP - 2;
        let last = vec![
            ev("2026-10-01T10:00:00Z", "x"),
            ev("2026-10-01T09:00:00Z", "y"),
        ];
        let (fates, after) = r.page(2, Some(50_000), &last);
        assert_eq!(fates, vec![Fate::Emit, Fate::Emit]);
        let After::Cap {
            uncovered,
            boundary,
        } = after
        else {
            panic!("expected the cap, got {after:?}");
        };
        assert_eq!(
            uncovered,
            vec![(
                day().0,
                at("2026-10-01T09:00:00Z") + Duration::nanoseconds(1)
            )]
        );
        assert!(boundary.keys.contains("y") && boundary.keys.len() == 1);
        // The platform scope that continues skips what the parent emitted at the boundary.
        let child = NewestFirst::new(uncovered, boundary, Some("Mobile"));
        assert_eq!(
            child.fate(&ev("2026-10-01T09:00:00Z", "y")),
            Fate::Inherited
        );
        assert_eq!(child.fate(&ev("2026-10-01T09:00:00Z", "z")), Fate::Emit);
        assert_eq!(child.fate(&ev("2026-10-01T09:30:00Z", "w")), Fate::Outside);
        // A platform scope keeps only its platform, should the server not filter by it.
        let mut desktop = ev("2026-10-01T08:00:00Z", "v");
        desktop.platform = Some("Desktop".into());
        assert_eq!(child.fate(&desktop), Fate::OtherPlatform);
        desktop.platform = Some("Mobile".into());
        assert_eq!(child.fate(&desktop), Fate::Emit);
    }

    #[test]
    fn a_scope_is_split_up_front_only_when_its_range_lies_deeper_than_the_cap() {
        let lo = at("2026-09-01T00:00:00Z");
        // 500 events in the newest hour of 30 days: far beyond the cap.
        let dense = span_of("2026-10-01T00:00:00Z", "2026-09-30T23:00:00Z", 500);
        assert!(crowded(Some(40_000), dense, lo));
        assert!(!crowded(Some(9_999), dense, lo));
        // An incremental read of one day over a sparse history: a few pages reach it.
        let sparse = span_of("2026-10-01T00:00:00Z", "2026-09-30T12:00:00Z", 500);
        assert!(!crowded(Some(40_000), sparse, at("2026-09-30T00:00:00Z")));
        // The first page already reaches before the range.
        assert!(!crowded(Some(40_000), dense, at("2026-09-30T23:30:00Z")));
        assert_eq!(narrow(None), Narrow::Platforms(PLATFORMS));
        assert_eq!(narrow(Some("Mobile")), Narrow::PerMessage);
    }

    #[test]
    fn only_tracked_messages_are_asked_for_their_events() {
        let obj = |s: &'static str| serde_json::from_str::<RawObject>(s).unwrap();
        assert!(tracked(Kind::Opens, &obj(r#"{"TrackOpens":true}"#)));
        assert!(!tracked(Kind::Opens, &obj(r#"{"TrackOpens":false}"#)));
        assert!(tracked(Kind::Opens, &obj(r#"{}"#)));
        assert!(!tracked(Kind::Clicks, &obj(r#"{"TrackLinks":"None"}"#)));
        assert!(tracked(Kind::Clicks, &obj(r#"{"TrackLinks":"HtmlOnly"}"#)));
    }

    #[test]
    fn the_fallback_wants_only_events_no_query_reached() {
        let mut u = Uncovered::default();
        assert!(u.is_empty());
        let mut b = Boundary {
            at: Some(at("2026-10-01T09:00:00Z")),
            ..Boundary::default()
        };
        b.keys.insert("y".into());
        u.add(
            Some("Mobile"),
            clip(&[day()], at("2026-10-01T09:00:00Z")),
            b,
        );
        assert_eq!(
            u.until(),
            Some(at("2026-10-01T09:00:00Z") + Duration::nanoseconds(1))
        );
        assert!(u.wants(Some("Mobile"), &ev("2026-10-01T08:00:00Z", "a")));
        assert!(u.wants(Some("Mobile"), &ev("2026-10-01T09:00:00Z", "z")));
        assert!(!u.wants(Some("Mobile"), &ev("2026-10-01T09:00:00Z", "y")));
        assert!(!u.wants(Some("Desktop"), &ev("2026-10-01T08:00:00Z", "a")));
        assert!(!u.wants(Some("Mobile"), &ev("2026-10-01T10:00:00Z", "a")));
    }
}
