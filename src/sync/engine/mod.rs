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

mod events;
mod fanout;
mod merge;
mod pages;
mod splitting;
mod streams;
mod worker;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::progress::Progress;
use super::stream::{Phase, RunServer, StreamRun};
use super::windows::{Window, PAGE_SIZE};
use super::{Outcome, ReadPlan};
use crate::client::Client;
use crate::error::Error;
use crate::protocol::{Emitter, Level, StreamStatus};
use crate::record::parse_page;
use crate::streams::{self as stream_table, Paging, Partitioning};
pub use merge::MergeBuf;
use pages::KeySet;
use worker::{build_request, panic_message, spawn_workers, Job, WorkerMsg};

type TaskId = u64;
/// A server's message streams `(ID, MessageStreamType)`, and how many rows of the list were
/// not readable message streams.
type Listing = (Vec<(String, String)>, u64);
/// Message stream types Postmark documents.
const KNOWN_STREAM_TYPES: [&str; 3] = ["Transactional", "Broadcasts", "Inbound"];
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
    /// Opens and clicks whose date filter Postmark ignores: read newest-first, unfiltered.
    reader: Option<Box<events::Reader>>,
    /// Opens or clicks no query reaches: this task lists outbound messages and asks each
    /// tracked one for its events (the per-message fallback).
    fallback: Option<Box<events::Fallback>>,
    /// Fingerprints of the primary keys of every row this task's query returned, over all
    /// its reads: a window holds at most 10,000 rows, so this is bounded (16 bytes a row);
    /// it is freed when the task completes. Re-reads of a changed window skip keys here.
    seen: KeySet,
    /// Ancestors whose `seen` is not empty (a window that grew past the cap while read and
    /// was split): their rows are not emitted again by this task either.
    inherited: Vec<TaskId>,
    /// Page requests this task's reads have cost (superseded ones included).
    requests: u64,
    /// Rows without a primary key in the current read (for the completeness check).
    keyless: u64,
    /// A page at a later offset repeated rows of this read: the server ignores `offset`.
    offset_ignored: bool,
}

/// A page waiting for a worker, ordered oldest window first within a stream.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    key: (usize, i64, TaskId, u32),
    count: Option<u32>,
    generation: u32,
    /// Asks this window instead of the task's: is the date filter applied?
    probe: Option<Window>,
    /// A per-record request of a fan-out stream instead of a page of its listing.
    detail: Option<fanout::Detail>,
}

struct InFlight {
    stream: usize,
    task: TaskId,
    offset: u32,
    count: Option<u32>,
    generation: u32,
    /// When the job went to an idle worker: its duration feeds the Singer request timer.
    sent: Instant,
    /// The endpoint requested, placeholders unfilled (`/templates/{TemplateId}`): the
    /// timer's tag.
    endpoint: &'static str,
    probe: Option<Window>,
    detail: Option<fanout::Detail>,
}

/// Reads every planned stream and writes records and state through `out`.
pub fn run<W: Write>(plan: &ReadPlan, out: &mut Emitter<W>) -> Result<Outcome, Error> {
    let tokens = plan.servers.iter().map(|s| s.token.clone()).collect();
    let client = Arc::new(Client::new(&plan.config, plan.retry_base).with_server_tokens(tokens));
    for name in &plan.unknown_streams {
        out.log(
            Level::Warn,
            &format!("the catalog names stream '{name}', which this connector does not have (it has {}); skipping it", stream_table::names()),
        )?;
        out.stream_status(name, StreamStatus::Started)?;
        out.stream_status(name, StreamStatus::Incomplete)?;
    }
    let hook = TestPanic::from_env();
    let mut engine = Engine::new(plan, client, out)?;
    engine.hook = hook;
    // A panic of the main thread fails every stream still open, loudly, instead of ending
    // the process with output that looks complete.
    match panic::catch_unwind(AssertUnwindSafe(|| engine.run())) {
        Ok(result) => result?,
        Err(payload) => {
            let detail = format!("the main thread panicked: {}", panic_message(&*payload));
            engine.fail_open_streams(&detail)?;
        }
    }
    // Every selected stream ends COMPLETE or failed; anything else is a bug, never exit 0.
    engine.fail_open_streams("the read ended while this stream was neither complete nor failed")?;
    engine.log_summary()?;
    Ok(Outcome {
        failed: engine.first_error.take(),
    })
}

/// Test-only hook: `SOURCE_POSTMARK_TEST_PANIC=worker:N` makes the worker performing the
/// N-th request panic, `main:N` makes the main thread panic on the N-th page it handles.
/// Read only here; not part of the documented interface.
#[derive(Debug, Default, Clone, Copy)]
struct TestPanic {
    worker: Option<u64>,
    main: Option<u64>,
}

impl TestPanic {
    fn from_env() -> TestPanic {
        let Ok(v) = std::env::var("SOURCE_POSTMARK_TEST_PANIC") else {
            return TestPanic::default();
        };
        let (which, n) = v.split_once(':').unwrap_or((v.as_str(), "1"));
        let n = n.parse::<u64>().ok();
        match which {
            "worker" => TestPanic {
                worker: n,
                main: None,
            },
            "main" => TestPanic {
                worker: None,
                main: n,
            },
            _ => TestPanic::default(),
        }
    }
}

/// One output stream: its runs (one per server in whole-account mode) share its statuses,
/// its table version and its STATE.
struct Group {
    name: &'static str,
    runs: Vec<usize>,
    /// STARTED was emitted.
    announced: bool,
    /// RUNNING (and SCHEMA) were emitted.
    started: bool,
    ended: bool,
}

/// A server of the account whose list shows no token: it cannot be read.
fn no_token(s: &RunServer) -> Error {
    Error::UnexpectedResponse {
        context: format!("reading {}", s.label),
        detail: "the account's server list shows no API token for it (ApiTokens is empty); \
                 give the server an API token in Postmark, or leave it out with 'servers'"
            .to_string(),
    }
}

struct Engine<'p, 'o, W: Write> {
    plan: &'p ReadPlan,
    out: &'o mut Emitter<W>,
    client: Arc<Client>,
    runs: Vec<StreamRun>,
    groups: Vec<Group>,
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
    /// Opens and clicks: what is known of the date filter per (stream, partition).
    date_filters: events::Known,
    hook: TestPanic,
    pages_handled: u64,
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
        for (name, servers) in &plan.state.server_cursors {
            let entries: serde_json::Map<String, Value> = servers
                .iter()
                .map(|(id, c)| (id.to_string(), c.to_value()))
                .collect();
            bookmarks.insert(name.clone(), serde_json::json!({ "servers": entries }));
        }
        let mut engine = Engine {
            plan,
            out,
            client,
            runs: Vec::new(),
            groups: Vec::new(),
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
            date_filters: events::Known::default(),
            hook: TestPanic::default(),
            pages_handled: 0,
        };
        engine.plan_streams()?;
        Ok(engine)
    }

    /// Builds one run per selected stream (per selected server of the account for server
    /// streams in whole-account mode) and its root tasks.
    fn plan_streams(&mut self) -> Result<(), Error> {
        let whole_account = self.plan.whole_account();
        let servers: Vec<Option<RunServer>> = if whole_account {
            self.plan
                .servers
                .iter()
                .enumerate()
                .map(|(slot, s)| {
                    Some(RunServer {
                        slot,
                        id: s.id,
                        label: s.label(),
                        id_json: s.id.to_string(),
                    })
                })
                .collect()
        } else {
            vec![None]
        };
        let needs_partitions = self
            .plan
            .streams
            .iter()
            .any(|s| s.spec.partitioning != Partitioning::None);
        // Each server's message streams (one request per server, the servers' requests
        // concurrently), or why they are unknown.
        let asked: Vec<Option<RunServer>> = servers
            .iter()
            .filter(|s| needs_partitions && !self.server_lacks_token(s.as_ref()))
            .cloned()
            .collect();
        let mut bodies = self.fetch_listings(&asked)?.into_iter();
        let mut listings: Vec<Result<Listing, Error>> = Vec::new();
        for server in &servers {
            let listing = match server {
                _ if !needs_partitions => Ok((Vec::new(), 0)),
                Some(s) if self.server_lacks_token(Some(s)) => Err(no_token(s)),
                _ => {
                    let body = bodies.next().unwrap_or_else(|| {
                        Err(Error::Internal {
                            context: "listing message streams".into(),
                            detail: "a server's listing is missing".into(),
                        })
                    });
                    self.list_message_streams(server.as_ref(), body)
                }
            };
            if let Err(Error::Stdout(_)) = listing {
                return listing.map(|_| ());
            }
            listings.push(listing);
        }
        let end = self.plan.range_end();
        let mut failures: Vec<(usize, Error)> = Vec::new();
        for selected in &self.plan.streams {
            let spec = selected.spec;
            let group = self.groups.len();
            let mut members = Vec::new();
            let targets: Vec<(usize, Option<RunServer>)> = if whole_account && spec.per_server() {
                servers.iter().cloned().enumerate().collect()
            } else {
                // One server (the configured token), or an account stream (not partitioned).
                vec![(0, None)]
            };
            for (server_idx, server) in targets {
                let listing = listings.get(server_idx);
                let message_streams: &[(String, String)] = match listing {
                    Some(Ok((list, _))) => list,
                    _ => &[],
                };
                let partitions: Vec<Option<String>> = match spec.partitioning {
                    Partitioning::None => vec![None],
                    Partitioning::OutboundStreams => message_streams
                        .iter()
                        .filter(|(_, kind)| kind != "Inbound")
                        .map(|(id, _)| Some(id.clone()))
                        .collect(),
                    Partitioning::AllStreams => message_streams
                        .iter()
                        .map(|(id, _)| Some(id.clone()))
                        .collect(),
                };
                let server_id = server.as_ref().map(|s| s.id);
                let mut run = StreamRun::new(selected.clone(), partitions);
                run.group = group;
                run.server = server.clone();
                let idx = self.runs.len();
                members.push(idx);
                if spec.is_incremental() {
                    let start = self.plan.range_start(selected, server_id);
                    run.range = Some((start, end));
                    run.progress = Some(Progress::new(start, run.partitions.len()));
                    run.input_cursor = self.plan.cursor(selected, server_id).copied();
                }
                self.runs.push(run);
                // A server without a token fails whole; one whose message streams could not
                // be listed fails the streams read per message stream.
                let failure = match (listing, server.as_ref()) {
                    (_, Some(s)) if self.plan.servers[s.slot].token.is_none() => {
                        Some(no_token(s))
                    }
                    (Some(Err(e)), _) if spec.partitioning != Partitioning::None => {
                        Some(e.clone())
                    }
                    (Some(Ok((_, unreadable))), _)
                        if *unreadable > 0 && spec.partitioning != Partitioning::None =>
                    {
                        Some(Error::UnexpectedResponse {
                            context: match &server {
                                Some(s) => format!("listing message streams of {}", s.label),
                                None => "listing message streams".to_string(),
                            },
                            detail: format!(
                                "{unreadable} rows of GET /message-streams are not message streams with \
                                 an ID and a MessageStreamType; '{}' is read once per message stream, so \
                                 it cannot be read completely and is not read at all",
                                spec.name
                            ),
                        })
                    }
                    _ => None,
                };
                if let Some(e) = failure {
                    failures.push((idx, e));
                    continue;
                }
                let roots: Vec<(usize, Option<Window>)> = {
                    let run = &self.runs[idx];
                    match run.range {
                        Some((s, e)) if s < e => (0..run.partitions.len())
                            .map(|p| (p, Some((s, e))))
                            .collect(),
                        Some(_) => Vec::new(),
                        None => (0..run.partitions.len()).map(|p| (p, None)).collect(),
                    }
                };
                self.runs[idx].roots_unprobed = roots.len();
                for (partition, window) in roots {
                    self.add_task(idx, partition, Vec::new(), window, None);
                }
            }
            self.groups.push(Group {
                name: spec.name,
                runs: members,
                announced: false,
                started: false,
                ended: false,
            });
        }
        for (idx, e) in failures {
            self.fail_stream(idx, e)?;
        }
        Ok(())
    }

    /// Whole-account mode: the server list showed no token for this server.
    fn server_lacks_token(&self, server: Option<&RunServer>) -> bool {
        server.is_some_and(|s| self.plan.servers[s.slot].token.is_none())
    }

    fn listing_context(server: Option<&RunServer>) -> String {
        match server {
            Some(s) => format!("listing message streams of {}", s.label),
            None => "listing message streams".to_string(),
        }
    }

    /// `GET /message-streams` of each server, up to `max_concurrency` at once (before the
    /// pool starts); retries are logged as they happen. One body or error per server, in
    /// order.
    fn fetch_listings(
        &mut self,
        servers: &[Option<RunServer>],
    ) -> Result<Vec<Result<String, Error>>, Error> {
        enum Msg {
            Retry(String),
            Done(usize, Result<String, Error>),
        }
        let spec = stream_table::message_streams();
        let jobs: Vec<(crate::client::Request, String)> = servers
            .iter()
            .map(|server| {
                let mut request = build_request(spec, None, &[], None, false, None);
                request.server = server.as_ref().map(|s| s.slot);
                (request, Self::listing_context(server.as_ref()))
            })
            .collect();
        let workers = self.plan.config.max_concurrency.clamp(1, jobs.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut results: Vec<Option<Result<String, Error>>> = jobs.iter().map(|_| None).collect();
        let mut log_error = None;
        let client = &*self.client;
        let out = &mut *self.out;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Msg>();
            for _ in 0..workers {
                let (tx, next, jobs) = (tx.clone(), &next, &jobs);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((request, context)) = jobs.get(i) else {
                        break;
                    };
                    let result = client.get(request, context, &mut |m| {
                        let _ = tx.send(Msg::Retry(m));
                    });
                    if tx.send(Msg::Done(i, result)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            // Ends when every fetcher has finished (all senders dropped).
            for msg in rx {
                match msg {
                    Msg::Retry(m) => {
                        if log_error.is_none() {
                            if let Err(e) = out.log(Level::Warn, &m) {
                                log_error = Some(e);
                            }
                        }
                    }
                    Msg::Done(i, result) => {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = Some(result);
                        }
                    }
                }
            }
        });
        if let Some(e) = log_error {
            return Err(e);
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::Internal {
                        context: "listing message streams".into(),
                        detail: "a listing request ended without an answer".into(),
                    })
                })
            })
            .collect())
    }

    /// A server's `GET /message-streams` answer: which `messagestream` values to query.
    /// Also returns how many rows were not readable message streams (their messages cannot
    /// be read, so the streams that need the list fail instead of syncing without them).
    fn list_message_streams(
        &mut self,
        server: Option<&RunServer>,
        body: Result<String, Error>,
    ) -> Result<Listing, Error> {
        let spec = stream_table::message_streams();
        let context = Self::listing_context(server);
        let body = body?;
        let page =
            parse_page(&body, spec.envelope).map_err(|detail| Error::UnexpectedResponse {
                context: context.clone(),
                detail,
            })?;
        let mut list: Vec<(String, String)> = Vec::new();
        let mut unreadable = 0u64;
        for raw in page.records {
            let Some(obj) = raw.object() else {
                unreadable += 1;
                continue;
            };
            let field = |name: &str| {
                obj.0
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
            };
            match (field("ID"), field("MessageStreamType")) {
                (Some(id), Some(kind)) if !list.iter().any(|(i, _)| *i == id) => {
                    list.push((id, kind))
                }
                (Some(_), Some(_)) => {}
                _ => unreadable += 1,
            }
        }
        let unknown: Vec<&str> = list
            .iter()
            .filter(|(_, kind)| !KNOWN_STREAM_TYPES.contains(&kind.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        if !unknown.is_empty() {
            // UNCONFIRMED which types exist beyond the documented three: a stream of another
            // type is read by every partitioned stream rather than skipped.
            self.out.log(
                Level::Warn,
                &format!(
                    "{} message streams{} have a type Postmark does not document ({}); they \
                     are read for outbound messages and bounces like the others",
                    unknown.len(),
                    server
                        .map(|s| format!(" of {}", s.label))
                        .unwrap_or_default(),
                    unknown.join(", ")
                ),
            )?;
        }
        let ids: Vec<&str> = list.iter().map(|(id, _)| id.as_str()).collect();
        let of = server
            .map(|s| format!(" of {}", s.label))
            .unwrap_or_default();
        self.out.log(
            Level::Info,
            &format!(
                "message streams{of} (archived included): {}",
                ids.join(", ")
            ),
        )?;
        Ok((list, unreadable))
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
        let inherited = match parent.and_then(|p| self.tasks.get(&p).map(|t| (p, t))) {
            Some((p, t)) => {
                let mut v = t.inherited.clone();
                if !t.seen.is_empty() {
                    v.push(p);
                }
                v
            }
            None => Vec::new(),
        };
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
                reader: None,
                fallback: None,
                seen: KeySet::default(),
                requests: 0,
                inherited,
                keyless: 0,
                offset_ignored: false,
            },
        );
        self.runs[stream].open_tasks += 1;
        let count = match self.runs[stream].selected.spec.paging {
            Paging::CountOffset => Some(PAGE_SIZE),
            Paging::Single => None,
        };
        self.enqueue(id, 0, count);
        // Merged endpoints: one request per part, the part's index in the offset slot.
        let parts = self.runs[stream].selected.spec.parts.len();
        if parts > 1 {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.pages_pending = parts;
            }
            for part in 1..parts {
                self.enqueue(id, part as u32, None);
            }
        }
    }

    fn enqueue(&mut self, task: TaskId, offset: u32, count: Option<u32>) {
        self.enqueue_query(task, offset, count, None);
    }

    fn enqueue_query(
        &mut self,
        task: TaskId,
        offset: u32,
        count: Option<u32>,
        probe: Option<Window>,
    ) {
        let Some(t) = self.tasks.get(&task) else {
            return;
        };
        let start = t.window.map(|w| w.0.timestamp()).unwrap_or(0);
        self.queue.push(Reverse(Pending {
            key: (t.stream, start, task, offset),
            count,
            generation: t.generation,
            probe,
            detail: None,
        }));
    }

    fn run(&mut self) -> Result<(), Error> {
        // Streams with nothing to read (an empty range) still report status and state.
        for idx in 0..self.runs.len() {
            if self.runs[idx].open_tasks == 0 && self.runs[idx].phase == Phase::NotStarted {
                self.start_stream(idx)?;
                self.finish_stream(idx)?;
            }
        }
        // Whole-account mode with no server selected: the server streams are empty.
        for group in 0..self.groups.len() {
            if self.groups[group].runs.is_empty() {
                let name = self.groups[group].name;
                self.out.log(
                    Level::Warn,
                    &format!("{name}: the account has no server to read it from"),
                )?;
                self.end_group(group)?;
            }
        }
        let workers = self.plan.config.max_concurrency.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (msg_tx, msg_rx) = mpsc::channel::<WorkerMsg>();
        spawn_workers(workers, &self.client, job_rx, msg_tx, self.hook.worker);
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
            // The per-message fallback lists outbound messages for an events stream.
            let spec = match (&task.fallback, &p.detail) {
                (Some(_), None) => events::listing_spec().unwrap_or(run.selected.spec),
                _ => run.selected.spec,
            };
            let partition = run.partitions.get(task.partition).cloned().flatten();
            // A newest-first reader sends no date filter; a probe asks its own second.
            let window = match (p.probe, &task.reader) {
                (Some(w), _) => Some(w),
                (None, Some(_)) => None,
                (None, None) => task.window,
            };
            let mut request = match &p.detail {
                Some(d) => {
                    let mut r = d.request();
                    if let Some((offset, count)) = d.page {
                        r.query.push(("count", count.to_string()));
                        r.query.push(("offset", offset.to_string()));
                    }
                    r
                }
                None => build_request(
                    spec,
                    partition.as_deref(),
                    &task.filters,
                    window,
                    task.tight,
                    p.count.map(|c| (offset, c)),
                ),
            };
            let mut endpoint = match (&p.detail, spec.fan_out) {
                (Some(_), Some(f)) => f.path,
                (Some(_), None) => events::per_message_endpoint(spec),
                _ => spec.path,
            };
            if let Some(part) = spec
                .parts
                .get(offset as usize)
                .filter(|_| p.count.is_none() && p.detail.is_none())
            {
                request.path = part.path.to_string();
                endpoint = part.path;
            }
            let of = run
                .server
                .as_ref()
                .map(|s| format!(" of {}", s.label))
                .unwrap_or_default();
            request.server = run.server.as_ref().map(|s| s.slot);
            let context = match (&p.detail, &partition) {
                (Some(d), _) => format!("reading '{}'{of} (GET {})", spec.name, d.path),
                (None, Some(ms)) => format!("reading '{}'{of} (messagestream {ms})", spec.name),
                (None, None) => format!("reading '{}'{of}", spec.name),
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
                    endpoint,
                    probe: p.probe,
                    detail: p.detail,
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
            .metric_timer(job.endpoint, spec.name, took, result.is_ok());
        if self.runs[job.stream].phase != Phase::Running {
            return Ok(());
        }
        let Some(task) = self.tasks.get_mut(&job.task) else {
            return Ok(());
        };
        task.requests += 1;
        let current = task.generation == job.generation;
        self.runs[job.stream].requests += 1;
        self.pages_handled += 1;
        if self.hook.main == Some(self.pages_handled) {
            panic!(
                "test hook: main-thread panic injected at page {}",
                self.pages_handled
            );
        }
        if !current {
            // A page of a window that has since been re-read: its rows come again.
            return self.page_done(job.task);
        }
        if self
            .tasks
            .get(&job.task)
            .is_some_and(|t| t.fallback.is_some())
        {
            return self.fallback_done(job, result, at);
        }
        if job.detail.is_some() {
            return self.on_detail(job, result, at);
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

    /// Fails every stream that is neither done nor failed (after a panic, or when the loop
    /// ended with work left): TRACE ERROR naming it, INCOMPLETE, no further STATE.
    fn fail_open_streams(&mut self, detail: &str) -> Result<(), Error> {
        for idx in 0..self.runs.len() {
            if matches!(self.runs[idx].phase, Phase::Done | Phase::Failed) {
                continue;
            }
            let run = &self.runs[idx];
            let open = run.open_tasks;
            let err = Error::Internal {
                context: format!("reading '{}'", run.name()),
                detail: format!("{detail} ({open} windows open)"),
            };
            self.fail_stream(idx, err)?;
        }
        Ok(())
    }

    fn complete(&mut self, task_id: TaskId) -> Result<(), Error> {
        let mut next = Some(task_id);
        while let Some(id) = next.take() {
            let Some(task) = self.tasks.remove(&id) else {
                break;
            };
            self.check_complete(&task)?;
            self.fallback_completed(id, &task)?;
            let run = &mut self.runs[task.stream];
            run.open_tasks = run.open_tasks.saturating_sub(1);
            if !task.split {
                run.windows_done += 1;
            }
            if let (true, Some((s, e))) = (
                task.filters.is_empty() && task.fallback.is_none(),
                task.window,
            ) {
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
