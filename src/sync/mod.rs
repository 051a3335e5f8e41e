//! Reading: the plan a read starts from, and the engine that carries it out.
//!
//! ```text
//! ReadPlan (validated config, selected streams, state, now)
//!    │
//!    ▼
//! engine::run ── message-stream list ──► root windows per stream × partition
//!    │  main thread: task tree, priorities, emitter (sole owner of stdout)
//!    │  worker threads (max_concurrency): HTTP GET with retries and the shared limiter
//!    ▼
//! pages ──► record::Shaper ──► RECORD lines;  completed windows ──► Progress ──► STATE
//! ```
//!
//! Exactly-once comes from partitioning plus one bounded key set per window: message
//! streams are disjoint, windows are half-open `[start, end)` with out-of-window records
//! dropped, filter splits use disjoint values, and a window remembers the keys it returned
//! (at most 10,000, freed when it completes) so that re-reading it after it changed emits
//! nothing twice. No key is remembered across windows.

mod engine;
pub mod events;
pub mod progress;
mod stream;
pub mod windows;

use chrono::{DateTime, Duration, Utc};

use crate::catalog::SelectedStream;
use crate::config::{Config, DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS};
use crate::eastern;
use crate::error::Error;
use crate::state::InputState;
use crate::streams::Cursor;

pub use engine::run;

/// Everything a read needs, validated.
#[derive(Debug)]
pub struct ReadPlan {
    pub config: Config,
    pub streams: Vec<SelectedStream>,
    /// Configured streams this connector does not know (reported INCOMPLETE, not fatal).
    pub unknown_streams: Vec<String>,
    pub state: InputState,
    pub now: DateTime<Utc>,
    /// Base delay of retry backoff (shortened by tests through a hidden flag).
    pub retry_base: std::time::Duration,
    /// How often running streams log their progress.
    pub progress_every: std::time::Duration,
    /// Whole-account mode (an account token): the selected servers of the account, each
    /// read with its own token; empty with only a server token.
    pub servers: Vec<crate::account::Server>,
}

/// What a finished read reports besides its output: a stream failure that has already been
/// reported on the protocol (TRACE ERROR and INCOMPLETE) and must still fail the process.
#[derive(Debug, Default)]
pub struct Outcome {
    pub failed: Option<Error>,
}

impl ReadPlan {
    /// The end of the newest window: a short lag before the sync's start, in whole seconds,
    /// never inside the repeated autumn hour.
    pub fn range_end(&self) -> DateTime<Utc> {
        eastern::snap_boundary(windows::floor_second(self.now - self.config.window_lag))
    }

    /// Whole-account mode: server streams are read once per selected server.
    pub fn whole_account(&self) -> bool {
        self.config.account_token.is_some()
    }

    /// The saved cursor a stream (of one server, in whole-account mode) continues from,
    /// if the stream is read incrementally.
    pub fn cursor(
        &self,
        selected: &SelectedStream,
        server: Option<u64>,
    ) -> Option<&crate::state::StreamCursor> {
        if !selected.incremental {
            return None;
        }
        let name = selected.spec.name;
        match server {
            None => self.state.cursors.get(name),
            Some(id) => self.state.server_cursors.get(name).and_then(|m| m.get(&id)),
        }
    }

    /// Where a time-based stream (of one server, in whole-account mode) starts reading.
    pub fn range_start(&self, selected: &SelectedStream, server: Option<u64>) -> DateTime<Utc> {
        let cursor = self.cursor(selected, server);
        if let Cursor::Day(_) = selected.spec.cursor {
            return self.day_range_start(cursor);
        }
        // Nothing older than the longest retention exists for messages and events.
        let oldest = self.now - Duration::days(MAX_RETENTION_DAYS);
        eastern::snap_boundary(windows::floor_second(
            self.time_range_start(cursor).max(oldest),
        ))
    }

    /// Statistics: from `start_date` (however old; default 365 days) on a first sync; from
    /// `stats_lookback_days` before the saved cursor afterwards.
    fn day_range_start(&self, cursor: Option<&crate::state::StreamCursor>) -> DateTime<Utc> {
        let start = match cursor {
            Some(c) if c.in_progress => c.synced_until,
            Some(c) => c.synced_until - Duration::days(self.config.stats_lookback_days),
            None => self
                .config
                .start_date
                .unwrap_or(self.now - Duration::days(MAX_RETENTION_DAYS)),
        };
        // Whole days: the range starts at the midnight (UTC) of the first day queried.
        start
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(start, |t| t.and_utc())
    }

    fn time_range_start(&self, cursor: Option<&crate::state::StreamCursor>) -> DateTime<Utc> {
        match cursor {
            Some(c) => {
                // A checkpoint from an interrupted run resumes exactly; a completed run's
                // cursor is re-read from `lookback` earlier to pick up changed records.
                let from = if c.in_progress {
                    c.synced_until
                } else {
                    c.synced_until - self.config.lookback
                };
                let floor = self
                    .config
                    .start_date
                    .unwrap_or(self.now - Duration::days(MAX_RETENTION_DAYS));
                from.max(floor)
            }
            None => self
                .config
                .start_date
                .unwrap_or(self.now - Duration::days(DEFAULT_RETENTION_DAYS)),
        }
    }
}
