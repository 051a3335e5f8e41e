//! Test-control side of the fake: counters, request log, scripted faults, and the
//! unauthenticated `/__fake/*` endpoints (truth listing, stats, arrivals, shutdown).
//!
//! Control requests are not API requests: they are not counted, logged, delayed or faulted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{json, Map, Value};

use crate::bounces::{bounce_id, pick_bounce_type};
use crate::catalog::{template_id, STREAMS, S_INBOUND, S_OUTBOUND};
use crate::eastern::parse_rfc3339_ticks;
use crate::gen::{mix, pick_inbound_status, pick_status};
use crate::http::{Head, Request, TEXT};
use crate::records::message_id_raw;
use crate::store::Rec;
use crate::{json as j, App};

const MAX_LOG: usize = 200_000;
const MAX_ARRIVE: usize = 1_000_000;

/// A scripted or periodic fault. Status 0 drops the connection without an answer.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub delay_ms: u64,
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
    pub fn end(&self, req: &Request, status: u16) {
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
            "server_token": req.header("x-postmark-server-token").is_some(),
            "account_token": req.header("x-postmark-account-token").is_some(),
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

    /// The fault to apply to request number `n` on `route`, if any: scripted faults first,
    /// then `--drop-every`, then `--fail-every`.
    pub fn take_fault(&self, route: &str, n: u64, p: &Periodic) -> Option<Fault> {
        let scripted = lock(&self.faults)
            .get_mut(route)
            .and_then(VecDeque::pop_front);
        let f = scripted.or_else(|| {
            if p.drop_every > 0 && n % p.drop_every == 0 {
                Some(Fault {
                    status: 0,
                    retry_after: None,
                    delay_ms: 0,
                })
            } else if p.fail_every > 0 && n % p.fail_every == 0 {
                Some(Fault {
                    status: p.fail_status,
                    retry_after: p.retry_after,
                    delay_ms: 0,
                })
            } else {
                None
            }
        })?;
        lock(&self.stats).faults_injected += 1;
        Some(f)
    }

    fn stats_json(&self) -> Value {
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

    fn reset(&self) {
        let mut s = lock(&self.stats);
        let log = std::mem::take(&mut s.log);
        *s = Stats::default();
        drop(s);
        drop(log);
    }
}

/// Body of an injected failure response.
pub fn fault_reply(f: &Fault, out: &mut Vec<u8>) -> Head {
    let mut head = if f.status == 502 {
        out.extend_from_slice(b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n");
        Head::new(502, "text/html")
    } else {
        let (code, msg) = match f.status {
            429 => (429, "Rate limit exceeded. Please retry later."),
            503 => (100, "Maintenance"),
            s if s >= 500 => (u32::from(s), "Internal server error."),
            s => (u32::from(s), "Injected fault."),
        };
        crate::api::error(out, f.status, code, msg)
    };
    if let Some(r) = f.retry_after {
        head.extra.push(("Retry-After", r.to_string()));
    }
    head
}

/// Writes a streamed body; runs on the connection thread after the head was sent.
pub type BodyWriter<'a> = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + 'a>;

/// What the connection loop should do after a request.
pub enum Outcome<'a> {
    /// Send the head with the body buffer.
    Respond(Head),
    /// Send the head, then let the writer produce exactly `len` body bytes. Used for
    /// truth listings (~39 MB for 1M rows) so they never sit in memory whole.
    Stream(Head, u64, BodyWriter<'a>),
    /// Close the connection without an answer.
    Drop,
    /// Answer, then exit the process.
    Exit(Head),
}

fn bad(out: &mut Vec<u8>, msg: &str) -> Outcome<'static> {
    out.clear();
    out.extend_from_slice(json!({ "error": msg }).to_string().as_bytes());
    Outcome::Respond(Head::json(400))
}

fn reply(out: &mut Vec<u8>, v: Value) -> Outcome<'static> {
    out.extend_from_slice(v.to_string().as_bytes());
    Outcome::Respond(Head::json(200))
}

/// Optional numeric control parameter; `Err` if present but not a number.
fn num<T: std::str::FromStr>(req: &Request, name: &str) -> Result<Option<T>, String> {
    match req.param(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("bad '{name}': '{v}'")),
    }
}

fn time(req: &Request, name: &str) -> Result<Option<i64>, String> {
    match req.param(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_rfc3339_ticks(v)
            .map(Some)
            .ok_or_else(|| format!("bad '{name}' (want RFC 3339): '{v}'")),
    }
}

pub fn handle<'a>(app: &'a App, req: &Request, out: &mut Vec<u8>) -> Outcome<'a> {
    let route = req.route();
    let want = match route.as_str() {
        "/__fake/truth" | "/__fake/stats" | "/__fake/requests" => "GET",
        "/__fake/faults" | "/__fake/arrive" | "/__fake/reset-stats" | "/__fake/shutdown" => "POST",
        _ => {
            out.extend_from_slice(b"{\"error\":\"unknown control endpoint\"}");
            return Outcome::Respond(Head::json(404));
        }
    };
    if req.method != want {
        out.extend_from_slice(
            json!({ "error": format!("use {want}") })
                .to_string()
                .as_bytes(),
        );
        return Outcome::Respond(Head::json(405));
    }
    let r = match route.as_str() {
        "/__fake/truth" => truth(app, req, out),
        "/__fake/stats" => Ok(reply(out, app.ctl.stats_json())),
        "/__fake/requests" => {
            for line in &lock(&app.ctl.stats).log {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
            Ok(Outcome::Respond(Head::new(200, "application/x-ndjson")))
        }
        "/__fake/faults" => faults(app, req, out),
        "/__fake/arrive" => arrive(app, req, out),
        "/__fake/reset-stats" => {
            app.ctl.reset();
            Ok(reply(out, json!({ "ok": true })))
        }
        _ => {
            out.extend_from_slice(b"{\"ok\":true}");
            Ok(Outcome::Exit(Head::json(200)))
        }
    };
    r.unwrap_or_else(|e| bad(out, &e))
}

/// Primary keys of every record with time in `[from, to)`, across all streams.
fn truth<'a>(app: &'a App, req: &Request, out: &mut Vec<u8>) -> Result<Outcome<'a>, String> {
    let stream = req.param("stream").unwrap_or_default();
    let from = time(req, "from")?;
    let to = time(req, "to")?;
    let (data, kind) = match stream {
        "messages_outbound" => (&app.outbound, 0),
        "messages_inbound" => (&app.inbound, 1),
        "bounces" => (&app.bounces, 2),
        "templates" => {
            for i in 0..app.cfg.templates {
                j::uint(out, template_id(i));
                out.push(b'\n');
            }
            return Ok(Outcome::Respond(Head::new(200, TEXT)));
        }
        "message_streams" => {
            for s in &STREAMS {
                out.extend_from_slice(s.id.as_bytes());
                out.push(b'\n');
            }
            return Ok(Outcome::Respond(Head::new(200, TEXT)));
        }
        _ => return Err(format!("unknown stream '{stream}'")),
    };
    let g = data.read();
    let ranges: Vec<(usize, usize)> = g
        .streams
        .iter()
        .map(|v| {
            let lo = from.map_or(0, |f| v.partition_point(|r| r.t < f));
            let hi = to.map_or(v.len(), |t| v.partition_point(|r| r.t < t));
            (lo, hi.max(lo))
        })
        .collect();
    // MessageIDs are 36 characters; bounce IDs vary in digits, so measure them.
    let key_len = |r: &Rec| match kind {
        2 => u64::from(bounce_id(r).checked_ilog10().unwrap_or(0)) + 2,
        _ => 37,
    };
    let len: u64 = ranges
        .iter()
        .enumerate()
        .map(|(s, &(lo, hi))| match kind {
            2 => g.streams[s][lo..hi].iter().map(key_len).sum(),
            _ => (hi - lo) as u64 * 37,
        })
        .sum();
    let writer = move |w: &mut dyn Write| -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 * 1024);
        for (s, &(lo, hi)) in ranges.iter().enumerate() {
            for r in &g.streams[s][lo..hi] {
                match kind {
                    2 => j::uint(&mut buf, bounce_id(r)),
                    k => message_id_raw(&mut buf, r.id, k == 1),
                }
                buf.push(b'\n');
                if buf.len() >= 60 * 1024 {
                    w.write_all(&buf)?;
                    buf.clear();
                }
            }
        }
        w.write_all(&buf)
    };
    Ok(Outcome::Stream(Head::new(200, TEXT), len, Box::new(writer)))
}

fn faults(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<Outcome<'static>, String> {
    let path = req
        .param("path")
        .filter(|p| p.starts_with('/'))
        .ok_or("'path' (starting with /) is required")?;
    let route = crate::http::route_of(path);
    let status: u16 = num(req, "status")?.ok_or("'status' is required")?;
    if status != 0 && !(100..=599).contains(&status) {
        return Err(format!("bad status {status}"));
    }
    let count: usize = num(req, "count")?.unwrap_or(1).min(MAX_ARRIVE);
    let fault = Fault {
        status,
        retry_after: num(req, "retry_after")?,
        delay_ms: num(req, "delay_ms")?.unwrap_or(0),
    };
    let mut map = lock(&app.ctl.faults);
    let q = map.entry(route.clone()).or_default();
    q.extend(std::iter::repeat(fault).take(count));
    let pending = q.len();
    drop(map);
    Ok(reply(
        out,
        json!({ "path": route, "queued": count, "pending": pending }),
    ))
}

fn arrive(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<Outcome<'static>, String> {
    let stream = req.param("stream").unwrap_or_default();
    let count: usize = num(req, "count")?.unwrap_or(1);
    if count > MAX_ARRIVE {
        return Err(format!("count is limited to {MAX_ARRIVE}"));
    }
    let at = time(req, "at")?.unwrap_or_else(|| app.live_ticks());
    let times = (0..count).map(|i| at + i as i64 * 10_000);
    let added = match stream {
        "messages_outbound" => arrive_into(&app.outbound, S_OUTBOUND, times, pick_status),
        "messages_inbound" => arrive_into(&app.inbound, S_INBOUND, times, pick_inbound_status),
        "bounces" => arrive_into(&app.bounces, S_OUTBOUND, times, pick_bounce_type),
        _ => return Err(format!("unknown stream '{stream}'")),
    };
    Ok(reply(out, json!({ "added": added })))
}

/// Appends records at the given ticks; the kind is a hash of the time.
pub fn arrive_into(
    data: &crate::store::Dataset,
    stream: usize,
    times: impl Iterator<Item = i64>,
    kind: fn(u64) -> u8,
) -> usize {
    let items: Vec<(i64, u8)> = times.map(|t| (t, kind(mix(t as u64 ^ 0xa7)))).collect();
    data.insert(stream, &items)
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
                retry_after: None,
                delay_ms: 0,
            }]),
        );
        assert_eq!(c.take_fault("/bounces", 1, &p).map(|f| f.status), Some(503));
        assert!(c.take_fault("/bounces", 2, &p).is_none());
        assert_eq!(
            c.take_fault("/server", 3, &p).map(|f| f.retry_after),
            Some(Some(2))
        );
        assert_eq!(c.stats_json()["faults_injected"], 2);
    }

    #[test]
    fn fault_bodies() {
        let mut out = Vec::new();
        let h = fault_reply(
            &Fault {
                status: 502,
                retry_after: None,
                delay_ms: 0,
            },
            &mut out,
        );
        assert!(h.ctype.starts_with("text/html"));
        let mut out = Vec::new();
        let h = fault_reply(
            &Fault {
                status: 429,
                retry_after: Some(1),
                delay_ms: 0,
            },
            &mut out,
        );
        assert_eq!(h.ctype, JSON);
        assert_eq!(h.extra, vec![("Retry-After", "1".to_string())]);
        assert!(serde_json::from_slice::<Value>(&out).is_ok());
    }
}
