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
        self.out
            .schema(name, &schema, spec.primary_key, spec.cursor_field())
    }

    pub(super) fn finish_stream(&mut self, idx: usize) -> Result<(), Error> {
        let value = self.runs[idx].final_state();
        self.emit_state(idx, value)?;
        let run = &mut self.runs[idx];
        run.phase = Phase::Done;
        let (name, line) = (run.name(), run.describe_end());
        let level = if run.skipped > 0 {
            Level::Warn
        } else {
            Level::Info
        };
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
        self.out.flush()
    }
}
