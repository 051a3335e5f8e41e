//! The unauthenticated `/__fake/*` test-control endpoints: truth listing, stats, request
//! log, scripted faults, arrivals, template deletion (`POST /__fake/delete-template?id=N`),
//! revoke (`POST /__fake/revoke?server=ID`: that server's token answers 401 from then on),
//! add-server (`POST /__fake/add-server`), reset and shutdown. `server=ID` picks the server
//! of the account a request is for.
//!
//! Control requests are not API requests: they are not counted, logged, delayed or faulted.
//!
//! # Ground-truth contract (`GET /__fake/truth`)
//!
//! `?stream=<connector stream name>[&from=RFC3339][&to=RFC3339][&records=1]`
//!
//! Without `records`, one line per record: its primary key. A single-field key is the plain
//! value; a composite key is a compact JSON array of the key values in this order:
//!
//! | stream | key |
//! |---|---|
//! | `messages_outbound`, `messages_inbound` | `MessageID` |
//! | `bounces` | `ID` |
//! | `templates` | `TemplateId` |
//! | `message_streams` | `ID` |
//! | `opens` | `[MessageID, Recipient, ReceivedAt]` |
//! | `clicks` | `[MessageID, Recipient, ReceivedAt, OriginalLink]` |
//! | `message_events` | `[MessageID, Recipient, Type, ReceivedAt]` |
//! | `suppressions` | `[MessageStream, EmailAddress]` |
//! | `delivery_stats` | `Name` (the `Bounces` names plus `InactiveMails`) |
//! | `stats_outbound_daily`, `stats_open_platforms`, `stats_click_platforms`, `stats_click_locations` | `[MessageStream, Date]` |
//! | `stats_open_email_clients`, `stats_click_browser_families` | `[MessageStream, Date, Name]` |
//! | `webhooks`, `inbound_rules` | `ID` |
//!
//! Date-times are RFC 3339 UTC as the connector writes them: `2026-11-30T12:34:56.123456Z`,
//! no fraction on a whole second. Event times in the fake are whole microseconds, so the
//! comparison is exact. `Date` is `YYYY-MM-DD` (Eastern day).
//!
//! `&server=ID` selects a server of the account (default: the first server); an unknown ID
//! is a 400. Account-level streams ignore it: `servers` (key `ID`; records are the
//! `/servers` objects, `ApiTokens` included), `domains` and `sender_signatures` (key `ID`;
//! records are the list objects).
//!
//! `from`/`to` (half-open `[from, to)`) filter time-based streams by their cursor: messages,
//! bounces, opens and clicks by their own time; `message_events` by the PARENT message's
//! `ReceivedAt` (the stream follows its parent's windows); stats streams by `Date`, taken
//! as the UTC midnight of that date. Full-refresh streams ignore them.
//!
//! With `records=1` (new streams only), one JSON object per line: the record as the
//! connector should emit it (date-times normalised as above):
//! - `opens`, `clicks`: the API object. `message_events`: `MessageID` followed by the
//!   `MessageEvents` entry. `suppressions`: `MessageStream` plus the API fields.
//!   `webhooks`: the raw API object, secrets included (a test checks they never appear in
//!   the connector's output). `inbound_rules`: `{Rule, ID}`. `templates`: the
//!   `/templates/{id}` object.
//! - `delivery_stats`: `{Name, Type, Count}` per `Bounces` entry (`Type` null for `All`),
//!   plus `{Name:"InactiveMails", Type:null, Count:n}`.
//! - `stats_outbound_daily`: `{MessageStream, Date, Sent, HardBounce, SMTPApiError,
//!   SoftBounce, Transient, SpamComplaint, Tracked, Opens, UniqueOpens, Clicks,
//!   UniqueClicks}`; `stats_open_platforms`: `{MessageStream, Date, Desktop, Mobile,
//!   Unknown, WebMail}`; `stats_click_platforms`: `{.., Desktop, Mobile, Unknown}`;
//!   `stats_click_locations`: `{.., HTML, Text}`: every fixed key, 0 when Postmark leaves
//!   it out; one row per (stream, day) where at least one is non-zero.
//! - `stats_open_email_clients`, `stats_click_browser_families`: `{MessageStream, Date,
//!   Name, Count}` per non-zero name.

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::bounces::{bounce_id, pick_bounce_type};
use crate::catalog::{template_id, STREAMS, S_INBOUND, S_OUTBOUND};
use crate::eastern::parse_rfc3339_ticks;
use crate::gen::{mix, pick_inbound_status, pick_status};
use crate::http::{Head, Request, TEXT};
use crate::records::message_id_raw;
use crate::stats::Fault;
use crate::store::Rec;
use crate::{json as j, App};

const MAX_ARRIVE: usize = 1_000_000;

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
        "/__fake/faults"
        | "/__fake/arrive"
        | "/__fake/reset-stats"
        | "/__fake/shutdown"
        | "/__fake/delete-template"
        | "/__fake/revoke" => "POST",
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
    // `server=ID` was resolved by the caller; an ID that names no server is an error.
    if let Some(v) = req.param("server").filter(|v| !v.is_empty()) {
        let account_level = matches!(
            req.param("stream"),
            Some("servers" | "domains" | "sender_signatures")
        );
        if !account_level && v.parse::<u64>().ok() != Some(app.server_id) {
            return bad(out, &format!("unknown server '{v}'"));
        }
    }
    let r = match route.as_str() {
        "/__fake/truth" => truth(app, req, out),
        "/__fake/revoke" => {
            if req.param("server").is_none() {
                Err("'server' (a server ID) is required".to_string())
            } else {
                app.revoked.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(reply(out, json!({ "revoked": app.server_id })))
            }
        }
        "/__fake/stats" => {
            let mut stats = app.ctl.stats_json();
            stats["hostile"] = app.hostile.stats();
            Ok(reply(out, stats))
        }
        "/__fake/requests" => {
            app.ctl.write_log(out);
            Ok(Outcome::Respond(Head::new(200, "application/x-ndjson")))
        }
        "/__fake/faults" => faults(app, req, out),
        "/__fake/arrive" => arrive(app, req, out),
        "/__fake/delete-template" => delete_template(app, req, out),
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
    let records = req
        .param("records")
        .is_some_and(|v| v == "1" || v == "true");
    let (data, kind) = match stream {
        "templates" if records => {
            crate::ground::truth(app, stream, from, to, records, out)?;
            return Ok(Outcome::Respond(Head::new(200, "application/x-ndjson")));
        }
        "messages_outbound" => (&app.outbound, 0),
        "messages_inbound" => (&app.inbound, 1),
        "bounces" => (&app.bounces, 2),
        "templates" => {
            for i in 0..app.cfg.templates {
                let id = template_id(i) + app.index * 1_000_000;
                if !app.ctl.template_deleted(id) {
                    j::uint(out, id);
                    out.push(b'\n');
                }
            }
            return Ok(Outcome::Respond(Head::new(200, TEXT)));
        }
        "message_streams" => {
            for (_, s) in STREAMS
                .iter()
                .enumerate()
                .filter(|(i, _)| app.has_stream(*i))
            {
                out.extend_from_slice(s.id.as_bytes());
                out.push(b'\n');
            }
            return Ok(Outcome::Respond(Head::new(200, TEXT)));
        }
        other => {
            crate::ground::truth(app, other, from, to, records, out)?;
            let ctype = if records {
                "application/x-ndjson"
            } else {
                TEXT
            };
            return Ok(Outcome::Respond(Head::new(200, ctype)));
        }
    };
    // `keyed=true`: leave out records --keyless-every renders without their key.
    let keyed = req.param("keyed") == Some("true");
    let flags = app.cfg.hostile.clone();
    let keep = move |r: &Rec| !(keyed && crate::hostile_paging::keyless(&flags, r));
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
            2 => g.streams[s][lo..hi]
                .iter()
                .filter(|r| keep(r))
                .map(key_len)
                .sum(),
            _ => g.streams[s][lo..hi].iter().filter(|r| keep(r)).count() as u64 * 37,
        })
        .sum();
    let writer = move |w: &mut dyn Write| -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 * 1024);
        for (s, &(lo, hi)) in ranges.iter().enumerate() {
            for r in g.streams[s][lo..hi].iter().filter(|r| keep(r)) {
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

/// `POST /__fake/add-server`: one more server in the account (on the first server).
pub fn add_server<'a>(first: &App, req: &Request, out: &mut Vec<u8>) -> Outcome<'a> {
    if req.method != "POST" {
        out.extend_from_slice(b"{\"error\":\"use POST\"}");
        return Outcome::Respond(Head::json(405));
    }
    let s = first.add_server();
    reply(
        out,
        json!({ "ID": s.server_id, "Token": s.cfg.token, "index": s.index }),
    )
}

/// `POST /__fake/faults?path=P&status=S[&count=N][&retry_after=SECS][&delay_ms=MS]
/// [&error_code=C][&offset=O]`: the next N requests of route P answer S (0 = the connection
/// is dropped), with `ErrorCode` C in the body if given (422 with 701: the message is gone);
/// with `offset`, only requests asking that offset (absent = 0) do, e.g. a message's second
/// page of events.
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
        error_code: num(req, "error_code")?,
    };
    let key = match num::<u64>(req, "offset")? {
        Some(o) => crate::stats::page_key(&route, o),
        None => route,
    };
    let pending = app.ctl.queue_faults(&key, fault, count);
    Ok(reply(
        out,
        json!({ "path": key, "queued": count, "pending": pending }),
    ))
}

/// `POST /__fake/delete-template?id=N`: the template disappears from `/templates` and from
/// the truth, as when a user deletes it in Postmark between two syncs.
fn delete_template(
    app: &App,
    req: &Request,
    out: &mut Vec<u8>,
) -> Result<Outcome<'static>, String> {
    let id: u64 = num(req, "id")?.ok_or("'id' is required")?;
    // Ids as the server shows them (each server of an account offsets its own).
    if !(0..app.cfg.templates).any(|i| template_id(i) + app.index * 1_000_000 == id) {
        return Err(format!("no template {id}"));
    }
    let deleted = app.ctl.delete_template(id);
    Ok(reply(out, json!({ "deleted": deleted })))
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
        "messages_outbound" => {
            let recs = arrive_into(&app.outbound, S_OUTBOUND, times, pick_status);
            for r in &recs {
                app.daily.add_message(S_OUTBOUND, r.t, r.id);
            }
            recs.len()
        }
        "messages_inbound" => {
            arrive_into(&app.inbound, S_INBOUND, times, pick_inbound_status).len()
        }
        "bounces" => {
            let recs = arrive_into(&app.bounces, S_OUTBOUND, times, pick_bounce_type);
            for r in &recs {
                app.daily.add_bounce(S_OUTBOUND, r);
            }
            recs.len()
        }
        "opens" | "clicks" => {
            let data = if stream == "opens" {
                &app.opens
            } else {
                &app.clicks
            };
            // Events go to messages of `messagestream` (default `outbound`; `any` = all).
            let only = match req.param("messagestream").unwrap_or("outbound") {
                "any" => None,
                name => Some(
                    crate::catalog::stream_index(name)
                        .ok_or_else(|| format!("unknown message stream '{name}'"))?,
                ),
            };
            let evs = data.arrive(&app.outbound.read(), only, at, count);
            app.daily.add_events(&evs, data.click);
            evs.len()
        }
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
) -> Vec<Rec> {
    let items: Vec<(i64, u8)> = times.map(|t| (t, kind(mix(t as u64 ^ 0xa7)))).collect();
    data.insert_recs(stream, &items)
}
