//! The Postmark Server API endpoints: auth, parameter validation, paging and envelopes.
//!
//! Rules follow api.md §0-§3 and the brief: `count` 1..=500 required, `count + offset` at
//! most 10,000, Eastern wall-time date filters inclusive at second granularity, newest
//! first, `messagestream` defaulting to `outbound`. Errors are 4xx JSON, never panics.

use crate::bounces::{self as bounce_records, BOUNCE_TYPES};
use crate::catalog::{self, stream_index, S_INBOUND, S_OUTBOUND};
use crate::eastern::{parse_filter, DateFilter, Zone};
use crate::http::{Head, Request};
use crate::json;
use crate::records::{self, INBOUND_STATUS, OUTBOUND_STATUS};
use crate::store::{Dataset, Query, Rec};
use crate::App;

pub const MAX_COUNT: usize = 500;
pub const MAX_WINDOW: usize = 10_000;
const CODE_MESSAGES: u32 = 700;
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
    Server,
    Outbound,
    Inbound,
    Bounces,
    Templates,
    Streams,
}

/// Handles one authenticated-or-not API request whose faults/latency were already applied.
pub fn handle(app: &App, req: &Request, out: &mut Vec<u8>) -> Head {
    let ep = match req.route().as_str() {
        "/server" => Endpoint::Server,
        "/messages/outbound" => Endpoint::Outbound,
        "/messages/inbound" => Endpoint::Inbound,
        "/bounces" => Endpoint::Bounces,
        "/templates" => Endpoint::Templates,
        "/message-streams" => Endpoint::Streams,
        _ => return error(out, 404, 404, "Not found"),
    };
    if req.method != "GET" {
        return error(out, 405, 405, "Method not allowed");
    }
    let server = req.header("x-postmark-server-token");
    if server != Some(app.cfg.token.as_str()) {
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

struct Invalid {
    code: u32,
    msg: String,
    cap: bool,
}

fn invalid(code: u32, msg: impl Into<String>) -> Invalid {
    Invalid {
        code,
        msg: msg.into(),
        cap: false,
    }
}

/// A present, non-empty parameter value.
fn param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.param(name).map(str::trim).filter(|v| !v.is_empty())
}

/// Validates `count`/`offset`; returns (offset, count).
fn paging(count: Option<&str>, offset: Option<&str>, code: u32) -> Result<(usize, usize), Invalid> {
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
type Bounds = (Option<i64>, Option<i64>);

/// Parsed `fromdate`/`todate`: tick bounds, or `None` when the query must return no rows.
fn window(req: &Request, zone: Zone, code: u32) -> Result<Option<Bounds>, Invalid> {
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
fn lookup(req: &Request, name: &str, values: &[&str], code: u32) -> Result<Option<u8>, Invalid> {
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
}

/// Shared search flow: validate, query the index, write the envelope.
fn search(
    app: &App,
    req: &Request,
    out: &mut Vec<u8>,
    s: Search,
    render: impl Fn(&mut Vec<u8>, usize, &Rec),
) -> Result<(), Invalid> {
    let (total, page, stream) = match (window(req, app.cfg.zone, s.code)?, s.stream) {
        (Some((from, to)), Some(stream)) => {
            let (offset, count) = s.page;
            let (total, page) = s.data.search(&Query {
                stream,
                from,
                to,
                kind: s.kind,
                offset,
                count,
            });
            (total, page, stream)
        }
        _ => (0, Vec::new(), 0),
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
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        render(out, stream, r);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

fn paging_of(req: &Request, code: u32) -> Result<(usize, usize), Invalid> {
    paging(param(req, "count"), param(req, "offset"), code)
}

/// `messagestream`, defaulting to `outbound`; an unknown stream simply has no rows.
fn stream_param(req: &Request) -> Option<usize> {
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
    };
    search(app, req, out, s, bounce_records::bounce)
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
        .filter(|&i| !app.ctl.template_deleted(catalog::template_id(i)))
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
        catalog::template(out, i);
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
    catalog::message_streams(
        out,
        app.now / crate::eastern::TICKS_PER_SEC,
        filter,
        archived,
    );
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
