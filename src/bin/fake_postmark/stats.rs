//! Bookkeeping for API requests: counters for `/__fake/stats`, the request log for
//! `/__fake/requests`, and the queue of scripted faults plus the periodic fault rule.
//!
//! Shared by all connection threads behind short mutex sections; the hot path takes each
//! lock once or twice per request, which is negligible next to rendering a page.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{json, Map, Value};

use crate::http::{Head, Request};

/// The request log keeps only the most recent entries.
const MAX_LOG: usize = 200_000;

/// A scripted or periodic fault. Status 0 drops the connection without an answer.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub delay_ms: u64,
    /// The `ErrorCode` of the JSON body instead of the one derived from the status (e.g.
    /// 422 with 701: the message is gone).
    pub error_code: Option<u32>,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    by_path: BTreeMap<String, u64>,
    max_in_flight: u64,
    cap_violations: u64,
    faults_injected: u64,
    status_counts: BTreeMap<u16, u64>,
    log: VecDeque<String>,
}

#[derive(Default)]
pub struct Control {
    stats: Mutex<Stats>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    in_flight: AtomicU64,
    /// Template ids deleted through `/__fake/delete-template`.
    deleted_templates: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Periodic fault settings from the command line.
pub struct Periodic {
    pub fail_every: u64,
    pub fail_status: u16,
    pub retry_after: Option<u64>,
    pub drop_every: u64,
}

impl Control {
    /// Counts a new API request and returns its 1-based number since the last reset.
    pub fn begin(&self, path: &str) -> u64 {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut s = lock(&self.stats);
        s.requests += 1;
        *s.by_path.entry(path.to_string()).or_default() += 1;
        s.max_in_flight = s.max_in_flight.max(now);
        s.requests
    }

    /// Records the outcome of an API request (status 0 = dropped) after it was answered.
    /// Kept for callers without a server at hand (the log then names the first server).
    #[allow(dead_code)]
    pub fn end(&self, req: &Request, status: u16) {
        self.end_on(req, status, crate::catalog::SERVER_ID);
    }

    /// [`Control::end`] naming the server (ID) of the account that answered it.
    pub fn end_on(&self, req: &Request, status: u16, server: u64) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut query = Map::new();
        for (k, v) in &req.params {
            query
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        let line = json!({
            "path": req.path,
            "query": query,
            "status": status,
            "server": server,
            "server_token": req.header("x-postmark-server-token").is_some(),
            "account_token": req.header("x-postmark-account-token").is_some(),
            "accept": req.header("accept").unwrap_or(""),
            "accept_encoding": req.header("accept-encoding").unwrap_or(""),
            "user_agent": req.header("user-agent").unwrap_or(""),
        })
        .to_string();
        let mut s = lock(&self.stats);
        *s.status_counts.entry(status).or_default() += 1;
        if s.log.len() >= MAX_LOG {
            s.log.pop_front();
        }
        s.log.push_back(line);
    }

    pub fn cap_violation(&self) {
        lock(&self.stats).cap_violations += 1;
    }

    /// The fault to apply to request number `n` on `route` (asking `offset`, if given), if
    /// any: scripted faults first (those for this offset, then those for any request of the
    /// route), then `--drop-every`, then `--fail-every`.
    pub fn take_fault(
        &self,
        route: &str,
        offset: Option<&str>,
        n: u64,
        p: &Periodic,
    ) -> Option<Fault> {
        let scripted = {
            let mut map = lock(&self.faults);
            if map.is_empty() {
                None
            } else {
                let o = offset
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                map.get_mut(&page_key(route, o))
                    .and_then(VecDeque::pop_front)
                    .or_else(|| map.get_mut(route).and_then(VecDeque::pop_front))
            }
        };
        let f = scripted.or_else(|| {
            if p.drop_every > 0 && n.is_multiple_of(p.drop_every) {
                Some(Fault {
                    status: 0,
                    ..Fault::default()
                })
            } else if p.fail_every > 0 && n.is_multiple_of(p.fail_every) {
                Some(Fault {
                    status: p.fail_status,
                    retry_after: p.retry_after,
                    ..Fault::default()
                })
            } else {
                None
            }
        })?;
        lock(&self.stats).faults_injected += 1;
        Some(f)
    }

    /// Queues `count` copies of a scripted fault for a route; returns how many are pending.
    pub fn queue_faults(&self, route: &str, fault: Fault, count: usize) -> usize {
        let mut map = lock(&self.faults);
        let q = map.entry(route.to_string()).or_default();
        q.extend(std::iter::repeat_n(fault, count));
        q.len()
    }

    /// Appends the request log as JSON lines.
    pub fn write_log(&self, out: &mut Vec<u8>) {
        for line in &lock(&self.stats).log {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }

    pub fn stats_json(&self) -> Value {
        let s = lock(&self.stats);
        let codes: BTreeMap<String, u64> = s
            .status_counts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        json!({
            "requests": s.requests,
            "by_path": s.by_path,
            "max_in_flight": s.max_in_flight,
            "cap_violations": s.cap_violations,
            "faults_injected": s.faults_injected,
            "status_counts": codes,
        })
    }

    /// Deletes a template: it leaves `/templates` and the truth. Returns whether it existed.
    pub fn delete_template(&self, id: u64) -> bool {
        let mut d = lock(&self.deleted_templates);
        let fresh = !d.contains(&id);
        if fresh {
            d.push(id);
        }
        fresh
    }

    pub fn template_deleted(&self, id: u64) -> bool {
        lock(&self.deleted_templates).contains(&id)
    }

    pub fn reset(&self) {
        let mut s = lock(&self.stats);
        let log = std::mem::take(&mut s.log);
        *s = Stats::default();
        drop(s);
        drop(log);
    }
}

/// The key of faults scripted for one page (`offset`) of a route.
pub fn page_key(route: &str, offset: u64) -> String {
    format!("{route}?offset={offset}")
}

/// Body of an injected failure response.
pub fn fault_reply(f: &Fault, out: &mut Vec<u8>) -> Head {
    let mut head = if f.status == 502 {
        out.extend_from_slice(b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n");
        Head::new(502, "text/html")
    } else {
        let (code, msg) = match (f.status, f.error_code) {
            (_, Some(701)) => (701, "This message was not found."),
            (_, Some(c)) => (c, "Injected fault."),
            (429, None) => (429, "Rate limit exceeded. Please retry later."),
            (503, None) => (100, "Maintenance"),
            (s, None) if s >= 500 => (u32::from(s), "Internal server error."),
            (s, None) => (u32::from(s), "Injected fault."),
        };
        crate::api::error(out, f.status, code, msg)
    };
    if let Some(r) = f.retry_after {
        head.extra.push(("Retry-After", r.to_string()));
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::JSON;

    #[test]
    fn periodic_and_scripted_faults() {
        let c = Control::default();
        let p = Periodic {
            fail_every: 3,
            fail_status: 429,
            retry_after: Some(2),
            drop_every: 0,
        };
        lock(&c.faults).insert(
            "/bounces".into(),
            VecDeque::from([Fault {
                status: 503,
                ..Fault::default()
            }]),
        );
        assert_eq!(
            c.take_fault("/bounces", None, 1, &p).map(|f| f.status),
            Some(503)
        );
        assert!(c.take_fault("/bounces", None, 2, &p).is_none());
        // A fault for one page only: other offsets pass, that offset gets it once.
        let gone = Fault {
            status: 422,
            error_code: Some(701),
            ..Fault::default()
        };
        c.queue_faults(&page_key("/bounces", 500), gone, 1);
        assert!(c.take_fault("/bounces", Some("0"), 4, &p).is_none());
        assert_eq!(
            c.take_fault("/bounces", Some("500"), 5, &p)
                .and_then(|f| f.error_code),
            Some(701)
        );
        assert!(c.take_fault("/bounces", Some("500"), 7, &p).is_none());
        assert_eq!(
            c.take_fault("/server", None, 3, &p).map(|f| f.retry_after),
            Some(Some(2))
        );
        assert_eq!(c.stats_json()["faults_injected"], 3);
    }

    #[test]
    fn fault_bodies() {
        let mut out = Vec::new();
        let h = fault_reply(
            &Fault {
                status: 502,
                ..Fault::default()
            },
            &mut out,
        );
        assert!(h.ctype.starts_with("text/html"));
        let mut out = Vec::new();
        let h = fault_reply(
            &Fault {
                status: 429,
                retry_after: Some(1),
                ..Fault::default()
            },
            &mut out,
        );
        assert_eq!(h.ctype, JSON);
        assert_eq!(h.extra, vec![("Retry-After", "1".to_string())]);
        assert!(serde_json::from_slice::<Value>(&out).is_ok());
        let mut out = Vec::new();
        let h = fault_reply(
            &Fault {
                status: 422,
                error_code: Some(701),
                ..Fault::default()
            },
            &mut out,
        );
        assert_eq!(h.status, 422);
        let body: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(body["ErrorCode"], 701);
    }
}
