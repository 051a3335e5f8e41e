//! Ground truth for the streams of the every-dataset issue (contract in `control.rs`).

use serde_json::{json, Map, Value};

use crate::bounces::BOUNCE_TYPES;
use crate::catalog::STREAMS;
use crate::daily::Day;
use crate::details::{self, events_of};
use crate::eastern::{DAY, TICKS_PER_SEC};
use crate::events::{self, recipient_raw, BROWSERS, EMAIL_CLIENTS, LINKS};
use crate::extras::{self, bounce_counts, HOOKS, ORIGINS, REASONS};
use crate::json as j;
use crate::records::message_id_raw;
use crate::timefmt::{push_date, push_utc};
use crate::App;

fn utc(t: i64) -> String {
    let mut v = Vec::with_capacity(32);
    push_utc(&mut v, t);
    String::from_utf8_lossy(&v).into_owned()
}

fn date(day: i32) -> String {
    let mut v = Vec::with_capacity(10);
    push_date(&mut v, i64::from(day));
    String::from_utf8_lossy(&v).into_owned()
}

fn mid(id: u64) -> String {
    let mut v = Vec::with_capacity(36);
    message_id_raw(&mut v, id, false);
    String::from_utf8_lossy(&v).into_owned()
}

fn line(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'\n');
}

/// Re-parses a rendered API object and rewrites its Eastern date-times as UTC.
fn normalised(rendered: &[u8], fields: &[&str], t: &[i64]) -> Value {
    let mut v: Value = serde_json::from_slice(rendered).unwrap_or(Value::Null);
    for (f, t) in fields.iter().zip(t) {
        if v.get(f).is_some() {
            v[f] = Value::String(utc(*t));
        }
    }
    v
}

fn in_range(t: i64, from: Option<i64>, to: Option<i64>) -> bool {
    from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e)
}

/// Writes the truth of `stream` into `out`; `Err` for an unknown stream.
pub fn truth(
    app: &App,
    stream: &str,
    from: Option<i64>,
    to: Option<i64>,
    records: bool,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match stream {
        "opens" | "clicks" => {
            let click = stream == "clicks";
            let data = if click { &app.clicks } else { &app.opens };
            let g = data.read();
            let mut buf = Vec::with_capacity(1024);
            for v in &g.by_time {
                for e in v.iter().filter(|e| in_range(e.t, from, to)) {
                    if records {
                        buf.clear();
                        events::render(&mut buf, e, click);
                        line(out, &normalised(&buf, &["ReceivedAt"], &[e.t]));
                    } else {
                        let mut r = Vec::new();
                        recipient_raw(&mut r, e);
                        let mut k = vec![
                            json!(mid(e.msg)),
                            json!(String::from_utf8_lossy(&r)),
                            json!(utc(e.t)),
                        ];
                        if click {
                            k.push(json!(LINKS[e.link()]));
                        }
                        line(out, &Value::Array(k));
                    }
                }
            }
        }
        "message_events" => {
            // Filtered by the PARENT message's ReceivedAt: the stream reads the details of
            // the outbound messages of each window.
            let msgs: Vec<(usize, crate::store::Rec)> = {
                let g = app.outbound.read();
                g.streams
                    .iter()
                    .enumerate()
                    .flat_map(|(s, v)| v.iter().map(move |r| (s, *r)))
                    .filter(|(_, r)| in_range(r.t, from, to))
                    .collect()
            };
            let mut buf = Vec::with_capacity(1024);
            for (s, r) in msgs {
                let m = mid(r.id);
                for e in events_of(app, s, &r) {
                    buf.clear();
                    details::event(&mut buf, r.id, &e);
                    let mut v = normalised(&buf, &["ReceivedAt"], &[e.t]);
                    if records {
                        if let Value::Object(o) = &mut v {
                            let mut with = Map::new();
                            with.insert("MessageID".into(), json!(m));
                            with.append(o);
                            v = Value::Object(with);
                        }
                        line(out, &v);
                    } else {
                        line(out, &json!([m, v["Recipient"], v["Type"], v["ReceivedAt"]]));
                    }
                }
            }
        }
        "suppressions" => {
            for x in &app.suppressions {
                let s = STREAMS[x.stream].id;
                if records {
                    line(
                        out,
                        &json!({
                            "MessageStream": s,
                            "EmailAddress": x.addr,
                            "SuppressionReason": REASONS[usize::from(x.reason) % 3],
                            "Origin": ORIGINS[usize::from(x.origin) % 3],
                            "CreatedAt": utc(x.created * TICKS_PER_SEC),
                        }),
                    );
                } else {
                    line(out, &json!([s, x.addr]));
                }
            }
        }
        "delivery_stats" => {
            let (counts, total, inactive) = bounce_counts(&app.bounces.read());
            let mut rows = vec![("All", None, total), ("InactiveMails", None, inactive)];
            for (i, (ty, _, name, _)) in BOUNCE_TYPES.iter().enumerate() {
                if counts[i] > 0 {
                    rows.push((name, Some(*ty), counts[i]));
                }
            }
            for (name, ty, n) in rows {
                if records {
                    line(out, &json!({ "Name": name, "Type": ty, "Count": n }));
                } else {
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        "stats_outbound_daily"
        | "stats_open_platforms"
        | "stats_click_platforms"
        | "stats_click_locations"
        | "stats_open_email_clients"
        | "stats_click_browser_families" => {
            for ((s, day), d) in app.daily.per_stream_day() {
                let t = i64::from(day) * DAY * TICKS_PER_SEC;
                if !in_range(t, from, to) {
                    continue;
                }
                stats_rows(out, stream, STREAMS[usize::from(s)].id, day, &d, records);
            }
        }
        "webhooks" => {
            for h in &HOOKS {
                if records {
                    let mut buf = Vec::new();
                    extras::webhook(&mut buf, h, app.index);
                    out.extend_from_slice(&buf);
                } else {
                    j::uint(out, extras::hook_id(h, app.index));
                }
                out.push(b'\n');
            }
        }
        "inbound_rules" => {
            for i in 0..extras::RULES.len() {
                let (id, rule) = extras::rule(i, app.index);
                if records {
                    line(out, &json!({ "Rule": rule, "ID": id }));
                } else {
                    j::uint(out, id);
                    out.push(b'\n');
                }
            }
        }
        "templates" => {
            for i in 0..app.cfg.templates {
                extras::template_detail(out, i, app.index, app.server_id);
                out.push(b'\n');
            }
        }
        other => {
            if crate::account::truth(app, other, records, out).is_none() {
                return Err(format!("unknown stream '{stream}'"));
            }
        }
    }
    Ok(())
}

/// Rows of one stats stream for one (stream, day).
fn stats_rows(out: &mut Vec<u8>, name: &str, stream: &str, day: i32, d: &Day, records: bool) {
    let fixed: Option<Vec<(&str, u32)>> = match name {
        "stats_outbound_daily" => Some(vec![
            ("Sent", d.sent),
            ("HardBounce", d.hard),
            ("SMTPApiError", d.smtp),
            ("SoftBounce", d.soft),
            ("Transient", d.transient),
            ("SpamComplaint", d.spam),
            ("Tracked", d.tracked),
            ("Opens", d.opens),
            ("UniqueOpens", d.uopens),
            ("Clicks", d.clicks),
            ("UniqueClicks", d.uclicks),
        ]),
        "stats_open_platforms" => Some(
            crate::events::PLATFORMS
                .iter()
                .copied()
                .zip(d.oplat)
                .collect(),
        ),
        "stats_click_platforms" => Some(
            ["Desktop", "Mobile", "Unknown"]
                .into_iter()
                .zip(d.cplat)
                .collect(),
        ),
        "stats_click_locations" => Some(["HTML", "Text"].into_iter().zip(d.cloc).collect()),
        _ => None,
    };
    let date = date(day);
    match fixed {
        Some(kv) => {
            if kv.iter().all(|(_, n)| *n == 0) {
                return;
            }
            if records {
                let mut o = Map::new();
                o.insert("MessageStream".into(), json!(stream));
                o.insert("Date".into(), json!(date));
                for (k, n) in kv {
                    o.insert(k.into(), json!(n));
                }
                line(out, &Value::Object(o));
            } else {
                line(out, &json!([stream, date]));
            }
        }
        None => {
            let kv: Vec<(&str, u32)> = if name == "stats_open_email_clients" {
                EMAIL_CLIENTS.iter().copied().zip(d.clients).collect()
            } else {
                BROWSERS.iter().copied().zip(d.browsers).collect()
            };
            for (k, n) in kv.into_iter().filter(|(_, n)| *n > 0) {
                if records {
                    line(
                        out,
                        &json!({ "MessageStream": stream, "Date": date, "Name": k, "Count": n }),
                    );
                } else {
                    line(out, &json!([stream, date, k]));
                }
            }
        }
    }
}
