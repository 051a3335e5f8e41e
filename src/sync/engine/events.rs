//! Opens and clicks in the engine: detecting whether Postmark applies `fromdate`/`todate`
//! (once per stream and message stream), probing when a first page cannot tell, and reading
//! newest-first without a date filter when it does not. The decisions are in
//! [`crate::sync::events`]; this file only carries them out.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chrono::{DateTime, Utc};

use super::{Engine, InFlight, TaskId};
use crate::error::Error;
use crate::protocol::Level;
use crate::record::{parse_page, Page, Record};
use crate::streams::StreamSpec;
use crate::sync::events::{self as ev, After, Boundary, DateFilter, Fate, FirstPage, NewestFirst};
use crate::sync::stream::fmt_time;
use crate::sync::windows::{next_count, split_time, Sample, Window, OFFSET_CAP, PAGE_SIZE};

/// What the engine knows of the date filter of opens and clicks.
#[derive(Default)]
pub(super) struct Known {
    /// Per (stream, partition).
    filters: HashMap<(usize, usize), DateFilter>,
    /// Root tasks waiting for a probe: the count and sample of their first page.
    probing: HashMap<TaskId, (u64, Option<Sample>)>,
    /// The oldest piece of a split whose answer settles the question, by its task id; the
    /// other pieces wait for it.
    gates: HashMap<TaskId, Gate>,
    /// What each per-message fallback has cost, by the task that started it.
    costs: HashMap<TaskId, Cost>,
}

struct Gate {
    root: TaskId,
    total: u64,
    held: Vec<TaskId>,
}

/// A task reading its scope newest-first without date filter.
pub(super) struct Reader {
    read: NewestFirst,
    /// Pages that arrived before their turn (pages are emitted in offset order), by offset.
    held: BTreeMap<u32, Held>,
    /// Pages are queued for offsets below this.
    scheduled_to: u32,
    total: Option<u64>,
    platform: Option<&'static str>,
    repeated: u64,
    other_platform: u64,
}

struct Held {
    count: u32,
    body: String,
    at: DateTime<Utc>,
}

impl Reader {
    fn new(windows: Vec<Window>, inherited: Boundary, platform: Option<&'static str>) -> Reader {
        Reader {
            read: NewestFirst::new(windows, inherited, platform),
            held: BTreeMap::new(),
            scheduled_to: PAGE_SIZE,
            total: None,
            platform,
            repeated: 0,
            other_platform: 0,
        }
    }
}

/// Whether `spec` is an events stream whose date filter must be verified, and its key.
fn events_stream(spec: &StreamSpec) -> Option<(&'static str, Vec<&'static str>)> {
    ev::kind_of(spec)?;
    Some((spec.cursor_field()?, key_fields(spec)))
}

fn key_fields(spec: &StreamSpec) -> Vec<&'static str> {
    spec.primary_key.to_vec()
}

impl<W: Write> Engine<'_, '_, W> {
    /// Takes over a page of an opens or clicks task when the date filter matters: a reader's
    /// page, a probe's answer, or a first page that settles (or raises) the question.
    /// Returns false when the page is an ordinary windowed page.
    pub(super) fn events_page(
        &mut self,
        job: &InFlight,
        body: &str,
        page: &Page,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some((cursor, keys)) = events_stream(spec) else {
            return Ok(false);
        };
        let Some(task) = self.tasks.get(&job.task) else {
            return Ok(false);
        };
        let count = job.count.unwrap_or(PAGE_SIZE);
        if task.reader.is_some() {
            self.reader_page(job.task, job.offset, count, body, at)?;
            return Ok(true);
        }
        let (partition, window) = (task.partition, task.window);
        let Some(window) = window else {
            return Ok(false);
        };
        if let Some(gate) = self.date_filters.gates.remove(&job.task) {
            return self.gate_answered(job, gate, window, body, page, at);
        }
        if let Some(probe) = job.probe {
            let (root_total, sample) = self
                .date_filters
                .probing
                .remove(&job.task)
                .unwrap_or((0, None));
            let span = ev::span(&ev::scan(&page.records, cursor, &keys));
            let verdict = ev::judge_probe(probe, root_total, page.total, span);
            let evidence = format!(
                "{} events in [{}, {}), {} in the one second from {}: {}",
                root_total,
                fmt_time(window.0),
                fmt_time(window.1),
                page.total.map_or("no count".to_string(), |t| t.to_string()),
                fmt_time(probe.0),
                describe_span(span),
            );
            self.learn(job.stream, partition, verdict, &evidence)?;
            if verdict == DateFilter::Ignored {
                // The probe's answer is the scope's first page: the filter was not applied.
                self.become_reader(job.task, vec![window]);
                self.reader_page(job.task, 0, count, body, at)?;
            } else {
                self.settle_crowded_window(job.task, root_total, sample)?;
                self.page_done(job.task)?;
            }
            return Ok(true);
        }
        let first = job.offset == 0 && job.count.is_some() && task.known_total.is_none();
        let known = self
            .date_filters
            .filters
            .get(&(job.stream, partition))
            .copied()
            .unwrap_or(DateFilter::Unknown);
        if !first || known == DateFilter::Honoured {
            return Ok(false);
        }
        let events = ev::scan(&page.records, cursor, &keys);
        let span = ev::span(&events);
        match ev::first_page(known, window, page.total, span) {
            FirstPage::Windowed => Ok(false),
            FirstPage::Ignored => {
                let evidence = format!(
                    "the first page of [{}, {}) returned {}",
                    fmt_time(window.0),
                    fmt_time(window.1),
                    describe_span(span)
                );
                self.learn(job.stream, partition, DateFilter::Ignored, &evidence)?;
                self.estimate(job.task, page.total)?;
                self.become_reader(job.task, vec![window]);
                self.reader_page(job.task, 0, count, body, at)?;
                Ok(true)
            }
            FirstPage::Probe(probe) => {
                self.estimate(job.task, page.total)?;
                let total = page.total.unwrap_or(0);
                let sample = span.map(|s| Sample {
                    oldest: s.oldest,
                    rows: s.rows,
                });
                if self.split_gated(job.task, window, total, sample, span) {
                    self.page_done(job.task)?;
                    return Ok(true);
                }
                self.date_filters.probing.insert(job.task, (total, sample));
                if let Some(t) = self.tasks.get_mut(&job.task) {
                    t.pages_pending += 1;
                }
                self.enqueue_query(job.task, 0, Some(PAGE_SIZE), Some(probe));
                self.page_done(job.task)?;
                Ok(true)
            }
        }
    }

    /// Splits a crowded root window in time as an honoured filter needs, but asks only its
    /// oldest piece (which the page's newest event is not in) until that piece's answer
    /// tells whether the filter is applied: under an honoured filter the probe is a piece
    /// that had to be read anyway. False when no such piece exists.
    fn split_gated(
        &mut self,
        task_id: TaskId,
        window: Window,
        total: u64,
        sample: Option<Sample>,
        span: Option<ev::Span>,
    ) -> bool {
        let (Some(pieces), Some(span)) = (split_time(window, Some(total), sample), span) else {
            return false;
        };
        if pieces.len() < 2 || !ev::strays(pieces[0], Some(span)) {
            return false;
        }
        let first = self.next_task;
        if !self.split(task_id, Some(total), sample) {
            return false;
        }
        let held: Vec<TaskId> = (first + 1..self.next_task).collect();
        self.queue.retain(|p| !held.contains(&p.0.key.2));
        let gate = Gate {
            root: task_id,
            total,
            held,
        };
        self.date_filters.gates.insert(first, gate);
        true
    }

    /// The oldest piece of a gated split answered: settle the question, then either release
    /// the other pieces (honoured; this page goes on as any first page) or drop the split
    /// and read the root's scope newest-first from this page (ignored).
    fn gate_answered(
        &mut self,
        job: &InFlight,
        gate: Gate,
        piece: Window,
        body: &str,
        page: &Page,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some((cursor, keys)) = events_stream(spec) else {
            return Ok(false);
        };
        let Some(root) = self.tasks.get(&gate.root) else {
            return Ok(false);
        };
        let (partition, window) = (root.partition, root.window);
        let span = ev::span(&ev::scan(&page.records, cursor, &keys));
        let verdict = ev::judge_probe(piece, gate.total, page.total, span);
        let evidence = format!(
            "{} events in [{}, {}), {} in its oldest part [{}, {}): {}",
            gate.total,
            window.map_or(String::new(), |w| fmt_time(w.0)),
            window.map_or(String::new(), |w| fmt_time(w.1)),
            page.total.map_or("no count".to_string(), |t| t.to_string()),
            fmt_time(piece.0),
            fmt_time(piece.1),
            describe_span(span),
        );
        self.learn(job.stream, partition, verdict, &evidence)?;
        if verdict != DateFilter::Ignored {
            for child in gate.held {
                self.enqueue(child, 0, Some(PAGE_SIZE));
            }
            return Ok(false);
        }
        // Undo the split: its pieces were never read (the held ones never asked).
        let mut removed = 0;
        for child in gate.held.iter().chain(std::iter::once(&job.task)) {
            if self.tasks.remove(child).is_some() {
                removed += 1;
            }
        }
        let run = &mut self.runs[job.stream];
        run.open_tasks = run.open_tasks.saturating_sub(removed);
        let Some(root) = self.tasks.get_mut(&gate.root) else {
            return Ok(true);
        };
        root.split = false;
        root.children_pending = 0;
        root.expected_total = None;
        root.pages_pending += 1;
        let windows = root.window.into_iter().collect();
        self.become_reader(gate.root, windows);
        self.reader_page(gate.root, 0, job.count.unwrap_or(PAGE_SIZE), body, at)?;
        Ok(true)
    }

    /// Records what a stream's message stream does with the date filter, once, with why.
    fn learn(
        &mut self,
        stream: usize,
        partition: usize,
        verdict: DateFilter,
        evidence: &str,
    ) -> Result<(), Error> {
        let before = self
            .date_filters
            .filters
            .insert((stream, partition), verdict);
        if before == Some(verdict) {
            return Ok(());
        }
        let run = &self.runs[stream];
        let scope = run
            .partitions
            .get(partition)
            .cloned()
            .flatten()
            .map(|p| format!(" (messagestream {p})"))
            .unwrap_or_default();
        let how = match verdict {
            DateFilter::Ignored => {
                "reading it newest-first without date filter, down to the range start"
            }
            _ => "reading it in time windows",
        };
        let msg = format!(
            "{}{scope}: Postmark {} fromdate/todate on {} ({evidence}); {how}",
            run.name(),
            match verdict {
                DateFilter::Ignored => "ignores",
                _ => "honours",
            },
            run.selected.spec.path,
        );
        self.out.log(Level::Info, &msg)
    }

    /// A window at the cap under an honoured filter: what its first page would have done.
    fn settle_crowded_window(
        &mut self,
        task_id: TaskId,
        total: u64,
        sample: Option<Sample>,
    ) -> Result<(), Error> {
        if self.tighten(task_id, sample) || self.split(task_id, Some(total), sample) {
            return Ok(());
        }
        self.unreachable(task_id, total.saturating_sub(u64::from(OFFSET_CAP)))?;
        if let Some(t) = self.tasks.get_mut(&task_id) {
            // Its first page was not emitted: read the window from the start.
            t.known_total = Some(total);
            t.scheduled_to = 0;
        }
        self.schedule_pages(task_id, total);
        Ok(())
    }

    fn become_reader(&mut self, task_id: TaskId, windows: Vec<Window>) {
        if let Some(t) = self.tasks.get_mut(&task_id) {
            t.reader = Some(Box::new(Reader::new(windows, Boundary::default(), None)));
        }
    }

    /// A reader's page: processed in offset order (a page ahead of its turn waits).
    fn reader_page(
        &mut self,
        task_id: TaskId,
        offset: u32,
        count: u32,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let Some(reader) = self.tasks.get_mut(&task_id).and_then(|t| t.reader.as_mut()) else {
            return Ok(());
        };
        if offset != reader.read.next {
            let held = Held {
                count,
                body: body.to_string(),
                at,
            };
            reader.held.insert(offset, held);
            return Ok(());
        }
        self.reader_process(task_id, count, body, at)?;
        while let Some(h) = self.next_held(task_id) {
            self.reader_process(task_id, h.count, &h.body, h.at)?;
        }
        Ok(())
    }

    /// The held page whose turn it is, if it arrived.
    fn next_held(&mut self, task_id: TaskId) -> Option<Held> {
        let reader = self.tasks.get_mut(&task_id)?.reader.as_mut()?;
        let next = reader.read.next;
        reader.held.remove(&next)
    }

    /// Emits the records of a reader's next page and decides how the scope goes on.
    fn reader_process(
        &mut self,
        task_id: TaskId,
        count: u32,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let Some(task) = self.tasks.get(&task_id) else {
            return Ok(());
        };
        let (stream, generation) = (task.stream, task.generation);
        let spec = self.runs[stream].selected.spec;
        let Some((cursor, keys)) = events_stream(spec) else {
            return Ok(());
        };
        let page = match parse_page(body, spec.envelope) {
            Ok(p) => p,
            Err(detail) => {
                let context = format!("reading '{}'", spec.name);
                return self.fail_stream(stream, Error::UnexpectedResponse { context, detail });
            }
        };
        let events = ev::scan(&page.records, cursor, &keys);
        let Some(reader) = self.tasks.get_mut(&task_id).and_then(|t| t.reader.as_mut()) else {
            return Ok(());
        };
        let offset = reader.read.next;
        if offset == 0 {
            reader.total = page.total;
            let split_now = reader.platform.is_none()
                && reader
                    .read
                    .lo()
                    .is_some_and(|lo| ev::crowded(page.total, ev::span(&events), lo));
            let windows = reader.read.windows().to_vec();
            self.report_total_to_parent(task_id, page.total.unwrap_or(events.len() as u64));
            if split_now {
                // More events in range than one query reaches: split before emitting.
                self.split_platforms(task_id, windows, Boundary::default(), page.total);
                return self.reader_stop(task_id, true);
            }
        }
        let Some(reader) = self.tasks.get_mut(&task_id).and_then(|t| t.reader.as_mut()) else {
            return Ok(());
        };
        let (fates, after) = reader.read.page(count, page.total, &events);
        reader.repeated += fates.iter().filter(|f| **f == Fate::Repeated).count() as u64;
        reader.other_platform += fates.iter().filter(|f| **f == Fate::OtherPlatform).count() as u64;
        let total = page.total;
        let kept: Vec<Record> = page
            .records
            .into_iter()
            .zip(&fates)
            .filter(|(_, f)| **f == Fate::Emit)
            .map(|(r, _)| r)
            .collect();
        let job = InFlight {
            stream,
            task: task_id,
            offset,
            count: Some(count),
            generation,
            probe: None,
            detail: None,
            // Not a request: only handed to `emit_page`, never timed.
            sent: std::time::Instant::now(),
            endpoint: "",
        };
        let kept = Page {
            total,
            records: kept,
            built: Vec::new(),
            carried: Vec::new(),
        };
        self.emit_page(&job, &kept, at)?;
        match after {
            After::More => {
                self.reader_schedule(task_id);
                self.page_done(task_id)
            }
            After::Done => self.reader_stop(task_id, true),
            After::Cap {
                uncovered,
                boundary,
            } => {
                let (platform, total) = self
                    .tasks
                    .get(&task_id)
                    .and_then(|t| t.reader.as_ref())
                    .map_or((None, None), |r| (r.platform, r.total));
                match ev::narrow(platform) {
                    ev::Narrow::Platforms(_) => {
                        self.split_platforms(task_id, uncovered, boundary, total);
                    }
                    ev::Narrow::PerMessage => {
                        let rows = total.unwrap_or(0).saturating_sub(u64::from(OFFSET_CAP));
                        self.start_fallback(task_id, uncovered, boundary, rows)?;
                    }
                }
                self.reader_stop(task_id, true)
            }
        }
    }

    /// Keeps a few pages ahead of the one being emitted in flight, within the count and cap.
    fn reader_schedule(&mut self, task_id: TaskId) {
        let ahead = self.plan.config.max_concurrency.max(1) as u32 * PAGE_SIZE;
        let Some(reader) = self.tasks.get_mut(&task_id).and_then(|t| t.reader.as_mut()) else {
            return;
        };
        let limit = reader
            .total
            .map_or(OFFSET_CAP, |t| t.min(u64::from(OFFSET_CAP)) as u32);
        let mut pages = Vec::new();
        while reader.scheduled_to < limit && reader.scheduled_to < reader.read.next + ahead {
            let Some(count) = next_count(reader.scheduled_to) else {
                break;
            };
            pages.push((reader.scheduled_to, count));
            reader.scheduled_to += count;
        }
        if let Some(t) = self.tasks.get_mut(&task_id) {
            t.pages_pending += pages.len();
        }
        for (o, c) in pages {
            self.enqueue(task_id, o, Some(c));
        }
    }

    /// The scope needs no more pages: queued and in-flight ones are dropped when they come
    /// up, held ones now. `settle` also settles the page just processed.
    fn reader_stop(&mut self, task_id: TaskId, settle: bool) -> Result<(), Error> {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return Ok(());
        };
        task.generation += 1;
        let Some(reader) = task.reader.as_mut() else {
            return Ok(());
        };
        let held = std::mem::take(&mut reader.held).len();
        let repeated = std::mem::take(&mut reader.repeated);
        let other = std::mem::take(&mut reader.other_platform);
        let stream = task.stream;
        if other > 0 {
            let msg = format!(
                "{}: Postmark answered {other} events of other platforms to a query by \
                 platform; they were left to their own platform's query",
                self.runs[stream].name()
            );
            self.out.log(Level::Warn, &msg)?;
        }
        if repeated > 0 {
            let msg = format!(
                "{}: {repeated} events came twice because new events arrived while a scope \
                 was read newest-first; each was emitted once",
                self.runs[stream].name()
            );
            self.out.log(Level::Info, &msg)?;
        }
        for _ in 0..held + usize::from(settle) {
            self.page_done(task_id)?;
        }
        Ok(())
    }

    /// Splits a reader's scope by `platform`; each child reads `windows` newest-first and
    /// skips what the parent emitted at `boundary`. Child counts must add up to `total`.
    fn split_platforms(
        &mut self,
        task_id: TaskId,
        windows: Vec<Window>,
        boundary: Boundary,
        total: Option<u64>,
    ) {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        task.expected_total = total;
        let (stream, partition, filters) = (task.stream, task.partition, task.filters.clone());
        let hull = match (windows.first(), windows.last()) {
            (Some(a), Some(b)) => Some((a.0, b.1)),
            _ => task.window,
        };
        let children: Vec<_> = ev::PLATFORMS
            .iter()
            .map(|p| {
                let mut f = filters.clone();
                f.push(("platform", *p));
                (f, hull)
            })
            .collect();
        let first = self.hand_over(task_id, stream, partition, children);
        for (i, p) in ev::PLATFORMS.iter().enumerate() {
            if let Some(child) = self.tasks.get_mut(&(first + i as TaskId)) {
                child.reader = Some(Box::new(Reader::new(
                    windows.clone(),
                    boundary.clone(),
                    Some(p),
                )));
            }
        }
    }
}

fn describe_span(span: Option<ev::Span>) -> String {
    match span {
        Some(s) => format!(
            "events from {} to {}",
            fmt_time(s.oldest),
            fmt_time(s.newest)
        ),
        None => "no events".to_string(),
    }
}

/// The per-message fallback of one platform scope: what a task listing outbound messages
/// (or asking one message for its events) must keep.
#[derive(Clone)]
pub(super) struct Fallback {
    kind: ev::Kind,
    /// The events no query reached (time ranges and boundary keys of one platform).
    uncovered: ev::Uncovered,
    /// The task that started it: its cost is logged when it completes.
    root: TaskId,
}

/// What one fallback has cost so far, logged when its root completes.
#[derive(Default)]
pub(super) struct Cost {
    listing: u64,
    per_message: u64,
    messages: u64,
    skipped: u64,
    emitted: u64,
}

/// Individual warnings of skipped messages per fallback before they are only counted.
const SKIP_WARNINGS: u64 = 10;

/// Outbound messages an open or click can belong to were sent at most this long before it:
/// the longest retention Postmark offers (messages older than the server's retention are not
/// listed, so this costs nothing there).
const MESSAGE_AGE: i64 = crate::config::MAX_RETENTION_DAYS;

/// The stream whose listing the fallback walks: the outbound messages.
pub(super) fn listing_spec() -> Option<&'static StreamSpec> {
    crate::streams::find("messages_outbound")
}

/// The per-message endpoint of an events stream, placeholders unfilled (the timer's tag).
pub(super) fn per_message_endpoint(spec: &StreamSpec) -> &'static str {
    match ev::kind_of(spec) {
        Some(ev::Kind::Opens) => "/messages/outbound/opens/{MessageID}",
        Some(ev::Kind::Clicks) => "/messages/outbound/clicks/{MessageID}",
        None => "",
    }
}

impl<W: Write> Engine<'_, '_, W> {
    /// A platform scope reached the cap before its range start: the events left (in
    /// `uncovered`, minus what was emitted at `boundary`) are read per message. The task
    /// hands over to one child listing the outbound messages sent before the newest
    /// uncovered instant; it completes when every message has answered.
    fn start_fallback(
        &mut self,
        task_id: TaskId,
        uncovered: Vec<Window>,
        boundary: Boundary,
        rows: u64,
    ) -> Result<(), Error> {
        let Some(task) = self.tasks.get(&task_id) else {
            return Ok(());
        };
        let (stream, partition) = (task.stream, task.partition);
        let platform = task.reader.as_ref().and_then(|r| r.platform);
        let Some(kind) = ev::kind_of(self.runs[stream].selected.spec) else {
            return Ok(());
        };
        let (Some(lo), Some(hi)) = (
            uncovered.iter().map(|w| w.0).min(),
            uncovered.iter().map(|w| w.1).max(),
        ) else {
            return Ok(());
        };
        let mut pieces = ev::Uncovered::default();
        pieces.add(platform, uncovered, boundary);
        let listed = (lo - chrono::Duration::days(MESSAGE_AGE), hi);
        let run = &self.runs[stream];
        let scope = run
            .partitions
            .get(partition)
            .cloned()
            .flatten()
            .map(|p| format!("messagestream {p}, "))
            .unwrap_or_default();
        let msg = format!(
            "{} ({scope}platform {}): about {rows} events in [{}, {}) are beyond the 10,000 one \
             query reaches; reading them per message: listing the outbound messages sent in \
             [{}, {}) and asking {} for each tracked one (one request per message)",
            run.name(),
            platform.unwrap_or("any"),
            fmt_time(lo),
            fmt_time(hi),
            fmt_time(listed.0),
            fmt_time(listed.1),
            per_message_endpoint(run.selected.spec),
        );
        self.out.log(Level::Info, &msg)?;
        let child = self.hand_over(task_id, stream, partition, vec![(Vec::new(), Some(listed))]);
        self.date_filters.costs.insert(child, Cost::default());
        if let Some(c) = self.tasks.get_mut(&child) {
            c.fallback = Some(Box::new(Fallback {
                kind,
                uncovered: pieces,
                root: child,
            }));
        }
        Ok(())
    }

    /// A request of a fallback task answered: a page of the message listing, or of one
    /// message's events.
    pub(super) fn fallback_done(
        &mut self,
        job: InFlight,
        result: Result<String, Error>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let Some(fallback) = self
            .tasks
            .get(&job.task)
            .and_then(|t| t.fallback.as_deref())
            .cloned()
        else {
            return self.page_done(job.task);
        };
        let cost = self.date_filters.costs.entry(fallback.root).or_default();
        if job.detail.is_some() {
            cost.per_message += 1;
        } else {
            cost.listing += 1;
        }
        let body = match result {
            Ok(body) => body,
            Err(Error::Rejected {
                status: 422,
                code: Some(code),
                message,
                ..
            }) if job.detail.is_some() && code == crate::streams::MESSAGE_NOT_FOUND => {
                let run = &mut self.runs[job.stream];
                run.skipped += 1;
                cost.skipped += 1;
                if cost.skipped > SKIP_WARNINGS {
                    // Counted in the fallback's cost line and the stream's skipped rows.
                    return self.page_done(job.task);
                }
                let path = job.detail.as_ref().map_or("", |d| d.path.as_str());
                let msg = format!(
                    "{}: skipped GET {path}: Postmark answered ErrorCode {code} ({message}); \
                     the message is gone or not yet readable",
                    run.name()
                );
                self.out.log(Level::Warn, &msg)?;
                return self.page_done(job.task);
            }
            Err(e) => return self.fail_stream(job.stream, e),
        };
        if job.detail.is_some() {
            self.fallback_events(job, &fallback, &body, at)
        } else {
            self.fallback_listing(job, fallback, &body)
        }
    }

    /// A page of the outbound messages: queue one events request per tracked message sent
    /// in the task's window (ahead of the listing's next pages, so memory stays bounded).
    fn fallback_listing(
        &mut self,
        job: InFlight,
        fallback: Fallback,
        body: &str,
    ) -> Result<(), Error> {
        let Some(listing) = listing_spec() else {
            return self.page_done(job.task);
        };
        let page = match parse_page(body, listing.envelope) {
            Ok(p) => p,
            Err(detail) => {
                let context = format!(
                    "listing outbound messages for '{}'",
                    self.runs[job.stream].name()
                );
                return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
            }
        };
        let Some(task) = self.tasks.get(&job.task) else {
            return Ok(());
        };
        let (stream, partition, window, generation) =
            (task.stream, task.partition, task.window, task.generation);
        let total = page.total.unwrap_or(page.records.len() as u64);
        if job.offset == 0 {
            if let Some(w) = window.filter(|_| total > u64::from(OFFSET_CAP)) {
                // More messages than one query reaches: split the window in time.
                let pieces = split_even(w, total);
                if pieces.len() > 1 {
                    let children = pieces.into_iter().map(|p| (Vec::new(), Some(p))).collect();
                    let first = self.hand_over(job.task, stream, partition, children);
                    for id in first..self.next_task {
                        if let Some(c) = self.tasks.get_mut(&id) {
                            c.fallback = Some(Box::new(fallback.clone()));
                        }
                    }
                    return self.page_done(job.task);
                }
                self.unreachable(job.task, total - u64::from(OFFSET_CAP))?;
            }
            let mut pages = Vec::new();
            let mut o = PAGE_SIZE;
            while u64::from(o) < total.min(u64::from(OFFSET_CAP)) {
                let Some(c) = next_count(o) else { break };
                pages.push((o, c));
                o += c;
            }
            if let Some(t) = self.tasks.get_mut(&job.task) {
                t.pages_pending += pages.len();
            }
            for (o, c) in pages {
                self.enqueue(job.task, o, Some(c));
            }
        }
        let cursor = listing.cursor_field();
        let endpoint = per_message_endpoint(self.runs[stream].selected.spec);
        let mut paths = Vec::new();
        for raw in &page.records {
            let Some(record) = raw.object() else {
                continue;
            };
            if let (Some(field), Some(w)) = (cursor, window) {
                if !super::fanout::in_window(record, field, w) {
                    continue;
                }
            }
            if !ev::tracked(fallback.kind, record) {
                continue;
            }
            if let Some(path) = super::fanout::fill_path(endpoint, record) {
                paths.push(path);
            }
        }
        if let Some(cost) = self.date_filters.costs.get_mut(&fallback.root) {
            cost.messages += paths.len() as u64;
        }
        let start = window.map(|w| w.0.timestamp()).unwrap_or(0);
        if let Some(t) = self.tasks.get_mut(&job.task) {
            t.pages_pending += paths.len();
        }
        for path in paths {
            self.queue.push(std::cmp::Reverse(super::Pending {
                key: (stream, start, job.task, job.offset),
                count: None,
                generation,
                probe: None,
                detail: Some(super::fanout::Detail {
                    path,
                    page: Some((0, PAGE_SIZE)),
                }),
            }));
        }
        self.page_done(job.task)
    }

    /// A page of one message's events: emit those no query reached, ask for the next page.
    fn fallback_events(
        &mut self,
        job: InFlight,
        fallback: &Fallback,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some((cursor, keys)) = events_stream(spec) else {
            return self.page_done(job.task);
        };
        let page = match parse_page(body, spec.envelope) {
            Ok(p) => p,
            Err(detail) => {
                let path = job.detail.as_ref().map_or("", |d| d.path.as_str());
                let context = format!("reading '{}' (GET {path})", spec.name);
                return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
            }
        };
        let events = ev::scan(&page.records, cursor, &keys);
        let (total, listed) = (page.total, page.records.len());
        let kept: Vec<Record> = page
            .records
            .into_iter()
            .zip(&events)
            .filter(|(_, e)| fallback.uncovered.wants(e.platform.as_deref(), e))
            .map(|(r, _)| r)
            .collect();
        if let Some(cost) = self.date_filters.costs.get_mut(&fallback.root) {
            cost.emitted += kept.len() as u64;
        }
        // A message with more events than one page: ask for the next (within the cap).
        if let Some(d) = &job.detail {
            let (offset, count) = d.page.unwrap_or((0, PAGE_SIZE));
            let next = offset + count;
            let more = total.is_some_and(|t| t > u64::from(next)) && listed as u32 >= count;
            if more && next_count(next).is_none() {
                // More events than one query reaches: the oldest are out of reach.
                self.message_beyond_cap(job.stream, &d.path, total.unwrap_or(0))?;
                if !self.tasks.contains_key(&job.task) {
                    // The stream failed on it (`fail_on_unreachable_rows`).
                    return Ok(());
                }
            }
            if let (true, Some(c)) = (more, next_count(next)) {
                let detail = super::fanout::Detail {
                    path: d.path.clone(),
                    page: Some((next, c)),
                };
                let start = self
                    .tasks
                    .get(&job.task)
                    .and_then(|t| t.window)
                    .map(|w| w.0.timestamp())
                    .unwrap_or(0);
                if let Some(t) = self.tasks.get_mut(&job.task) {
                    t.pages_pending += 1;
                }
                self.queue.push(std::cmp::Reverse(super::Pending {
                    key: (job.stream, start, job.task, job.offset),
                    count: None,
                    generation: job.generation,
                    probe: None,
                    detail: Some(detail),
                }));
            }
        }
        let kept = Page {
            total,
            records: kept,
            built: Vec::new(),
            carried: Vec::new(),
        };
        self.emit_page(&job, &kept, at)?;
        self.page_done(job.task)
    }

    /// One message has more events than its per-message endpoint reaches (`count + offset`
    /// stops at 10,000, newest first): its oldest are counted and warned as unreachable, and
    /// fail the stream under `fail_on_unreachable_rows`.
    fn message_beyond_cap(&mut self, stream: usize, path: &str, total: u64) -> Result<(), Error> {
        let rows = total.saturating_sub(u64::from(OFFSET_CAP));
        let run = &mut self.runs[stream];
        run.unreachable_rows += rows;
        let name = run.name();
        let msg = format!(
            "{name}: GET {path} counts {total} events; Postmark returns at most 10,000 per \
             query, so its {rows} oldest events are unreachable (those no other query reached \
             are not synced)"
        );
        self.out.log(Level::Warn, &msg)?;
        self.out
            .trace_analytics("postmark_unreachable_rows", &format!("{name}:{rows}"))?;
        if self.plan.config.fail_on_unreachable_rows {
            let err = Error::UnreachableRows {
                stream: name.to_string(),
                rows,
            };
            return self.fail_stream(stream, err);
        }
        Ok(())
    }

    /// A task completed: if it started a fallback, log what the fallback cost.
    pub(super) fn fallback_completed(
        &mut self,
        id: TaskId,
        task: &super::Task,
    ) -> Result<(), Error> {
        if task.fallback.as_ref().map(|f| f.root) != Some(id) {
            return Ok(());
        }
        let Some(cost) = self.date_filters.costs.remove(&id) else {
            return Ok(());
        };
        let msg = format!(
            "{}: the per-message fallback read {} tracked messages: {} requests ({} listing \
             outbound messages, {} per message), {} events emitted, {} messages skipped",
            self.runs[task.stream].name(),
            cost.messages,
            cost.listing + cost.per_message,
            cost.listing,
            cost.per_message,
            cost.emitted,
            cost.skipped,
        );
        self.out.log(Level::Info, &msg)
    }
}

/// Pieces of `w` of equal length, enough that each holds about 8,000 of `total` rows if they
/// are spread evenly (a piece that still holds too many splits again); at least one second.
fn split_even(w: Window, total: u64) -> Vec<Window> {
    let n = total.div_ceil(8_000).max(2) as i64;
    let secs = (w.1 - w.0).num_seconds();
    if secs < 2 {
        return vec![w];
    }
    let step = (secs / n).max(1);
    let mut pieces = Vec::new();
    let mut s = w.0;
    while s < w.1 {
        let e = (s + chrono::Duration::seconds(step)).min(w.1);
        let e = if (w.1 - e).num_seconds() < step {
            w.1
        } else {
            e
        };
        pieces.push((s, e));
        s = e;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_crowded_message_listing_splits_into_contiguous_pieces_that_cover_its_window() {
        let w = (at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:01Z"));
        let pieces = split_even(w, 25_000);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces[0].0, w.0);
        assert_eq!(pieces.last().map(|p| p.1), Some(w.1));
        assert!(pieces
            .windows(2)
            .all(|p| p[0].1 == p[1].0 && p[0].0 < p[0].1));
        let second = (w.0, w.0 + chrono::Duration::seconds(1));
        assert_eq!(split_even(second, 25_000), vec![second]);
    }
}
