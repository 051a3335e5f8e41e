//! The Postmark Server API endpoints: auth, parameter validation, paging and envelopes.
//!
//! Rules follow api.md §0-§3 and the brief: `count` 1..=500 required, `count + offset` at
//! most 10,000, Eastern wall-time date filters inclusive at second granularity, newest
//! first, `messagestream` defaulting to `outbound`. Errors are 4xx JSON, never panics.

use crate::bounces::{self as bounce_records, BOUNCE_TYPES};
use crate::catalog::{self, stream_index, S_INBOUND, S_OUTBOUND};
use crate::eastern::{parse_filter, DateFilter, Zone};
use crate::hostile_paging;
use crate::http::{Head, Request};
use crate::json;
use crate::records::{self, INBOUND_STATUS, OUTBOUND_STATUS};
use crate::store::{Dataset, Rec};
use crate::App;

pub const MAX_COUNT: usize = 500;
pub const MAX_WINDOW: usize = 10_000;
pub const CODE_MESSAGES: u32 = 700;
const CODE_BOUNCES: u32 = 1000;
const CODE_TEMPLATES: u32 = 1100;
const CODE_STREAMS: u32 = 1221;

/// Writes `{"ErrorCode":..,"Message":..}` and returns its head.
pub fn error(out: &mut Vec<u8>, status: u16, code: u32, msg: &str) -> Head {
    out.clear();
    out.extend_from_slice(b"{\"ErrorCode\":");
    json::uint(out, u64::from(code));
    out.extend_from_slice(b",\"Message\":");
    json::string(out, msg, false);
    out.push(b'}');
    Head::json(status)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Endpoints of the every-dataset issue (see `endpoints.rs`).
    More,
    Server,
    Outbound,
    Inbound,
    Bounces,
    Templates,
    Streams,
}

/// Handles one authenticated-or-not API request whose faults/latency were already applied.
pub fn handle(app: &App, req: &Request, out: &mut Vec<u8>) -> Head {
    if crate::account::is_account_route(&req.route()) {
        return crate::account::handle(app, req, out);
    }
    let ep = match req.route().as_str() {
        "/server" => Endpoint::Server,
        "/messages/outbound" => Endpoint::Outbound,
        "/messages/inbound" => Endpoint::Inbound,
        "/bounces" => Endpoint::Bounces,
        "/templates" => Endpoint::Templates,
        "/message-streams" => Endpoint::Streams,
        r if crate::endpoints::known(r) => Endpoint::More,
        _ => return error(out, 404, 404, "Not found"),
    };
    if req.method != "GET" {
        return error(out, 405, 405, "Method not allowed");
    }
    let server = req.header("x-postmark-server-token");
    if server != Some(app.cfg.token.as_str()) || app.is_revoked() {
        return error(
            out,
            401,
            10,
            "Request does not contain a valid Server token.",
        );
    }
    if req.header("x-postmark-account-token").is_some() {
        return error(
            out,
            401,
            10,
            "Please do not include Account API Token for Server API Token calls.",
        );
    }
    let result = match ep {
        Endpoint::More => crate::endpoints::handle(app, req, out),
        Endpoint::Server => {
            out.extend_from_slice(&app.server_body);
            Ok(())
        }
        Endpoint::Outbound => outbound(app, req, out),
        Endpoint::Inbound => inbound(app, req, out),
        Endpoint::Bounces => bounces(app, req, out),
        Endpoint::Templates => templates(app, req, out),
        Endpoint::Streams => streams(app, req, out),
    };
    match result {
        Ok(()) => Head::json(200),
        Err(e) => {
            if e.cap {
                app.ctl.cap_violation();
            }
            error(out, 422, e.code, &e.msg)
        }
    }
}

pub struct Invalid {
    pub code: u32,
    pub msg: String,
    pub cap: bool,
}

pub fn invalid(code: u32, msg: impl Into<String>) -> Invalid {
    Invalid {
        code,
        msg: msg.into(),
        cap: false,
    }
}

/// A present, non-empty parameter value.
pub fn param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.param(name).map(str::trim).filter(|v| !v.is_empty())
}

/// Validates `count`/`offset`; returns (offset, count).
pub fn paging(
    count: Option<&str>,
    offset: Option<&str>,
    code: u32,
) -> Result<(usize, usize), Invalid> {
    let count = match count.map(str::parse::<usize>) {
        None => return Err(invalid(code, "The 'count' parameter is required.")),
        Some(Ok(c)) if (1..=MAX_COUNT).contains(&c) => c,
        Some(_) => {
            return Err(invalid(
                code,
                "The 'count' parameter must be an integer between 1 and 500.",
            ))
        }
    };
    let offset = match offset.map(str::parse::<usize>) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => {
            return Err(invalid(
                code,
                "The 'offset' parameter must be a non-negative integer.",
            ))
        }
    };
    if count.saturating_add(offset) > MAX_WINDOW {
        return Err(Invalid {
            cap: true,
            ..invalid(code, "Count + Offset cannot exceed 10000 messages.")
        });
    }
    Ok((offset, count))
}

/// Tick bounds `[from, to)` of a date filter; `None` for an open end.
pub type Bounds = (Option<i64>, Option<i64>);

/// Parsed `fromdate`/`todate`: tick bounds, or `None` when the query must return no rows.
pub fn window(req: &Request, zone: Zone, code: u32) -> Result<Option<Bounds>, Invalid> {
    let mut bounds = [None, None];
    for (i, name) in ["fromdate", "todate"].into_iter().enumerate() {
        if let Some(v) = param(req, name) {
            match parse_filter(v, i == 1, zone) {
                Ok(DateFilter::At(t)) => bounds[i] = Some(t),
                Ok(DateFilter::NoRows) => return Ok(None),
                Err(()) => {
                    return Err(invalid(
                        code,
                        format!("The '{name}' parameter is not a valid date: '{v}'."),
                    ))
                }
            }
        }
    }
    Ok(Some((bounds[0], bounds[1])))
}

/// Case-insensitive lookup of an enum-like parameter value.
pub fn lookup(
    req: &Request,
    name: &str,
    values: &[&str],
    code: u32,
) -> Result<Option<u8>, Invalid> {
    match param(req, name) {
        None => Ok(None),
        Some(v) => match values.iter().position(|s| s.eq_ignore_ascii_case(v)) {
            Some(i) => Ok(Some(i as u8)),
            None => Err(invalid(code, format!("Invalid '{name}' value: '{v}'."))),
        },
    }
}

struct Search<'a> {
    data: &'a Dataset,
    stream: Option<usize>,
    kind: Option<u8>,
    page: (usize, usize),
    code: u32,
    items_key: &'static str,
    /// Primary key field (for --keyless-every).
    key: &'static str,
    /// `/messages/*` (for --ignore-date-filter).
    messages: bool,
    /// Kind of rows added by --late-rows.
    new_kind: fn(u64) -> u8,
}

/// Shared search flow: validate, query the index, write the envelope.
fn search(
    app: &App,
    req: &Request,
    out: &mut Vec<u8>,
    s: Search,
    render: impl Fn(&mut Vec<u8>, usize, &Rec),
) -> Result<(), Invalid> {
    let hostile = &app.cfg.hostile;
    let (total, page) = match (window(req, app.cfg.zone, s.code)?, s.stream) {
        (Some(bounds), Some(stream)) => hostile_paging::search(
            hostile,
            &app.hostile,
            s.data,
            stream,
            bounds,
            s.kind,
            s.page,
            s.messages,
            s.new_kind,
        ),
        _ => (0, Vec::new()),
    };
    let total = if app.cfg.cap_total_count {
        total.min(MAX_WINDOW)
    } else {
        total
    };
    out.reserve(page.len() * 700 + 64);
    out.extend_from_slice(b"{\"TotalCount\":");
    json::uint(out, total as u64);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(s.items_key.as_bytes());
    out.extend_from_slice(b"\":[");
    let mut one = Vec::new();
    for (i, (stream, r)) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if hostile_paging::keyless(hostile, r) {
            one.clear();
            render(&mut one, *stream, r);
            hostile_paging::null_key(out, &one, s.key);
        } else {
            render(out, *stream, r);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

pub fn paging_of(req: &Request, code: u32) -> Result<(usize, usize), Invalid> {
    paging(param(req, "count"), param(req, "offset"), code)
}

/// `messagestream`, defaulting to `outbound`; an unknown stream simply has no rows.
pub fn stream_param(req: &Request) -> Option<usize> {
    match param(req, "messagestream") {
        None => Some(S_OUTBOUND),
        Some(name) => stream_index(name),
    }
}

fn outbound(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let page = paging_of(req, CODE_MESSAGES)?;
    let kind = lookup(req, "status", &OUTBOUND_STATUS, CODE_MESSAGES)?;
    let s = Search {
        data: &app.outbound,
        stream: stream_param(req),
        kind,
        page,
        code: CODE_MESSAGES,
        items_key: "Messages",
        key: "MessageID",
        messages: true,
        new_kind: crate::gen::pick_status,
    };
    search(app, req, out, s, records::outbound)
}

fn inbound(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let page = paging_of(req, CODE_MESSAGES)?;
    let kind = lookup(req, "status", &INBOUND_STATUS, CODE_MESSAGES)?;
    let s = Search {
        data: &app.inbound,
        stream: Some(S_INBOUND),
        kind,
        page,
        code: CODE_MESSAGES,
        items_key: "InboundMessages",
        key: "MessageID",
        messages: true,
        new_kind: crate::gen::pick_inbound_status,
    };
    search(app, req, out, s, |o, _, r| records::inbound(o, r))
}

fn bounces(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let page = paging_of(req, CODE_BOUNCES)?;
    let names: Vec<&str> = BOUNCE_TYPES.iter().map(|t| t.0).collect();
    let kind = lookup(req, "type", &names, CODE_BOUNCES)?;
    let s = Search {
        data: &app.bounces,
        stream: stream_param(req),
        kind,
        page,
        code: CODE_BOUNCES,
        items_key: "Bounces",
        key: "ID",
        messages: false,
        new_kind: crate::bounces::pick_bounce_type,
    };
    search(app, req, out, s, |o, st, r| {
        bounce_records::bounce_for(o, st, r, app.server_id)
    })
}

fn templates(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let (offset, count) = paging_of(req, CODE_TEMPLATES)?;
    let filter = lookup(
        req,
        "templatetype",
        &["All", "Standard", "Layout"],
        CODE_TEMPLATES,
    )?;
    let matching: Vec<usize> = (0..app.cfg.templates)
        .rev()
        .filter(|&i| {
            !app.ctl
                .template_deleted(catalog::template_id(i) + app.index * 1_000_000)
        })
        .filter(|&i| match filter {
            Some(1) => !catalog::template_is_layout(i),
            Some(2) => catalog::template_is_layout(i),
            _ => true,
        })
        .collect();
    out.extend_from_slice(b"{\"TotalCount\":");
    json::uint(out, matching.len() as u64);
    out.extend_from_slice(b",\"Templates\":[");
    for (n, &i) in matching.iter().skip(offset).take(count).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        catalog::template_at(out, i, catalog::template_id(i) + app.index * 1_000_000);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

fn streams(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    const TYPES: [&str; 4] = ["All", "Transactional", "Broadcasts", "Inbound"];
    let kind = lookup(req, "messagestreamtype", &TYPES, CODE_STREAMS)?;
    let filter = kind.filter(|&k| k > 0).map(|k| TYPES[usize::from(k)]);
    let archived =
        param(req, "includearchivedstreams").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    catalog::message_streams_for(
        out,
        app.now / crate::eastern::TICKS_PER_SEC,
        filter,
        archived,
        app.server_id,
        &|s| app.has_stream(s),
    );
    hostile_paging::patch_streams(&app.cfg.hostile, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(count: Option<&str>, offset: Option<&str>) -> Result<(usize, usize), (u32, bool)> {
        paging(count, offset, 700).map_err(|e| (e.code, e.cap))
    }

    #[test]
    fn count_offset_validation() {
        assert_eq!(p(Some("500"), None), Ok((0, 500)));
        assert_eq!(p(Some("1"), Some("9999")), Ok((9999, 1)));
        assert_eq!(p(Some("500"), Some("9500")), Ok((9500, 500)));
        assert_eq!(p(Some("500"), Some("9501")), Err((700, true)));
        assert_eq!(
            p(Some("2"), Some("99999999999999999999999")),
            Err((700, false))
        );
        for bad in [
            None,
            Some("0"),
            Some("501"),
            Some("abc"),
            Some("-1"),
            Some("1.5"),
        ] {
            assert_eq!(p(bad, None), Err((700, false)), "{bad:?}");
        }
        assert_eq!(p(Some("10"), Some("-5")), Err((700, false)));
        assert_eq!(
            paging(Some("9"), Some("x"), 1000).map_err(|e| e.code).err(),
            Some(1000)
        );
    }
}
