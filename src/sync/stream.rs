//! Per-stream bookkeeping during a read: counters, the progress frontier, and the STATE
//! value that goes with it.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::progress::Progress;
use super::windows::Window;
use crate::catalog::SelectedStream;
use crate::record::Shaper;
use crate::state::StreamCursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NotStarted,
    Running,
    Done,
    Failed,
}

/// Whole-account mode: the server a run reads.
#[derive(Debug, Clone)]
pub struct RunServer {
    /// Index of the server's token in the client ([`crate::client::Request::server`]).
    pub slot: usize,
    pub id: u64,
    /// `server 1234567 "Acme Production"`.
    pub label: String,
    /// The ID as raw JSON, written into every record as `ServerID`.
    pub id_json: String,
}

/// One stream of one server (whole-account mode), or one stream.
pub struct StreamRun {
    pub selected: SelectedStream,
    /// Whole-account mode: the server this run reads with its own token.
    pub server: Option<RunServer>,
    /// Index of the output stream this run belongs to (runs of one stream share its
    /// statuses and its STATE).
    pub group: usize,
    /// The cursor this run's server continues from (as read from the state).
    pub input_cursor: Option<StreamCursor>,
    /// The run's final state value, once it completed.
    pub final_value: Option<Value>,
    pub shaper: Shaper,
    /// `messagestream` values to query; `[None]` when the stream is not partitioned.
    pub partitions: Vec<Option<String>>,
    /// The time range read (time-based streams).
    pub range: Option<Window>,
    pub progress: Option<Progress>,
    /// The last `synced_until` put in a STATE.
    pub last_state_cursor: Option<DateTime<Utc>>,
    pub phase: Phase,
    pub open_tasks: usize,
    pub records: u64,
    pub records_since_state: u64,
    pub pages: u64,
    pub requests: u64,
    pub windows_done: u64,
    pub unreachable_rows: u64,
    /// Records skipped and warned about (per-record requests Postmark could not answer).
    pub skipped: u64,
    /// Days of merged endpoints per task, until every part has answered.
    pub merging: std::collections::HashMap<u64, super::engine::MergeBuf>,
    pub started: Option<Instant>,
    /// Seconds the stream took, once it finished or failed.
    pub took: Option<f64>,
    /// Records already reported in a Singer `record_count` counter.
    pub records_metered: u64,
    pub warned_zone: bool,
    pub warned_cursor: bool,
    pub warned_keyless: bool,
    pub warned_partition: bool,
    pub warned_offset: bool,
    pub warned_date_filter: bool,
    /// Rows not emitted: without a primary key, already emitted by their window, of
    /// another message stream than the one filtered on, or a day or more outside the window.
    pub keyless: u64,
    pub repeated: u64,
    pub other_partition: u64,
    pub days_outside: u64,
    /// First pages whose `TotalCount` contradicted the rows they held.
    pub overstated_counts: u64,
    /// Rows a count promised that no page returned.
    pub unreturned_rows: u64,
    /// Root windows whose first page has not been seen yet, and the rows they reported.
    pub roots_unprobed: usize,
    pub row_estimate: u64,
}

impl StreamRun {
    pub fn new(selected: SelectedStream, partitions: Vec<Option<String>>) -> StreamRun {
        let shaper = Shaper::for_stream(selected.spec, selected.excluded_fields.clone());
        StreamRun {
            selected,
            server: None,
            group: 0,
            input_cursor: None,
            final_value: None,
            shaper,
            partitions,
            range: None,
            progress: None,
            last_state_cursor: None,
            phase: Phase::NotStarted,
            open_tasks: 0,
            records: 0,
            records_since_state: 0,
            pages: 0,
            requests: 0,
            windows_done: 0,
            unreachable_rows: 0,
            skipped: 0,
            merging: std::collections::HashMap::new(),
            started: None,
            took: None,
            records_metered: 0,
            warned_zone: false,
            warned_cursor: false,
            warned_keyless: false,
            warned_partition: false,
            warned_offset: false,
            warned_date_filter: false,
            keyless: 0,
            repeated: 0,
            other_partition: 0,
            days_outside: 0,
            overstated_counts: 0,
            unreturned_rows: 0,
            roots_unprobed: 0,
            row_estimate: 0,
        }
    }

    pub fn name(&self) -> &'static str {
        self.selected.spec.name
    }

    /// The stream's name, with its server in whole-account mode, for logs.
    pub fn label(&self) -> String {
        match &self.server {
            Some(s) => format!("{} of {}", self.name(), s.label),
            None => self.name().to_string(),
        }
    }

    /// The cursor this read started from (incremental only).
    pub fn prev_cursor(&self) -> Option<DateTime<Utc>> {
        self.input_cursor.map(|c| c.synced_until)
    }

    /// This run's entry in its stream's whole-account state: its final value once complete,
    /// else its last checkpoint, else the cursor it started from.
    pub fn state_entry(&self) -> Option<Value> {
        if self.phase == Phase::Done {
            return self.final_value.clone();
        }
        let checkpoint = self.last_state_cursor.map(|c| StreamCursor {
            synced_until: c,
            in_progress: true,
        });
        checkpoint.or(self.input_cursor).map(StreamCursor::to_value)
    }

    /// The checkpoint to emit now, if the frontier moved past the last one.
    ///
    /// While the lookback is being re-read the frontier sits behind the previous cursor and
    /// no checkpoint is taken: a checkpoint resumes without lookback, so taking one there
    /// would let a crash skip the rest of the re-read. A checkpoint therefore never moves the
    /// cursor backwards either.
    pub fn checkpoint(&mut self) -> Option<StreamCursor> {
        let cursor = self.progress.as_ref()?.frontier();
        let (start, end) = self.range?;
        let floor = self.prev_cursor().unwrap_or(start).max(start);
        // Reaching the end is the final state's job, not a checkpoint's.
        if cursor <= floor || cursor >= end || Some(cursor) <= self.last_state_cursor {
            return None;
        }
        self.last_state_cursor = Some(cursor);
        Some(StreamCursor {
            synced_until: cursor,
            in_progress: true,
        })
    }

    /// The state value at the end of a complete stream.
    pub fn final_state(&mut self) -> Value {
        match self.range {
            Some((start, end)) => {
                let mut until = end.max(start);
                if let Some(p) = self.prev_cursor() {
                    until = until.max(p);
                }
                self.last_state_cursor = Some(until);
                StreamCursor {
                    synced_until: until,
                    in_progress: false,
                }
                .to_value()
            }
            None => json!({}),
        }
    }

    pub fn describe_start(&self) -> String {
        let mode = if self.selected.incremental {
            "incremental"
        } else {
            "full refresh"
        };
        let parts: Vec<&str> = self
            .partitions
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let over = if parts.is_empty() {
            String::new()
        } else {
            format!(" over message streams {}", parts.join(", "))
        };
        match self.range {
            Some((s, e)) => format!(
                "{}: starting {mode} sync of [{}, {}){over}",
                self.label(),
                fmt_time(s),
                fmt_time(e)
            ),
            None => format!("{}: starting {mode} sync{over}", self.label()),
        }
    }

    /// The share of the planned work done: of the time range for time-based streams, all or
    /// nothing for the others.
    pub fn share_done(&self) -> f64 {
        match (&self.progress, self.range) {
            (Some(p), Some((_, end))) => p.fraction_done(end),
            _ if self.phase == Phase::Done => 1.0,
            _ => 0.0,
        }
    }

    /// Records not yet reported in a `record_count` counter (and marks them reported).
    pub fn take_unmetered(&mut self) -> u64 {
        let n = self.records - self.records_metered;
        self.records_metered = self.records;
        n
    }

    pub fn describe_progress(&self) -> String {
        let until = self
            .progress
            .as_ref()
            .map(|p| format!(", complete up to {}", fmt_time(p.frontier())))
            .unwrap_or_default();
        let share = self.share_done();
        format!(
            "{}: {} records, {:.0}% of the range done, {}; {} pages, {} windows done{until}, {:.1} s",
            self.label(),
            self.records,
            share * 100.0,
            super::progress::eta(share, self.elapsed()),
            self.pages,
            self.windows_done,
            self.elapsed()
        )
    }

    pub fn describe_end(&self) -> String {
        let until = self
            .last_state_cursor
            .map(|c| format!("; synced until {}", fmt_time(c)))
            .unwrap_or_default();
        format!(
            "{}: finished: {} records, {} pages, {} requests, {} windows in {:.1} s{until}{}",
            self.label(),
            self.records,
            self.pages,
            self.requests,
            self.windows_done,
            self.elapsed(),
            self.describe_skipped()
        )
    }

    /// `"; not emitted: 3 without primary key, ..."`, or nothing when every row was emitted.
    pub fn describe_skipped(&self) -> String {
        let parts: Vec<String> = [
            (self.keyless, "without their primary key"),
            (
                self.skipped,
                "listed records whose own request Postmark could not answer",
            ),
            (
                self.repeated,
                "already emitted by their window (re-reads, repeated pages)",
            ),
            (
                self.other_partition,
                "of another message stream than the one filtered on",
            ),
            (self.days_outside, "more than a day outside their window"),
            (
                self.unreturned_rows,
                "counted by Postmark but never returned",
            ),
            (
                self.overstated_counts,
                "first pages whose TotalCount contradicted them",
            ),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("; not emitted or not returned: {}", parts.join(", "))
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.took.unwrap_or_else(|| {
            self.started
                .map(|s| s.elapsed().as_secs_f64())
                .unwrap_or(0.0)
        })
    }
}

pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
