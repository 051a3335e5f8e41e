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
            let group = self.runs[stream].group;
            let value = match self.runs[stream].server {
                Some(_) => self.servers_state(group),
                None => cursor.to_value(),
            };
            self.emit_state(group, value)?;
        }
        Ok(())
    }

    /// Whole-account state of a stream: each server's entry (final, checkpoint, or the
    /// cursor it started from), and the entries of servers not read this time carried over
    /// unchanged (a server left out or removed keeps its place for later).
    fn servers_state(&self, group: usize) -> Value {
        let mut servers = serde_json::Map::new();
        let name = self.groups[group].name;
        if let Some(saved) = self.plan.state.server_cursors.get(name) {
            for (id, cursor) in saved {
                servers.insert(id.to_string(), cursor.to_value());
            }
        }
        for &i in &self.groups[group].runs {
            let run = &self.runs[i];
            if let (Some(server), Some(entry)) = (&run.server, run.state_entry()) {
                servers.insert(server.id.to_string(), entry);
            }
        }
        json!({ "servers": servers })
    }

    /// A STATE for one output stream; its record count covers all its runs.
    pub(super) fn emit_state(&mut self, group: usize, value: Value) -> Result<(), Error> {
        let mut count = 0;
        let name = self.groups[group].name;
        let mut incremental = false;
        for &i in &self.groups[group].runs {
            let run = &mut self.runs[i];
            count += std::mem::take(&mut run.records_since_state);
            incremental = run.range.is_some();
        }
        match self.out.protocol() {
            Protocol::Airbyte => self.out.airbyte_state(name, &value, count),
            Protocol::Singer => {
                if incremental {
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
        let line = run.describe_start();
        let group = run.group;
        self.out.log(Level::Info, &line)?;
        self.start_group(group)
    }

    /// The stream's opening on the protocol, once for all its runs.
    fn start_group(&mut self, group: usize) -> Result<(), Error> {
        if self.groups[group].started {
            return Ok(());
        }
        self.groups[group].started = true;
        let Some(&first) = self.groups[group].runs.first() else {
            return Ok(());
        };
        self.announce_group(group)?;
        let run = &self.runs[first];
        let name = run.name();
        let schema = run.selected.schema();
        let key = run.selected.key();
        let spec = run.selected.spec;
        let full_table = !run.selected.incremental;
        self.out.stream_status(name, StreamStatus::Running)?;
        if full_table {
            // A full-table sync is a new table version; it is activated when it completes.
            self.out.set_version(name, crate::protocol::now_ms());
        }
        self.out.schema(name, &schema, &key, spec.replication_key())
    }

    /// STARTED, once per stream (a stream that fails before it reads anything goes from
    /// STARTED to INCOMPLETE).
    fn announce_group(&mut self, group: usize) -> Result<(), Error> {
        if self.groups[group].announced {
            return Ok(());
        }
        self.groups[group].announced = true;
        let name = self.groups[group].name;
        self.out.stream_status(name, StreamStatus::Started)
    }

    pub(super) fn finish_stream(&mut self, idx: usize) -> Result<(), Error> {
        let value = self.runs[idx].final_state();
        let run = &mut self.runs[idx];
        run.final_value = Some(value);
        run.phase = Phase::Done;
        run.took = Some(run.elapsed());
        let (name, line, unmetered) = (run.name(), run.describe_end(), run.take_unmetered());
        let level = if run.skipped > 0 {
            Level::Warn
        } else {
            Level::Info
        };
        let group = run.group;
        self.out.metric_counter(name, unmetered);
        self.out.log(level, &line)?;
        self.end_group(group)
    }

    /// When every run of a stream has ended: COMPLETE (table version activated, final
    /// STATE) if all completed; else the servers that completed still advance in the STATE
    /// (whole-account mode) and the stream is INCOMPLETE.
    pub(super) fn end_group(&mut self, group: usize) -> Result<(), Error> {
        let g = &self.groups[group];
        if g.ended
            || g.runs
                .iter()
                .any(|&i| !matches!(self.runs[i].phase, Phase::Done | Phase::Failed))
        {
            return Ok(());
        }
        self.groups[group].ended = true;
        self.announce_group(group)?;
        let runs = self.groups[group].runs.clone();
        let failed = runs.iter().any(|&i| self.runs[i].phase == Phase::Failed);
        // No run at all: whole-account mode with no server to read (the saved entries are
        // carried over).
        let per_server = runs.is_empty() || runs.iter().any(|&i| self.runs[i].server.is_some());
        let name = self.groups[group].name;
        if failed {
            if per_server && runs.iter().any(|&i| self.runs[i].phase == Phase::Done) {
                let value = self.servers_state(group);
                self.emit_state(group, value)?;
            }
            self.out.stream_status(name, StreamStatus::Incomplete)?;
            return self.out.flush();
        }
        // Rows of older table versions go before the state that covers this sync.
        self.out.activate_version(name)?;
        let value = if per_server {
            self.servers_state(group)
        } else {
            runs.first()
                .and_then(|&i| self.runs[i].final_value.clone())
                .unwrap_or_else(|| json!({}))
        };
        self.emit_state(group, value)?;
        self.out.stream_status(name, StreamStatus::Complete)?;
        self.out.flush()
    }

    /// Reports a stream's failure on the protocol; other streams go on, the process fails.
    /// A refused token fails every run that uses it (in whole-account mode: every stream of
    /// that server), and only those.
    pub(super) fn fail_stream(&mut self, idx: usize, error: Error) -> Result<(), Error> {
        if let Error::Stdout(_) = error {
            return Err(error);
        }
        let token_wide = matches!(
            error,
            Error::Unauthorized { .. } | Error::ServerRejected { .. }
        );
        let same_token = |a: &StreamRun, b: &StreamRun| {
            a.selected.spec.token == b.selected.spec.token
                && a.server.as_ref().map(|s| s.slot) == b.server.as_ref().map(|s| s.slot)
        };
        let targets: Vec<usize> = if token_wide {
            (0..self.runs.len())
                .filter(|&i| i == idx || same_token(&self.runs[i], &self.runs[idx]))
                .filter(|&i| self.runs[i].phase != Phase::Done)
                .collect()
        } else {
            vec![idx]
        };
        let mut groups = Vec::new();
        for i in targets {
            if self.runs[i].phase == Phase::Failed {
                continue;
            }
            let group = self.runs[i].group;
            self.announce_group(group)?;
            let run = &mut self.runs[i];
            run.phase = Phase::Failed;
            run.took = Some(run.elapsed());
            let name = run.name();
            // A refused server token of the account fails each of its streams by name; the
            // configured server token is named once (every stream fails with it).
            if i == idx || matches!(error, Error::ServerRejected { .. }) {
                self.out.trace_error(&error, Some(name))?;
            }
            self.tasks.retain(|_, t| t.stream != i);
            groups.push(group);
        }
        for group in groups {
            self.end_group(group)?;
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
                let name = r.label();
                (name, r.records, r.requests, r.elapsed(), warnings, result)
            })
            .collect();
        let table = crate::sync::progress::summary_table(&rows, self.out.warnings(None));
        self.out.log(Level::Info, &table)?;
        self.out.flush()
    }
}
