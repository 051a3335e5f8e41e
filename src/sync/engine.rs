//! The read engine: one main thread that plans windows and owns the output, and a bounded
//! pool of worker threads that only perform HTTP requests.
//!
//! Work is a tree of tasks. A root task covers a stream's whole range for one partition
//! (message stream). Its first page (the probe) tells `TotalCount`: below 10,000 the
//! remaining pages are queued at once and fetched concurrently; at 10,000 or more the task
//! splits in time (pieces sized from the count), or, for a one-second window, by the next
//! filter (`status`, `type`), before anything of it is emitted. A task is complete when its
//! pages and all its children are; completed windows feed [`Progress`], which decides when a
//! STATE may be emitted. Memory is bounded by pages in flight and open windows.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::Write;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::progress::Progress;
use super::stream::{fmt_time, Phase, StreamRun};
use super::windows::{self, page_offsets, split_time, Window, OFFSET_CAP, PAGE_SIZE};
use super::{Outcome, ReadPlan};
use crate::client::{Client, Request};
use crate::eastern;
use crate::error::Error;
use crate::protocol::{Emitter, Level, Protocol, StreamStatus};
use crate::record::{parse_page, RawObject, ShapeError};
use crate::streams::{self, Cursor, Paging, Partitioning};

type TaskId = u64;
/// `(parameter, value)` filters narrowing a query below one second (`status=sent`).
type Filters = Vec<(&'static str, &'static str)>;

struct Task {
    stream: usize,
    partition: usize,
    filters: Filters,
    window: Option<Window>,
    parent: Option<TaskId>,
    pages_pending: usize,
    children_pending: usize,
    /// Set on a task split by filter: its `TotalCount`, to check the children add up.
    expected_total: Option<u64>,
    /// The task handed its rows to children instead of reading pages itself.
    split: bool,
    children_total: u64,
    /// The largest `TotalCount` seen for this task's query.
    known_total: u64,
    /// Pages are queued for offsets below this.
    scheduled_to: u32,
}

/// A page waiting for a worker, ordered oldest window first within a stream.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    key: (usize, i64, TaskId, u32),
    count: Option<u32>,
}

struct Job {
    id: u64,
    request: Request,
    context: String,
}

enum WorkerMsg {
    Done {
        id: u64,
        result: Result<String, Error>,
        at: DateTime<Utc>,
    },
    Retrying(String),
}

struct InFlight {
    stream: usize,
    task: TaskId,
    offset: u32,
    count: Option<u32>,
}

/// Reads every planned stream and writes records and state through `out`.
pub fn run<W: Write>(plan: &ReadPlan, out: &mut Emitter<W>) -> Result<Outcome, Error> {
    let client = Arc::new(Client::new(&plan.config, plan.retry_base));
    for name in &plan.unknown_streams {
        out.log(
            Level::Warn,
            &format!("the catalog names stream '{name}', which this connector does not have (it has {}); skipping it", streams::names()),
        )?;
        out.stream_status(name, StreamStatus::Started)?;
        out.stream_status(name, StreamStatus::Incomplete)?;
    }
    let mut engine = Engine::new(plan, client, out)?;
    engine.run()?;
    Ok(Outcome {
        failed: engine.first_error.take(),
    })
}

struct Engine<'p, 'o, W: Write> {
    plan: &'p ReadPlan,
    out: &'o mut Emitter<W>,
    client: Arc<Client>,
    runs: Vec<StreamRun>,
    tasks: HashMap<TaskId, Task>,
    next_task: TaskId,
    next_job: u64,
    queue: BinaryHeap<Reverse<Pending>>,
    in_flight: HashMap<u64, InFlight>,
    bookmarks: BTreeMap<String, Value>,
    first_error: Option<Error>,
    buf: Vec<u8>,
    last_progress: Instant,
}

impl<'p, 'o, W: Write> Engine<'p, 'o, W> {
    fn new(
        plan: &'p ReadPlan,
        client: Arc<Client>,
        out: &'o mut Emitter<W>,
    ) -> Result<Self, Error> {
        let mut bookmarks: BTreeMap<String, Value> = plan
            .state
            .other_bookmarks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, cursor) in &plan.state.cursors {
            bookmarks.insert(name.clone(), cursor.to_value());
        }
        let mut engine = Engine {
            plan,
            out,
            client,
            runs: Vec::new(),
            tasks: HashMap::new(),
            next_task: 0,
            next_job: 0,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            bookmarks,
            first_error: None,
            buf: Vec::with_capacity(4096),
            last_progress: Instant::now(),
        };
        engine.plan_streams()?;
        Ok(engine)
    }

    /// Builds one run per selected stream and its root tasks.
    fn plan_streams(&mut self) -> Result<(), Error> {
        let needs_partitions = self
            .plan
            .streams
            .iter()
            .any(|s| s.spec.partitioning != Partitioning::None);
        let message_streams = if needs_partitions {
            self.list_message_streams()?
        } else {
            Vec::new()
        };
        let end = self.plan.range_end();
        for selected in &self.plan.streams {
            let spec = selected.spec;
            let partitions: Vec<Option<String>> = match spec.partitioning {
                Partitioning::None => vec![None],
                Partitioning::OutboundStreams => message_streams
                    .iter()
                    .filter(|(_, kind)| kind == "Transactional" || kind == "Broadcasts")
                    .map(|(id, _)| Some(id.clone()))
                    .collect(),
                Partitioning::AllStreams => message_streams
                    .iter()
                    .map(|(id, _)| Some(id.clone()))
                    .collect(),
            };
            let mut run = StreamRun::new(selected.clone(), partitions);
            let idx = self.runs.len();
            if spec.is_incremental() {
                let start = self.plan.range_start(selected);
                run.range = Some((start, end));
                run.progress = Some(Progress::new(start, run.partitions.len()));
                if selected.incremental {
                    run.prev_cursor = self
                        .plan
                        .state
                        .cursors
                        .get(spec.name)
                        .map(|c| c.synced_until);
                }
            }
            self.runs.push(run);
            let roots: Vec<(usize, Option<Window>)> = {
                let run = &self.runs[idx];
                match run.range {
                    Some((s, e)) if s < e => (0..run.partitions.len())
                        .map(|p| (p, Some((s, e))))
                        .collect(),
                    Some(_) => Vec::new(),
                    None => vec![(0, None)],
                }
            };
            self.runs[idx].roots_unprobed = roots.len();
            for (partition, window) in roots {
                self.add_task(idx, partition, Vec::new(), window, None);
            }
        }
        Ok(())
    }

    /// `GET /message-streams` once, to know which `messagestream` values to query.
    fn list_message_streams(&mut self) -> Result<Vec<(String, String)>, Error> {
        let spec = streams::message_streams();
        let request = build_request(spec, None, &[], None, None);
        let context = "listing message streams".to_string();
        let mut retries = Vec::new();
        let body = self
            .client
            .get(&request, &context, &mut |m| retries.push(m));
        for m in retries {
            self.out.log(Level::Warn, &m)?;
        }
        let body = body?;
        let page =
            parse_page(&body, spec.records_key).map_err(|detail| Error::UnexpectedResponse {
                context: context.clone(),
                detail,
            })?;
        let mut list = Vec::new();
        for raw in page.records {
            let Ok(obj) = serde_json::from_str::<RawObject>(raw.get()) else {
                continue;
            };
            let field = |name: &str| {
                obj.0
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
            };
            if let (Some(id), Some(kind)) = (field("ID"), field("MessageStreamType")) {
                list.push((id, kind));
            }
        }
        let ids: Vec<&str> = list.iter().map(|(id, _)| id.as_str()).collect();
        self.out.log(
            Level::Info,
            &format!("message streams (archived included): {}", ids.join(", ")),
        )?;
        Ok(list)
    }

    fn add_task(
        &mut self,
        stream: usize,
        partition: usize,
        filters: Vec<(&'static str, &'static str)>,
        window: Option<Window>,
        parent: Option<TaskId>,
    ) {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            id,
            Task {
                stream,
                partition,
                filters,
                window,
                parent,
                pages_pending: 1,
                children_pending: 0,
                expected_total: None,
                children_total: 0,
                split: false,
                known_total: 0,
                scheduled_to: PAGE_SIZE,
            },
        );
        self.runs[stream].open_tasks += 1;
        let count = match self.runs[stream].selected.spec.paging {
            Paging::CountOffset => Some(PAGE_SIZE),
            Paging::Single => None,
        };
        self.enqueue(id, 0, count);
    }

    fn enqueue(&mut self, task: TaskId, offset: u32, count: Option<u32>) {
        let Some(t) = self.tasks.get(&task) else {
            return;
        };
        let start = t.window.map(|w| w.0.timestamp()).unwrap_or(0);
        self.queue.push(Reverse(Pending {
            key: (t.stream, start, task, offset),
            count,
        }));
    }

    fn run(&mut self) -> Result<(), Error> {
        // Streams with nothing to read (an empty range) still report status and state.
        for idx in 0..self.runs.len() {
            if self.runs[idx].open_tasks == 0 {
                self.start_stream(idx)?;
                self.finish_stream(idx)?;
            }
        }
        let workers = self.plan.config.max_concurrency.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (msg_tx, msg_rx) = mpsc::channel::<WorkerMsg>();
        spawn_workers(workers, &self.client, job_rx, msg_tx);
        loop {
            self.dispatch(&job_tx, workers)?;
            if self.in_flight.is_empty() {
                break;
            }
            match msg_rx.recv_timeout(self.plan.progress_every) {
                Ok(WorkerMsg::Retrying(m)) => self.out.log(Level::Warn, &m)?,
                Ok(WorkerMsg::Done { id, result, at }) => {
                    if let Some(job) = self.in_flight.remove(&id) {
                        self.on_done(job, result, at)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.maybe_log_progress()?;
        }
        Ok(())
    }

    fn dispatch(&mut self, jobs: &Sender<Job>, workers: usize) -> Result<(), Error> {
        while self.in_flight.len() < workers {
            let Some(Reverse(p)) = self.queue.pop() else {
                break;
            };
            let (stream, _, task_id, offset) = p.key;
            if matches!(self.runs[stream].phase, Phase::Failed | Phase::Done) {
                continue;
            }
            let Some(task) = self.tasks.get(&task_id) else {
                continue;
            };
            let run = &self.runs[stream];
            let spec = run.selected.spec;
            let partition = run.partitions.get(task.partition).cloned().flatten();
            let request = build_request(
                spec,
                partition.as_deref(),
                &task.filters,
                task.window,
                p.count.map(|c| (offset, c)),
            );
            let context = match &partition {
                Some(ms) => format!("reading '{}' (messagestream {ms})", spec.name),
                None => format!("reading '{}'", spec.name),
            };
            if self.runs[stream].phase == Phase::NotStarted {
                self.start_stream(stream)?;
            }
            let id = self.next_job;
            self.next_job += 1;
            self.in_flight.insert(
                id,
                InFlight {
                    stream,
                    task: task_id,
                    offset,
                    count: p.count,
                },
            );
            if jobs
                .send(Job {
                    id,
                    request,
                    context,
                })
                .is_err()
            {
                self.in_flight.remove(&id);
                break;
            }
        }
        Ok(())
    }

    fn on_done(
        &mut self,
        job: InFlight,
        result: Result<String, Error>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        if self.runs[job.stream].phase != Phase::Running || !self.tasks.contains_key(&job.task) {
            return Ok(());
        }
        self.runs[job.stream].requests += 1;
        match result {
            Err(e) if job.offset == 0 && e.is_window_too_large() => {
                self.estimate(job.task, None)?;
                self.forget_parent_total(job.task);
                if !self.split(job.task, None) {
                    self.fail_stream(job.stream, e)?;
                }
                Ok(())
            }
            Err(e) => self.fail_stream(job.stream, e),
            Ok(body) => self.on_page(job, &body, at),
        }
    }

    fn on_page(&mut self, job: InFlight, body: &str, at: DateTime<Utc>) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let page = match parse_page(body, spec.records_key) {
            Ok(p) => p,
            Err(detail) => {
                let context = format!("reading '{}'", spec.name);
                return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
            }
        };
        if job.offset == 0 && job.count.is_some() {
            let total = page.total;
            self.estimate(job.task, total)?;
            self.report_total_to_parent(job.task, total.unwrap_or(page.records.len() as u64));
            if total.unwrap_or(0) >= u64::from(OFFSET_CAP) {
                if self.split(job.task, total) {
                    return Ok(());
                }
                self.unreachable(job.task, total.unwrap_or(0) - u64::from(OFFSET_CAP))?;
                if self.runs[job.stream].phase == Phase::Failed {
                    return Ok(());
                }
            }
            match total {
                Some(t) => {
                    if let Some(task) = self.tasks.get_mut(&job.task) {
                        task.known_total = t;
                    }
                    self.schedule_pages(job.task, t);
                }
                None => self.maybe_next_page(&job, page.records.len()),
            }
        } else if job.offset > 0 && self.tasks.contains_key(&job.task) {
            match page.total {
                // Without a TotalCount, page until a short page.
                None => self.maybe_next_page(&job, page.records.len()),
                Some(total) => self.check_page(&job, total, page.records.len())?,
            }
        }
        self.emit_page(&job, &page.records, at)?;
        if let Some(task) = self.tasks.get_mut(&job.task) {
            task.pages_pending = task.pages_pending.saturating_sub(1);
            if task.pages_pending == 0 && task.children_pending == 0 {
                self.complete(job.task)?;
            }
        }
        Ok(())
    }

    /// Queues the pages of a task up to `total` rows (or the cap) not queued yet.
    fn schedule_pages(&mut self, task_id: TaskId, total: u64) {
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
    /// rows late and the window grew, the new offsets are read too (nothing is lost; rows at
    /// page boundaries may repeat). If a page is short, rows vanished meanwhile.
    fn check_page(&mut self, job: &InFlight, total: u64, got: usize) -> Result<(), Error> {
        let Some(task) = self.tasks.get_mut(&job.task) else {
            return Ok(());
        };
        let name = self.runs[job.stream].name();
        let before = task.known_total;
        if total > before {
            task.known_total = total;
            let msg = format!(
                "{name}: a window grew from {before} to {total} rows while it was read \
                 (Postmark indexed rows late); the new rows are read too, and a few rows \
                 near page boundaries may be emitted twice"
            );
            self.out.log(Level::Warn, &msg)?;
            self.schedule_pages(job.task, total);
            let cap = u64::from(OFFSET_CAP);
            if total > cap && before <= cap {
                self.unreachable(job.task, total - cap)?;
            }
            return Ok(());
        }
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

    fn maybe_next_page(&mut self, job: &InFlight, got: usize) {
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

    fn emit_page(
        &mut self,
        job: &InFlight,
        records: &[&serde_json::value::RawValue],
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let window = match self.runs[job.stream].selected.spec.cursor {
            Cursor::Field(_) => self.tasks.get(&job.task).and_then(|t| t.window),
            _ => None,
        };
        self.out.begin_page(at);
        let run = &mut self.runs[job.stream];
        let name = run.selected.spec.name;
        let out = &mut *self.out;
        let tally = run
            .shaper
            .shape_page(records, window, &mut self.buf, &mut |line| {
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

    /// Splits a task whose window holds too many rows: in time, else by the next filter.
    fn split(&mut self, task_id: TaskId, total: Option<u64>) -> bool {
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
            match window.and_then(|w| split_time(w, total)) {
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
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.pages_pending = 0;
            task.split = true;
            task.children_pending = children.len();
            if by_filter {
                task.expected_total = total;
            }
        }
        for (f, w) in children {
            self.add_task(stream, partition, f, w, Some(task_id));
        }
        true
    }

    /// Once every root window of a stream has reported its `TotalCount`, tell Airbyte how
    /// many rows to expect.
    fn estimate(&mut self, task_id: TaskId, total: Option<u64>) -> Result<(), Error> {
        let Some(task) = self.tasks.get(&task_id).filter(|t| t.parent.is_none()) else {
            return Ok(());
        };
        let run = &mut self.runs[task.stream];
        run.row_estimate += total.unwrap_or(0);
        run.roots_unprobed = run.roots_unprobed.saturating_sub(1);
        if run.roots_unprobed == 0 {
            let (name, rows) = (run.name(), run.row_estimate);
            self.out.trace_estimate(name, rows)?;
        }
        Ok(())
    }

    /// A filter child whose count is unknown makes its parent's sum check meaningless.
    fn forget_parent_total(&mut self, task_id: TaskId) {
        let Some(parent) = self.tasks.get(&task_id).and_then(|t| t.parent) else {
            return;
        };
        if let Some(p) = self.tasks.get_mut(&parent) {
            p.expected_total = None;
        }
    }

    fn report_total_to_parent(&mut self, task_id: TaskId, total: u64) {
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
    fn unreachable(&mut self, task_id: TaskId, rows: u64) -> Result<(), Error> {
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

    fn complete(&mut self, task_id: TaskId) -> Result<(), Error> {
        let mut next = Some(task_id);
        while let Some(id) = next.take() {
            let Some(task) = self.tasks.remove(&id) else {
                break;
            };
            let run = &mut self.runs[task.stream];
            run.open_tasks = run.open_tasks.saturating_sub(1);
            if !task.split {
                run.windows_done += 1;
            }
            if let (true, Some((s, e))) = (task.filters.is_empty(), task.window) {
                if let Some(p) = run.progress.as_mut() {
                    p.mark(task.partition, s, e);
                }
            }
            if let Some(expected) = task.expected_total {
                if task.children_total < expected {
                    let msg = format!(
                        "{}: {} rows matched no value of filter '{}' when a one-second window was split; \
                         they may be missed (Postmark may have more values than documented)",
                        run.name(),
                        expected - task.children_total,
                        task.filters.len()
                    );
                    self.out.log(Level::Warn, &msg)?;
                }
            }
            if let Some(parent) = task.parent.and_then(|p| self.tasks.get_mut(&p)) {
                parent.children_pending = parent.children_pending.saturating_sub(1);
                if parent.children_pending == 0 && parent.pages_pending == 0 {
                    next = task.parent;
                }
            }
            let stream = task.stream;
            if self.runs[stream].open_tasks == 0 && self.runs[stream].phase == Phase::Running {
                self.finish_stream(stream)?;
            } else {
                self.checkpoint(stream)?;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, stream: usize) -> Result<(), Error> {
        if let Some(cursor) = self.runs[stream].checkpoint() {
            self.emit_state(stream, cursor.to_value())?;
        }
        Ok(())
    }

    fn emit_state(&mut self, stream: usize, value: Value) -> Result<(), Error> {
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

    fn start_stream(&mut self, idx: usize) -> Result<(), Error> {
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

    fn finish_stream(&mut self, idx: usize) -> Result<(), Error> {
        let value = self.runs[idx].final_state();
        self.emit_state(idx, value)?;
        let run = &mut self.runs[idx];
        run.phase = Phase::Done;
        let (name, line) = (run.name(), run.describe_end());
        self.out.log(Level::Info, &line)?;
        self.out.stream_status(name, StreamStatus::Complete)?;
        self.out.flush()
    }

    /// Reports a stream's failure on the protocol; other streams go on, the process fails.
    fn fail_stream(&mut self, idx: usize, error: Error) -> Result<(), Error> {
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

    fn maybe_log_progress(&mut self) -> Result<(), Error> {
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

fn spawn_workers(n: usize, client: &Arc<Client>, jobs: Receiver<Job>, results: Sender<WorkerMsg>) {
    let jobs = Arc::new(Mutex::new(jobs));
    for _ in 0..n {
        let jobs = Arc::clone(&jobs);
        let results = results.clone();
        let client = Arc::clone(client);
        thread::spawn(move || loop {
            let job = {
                let Ok(rx) = jobs.lock() else { return };
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let retry_tx = results.clone();
            let mut on_retry = |m: String| {
                let _ = retry_tx.send(WorkerMsg::Retrying(m));
            };
            let result = client.get(&job.request, &job.context, &mut on_retry);
            let msg = WorkerMsg::Done {
                id: job.id,
                result,
                at: Utc::now(),
            };
            if results.send(msg).is_err() {
                return;
            }
        });
    }
}

/// The query for one page of one task.
fn build_request(
    spec: &'static streams::StreamSpec,
    partition: Option<&str>,
    filters: &[(&'static str, &'static str)],
    window: Option<Window>,
    page: Option<(u32, u32)>,
) -> Request {
    let mut query: Vec<(&'static str, String)> = Vec::with_capacity(8);
    if let Some((offset, count)) = page {
        query.push(("count", count.to_string()));
        query.push(("offset", offset.to_string()));
    }
    if let Some((start, end)) = window {
        // Both filter ends are inclusive to the second. With a cursor field the window's end
        // second is included and the record filter drops it; without one (inbound) the
        // query itself must stop one second before the end.
        let last = match spec.cursor {
            Cursor::WindowEnd => end - Duration::seconds(1),
            _ => end,
        };
        query.push(("fromdate", eastern::format_filter(start)));
        query.push(("todate", eastern::format_filter(last)));
    }
    if let Some(ms) = partition {
        query.push(("messagestream", ms.to_string()));
    }
    for (k, v) in filters {
        query.push((k, v.to_string()));
    }
    for (k, v) in spec.extra_query {
        query.push((k, v.to_string()));
    }
    Request {
        path: spec.path,
        query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_windows_stop_one_second_early_and_cursor_windows_do_not() {
        let s = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = s + Duration::hours(1);
        let inbound = build_request(
            streams::find("messages_inbound").unwrap(),
            None,
            &[],
            Some((s, e)),
            Some((0, 500)),
        );
        assert!(inbound
            .query
            .contains(&("todate", "2026-06-30T20:59:59".into())));
        assert!(inbound
            .query
            .contains(&("fromdate", "2026-06-30T20:00:00".into())));
        let outbound = build_request(
            streams::find("messages_outbound").unwrap(),
            Some("broadcast"),
            &[("status", "sent")],
            Some((s, e)),
            Some((500, 500)),
        );
        assert!(outbound
            .query
            .contains(&("todate", "2026-06-30T21:00:00".into())));
        assert!(outbound
            .query
            .contains(&("messagestream", "broadcast".into())));
        assert!(outbound.query.contains(&("status", "sent".into())));
        assert!(outbound.query.contains(&("offset", "500".into())));
    }
}
