//! Splitting: a window whose `TotalCount` reaches the cap is split in time, or by the next
//! filter for a single second, before anything of it is emitted; what no split can reach is
//! reported.

use std::io::Write;

use super::{Engine, Filters, TaskId};
use crate::error::Error;
use crate::protocol::Level;
use crate::sync::stream::fmt_time;
use crate::sync::windows::{split_time, Sample, Window};

impl<W: Write> Engine<'_, '_, W> {
    /// Splits a task whose window holds too many rows: in time (guided by what its first
    /// page showed), else by the next filter. The caller settles the page that showed it.
    pub(super) fn split(
        &mut self,
        task_id: TaskId,
        total: Option<u64>,
        sample: Option<Sample>,
    ) -> bool {
        let Some(task) = self.tasks.get(&task_id) else {
            return false;
        };
        let (stream, partition, filters, window) = (
            task.stream,
            task.partition,
            task.filters.clone(),
            task.window,
        );
        let spec = self.runs[stream].selected.spec;
        let children: Vec<(Filters, Option<Window>)> =
            match window.and_then(|w| split_time(w, total, sample)) {
                Some(pieces) => pieces
                    .into_iter()
                    .map(|p| (filters.clone(), Some(p)))
                    .collect(),
                None => match spec.split_filters.get(filters.len()) {
                    Some((param, values)) => values
                        .iter()
                        .map(|v| {
                            let mut f = filters.clone();
                            f.push((*param, *v));
                            (f, window)
                        })
                        .collect(),
                    None => return false,
                },
            };
        let by_filter = children
            .first()
            .map(|c| c.0.len() > filters.len())
            .unwrap_or(false);
        if let Some(task) = self.tasks.get_mut(&task_id).filter(|_| by_filter) {
            task.expected_total = total;
        }
        self.hand_over(task_id, stream, partition, children);
        true
    }

    /// Hands a task's rows to child tasks (same stream and partition); the task completes
    /// when they all have. Returns the first child's id.
    pub(super) fn hand_over(
        &mut self,
        task_id: TaskId,
        stream: usize,
        partition: usize,
        children: Vec<(Filters, Option<Window>)>,
    ) -> TaskId {
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.split = true;
            task.children_pending = children.len();
        }
        let first = self.next_task;
        for (f, w) in children {
            self.add_task(stream, partition, f, w, Some(task_id));
        }
        first
    }

    /// Once every root window of a stream has reported its `TotalCount`, tell Airbyte how
    /// many rows to expect.
    pub(super) fn estimate(&mut self, task_id: TaskId, total: Option<u64>) -> Result<(), Error> {
        let Some(task) = self.tasks.get(&task_id).filter(|t| t.parent.is_none()) else {
            return Ok(());
        };
        let run = &mut self.runs[task.stream];
        run.row_estimate += total.unwrap_or(0);
        run.roots_unprobed = run.roots_unprobed.saturating_sub(1);
        let (group, name) = (run.group, run.name());
        // One estimate per stream, once every run of it (every server) has probed its roots.
        let runs = &self.groups[group].runs;
        if runs.iter().all(|&i| self.runs[i].roots_unprobed == 0) {
            let rows = runs.iter().map(|&i| self.runs[i].row_estimate).sum();
            self.out.trace_estimate(name, rows)?;
        }
        Ok(())
    }

    /// The first page of a one-second window showed only rows of the *next* second (queries
    /// include their end second, and results come newest first): that second crowds the
    /// window's own rows past the cap. Such a window is queried again without its end second.
    pub(super) fn tighten(&mut self, task_id: TaskId, sample: Option<Sample>) -> bool {
        let Some(task) = self.tasks.get(&task_id) else {
            return false;
        };
        let spec = self.runs[task.stream].selected.spec;
        let crowded = match (task.window, sample) {
            (Some((start, end)), Some(s)) => (end - start).num_seconds() <= 1 && s.oldest >= end,
            _ => false,
        };
        if task.tight || spec.cursor_field().is_none() || !crowded {
            return false;
        }
        let (stream, partition, filters, window) = (
            task.stream,
            task.partition,
            task.filters.clone(),
            task.window,
        );
        let child = self.hand_over(task_id, stream, partition, vec![(filters, window)]);
        if let Some(c) = self.tasks.get_mut(&child) {
            c.tight = true;
        }
        true
    }

    /// A filter child whose count is unknown makes its parent's sum check meaningless.
    pub(super) fn forget_parent_total(&mut self, task_id: TaskId) {
        let Some(parent) = self.tasks.get(&task_id).and_then(|t| t.parent) else {
            return;
        };
        if let Some(p) = self.tasks.get_mut(&parent) {
            p.expected_total = None;
        }
    }

    pub(super) fn report_total_to_parent(&mut self, task_id: TaskId, total: u64) {
        let Some(parent) = self.tasks.get(&task_id).and_then(|t| t.parent) else {
            return;
        };
        if let Some(p) = self.tasks.get_mut(&parent) {
            if p.expected_total.is_some() {
                p.children_total += total;
            }
        }
    }

    /// Rows no query can reach: warn loudly, or fail if the user asked to.
    pub(super) fn unreachable(&mut self, task_id: TaskId, rows: u64) -> Result<(), Error> {
        let Some(task) = self.tasks.get(&task_id) else {
            return Ok(());
        };
        let run = &mut self.runs[task.stream];
        run.unreachable_rows += rows;
        let name = run.name();
        let partition = run.partitions.get(task.partition).cloned().flatten();
        let mut scope: Vec<String> = partition
            .into_iter()
            .map(|p| format!("messagestream={p}"))
            .collect();
        scope.extend(task.filters.iter().map(|(k, v)| format!("{k}={v}")));
        let when = task
            .window
            .map(|(s, e)| format!(" in [{}, {})", fmt_time(s), fmt_time(e)))
            .unwrap_or_default();
        let msg = format!(
            "{name}: {rows} rows are unreachable{when} ({}): Postmark returns at most 10,000 rows per query \
             and no filter splits this query further; the first 10,000 are synced",
            if scope.is_empty() { "no filter".to_string() } else { scope.join(", ") }
        );
        let stream = task.stream;
        self.out.log(Level::Warn, &msg)?;
        self.out
            .trace_analytics("postmark_unreachable_rows", &format!("{name}:{rows}"))?;
        if self.plan.config.fail_on_unreachable_rows {
            let err = Error::UnreachableRows {
                stream: name.to_string(),
                rows,
            };
            self.fail_stream(stream, err)?;
        }
        Ok(())
    }
}
