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

mod pages;
mod splitting;
mod streams;
mod worker;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::progress::Progress;
use super::stream::{Phase, StreamRun};
use super::windows::{Window, PAGE_SIZE};
use super::{Outcome, ReadPlan};
use crate::client::Client;
use crate::error::Error;
use crate::protocol::{Emitter, Level, StreamStatus};
use crate::record::{parse_page, RawObject};
use crate::streams::{self as stream_table, Paging, Partitioning};
use worker::{build_request, spawn_workers, Job, WorkerMsg};

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
    known_total: Option<u64>,
    /// Pages are queued for offsets below this.
    scheduled_to: u32,
    /// Bumped when the window changed under us and is read again: pages of an older
    /// generation are dropped, not emitted.
    generation: u32,
    /// Query up to one second before the window's end instead of including the end second.
    tight: bool,
}

/// A page waiting for a worker, ordered oldest window first within a stream.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    key: (usize, i64, TaskId, u32),
    count: Option<u32>,
    generation: u32,
}

struct InFlight {
    stream: usize,
    task: TaskId,
    offset: u32,
    count: Option<u32>,
    generation: u32,
    /// When the job went to an idle worker: its duration feeds the Singer request timer.
    sent: Instant,
}

/// Reads every planned stream and writes records and state through `out`.
pub fn run<W: Write>(plan: &ReadPlan, out: &mut Emitter<W>) -> Result<Outcome, Error> {
    let client = Arc::new(Client::new(&plan.config, plan.retry_base));
    for name in &plan.unknown_streams {
        out.log(
            Level::Warn,
            &format!("the catalog names stream '{name}', which this connector does not have (it has {}); skipping it", stream_table::names()),
        )?;
        out.stream_status(name, StreamStatus::Started)?;
        out.stream_status(name, StreamStatus::Incomplete)?;
    }
    let mut engine = Engine::new(plan, client, out)?;
    engine.run()?;
    engine.log_summary()?;
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
    started: Instant,
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
            started: Instant::now(),
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
        let spec = stream_table::message_streams();
        let request = build_request(spec, None, &[], None, false, None);
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
        let tight = parent
            .and_then(|p| self.tasks.get(&p))
            .is_some_and(|p| p.tight);
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
                known_total: None,
                scheduled_to: PAGE_SIZE,
                generation: 0,
                tight,
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
            generation: t.generation,
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
            if task.generation != p.generation {
                // Superseded by a re-read of its window.
                self.page_done(task_id)?;
                continue;
            }
            let run = &self.runs[stream];
            let spec = run.selected.spec;
            let partition = run.partitions.get(task.partition).cloned().flatten();
            let request = build_request(
                spec,
                partition.as_deref(),
                &task.filters,
                task.window,
                task.tight,
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
                    generation: p.generation,
                    sent: Instant::now(),
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
        let spec = self.runs[job.stream].selected.spec;
        let took = job.sent.elapsed().as_secs_f64();
        self.out
            .metric_timer(spec.path, spec.name, took, result.is_ok());
        let Some(task) = self.tasks.get(&job.task) else {
            return Ok(());
        };
        if self.runs[job.stream].phase != Phase::Running {
            return Ok(());
        }
        self.runs[job.stream].requests += 1;
        if task.generation != job.generation {
            // A page of a window that has since been re-read: its rows come again.
            return self.page_done(job.task);
        }
        match result {
            Err(e) if job.offset == 0 && e.is_window_too_large() => {
                self.estimate(job.task, None)?;
                self.forget_parent_total(job.task);
                if self.split(job.task, None, None) {
                    self.page_done(job.task)
                } else {
                    self.fail_stream(job.stream, e)
                }
            }
            Err(e) => self.fail_stream(job.stream, e),
            Ok(body) => self.on_page(job, &body, at),
        }
    }

    /// One page of a task is settled (read, or dropped); the task completes with its last.
    fn page_done(&mut self, task_id: TaskId) -> Result<(), Error> {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return Ok(());
        };
        task.pages_pending = task.pages_pending.saturating_sub(1);
        if task.pages_pending == 0 && task.children_pending == 0 {
            self.complete(task_id)?;
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
}
