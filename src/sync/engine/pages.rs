//! Pages: what happens when a page arrives (schedule the rest of its window, notice windows
//! that changed while being read) and how its records reach the output.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::{Engine, InFlight, Phase, TaskId};
use crate::error::Error;
use crate::protocol::Level;
use crate::record::{oldest_cursor, parse_page, ShapeError};
use crate::streams::Cursor;
use crate::sync::windows::{self, page_offsets, Sample, OFFSET_CAP};

/// How often a window that changes while it is read is read again from the start.
const MAX_REREADS: u32 = 3;

/// What a later page says about its window.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Fine,
    /// The window changed and is being read again; this page is superseded.
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
        let page = match parse_page(body, spec.records_key) {
            Ok(p) => p,
            Err(detail) => {
                let context = format!("reading '{}'", spec.name);
                return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
            }
        };
        // The first page of a task (not the first page of a re-read) decides how to read it.
        let first = job.offset == 0
            && job.count.is_some()
            && self
                .tasks
                .get(&job.task)
                .is_some_and(|t| t.known_total.is_none());
        if first {
            let total = page.total;
            self.estimate(job.task, total)?;
            self.report_total_to_parent(job.task, total.unwrap_or(page.records.len() as u64));
            if total.unwrap_or(0) >= u64::from(OFFSET_CAP) {
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
            match page.total {
                // Without a TotalCount, page until a short page.
                None => self.maybe_next_page(&job, page.records.len()),
                Some(total) => {
                    if self.check_page(&job, total, page.records.len())? == Verdict::Reread {
                        // This page belongs to the superseded read of the window.
                        return self.page_done(job.task);
                    }
                }
            }
        }
        if self.runs[job.stream].phase == Phase::Failed {
            return Ok(());
        }
        self.emit_page(&job, &page.records, at)?;
        self.page_done(job.task)
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

    /// A later page of a closed window should agree with its first page. If Postmark indexed
    /// rows late and the window grew, rows already read may have shifted to later offsets and
    /// new ones may sit anywhere, so the whole window is read again (split if it no longer
    /// fits under the cap): nothing is lost, and rows already emitted come again. If a page
    /// is short, rows vanished meanwhile (at the retention edge they expire).
    pub(super) fn check_page(
        &mut self,
        job: &InFlight,
        total: u64,
        got: usize,
    ) -> Result<Verdict, Error> {
        let Some(task) = self.tasks.get_mut(&job.task) else {
            return Ok(Verdict::Fine);
        };
        let name = self.runs[job.stream].name();
        let Some(before) = task.known_total.filter(|b| total > *b) else {
            self.check_short_page(job, total, got)?;
            return Ok(Verdict::Fine);
        };
        task.known_total = Some(total);
        let churning = task.generation >= MAX_REREADS;
        let cap = u64::from(OFFSET_CAP);
        // Rows past the cap that were already reported as unreachable.
        let reported = before.max(cap);
        if total >= cap && self.split(job.task, Some(total), None) {
            self.supersede_pages(job.task);
            self.out.log(
                Level::Warn,
                &format!(
                    "{name}: a window grew from {before} to {total} rows while it was read \
                 (Postmark indexed rows late), past what one query reaches; reading it again \
                 in smaller windows, so rows already emitted from it are emitted a second time"
                ),
            )?;
            return Ok(Verdict::Reread);
        }
        if total > reported {
            self.unreachable(job.task, total - reported)?;
        }
        if churning {
            // A window that keeps changing: read what is new without starting over, so the
            // sync ends; rows that shifted across already-read pages may be missed.
            self.out.log(
                Level::Warn,
                &format!(
                "{name}: a window grew again, from {before} to {total} rows, after {MAX_REREADS} \
                 re-reads; reading only the new offsets, so rows may be missed until the next sync"
            ),
            )?;
            self.schedule_pages(job.task, total);
            return Ok(Verdict::Fine);
        }
        self.supersede_pages(job.task);
        self.out.log(
            Level::Warn,
            &format!(
                "{name}: a window grew from {before} to {total} rows while it was read \
             (Postmark indexed rows late); reading the whole window again, so rows already \
             emitted from it are emitted a second time"
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
        }
    }

    /// A page shorter than its window's count promises: rows vanished meanwhile.
    fn check_short_page(&mut self, job: &InFlight, total: u64, got: usize) -> Result<(), Error> {
        let name = self.runs[job.stream].name();
        let expected = job
            .count
            .map(u64::from)
            .unwrap_or(0)
            .min(total.saturating_sub(u64::from(job.offset)));
        if (got as u64) < expected {
            let msg = format!(
                "{name}: a page at offset {} returned {got} of {expected} expected rows; rows \
                 vanished from Postmark during the sync (at the retention edge they expire), \
                 so neighbouring rows may have shifted past this page",
                job.offset
            );
            self.out.log(Level::Warn, &msg)?;
        }
        Ok(())
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
        records: &[&serde_json::value::RawValue],
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let task_window = self.tasks.get(&job.task).and_then(|t| t.window);
        let (window, stamp) = match self.runs[job.stream].selected.spec.cursor {
            Cursor::Field(_) => (task_window, None),
            // Inbound records carry no receive time: each gets its window's end.
            Cursor::WindowEnd => (None, task_window.map(|w| received_before(w.1))),
            Cursor::None => (None, None),
        };
        self.out.begin_page(at);
        let run = &mut self.runs[job.stream];
        let name = run.selected.spec.name;
        let out = &mut *self.out;
        let tally = run
            .shaper
            .shape_page(records, window, &mut self.buf, &mut |line| match &stamp {
                Some(stamp) => out.record_stamped(name, line, stamp.as_bytes()),
                None => out.record(name, line),
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
        if tally.far_outside > 0 && !run.warned_zone {
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
}

/// `"ReceivedBefore":"…Z"`, the field added to inbound records.
fn received_before(end: DateTime<Utc>) -> String {
    format!(
        "\"{}\":\"{}\"",
        crate::streams::RECEIVED_BEFORE,
        crate::sync::stream::fmt_time(end)
    )
}
