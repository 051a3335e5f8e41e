//! Stream lifecycle on the protocol: start (status, SCHEMA), checkpoints and final STATE,
//! failure (TRACE ERROR, INCOMPLETE), and periodic progress lines.

use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};

use super::{Engine, Phase};
use crate::error::Error;
use crate::protocol::{Level, Protocol, StreamStatus};
use crate::sync::stream::StreamRun;

impl<W: Write> Engine<'_, '_, W> {
    pub(super) fn checkpoint(&mut self, stream: usize) -> Result<(), Error> {
        if let Some(cursor) = self.runs[stream].checkpoint() {
            self.emit_state(stream, cursor.to_value())?;
        }
        Ok(())
    }

    pub(super) fn emit_state(&mut self, stream: usize, value: Value) -> Result<(), Error> {
        let run = &mut self.runs[stream];
        let name = run.name();
        let count = std::mem::take(&mut run.records_since_state);
        match self.out.protocol() {
            Protocol::Airbyte => self.out.airbyte_state(name, &value, count),
            Protocol::Singer => {
                if run.range.is_some() {
                    self.bookmarks.insert(name.to_string(), value);
                }
                let bookmarks: serde_json::Map<String, Value> = self
                    .bookmarks
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.out.singer_state(&json!({ "bookmarks": bookmarks }))
            }
        }
    }

    pub(super) fn start_stream(&mut self, idx: usize) -> Result<(), Error> {
        let run = &mut self.runs[idx];
        run.phase = Phase::Running;
        run.started = Some(Instant::now());
        let name = run.name();
        let schema = run.selected.schema();
        let spec = run.selected.spec;
        let line = run.describe_start();
        self.out.log(Level::Info, &line)?;
        self.out.stream_status(name, StreamStatus::Started)?;
        self.out.stream_status(name, StreamStatus::Running)?;
        if !run.selected.incremental {
            // A full-table sync is a new table version; it is activated when it completes.
            self.out.set_version(name, crate::protocol::now_ms());
        }
        self.out
            .schema(name, &schema, spec.primary_key, spec.replication_key())
    }

    pub(super) fn finish_stream(&mut self, idx: usize) -> Result<(), Error> {
        let value = self.runs[idx].final_state();
        // Rows of older table versions go before the state that covers this sync.
        self.out.activate_version(self.runs[idx].name())?;
        self.emit_state(idx, value)?;
        let run = &mut self.runs[idx];
        run.phase = Phase::Done;
        run.took = Some(run.elapsed());
        let (name, line, unmetered) = (run.name(), run.describe_end(), run.take_unmetered());
        let level = if run.skipped > 0 {
            Level::Warn
        } else {
            Level::Info
        };
        self.out.metric_counter(name, unmetered);
        self.out.log(level, &line)?;
        self.out.stream_status(name, StreamStatus::Complete)?;
        self.out.flush()
    }

    /// Reports a stream's failure on the protocol; other streams go on, the process fails.
    pub(super) fn fail_stream(&mut self, idx: usize, error: Error) -> Result<(), Error> {
        if let Error::Stdout(_) = error {
            return Err(error);
        }
        let all = matches!(error, Error::Unauthorized { .. });
        let targets: Vec<usize> = if all {
            (0..self.runs.len())
                .filter(|i| self.runs[*i].phase != Phase::Done)
                .collect()
        } else {
            vec![idx]
        };
        for i in targets {
            if self.runs[i].phase == Phase::Failed {
                continue;
            }
            let name = self.runs[i].name();
            if self.runs[i].phase == Phase::NotStarted {
                self.out.stream_status(name, StreamStatus::Started)?;
            }
            self.runs[i].phase = Phase::Failed;
            self.runs[i].took = Some(self.runs[i].elapsed());
            if i == idx || !all {
                self.out.trace_error(&error, Some(name))?;
            }
            self.out.stream_status(name, StreamStatus::Incomplete)?;
            self.tasks.retain(|_, t| t.stream != i);
        }
        self.out.flush()?;
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
        Ok(())
    }

    pub(super) fn maybe_log_progress(&mut self) -> Result<(), Error> {
        if self.last_progress.elapsed() < self.plan.progress_every {
            return Ok(());
        }
        self.last_progress = Instant::now();
        let lines: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.phase == Phase::Running)
            .map(StreamRun::describe_progress)
            .collect();
        for l in lines {
            self.out.log(Level::Info, &l)?;
        }
        for run in self.runs.iter_mut().filter(|r| r.phase == Phase::Running) {
            let n = run.take_unmetered();
            self.out.metric_counter(run.name(), n);
        }
        let line = self.describe_overall();
        self.out.log(Level::Info, &line)?;
        self.out.flush()
    }

    /// "all streams: N records, P% done, ETA ...": the share is each stream's share weighted
    /// by the rows it expects (its `TotalCount`s), or equally while none is known.
    fn describe_overall(&self) -> String {
        let records: u64 = self.runs.iter().map(|r| r.records).sum();
        let weight = |r: &StreamRun| (r.row_estimate.max(r.records) as f64).max(1.0);
        let total: f64 = self.runs.iter().map(weight).sum();
        let share = if total > 0.0 {
            self.runs
                .iter()
                .map(|r| r.share_done() * weight(r))
                .sum::<f64>()
                / total
        } else {
            0.0
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        format!(
            "all streams: {records} records, {:.0}% done, {}, {elapsed:.1} s",
            share * 100.0,
            crate::sync::progress::eta(share, elapsed)
        )
    }

    /// The last log line: a table of every stream (records, requests, time, warnings).
    pub(super) fn log_summary(&mut self) -> Result<(), Error> {
        let rows: Vec<(String, u64, u64, f64, u64, &str)> = self
            .runs
            .iter()
            .map(|r| {
                let result = match r.phase {
                    Phase::Done => "complete",
                    Phase::Failed => "FAILED",
                    _ => "not run",
                };
                let warnings = self.out.warnings(Some(r.name()));
                let name = r.name().to_string();
                (name, r.records, r.requests, r.elapsed(), warnings, result)
            })
            .collect();
        let table = crate::sync::progress::summary_table(&rows, self.out.warnings(None));
        self.out.log(Level::Info, &table)?;
        self.out.flush()
    }
}
