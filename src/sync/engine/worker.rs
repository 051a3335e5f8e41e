//! The worker pool: threads that only perform HTTP requests (with retries and the shared
//! limiter) and hand bodies back to the main thread, plus the query each page needs.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use chrono::{DateTime, Duration, Utc};

use super::super::windows::Window;
use crate::client::{Client, Request};
use crate::eastern;
use crate::error::Error;
use crate::streams::{self, Cursor};

pub(super) struct Job {
    pub id: u64,
    pub request: Request,
    pub context: String,
}

pub(super) enum WorkerMsg {
    Done {
        id: u64,
        result: Result<String, Error>,
        at: DateTime<Utc>,
    },
    Retrying(String),
}

/// The text of a caught panic.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Spawns `n` workers. A panic while a worker performs a request is caught and answered as
/// that job's failure, so the main thread fails the job's stream instead of waiting for it.
/// `panic_at`: test-only, the worker handling the request with that number (1-based,
/// counted over all workers) panics.
pub(super) fn spawn_workers(
    n: usize,
    client: &Arc<Client>,
    jobs: Receiver<Job>,
    results: Sender<WorkerMsg>,
    panic_at: Option<u64>,
) {
    let jobs = Arc::new(Mutex::new(jobs));
    let started = Arc::new(AtomicU64::new(0));
    for _ in 0..n {
        let jobs = Arc::clone(&jobs);
        let results = results.clone();
        let client = Arc::clone(client);
        let started = Arc::clone(&started);
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
            let number = started.fetch_add(1, Ordering::SeqCst) + 1;
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                if panic_at == Some(number) {
                    panic!("test hook: worker panic injected at request {number}");
                }
                client.get(&job.request, &job.context, &mut on_retry)
            }))
            .unwrap_or_else(|payload| {
                Err(Error::Internal {
                    context: job.context.clone(),
                    detail: format!("a worker thread panicked: {}", panic_message(&*payload)),
                })
            });
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
pub(super) fn build_request(
    spec: &'static streams::StreamSpec,
    partition: Option<&str>,
    filters: &[(&'static str, &'static str)],
    window: Option<Window>,
    tight: bool,
    page: Option<(u32, u32)>,
) -> Request {
    let mut query: Vec<(&'static str, String)> = Vec::with_capacity(8);
    if let Some((offset, count)) = page {
        query.push(("count", count.to_string()));
        query.push(("offset", offset.to_string()));
    }
    match (window, spec.cursor) {
        // Daily stats: inclusive dates, from the calendar day of the start (as `start_date`
        // is written) through the Eastern day the window ends in (today).
        (Some((start, end)), Cursor::Day(_)) => {
            let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
            query.push(("fromdate", day(start.date_naive())));
            query.push(("todate", day(eastern::to_wall(end).date())));
        }
        (Some((start, end)), _) => {
            // Both filter ends are inclusive to the second. With a record filter the
            // window's end second is included and the filter drops it, which holds whether
            // `todate` covers its whole second or not; without one (inbound), or when that
            // end second crowds out the window's own rows (`tight`), the query stops one
            // second earlier.
            let last = if tight || spec.window_filter_field().is_none() {
                end - Duration::seconds(1)
            } else {
                end
            };
            query.push(("fromdate", eastern::format_filter(start)));
            query.push(("todate", eastern::format_filter(last)));
        }
        (None, _) => {}
    }
    let mut path = spec.path.to_string();
    if let Some(ms) = partition {
        if path.contains("{stream}") {
            path = path.replace("{stream}", &encode_segment(ms));
        } else {
            query.push(("messagestream", ms.to_string()));
        }
    }
    for (k, v) in filters {
        query.push((k, v.to_string()));
    }
    for (k, v) in spec.extra_query {
        query.push((k, v.to_string()));
    }
    Request {
        path,
        query,
        token: spec.token,
        server: None,
    }
}

/// A value placed in a URL path: everything but unreserved characters percent-encoded.
pub(super) fn encode_segment(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
            false,
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
            false,
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
