//! Server-token endpoints beyond the first five (api.md §13): opens, clicks and their
//! per-message variants, message details, template bodies, webhooks, inbound rules,
//! delivery stats, suppression dumps and the outbound statistics.

use crate::api::{
    invalid, lookup, paging_of, param, stream_param, window, Invalid, CODE_MESSAGES, MAX_WINDOW,
};
use crate::catalog::{stream_index, S_INBOUND};
use crate::daily::{keys_of, Day, DAILY_ENDPOINTS};
use crate::eastern::{days_from_civil, TICKS_PER_SEC};
use crate::events::{self, EvFilter, P_DESKTOP, P_MOBILE, P_UNKNOWN, P_WEBMAIL};
use crate::extras::{self, ORIGINS, REASONS};
use crate::http::Request;
use crate::json::{key, string, uint};
use crate::records::TAG_NAMES;
use crate::timefmt::push_date;
use crate::{App, DateFilterMode};

const CODE_NOT_FOUND: u32 = 701;
const CODE_TEMPLATE_NOT_FOUND: u32 = 1101;
const CODE_STREAM_NOT_FOUND: u32 = 1226;
const CODE_TRIGGERS: u32 = 800;
const CODE_STATS: u32 = 900;

/// Whether a (lowercased, trailing-slash-free) route is one of these endpoints.
pub fn known(route: &str) -> bool {
    matches!(
        route,
        "/messages/outbound/opens"
            | "/messages/outbound/clicks"
            | "/webhooks"
            | "/triggers/inboundrules"
            | "/deliverystats"
            | "/stats/outbound"
    ) || route.starts_with("/messages/outbound/opens/")
        || route.starts_with("/messages/outbound/clicks/")
        || (route.starts_with("/messages/outbound/") && route.ends_with("/details"))
        || route.starts_with("/templates/")
        || (route.starts_with("/message-streams/") && route.ends_with("/suppressions/dump"))
        || route
            .strip_prefix("/stats/outbound/")
            .is_some_and(|e| DAILY_ENDPOINTS.contains(&e))
}

/// The path segment between `prefix` and `suffix` as sent (original case).
fn segment<'a>(req: &'a Request, prefix: &str, suffix: &str) -> &'a str {
    let p = req.path.strip_suffix('/').unwrap_or(&req.path);
    p.get(prefix.len()..p.len().saturating_sub(suffix.len()))
        .unwrap_or_default()
}

pub fn handle(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let route = req.route();
    let r = route.as_str();
    match r {
        "/messages/outbound/opens" => search(app, req, out, false),
        "/messages/outbound/clicks" => search(app, req, out, true),
        "/webhooks" => webhooks(app, req, out),
        "/triggers/inboundrules" => {
            let (offset, count) = paging_of(req, CODE_TRIGGERS)?;
            extras::inbound_rules(out, offset, count, app.index);
            Ok(())
        }
        "/deliverystats" => {
            extras::delivery_stats(out, &app.bounces.read());
            Ok(())
        }
        "/stats/outbound" => stats(app, req, out, None),
        _ if r.starts_with("/messages/outbound/opens/") => of_message(
            app,
            req,
            out,
            segment(req, "/messages/outbound/opens/", ""),
            false,
        ),
        _ if r.starts_with("/messages/outbound/clicks/") => of_message(
            app,
            req,
            out,
            segment(req, "/messages/outbound/clicks/", ""),
            true,
        ),
        _ if r.starts_with("/messages/outbound/") => {
            let id = segment(req, "/messages/outbound/", "/details");
            let (stream, rec) = app.find_outbound(id).ok_or_else(not_found)?;
            crate::details::render(app, out, stream, &rec);
            Ok(())
        }
        _ if r.starts_with("/templates/") => {
            let key = segment(req, "/templates/", "");
            let i =
                extras::template_lookup(key, app.cfg.templates, app.index).ok_or_else(|| {
                    invalid(
                        CODE_TEMPLATE_NOT_FOUND,
                        format!("The Template '{key}' could not be found."),
                    )
                })?;
            extras::template_detail(out, i, app.index, app.server_id);
            Ok(())
        }
        _ if r.starts_with("/message-streams/") => suppressions(
            app,
            req,
            out,
            segment(req, "/message-streams/", "/suppressions/dump"),
        ),
        _ => {
            let ep = r.strip_prefix("/stats/outbound/").unwrap_or_default();
            stats(app, req, out, Some(ep))
        }
    }
}

fn not_found() -> Invalid {
    invalid(CODE_NOT_FOUND, "This message was not found.")
}

fn stream_not_found() -> Invalid {
    invalid(
        CODE_STREAM_NOT_FOUND,
        "The message stream for the provided 'ID' was not found.",
    )
}

fn filter(req: &Request) -> Result<EvFilter, Invalid> {
    let s = |names: &[&str]| names.iter().find_map(|n| param(req, n)).map(str::to_string);
    let platform = lookup(
        req,
        "platform",
        &["WebMail", "Desktop", "Mobile", "Unknown"],
        CODE_MESSAGES,
    )?
    .map(|i| [P_WEBMAIL, P_DESKTOP, P_MOBILE, P_UNKNOWN][usize::from(i)]);
    Ok(EvFilter {
        recipient: s(&["recipient"]),
        tag: s(&["tag"]),
        platform,
        device: [
            s(&["client_name", "clientname"]),
            s(&["client_company", "clientcompany"]),
            s(&["client_family", "clientfamily"]),
            s(&["os_name", "osname"]),
            s(&["os_company", "oscompany"]),
            s(&["os_family", "osfamily"]),
        ],
        geo: [s(&["country"]), s(&["region"]), s(&["city"])],
    })
}

fn envelope(app: &App, out: &mut Vec<u8>, total: usize, page: &[events::Ev], click: bool) {
    let total = if app.cfg.cap_total_count {
        total.min(MAX_WINDOW)
    } else {
        total
    };
    out.reserve(page.len() * 900 + 64);
    out.extend_from_slice(b"{\"TotalCount\":");
    uint(out, total as u64);
    out.extend_from_slice(if click {
        b",\"Clicks\":[".as_slice()
    } else {
        b",\"Opens\":[".as_slice()
    });
    for (i, e) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        events::render(out, e, click);
    }
    out.extend_from_slice(b"]}");
}

/// `/messages/outbound/opens` and `/clicks`.
fn search(app: &App, req: &Request, out: &mut Vec<u8>, click: bool) -> Result<(), Invalid> {
    let (offset, count) = paging_of(req, CODE_MESSAGES)?;
    let f = filter(req)?;
    let bounds = match app.cfg.events_date_filter {
        DateFilterMode::Honoured => window(req, app.cfg.zone, CODE_MESSAGES)?,
        // Accepted and ignored: one of the two behaviours the real API may have.
        DateFilterMode::Ignored => Some((None, None)),
    };
    let data = if click { &app.clicks } else { &app.opens };
    let (total, page) = match (bounds, stream_param(req)) {
        (Some((from, to)), Some(s)) => {
            let g = data.read();
            events::page(&g.by_time[s], from, to, &f, click, offset, count)
        }
        _ => (0, Vec::new()),
    };
    envelope(app, out, total, &page, click);
    Ok(())
}

/// `/messages/outbound/opens/{MessageID}` and `/clicks/{MessageID}`.
fn of_message(
    app: &App,
    req: &Request,
    out: &mut Vec<u8>,
    id: &str,
    click: bool,
) -> Result<(), Invalid> {
    let (offset, count) = paging_of(req, CODE_MESSAGES)?;
    let (_, rec) = app.find_outbound(id).ok_or_else(not_found)?;
    let data = if click { &app.clicks } else { &app.opens };
    let all = data.of_message(rec.id);
    let page: Vec<events::Ev> = all.iter().skip(offset).take(count).copied().collect();
    envelope(app, out, all.len(), &page, click);
    Ok(())
}

fn webhooks(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let stream = match param(req, "messagestream") {
        None => None,
        Some(name) => Some(app.stream_index(name).ok_or_else(stream_not_found)?),
    };
    extras::webhooks(out, stream, app.index);
    Ok(())
}

fn suppressions(app: &App, req: &Request, out: &mut Vec<u8>, stream: &str) -> Result<(), Invalid> {
    let s = app.stream_index(stream).ok_or_else(stream_not_found)?;
    let code = CODE_STREAM_NOT_FOUND + 1;
    let reason = lookup(req, "suppressionreason", &REASONS, code)?;
    let origin = lookup(req, "origin", &ORIGINS, code)?;
    let email = param(req, "emailaddress");
    let bounds = window(req, app.cfg.zone, code)?;
    out.extend_from_slice(b"{\"Suppressions\":[");
    let mut n = 0;
    if let (Some((from, to)), true) = (bounds, s != S_INBOUND) {
        for x in app.suppressions.iter().filter(|x| x.stream == s) {
            let t = x.created * TICKS_PER_SEC;
            if reason.is_some_and(|r| r != x.reason)
                || origin.is_some_and(|o| o != x.origin)
                || email.is_some_and(|e| !e.eq_ignore_ascii_case(&x.addr))
                || from.is_some_and(|f| t < f)
                || to.is_some_and(|e| t >= e)
            {
                continue;
            }
            if n > 0 {
                out.push(b',');
            }
            n += 1;
            extras::suppression(out, x);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// A `YYYY-MM-DD` stats date (a longer value is read by its date part) as a day number.
fn stats_date(req: &Request, name: &str) -> Result<Option<i32>, Invalid> {
    let Some(v) = param(req, name) else {
        return Ok(None);
    };
    let bad = || {
        invalid(
            CODE_STATS,
            format!("The '{name}' parameter is not a valid date: '{v}'."),
        )
    };
    let d = v.get(..10).ok_or_else(bad)?;
    let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| bad())?;
    use chrono::Datelike;
    Ok(Some(
        days_from_civil(i64::from(date.year()), date.month(), date.day()) as i32,
    ))
}

/// `/stats/outbound` (overview, `ep` = None) and its daily sub-endpoints.
fn stats(app: &App, req: &Request, out: &mut Vec<u8>, ep: Option<&str>) -> Result<(), Invalid> {
    let from = stats_date(req, "fromdate")?;
    let to = stats_date(req, "todate")?;
    // Without `messagestream`, every stream (UNCONFIRMED: api.md §13.4 #16). An unknown
    // stream or tag simply matches nothing.
    let stream = match param(req, "messagestream") {
        None => Ok(None),
        Some(n) => stream_index(n).map(Some).ok_or(()),
    };
    let tag = match param(req, "tag") {
        None => Ok(None),
        Some(t) => TAG_NAMES[1..]
            .iter()
            .position(|x| x.eq_ignore_ascii_case(t))
            .map(|i| Some(i as u8 + 2))
            .ok_or(()),
    };
    let days = match (stream, tag) {
        (Ok(s), Ok(t)) => app.daily.days(s, t, from, to),
        _ => Default::default(),
    };
    match ep {
        None => overview(out, &days),
        Some(ep) => daily_body(out, ep, &days),
    }
    Ok(())
}

fn daily_body(out: &mut Vec<u8>, ep: &str, days: &std::collections::BTreeMap<i32, Day>) {
    let mut total = Day::default();
    out.extend_from_slice(b"{\"Days\":[");
    let mut n = 0;
    for (&day, d) in days {
        let keys = keys_of(ep, d);
        if keys.is_empty() {
            continue;
        }
        total.add(d);
        if n > 0 {
            out.push(b',');
        }
        n += 1;
        out.extend_from_slice(b"{\"Date\":\"");
        push_date(out, i64::from(day));
        out.push(b'"');
        for (k, v) in keys {
            out.push(b',');
            string(out, k, false);
            out.push(b':');
            uint(out, u64::from(v));
        }
        out.push(b'}');
    }
    out.push(b']');
    for (k, v) in keys_of(ep, &total) {
        out.push(b',');
        string(out, k, false);
        out.push(b':');
        uint(out, u64::from(v));
    }
    out.push(b'}');
}

fn overview(out: &mut Vec<u8>, days: &std::collections::BTreeMap<i32, Day>) {
    let mut t = Day::default();
    for d in days.values() {
        t.add(d);
    }
    let bounced = t.hard + t.soft + t.transient;
    let rate = |n: u32, scale: f64| {
        if t.sent == 0 {
            0.0
        } else {
            (f64::from(n) * 100.0 / f64::from(t.sent) * scale).round() / scale
        }
    };
    let ints = [
        ("Sent", t.sent),
        ("Bounced", bounced),
        ("SMTPApiErrors", t.smtp),
    ];
    out.push(b'{');
    for (k, v) in ints {
        key(out, k);
        uint(out, u64::from(v));
        out.push(b',');
    }
    out.extend_from_slice(format!("\"BounceRate\":{},", rate(bounced, 100.0)).as_bytes());
    key(out, "SpamComplaints");
    uint(out, u64::from(t.spam));
    out.extend_from_slice(format!(",\"SpamComplaintsRate\":{}", rate(t.spam, 1000.0)).as_bytes());
    let rest = [
        ("Tracked", t.tracked),
        ("Opens", t.opens),
        ("UniqueOpens", t.uopens),
        ("TotalClicks", t.clicks),
        ("UniqueLinksClicked", t.uclicks),
        ("WithClientRecorded", t.clients.iter().sum()),
        ("WithPlatformRecorded", t.oplat.iter().sum()),
        ("WithReadTimeRecorded", t.read.iter().sum()),
        ("WithLinkTracking", t.link_tracked),
        ("WithOpenTracking", t.tracked),
        ("TotalTrackedLinksSent", t.link_tracked * 3),
    ];
    for (k, v) in rest {
        out.push(b',');
        key(out, k);
        uint(out, u64::from(v));
    }
    out.push(b'}');
}
