//! Pages: what happens when a page arrives (schedule the rest of its window, notice windows
//! that changed while being read, notice answers that contradict their query) and how its
//! records reach the output.
//!
//! Exactly once within a window: each window remembers the primary keys its query returned
//! (at most 10,000 plus what changed meanwhile; freed when the window completes). When a
//! later page shows that the window's `TotalCount` changed (rows indexed late, rows
//! vanished), the whole window is read again from offset 0 (split, if it now crosses the
//! cap) and keys already seen are not emitted again, until one read sees the same count on
//! every page. A window of `n` pages gets at most `n × (2n + 8)` page requests over all
//! its reads (as many as `2n + 8` whole reads; a 10,000-row window at most 960 requests);
//! a server that still changes it after that fails the stream.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::io::Write;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Engine, InFlight, Phase, TaskId};
use crate::error::Error;
use crate::protocol::Level;
use std::borrow::Cow;

use crate::record::{
    oldest_cursor, parse_page, rows_near_window, Extra, Page, Query, Record, ShapeError,
};
use crate::streams::{Added, Cursor, Partitioning};
use crate::sync::stream::fmt_time;
use crate::sync::windows::{self, page_offsets, Sample, OFFSET_CAP, PAGE_SIZE};

/// Whole reads of one window, beyond twice its page count, that a window that keeps
/// changing may cost before its stream fails.
const EXTRA_READS: u64 = 8;

/// The field in which partitioned records echo the `messagestream` they were queried with.
const PARTITION_FIELD: &str = "MessageStream";

/// The primary keys a window returned, as 128-bit fingerprints of their raw JSON: no
/// allocation per row, 16 bytes each. Two different keys of one window share a fingerprint
/// with a probability below 10^-30 (10,000 keys, 128 bits).
pub(super) type KeySet = HashSet<u128, BuildHasherDefault<PassThrough>>;

/// Fingerprint of a raw JSON key: two SipHash-1-3 values with fixed keys (the same in
/// every run), one salted.
pub(super) fn fingerprint(key: &str) -> u128 {
    let mut a = DefaultHasher::new();
    key.hash(&mut a);
    let mut b = DefaultHasher::new();
    0x9e37_79b9_7f4a_7c15_u64.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Fingerprints are already uniform: the set's hasher passes them through.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// How many page requests a window of `total` rows may cost over all its reads: `n` pages
/// read `2n + 8` times. Counted in requests, not reads, because a read that sees a change
/// on its first page costs one request.
pub(super) fn request_budget(total: u64) -> u64 {
    let reachable = total.min(u64::from(OFFSET_CAP));
    let pages = reachable.div_ceil(u64::from(PAGE_SIZE)).max(1);
    pages * (2 * pages + EXTRA_READS)
}

/// What a later page says about its window.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Fine,
    /// The window changed and is being read again (or its stream failed); this page is
    /// superseded.
    Reread,
}

impl<W: Write> Engine<'_, '_, W> {
    pub(super) fn on_page(
        &mut self,
        job: InFlight,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let page = match parse_page(body, spec.envelope) {
            Ok(p) => p,
            Err(detail) => {
                let context = format!("reading '{}'", spec.name);
                return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
            }
        };
        if self.events_page(&job, body, &page, at)? {
            return Ok(());
        }
        // The first page of a task (not the first page of a re-read) decides how to read it.
        let first = job.offset == 0
            && job.count.is_some()
            && self
                .tasks
                .get(&job.task)
                .is_some_and(|t| t.known_total.is_none());
        if first {
            let total = self.trusted_total(&job, page.total, page.records.len())?;
            self.estimate(job.task, total)?;
            self.report_total_to_parent(job.task, total.unwrap_or(page.records.len() as u64));
            if total.unwrap_or(0) >= u64::from(OFFSET_CAP) {
                if self.ignores_date_filter(&job, &page.records, total.unwrap_or(0))? {
                    return Ok(());
                }
                let sample = spec
                    .cursor_field()
                    .and_then(|field| oldest_cursor(&page.records, field))
                    .map(|(oldest, rows)| Sample { oldest, rows });
                if self.tighten(job.task, sample) || self.split(job.task, total, sample) {
                    return self.page_done(job.task);
                }
                self.unreachable(job.task, total.unwrap_or(0) - u64::from(OFFSET_CAP))?;
            }
            match total {
                Some(t) => {
                    if let Some(task) = self.tasks.get_mut(&job.task) {
                        task.known_total = Some(t);
                    }
                    self.schedule_pages(job.task, t);
                }
                None => self.maybe_next_page(&job, page.records.len()),
            }
        } else if job.count.is_some() {
            let known = self.tasks.get(&job.task).and_then(|t| t.known_total);
            match (page.total, known) {
                (Some(total), Some(_)) => {
                    if self.check_page(&job, total)? == Verdict::Reread {
                        // This page belongs to the superseded read of the window.
                        return self.page_done(job.task);
                    }
                }
                // Without a (trusted) TotalCount, page until a short page, at most up to
                // the cap (20 pages).
                _ => self.maybe_next_page(&job, page.records.len()),
            }
        }
        if self.runs[job.stream].phase == Phase::Failed {
            return Ok(());
        }
        if spec.fan_out.is_some() {
            self.fan_out(&job, &page)?;
        } else if !spec.parts.is_empty() {
            self.merge_part(&job, &page, at)?;
        } else {
            self.emit_page(&job, &page, at)?;
        }
        self.page_done(job.task)
    }

    /// The first page of a query holds `min(count, TotalCount)` rows. One that holds fewer
    /// shows a `TotalCount` that overstates the rows (a constant or inflated count): the page
    /// is all there is, and no window is split or paged on the strength of that count.
    fn trusted_total(
        &mut self,
        job: &InFlight,
        total: Option<u64>,
        got: usize,
    ) -> Result<Option<u64>, Error> {
        let (Some(t), Some(count)) = (total, job.count) else {
            return Ok(total);
        };
        let got = got as u64;
        if got > t {
            // More rows than counted: the count cannot be used to schedule pages, so the
            // window is paged until a short page (at most up to the cap).
            self.count_contradiction(
                job,
                &format!(
                "Postmark reported TotalCount {t} for a query{} whose first page holds {got} rows; \
                 the count understates its own page, so pages are read until a short one",
                self.describe_task(job.task)
            ),
            )?;
            return Ok(None);
        }
        if got >= t.min(u64::from(count)) {
            return Ok(total);
        }
        let when = self.describe_task(job.task);
        self.count_contradiction(
            job,
            &format!(
                "Postmark reported TotalCount {t} for a query{when} whose first page holds only \
                 {got} rows; the count overstates its own page, so the page is taken as all there is"
            ),
        )?;
        Ok(Some(got))
    }

    /// Counts a first page whose `TotalCount` contradicts it; warns on the first.
    fn count_contradiction(&mut self, job: &InFlight, msg: &str) -> Result<(), Error> {
        let run = &mut self.runs[job.stream];
        run.overstated_counts += 1;
        if run.overstated_counts == 1 {
            let name = run.name();
            self.out.log(
                Level::Warn,
                &format!(
                    "{name}: {msg} (further such answers are counted in the stream's final line)"
                ),
            )?;
        }
        Ok(())
    }

    /// A first page counting more rows than one query reaches, none of which lies near its
    /// window: the server ignored `fromdate`/`todate`. Splitting cannot help (every piece
    /// would answer the same), so the stream fails instead of splitting without end.
    fn ignores_date_filter(
        &mut self,
        job: &InFlight,
        records: &[Record],
        total: u64,
    ) -> Result<bool, Error> {
        let spec = self.runs[job.stream].selected.spec;
        let (Some(field), Some(window)) = (
            spec.cursor_field(),
            self.tasks.get(&job.task).and_then(|t| t.window),
        ) else {
            return Ok(false);
        };
        let (rows, near) = rows_near_window(records, field, window, TimeDelta::hours(27));
        if rows == 0 || near > 0 {
            return Ok(false);
        }
        let when = self.describe_task(job.task);
        let err = Error::UnexpectedResponse {
            context: format!("reading '{}'", spec.name),
            detail: format!(
                "Postmark ignored the date filter: a query{when} counts {total} rows, and none of \
                 the {rows} rows of its first page lies within a day of that window; splitting \
                 the window cannot reduce what it returns, so this stream stops"
            ),
        };
        self.fail_stream(job.stream, err)?;
        Ok(true)
    }

    /// `" in [start, end) (messagestream=x, status=y)"` for messages about a task.
    pub(super) fn describe_task(&self, task_id: TaskId) -> String {
        let Some(task) = self.tasks.get(&task_id) else {
            return String::new();
        };
        let run = &self.runs[task.stream];
        let mut scope: Vec<String> = run
            .partitions
            .get(task.partition)
            .cloned()
            .flatten()
            .into_iter()
            .map(|p| format!("messagestream={p}"))
            .collect();
        scope.extend(task.filters.iter().map(|(k, v)| format!("{k}={v}")));
        let when = task
            .window
            .map(|(s, e)| format!(" for [{}, {})", fmt_time(s), fmt_time(e)))
            .unwrap_or_default();
        if scope.is_empty() {
            when
        } else {
            format!("{when} ({})", scope.join(", "))
        }
    }

    /// Queues the pages of a task up to `total` rows (or the cap) not queued yet.
    pub(super) fn schedule_pages(&mut self, task_id: TaskId, total: u64) {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let pages: Vec<(u32, u32)> = page_offsets(task.scheduled_to, total).collect();
        task.pages_pending += pages.len();
        if let Some(&(o, c)) = pages.last() {
            task.scheduled_to = o + c;
        }
        for (o, c) in pages {
            self.enqueue(task_id, o, Some(c));
        }
    }

    /// A later page of a closed window should agree with the count its read started from.
    /// If Postmark indexed rows late or rows vanished, rows may have shifted across pages
    /// already read, so the whole window is read again (split if it no longer fits under
    /// the cap); keys already seen are not emitted again. A window that keeps changing past
    /// its [`request_budget`] fails its stream.
    pub(super) fn check_page(&mut self, job: &InFlight, total: u64) -> Result<Verdict, Error> {
        let Some(task) = self.tasks.get_mut(&job.task) else {
            return Ok(Verdict::Fine);
        };
        let name = self.runs[job.stream].name();
        let Some(before) = task.known_total.filter(|b| total != *b) else {
            return Ok(Verdict::Fine);
        };
        task.known_total = Some(total);
        let reads = task.generation + 1;
        let spent = task.requests;
        let budget = request_budget(before.max(total));
        let cap = u64::from(OFFSET_CAP);
        let how = if total > before { "grew" } else { "shrank" };
        let cause = if total > before {
            "Postmark indexed rows late"
        } else {
            "rows vanished"
        };
        if spent >= budget {
            let when = self.describe_task(job.task);
            let err = Error::Unsettled {
                stream: name.to_string(),
                detail: format!(
                    "a window{when} kept changing over {reads} reads and {spent} page requests \
                     (its TotalCount last went from {before} to {total}: {cause}); a window of \
                     that size gets at most {budget} page requests"
                ),
            };
            self.fail_stream(job.stream, err)?;
            return Ok(Verdict::Reread);
        }
        if total >= cap && self.split(job.task, Some(total), None) {
            self.supersede_pages(job.task);
            self.out.log(
                Level::Warn,
                &format!(
                    "{name}: a window {how} from {before} to {total} rows while it was read \
                     ({cause}), past what one query reaches; reading it again in smaller \
                     windows; rows already emitted from it are not emitted again"
                ),
            )?;
            return Ok(Verdict::Reread);
        }
        // Rows past the cap that were already reported as unreachable.
        let reported = before.max(cap);
        if total > reported {
            self.unreachable(job.task, total - reported)?;
        }
        self.supersede_pages(job.task);
        self.out.log(
            Level::Warn,
            &format!(
                "{name}: a window {how} from {before} to {total} rows while it was read \
                 ({cause}); reading the whole window again (read {}, {spent} of at most \
                 {budget} page requests spent); rows already emitted from it are not emitted \
                 again",
                reads + 1
            ),
        )?;
        self.schedule_pages(job.task, total);
        Ok(Verdict::Reread)
    }

    /// Starts a new read of a task's window: pages queued or in flight for the old one are
    /// dropped when they come up.
    fn supersede_pages(&mut self, task_id: TaskId) {
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.generation += 1;
            task.scheduled_to = 0;
            task.keyless = 0;
        }
    }

    pub(super) fn maybe_next_page(&mut self, job: &InFlight, got: usize) {
        let Some(count) = job.count else { return };
        if got as u32 >= count {
            if let Some(next) = windows::next_count(job.offset + count) {
                if let Some(task) = self.tasks.get_mut(&job.task) {
                    task.pages_pending += 1;
                }
                self.enqueue(job.task, job.offset + count, Some(next));
            }
        }
    }

    pub(super) fn emit_page(
        &mut self,
        job: &InFlight,
        page: &Page,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some(task) = self.tasks.get(&job.task) else {
            return Ok(());
        };
        let window = match spec.cursor {
            // A newest-first reader picks its records itself.
            Cursor::Field(_) if task.reader.is_none() && task.fallback.is_none() => task.window,
            _ => None,
        };
        let first_read = task.generation == 0;
        let inherited = task.inherited.clone();
        let partition = match spec.partitioning {
            Partitioning::None => None,
            _ => self.runs[job.stream]
                .partitions
                .get(task.partition)
                .cloned()
                .flatten(),
        };
        // Fields added from the request: the message stream queried, the envelope's own.
        let partition_json = partition
            .as_deref()
            .map(|p| serde_json::Value::from(p).to_string());
        // Whole-account mode: the server read, as `ServerID`.
        let server_json = self.runs[job.stream]
            .server
            .as_ref()
            .map(|s| s.id_json.clone());
        let mut extra: Vec<Extra> = Vec::with_capacity(spec.added.len() + page.carried.len() + 1);
        if let Some(id) = &server_json {
            extra.push((Cow::Borrowed(crate::streams::SERVER_ID), id));
        }
        for added in spec.added {
            match (added, &partition_json) {
                (Added::Partition(field), Some(p)) => extra.push((Cow::Borrowed(*field), p)),
                (Added::Partition(_), None) => {}
            }
        }
        extra.extend(page.carried.iter().map(|(k, v)| (k.clone(), v.get())));
        // Inbound records carry no receive time: each gets its window's end.
        let stamp = match task.window {
            Some((_, end)) if spec.stamps_received_before() => Some(received_before(end)),
            _ => None,
        };
        if let Some(stamp) = &stamp {
            extra.push((Cow::Borrowed(crate::streams::RECEIVED_BEFORE), stamp));
        }
        let records = page.all();
        let query = Query {
            window,
            partition: partition.as_deref().map(|p| (PARTITION_FIELD, p)),
            extra: &extra,
        };
        self.out.begin_page(at);
        let run = &mut self.runs[job.stream];
        let name = spec.name;
        let out = &mut *self.out;
        let tasks = &mut self.tasks;
        // Rows this task's own reads returned before (not rows an ancestor emitted).
        let mut own_repeats = 0u64;
        let mut is_new = |key: &str| -> bool {
            let Some(task) = tasks.get_mut(&job.task) else {
                return false;
            };
            let fp = fingerprint(key);
            if !task.seen.insert(fp) {
                own_repeats += 1;
                return false;
            }
            !inherited
                .iter()
                .any(|a| tasks.get(a).is_some_and(|t| t.seen.contains(&fp)))
        };
        let tally = run
            .shaper
            .shape_checked(&records, query, &mut self.buf, &mut is_new, &mut |line| {
                out.record(name, line)
            })
            .map_err(|e| match e {
                ShapeError::Emit(e) => e,
                ShapeError::Malformed(detail) => Error::UnexpectedResponse {
                    context: format!("reading '{name}'"),
                    detail,
                },
            });
        let tally = match tally {
            Ok(t) => t,
            Err(e @ Error::Stdout(_)) => return Err(e),
            Err(e) => return self.fail_stream(job.stream, e),
        };
        let run = &mut self.runs[job.stream];
        run.records += tally.emitted;
        run.records_since_state += tally.emitted;
        run.pages += 1;
        run.keyless += tally.keyless;
        run.repeated += tally.repeated;
        run.other_partition += tally.other_partition;
        run.days_outside += tally.days_outside;
        if let Some(task) = self.tasks.get_mut(&job.task) {
            task.keyless += tally.keyless;
        }
        if tally.keyless > 0 && !run.warned_keyless {
            run.warned_keyless = true;
            let msg = format!(
                "{name}: Postmark returned records without their primary key '{}'; they are \
                 not emitted (a destination cannot deduplicate them); the stream's final line \
                 counts them",
                spec.primary_key.join(", ")
            );
            self.out.log(Level::Warn, &msg)?;
        }
        if tally.other_partition > 0 && !run.warned_partition {
            run.warned_partition = true;
            let msg = format!(
                "{name}: Postmark returned records of other message streams for a query \
                 filtered on messagestream={}: it ignored the filter; they are not emitted \
                 here (each is emitted by its own message stream's query), so nothing is \
                 duplicated; the stream's final line counts them",
                partition.as_deref().unwrap_or("")
            );
            self.out.log(Level::Warn, &msg)?;
        }
        let page_rows = records.len() as u64 - tally.keyless;
        if first_read && job.offset > 0 && page_rows > 0 && own_repeats == page_rows {
            // A later page made only of rows the first page already had, while the count
            // held still: the server answers every offset with the same rows.
            if let Some(task) = self.tasks.get_mut(&job.task) {
                task.offset_ignored = true;
            }
            let run = &mut self.runs[job.stream];
            if !run.warned_offset {
                run.warned_offset = true;
                let msg = format!(
                    "{name}: the page at offset {} repeated rows already read from the same \
                     query: Postmark ignored 'offset'; the repeats are not emitted, and rows \
                     that no page returned are reported when the window completes",
                    job.offset
                );
                self.out.log(Level::Warn, &msg)?;
            }
        }
        let run = &mut self.runs[job.stream];
        if tally.days_outside > 0 && !run.warned_date_filter {
            run.warned_date_filter = true;
            run.warned_zone = true;
            let msg = format!(
                "{name}: Postmark returned {} records more than a day outside the requested \
                 window: it ignored the date filter (fromdate/todate); they are not emitted \
                 here (each is emitted by the window it belongs to)",
                tally.days_outside
            );
            self.out.log(Level::Warn, &msg)?;
        } else if tally.far_outside > 0 && !run.warned_zone {
            run.warned_zone = true;
            let msg = format!(
                "{name}: Postmark returned {} records more than a minute outside the requested window; \
                 its date filter is not reading US Eastern time for this account, so records may be missed. \
                 Please report this with your account's time-zone setting",
                tally.far_outside
            );
            self.out.log(Level::Warn, &msg)?;
        }
        if tally.no_cursor > 0 && !run.warned_cursor {
            run.warned_cursor = true;
            let msg = format!(
                "{name}: {} records have no readable cursor field; they are emitted as they are",
                tally.no_cursor
            );
            self.out.log(Level::Warn, &msg)?;
        }
        self.out.flush()
    }

    /// A completed window should have returned as many distinct rows as its count promised
    /// (up to the cap). Fewer means the server ignored `offset` or its count overstates the
    /// rows: reported, counted, never silent.
    pub(super) fn check_complete(&mut self, task: &super::Task) -> Result<(), Error> {
        let Some(total) = task.known_total else {
            return Ok(());
        };
        // A fan-out's records are not its listing's rows (a message has any number of
        // events), so its listing's count says nothing about them.
        if task.split || self.runs[task.stream].selected.spec.fan_out.is_some() {
            return Ok(());
        }
        let expected = total.min(u64::from(OFFSET_CAP));
        let got = task.seen.len() as u64 + task.keyless;
        if got >= expected || self.runs[task.stream].phase != Phase::Running {
            return Ok(());
        }
        let missing = expected - got;
        let run = &mut self.runs[task.stream];
        run.unreturned_rows += missing;
        let name = run.name();
        let cause = if task.offset_ignored {
            "Postmark ignored 'offset', so later pages repeated earlier rows"
        } else {
            "Postmark's TotalCount overstates the rows its pages hold"
        };
        let when = task
            .window
            .map(|(s, e)| format!(" for [{}, {})", fmt_time(s), fmt_time(e)))
            .unwrap_or_default();
        self.out.log(
            Level::Warn,
            &format!(
                "{name}: a query{when} counted {expected} rows but its pages returned {got} \
                 distinct rows: {missing} rows were never returned ({cause}); they cannot be \
                 synced until Postmark answers consistently"
            ),
        )
    }
}

/// The JSON value of `ReceivedBefore`, the field added to inbound records: `"…Z"`.
fn received_before(end: DateTime<Utc>) -> String {
    serde_json::Value::from(fmt_time(end)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_keys_apart_and_repeat_for_the_same_key() {
        let mut set = KeySet::default();
        for i in 0..10_000 {
            assert!(set.insert(fingerprint(&format!("\"{i:08}\""))));
        }
        assert!(!set.insert(fingerprint("\"00000042\"")));
        assert_ne!(fingerprint("\"a\""), fingerprint("\"b\""));
        assert_eq!(fingerprint("123"), fingerprint("123"));
    }

    #[test]
    fn a_window_of_n_pages_gets_n_times_2n_plus_8_page_requests() {
        assert_eq!(request_budget(0), 10);
        assert_eq!(request_budget(500), 10);
        assert_eq!(request_budget(1_216), 42);
        assert_eq!(request_budget(10_000), 960);
        assert_eq!(
            request_budget(1_000_000),
            960,
            "bounded by the cap, not the count"
        );
    }
}
