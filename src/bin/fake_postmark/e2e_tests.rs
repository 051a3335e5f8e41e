//! In-process end-to-end tests: a whole `App` built from command-line flags, driven with
//! raw HTTP requests through the API and control handlers (no sockets).

use std::collections::HashSet;

use clap::Parser;
use serde_json::Value;

use crate::catalog::S_OUTBOUND;
use crate::control::{self, Outcome};
use crate::http::read_request;
use crate::timefmt::push_eastern_7;
use crate::{api, App, Cli};

const NOW: &str = "2026-11-20T12:00:00Z";

fn app(extra: &[&str]) -> App {
    let mut args = vec!["fake-postmark", "--now", NOW];
    args.extend_from_slice(extra);
    let cli = Cli::parse_from(args);
    let now = crate::eastern::parse_rfc3339_ticks(NOW).unwrap_or_default();
    App::new(cli, now)
}

fn call(app: &App, target: &str, token: bool) -> (u16, Vec<u8>) {
    let auth = if token {
        "X-Postmark-Server-Token: fake-server-token\r\n"
    } else {
        ""
    };
    let raw = format!("GET {target} HTTP/1.1\r\n{auth}\r\n");
    let req = read_request(&mut raw.as_bytes())
        .ok()
        .flatten()
        .expect("request parses");
    let mut out = Vec::new();
    if target.starts_with("/__fake/") {
        match control::handle(app, &req, &mut out) {
            Outcome::Respond(h) => (h.status, out),
            Outcome::Stream(h, len, writer) => {
                let mut body = Vec::new();
                writer(&mut body).expect("writes to a Vec");
                assert_eq!(body.len() as u64, len, "announced Content-Length");
                (h.status, body)
            }
            _ => (0, out),
        }
    } else {
        (api::handle(app, &req, &mut out).status, out)
    }
}

fn get(app: &App, target: &str) -> Value {
    let (status, body) = call(app, target, true);
    assert_eq!(status, 200, "{target}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("valid JSON")
}

#[test]
fn identical_flags_give_identical_pages() {
    let flags = [
        "--outbound",
        "20000",
        "--scenario",
        "hot-second",
        "--scenario",
        "dst",
    ];
    let (a, b) = (app(&flags), app(&flags));
    for target in [
        "/messages/outbound?count=500&offset=1000",
        "/messages/outbound?count=500&messagestream=broadcast&fromdate=2026-11-01",
        "/messages/inbound?count=500&status=processed",
        "/bounces?count=500&messagestream=inbound",
        "/templates?count=10",
        "/message-streams?IncludeArchivedStreams=true",
        "/server",
    ] {
        assert_eq!(call(&a, target, true), call(&b, target, true), "{target}");
    }
}

#[test]
fn truth_keys_are_unique_and_complete() {
    let a = app(&[
        "--outbound",
        "30000",
        "--scenario",
        "big-day",
        "--scenario",
        "dst",
    ]);
    for (stream, total) in [
        ("messages_outbound", a.outbound.read().next_id),
        ("messages_inbound", a.inbound.read().next_id),
        ("bounces", a.bounces.read().next_id),
        ("templates", 25),
        ("message_streams", 5),
    ] {
        let (status, body) = call(&a, &format!("/__fake/truth?stream={stream}"), false);
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap_or_default();
        let keys: HashSet<&str> = text.lines().collect();
        assert_eq!(keys.len() as u64, total, "{stream}");
        assert_eq!(text.lines().count() as u64, total, "{stream}");
    }
}

#[test]
fn date_filter_is_inclusive_at_second_granularity() {
    let a = app(&[]);
    let rec = a.outbound.read().streams[S_OUTBOUND][700];
    let mut wall = Vec::new();
    push_eastern_7(&mut wall, rec.t);
    let wall = String::from_utf8(wall).unwrap_or_default();
    let sec = &wall[..19];
    let id = {
        let mut v = Vec::new();
        crate::records::message_id_raw(&mut v, rec.id, false);
        String::from_utf8(v).unwrap_or_default()
    };
    let ids = |q: &str| -> Vec<String> {
        let v = get(&a, &format!("/messages/outbound?count=500&{q}"));
        v["Messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["MessageID"].as_str().map(String::from))
            .collect()
    };
    assert!(ids(&format!("fromdate={sec}&todate={sec}")).contains(&id));
    let before = shift(sec, -1);
    let after = shift(sec, 1);
    assert!(!ids(&format!("fromdate={before}&todate={before}")).contains(&id));
    assert!(!ids(&format!("fromdate={after}&todate={after}")).contains(&id));
    assert!(ids(&format!("fromdate={before}&todate={sec}")).contains(&id));
}

/// Shifts a `YYYY-MM-DDTHH:MM:SS` wall time by whole seconds.
fn shift(wall: &str, secs: i64) -> String {
    let t = chrono::NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S").unwrap_or_default();
    (t + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

#[test]
fn default_stream_newest_first_and_paging() {
    let a = app(&["--outbound", "3000"]);
    let n_out = a.outbound.read().streams[S_OUTBOUND].len() as u64;
    let all = get(&a, "/messages/outbound?count=1");
    assert_eq!(all["TotalCount"], n_out);
    let named = get(&a, "/messages/outbound?count=1&MessageStream=outbound");
    assert_eq!(named["TotalCount"], n_out);
    let mut last = String::from("~");
    let mut seen = HashSet::new();
    for off in (0..n_out).step_by(500) {
        let page = get(&a, &format!("/messages/outbound?Count=500&Offset={off}"));
        for m in page["Messages"].as_array().into_iter().flatten() {
            let at =
                crate::eastern::parse_rfc3339_ticks(m["ReceivedAt"].as_str().unwrap_or_default());
            let key = format!("{:020}", at.unwrap_or_default());
            assert!(key <= last, "newest first");
            last = key;
            assert!(seen.insert(m["MessageID"].to_string()));
        }
    }
    assert_eq!(seen.len() as u64, n_out);
}

#[test]
fn auth_errors_and_cap_violations() {
    let a = app(&["--outbound", "100"]);
    let (status, body) = call(&a, "/server", false);
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("\"ErrorCode\":10"));
    let (status, body) = call(&a, "/bounces?count=500&offset=9600", true);
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).ok(),
        Some(
            serde_json::json!({"ErrorCode": 1000, "Message": "Count + Offset cannot exceed 10000 messages."})
        )
    );
    let (status, body) = call(&a, "/__fake/stats", false);
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(stats["cap_violations"], 1);
    let explicit = get(
        &a,
        "/messages/outbound?count=5&fromdate=2026-11-01T00:00:00Z",
    );
    assert_eq!(explicit["TotalCount"], 0);
    assert_eq!(
        call(&a, "/messages/outbound?count=5&todate=11/01/2026", true).0,
        422
    );
}

fn lines(a: &App, q: &str) -> Vec<String> {
    let (status, body) = call(a, &format!("/__fake/truth?{q}"), false);
    assert_eq!(status, 200, "{q}: {}", String::from_utf8_lossy(&body));
    String::from_utf8_lossy(&body)
        .lines()
        .map(String::from)
        .collect()
}

fn err_code(a: &App, target: &str) -> (u16, Value) {
    let (status, body) = call(a, target, true);
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[test]
fn template_detail_matches_the_list_by_id_and_alias() {
    let a = app(&[]);
    let list = get(&a, "/templates?count=100");
    for t in list["Templates"].as_array().into_iter().flatten() {
        let id = t["TemplateId"].as_u64().unwrap_or_default();
        let d = get(&a, &format!("/templates/{id}"));
        for k in [
            "TemplateId",
            "Name",
            "Alias",
            "TemplateType",
            "LayoutTemplate",
            "Active",
        ] {
            assert_eq!(d[k], t[k], "{k}");
        }
        assert!(d["HtmlBody"].is_string());
        assert_eq!(d["Subject"].is_null(), t["TemplateType"] == "Layout");
        if let Some(alias) = t["Alias"].as_str() {
            assert_eq!(get(&a, &format!("/templates/{alias}"))["TemplateId"], id);
        }
    }
    let (status, v) = err_code(&a, "/templates/999");
    assert_eq!((status, v["ErrorCode"].as_u64()), (422, Some(1101)));
    assert_eq!(lines(&a, "stream=templates&records=1").len(), 25);
}

#[test]
fn webhooks_filter_by_stream_and_carry_recognisable_secrets() {
    let a = app(&[]);
    let all = get(&a, "/webhooks");
    assert!(all.get("TotalCount").is_none());
    let hooks = all["Webhooks"].as_array().cloned().unwrap_or_default();
    assert!(hooks.iter().any(|h| h["HttpAuth"].is_null()));
    assert!(hooks.iter().any(|h| h["HttpAuth"]["Password"]
        .as_str()
        .is_some_and(|p| p.starts_with("fake-webhook-secret-"))));
    let out = get(&a, "/webhooks?MessageStream=outbound");
    assert!(out["Webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|h| h["MessageStream"] == "outbound"));
    let (status, v) = err_code(&a, "/webhooks?MessageStream=nope");
    assert_eq!((status, v["ErrorCode"].as_u64()), (422, Some(1226)));
    assert_eq!(lines(&a, "stream=webhooks").len(), hooks.len());
}

#[test]
fn inbound_rules_page_with_total_count() {
    let a = app(&[]);
    let p1 = get(&a, "/triggers/inboundrules?count=3&offset=0");
    let p2 = get(&a, "/triggers/inboundrules?count=3&offset=3");
    let p3 = get(&a, "/triggers/inboundrules?count=3&offset=6");
    let total = p1["TotalCount"].as_u64().unwrap_or_default();
    let mut ids: Vec<String> = [p1, p2, p3]
        .iter()
        .flat_map(|p| p["InboundRules"].as_array().cloned().unwrap_or_default())
        .map(|r| r["ID"].to_string())
        .collect();
    ids.sort();
    let mut truth = lines(&a, "stream=inbound_rules");
    truth.sort();
    assert_eq!(ids, truth);
    assert_eq!(ids.len() as u64, total);
    assert_eq!(call(&a, "/triggers/inboundrules", true).0, 422);
}

#[test]
fn delivery_stats_count_the_bounces() {
    let a = app(&["--bounces", "500"]);
    let v = get(&a, "/deliverystats");
    let rows = v["Bounces"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows[0]["Name"], "All");
    assert!(rows[0].get("Type").is_none());
    assert_eq!(rows[0]["Count"], 500);
    let sum: u64 = rows[1..].iter().filter_map(|r| r["Count"].as_u64()).sum();
    assert_eq!(sum, 500);
    let recs = lines(&a, "stream=delivery_stats&records=1");
    let inactive: Value = serde_json::from_str(&recs[1]).unwrap_or_default();
    assert_eq!(inactive["Name"], "InactiveMails");
    assert_eq!(inactive["Count"], v["InactiveMails"]);
    assert_eq!(recs.len(), rows.len() + 1);
}

#[test]
fn suppressions_dump_per_stream_with_filters_and_errors() {
    let a = app(&[]);
    let mut served = Vec::new();
    for s in [
        "outbound",
        "broadcast",
        "legacy-tx",
        "spring-promo",
        "inbound",
    ] {
        let v = get(&a, &format!("/message-streams/{s}/suppressions/dump"));
        assert!(v.get("TotalCount").is_none());
        for x in v["Suppressions"].as_array().into_iter().flatten() {
            served.push(serde_json::json!([s, x["EmailAddress"]]).to_string());
        }
    }
    let mut truth = lines(&a, "stream=suppressions");
    served.sort();
    truth.sort();
    assert_eq!(served, truth);
    assert!(truth
        .iter()
        .any(|l| l.bytes().any(|c| c.is_ascii_uppercase())));
    let hard = get(
        &a,
        "/message-streams/outbound/suppressions/dump?SuppressionReason=HardBounce",
    );
    assert!(hard["Suppressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|x| x["SuppressionReason"] == "HardBounce"));
    let all = get(&a, "/message-streams/outbound/suppressions/dump");
    let first = &all["Suppressions"][0];
    let day = &first["CreatedAt"].as_str().unwrap_or_default()[..10];
    let one = get(
        &a,
        &format!("/message-streams/outbound/suppressions/dump?fromdate={day}&todate={day}"),
    );
    let got = one["Suppressions"].as_array().cloned().unwrap_or_default();
    assert!(got.contains(first));
    assert!(got
        .iter()
        .all(|x| x["CreatedAt"].as_str().is_some_and(|c| c.starts_with(day))));
    let (status, v) = err_code(&a, "/message-streams/nope/suppressions/dump");
    assert_eq!((status, v["ErrorCode"].as_u64()), (422, Some(1226)));
}

/// Every open (or click) of one stream through the API, newest first by 500.
fn read_events(a: &App, kind: &str, q: &str) -> (u64, Vec<Value>) {
    let mut all = Vec::new();
    let mut total = 0;
    for off in (0..10_000).step_by(500) {
        let v = get(
            a,
            &format!("/messages/outbound/{kind}?count=500&offset={off}{q}"),
        );
        total = v["TotalCount"].as_u64().unwrap_or_default();
        let items = v[if kind == "opens" { "Opens" } else { "Clicks" }]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            break;
        }
        all.extend(items);
    }
    (total, all)
}

#[test]
fn opens_and_clicks_page_newest_first_and_match_truth() {
    let a = app(&["--outbound", "3000"]);
    for kind in ["opens", "clicks"] {
        let mut served = Vec::new();
        for s in [
            "outbound",
            "broadcast",
            "legacy-tx",
            "spring-promo",
            "inbound",
        ] {
            let (total, items) = read_events(&a, kind, &format!("&messagestream={s}"));
            assert_eq!(total as usize, items.len(), "{kind} {s}");
            let times: Vec<i64> = items
                .iter()
                .filter_map(|e| crate::eastern::parse_rfc3339_ticks(e["ReceivedAt"].as_str()?))
                .collect();
            assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
            for e in &items {
                assert_eq!(e["MessageStream"], s);
                assert_eq!(e["ReceivedAt"].as_str().map(str::len), Some(33));
                let t = crate::eastern::parse_rfc3339_ticks(
                    e["ReceivedAt"].as_str().unwrap_or_default(),
                )
                .unwrap_or_default();
                let mut k = vec![e["MessageID"].clone(), e["Recipient"].clone()];
                let mut u = Vec::new();
                crate::timefmt::push_utc(&mut u, t);
                k.push(Value::String(String::from_utf8_lossy(&u).into_owned()));
                if kind == "clicks" {
                    k.push(e["OriginalLink"].clone());
                }
                served.push(Value::Array(k).to_string());
            }
        }
        let mut truth = lines(&a, &format!("stream={kind}"));
        served.sort();
        truth.sort();
        assert_eq!(served.len(), truth.len(), "{kind}");
        assert_eq!(served, truth, "{kind}");
        let unique: HashSet<&String> = truth.iter().collect();
        assert_eq!(unique.len(), truth.len(), "{kind} keys are distinct");
    }
    let (status, v) = err_code(&a, "/messages/outbound/opens?count=500&offset=9600");
    assert_eq!((status, v["ErrorCode"].as_u64()), (422, Some(700)));
}

#[test]
fn events_platform_filter_partitions_and_recipient_tag_filter() {
    let a = app(&["--outbound", "3000"]);
    let (total, all) = read_events(&a, "opens", "");
    let mut sum = 0;
    for p in ["WebMail", "Desktop", "Mobile", "Unknown"] {
        let (n, items) = read_events(&a, "opens", &format!("&platform={p}"));
        assert!(items.iter().all(|e| e["Platform"] == p));
        sum += n;
    }
    assert_eq!(sum, total);
    let r = all[3]["Recipient"].as_str().unwrap_or_default().to_string();
    let (_, mine) = read_events(&a, "opens", &format!("&recipient={r}"));
    assert!(!mine.is_empty() && mine.iter().all(|e| e["Recipient"] == r.as_str()));
    let (_, tagged) = read_events(&a, "opens", "&tag=receipt");
    assert!(!tagged.is_empty() && tagged.iter().all(|e| e["Tag"] == "receipt"));
    assert_eq!(
        call(&a, "/messages/outbound/opens?count=5&platform=Fax", true).0,
        422
    );
}

#[test]
fn events_date_filter_honoured_or_ignored() {
    for (mode, honoured) in [("honoured", true), ("ignored", false)] {
        let a = app(&["--events-date-filter", mode]);
        let all = get(&a, "/messages/outbound/opens?count=500");
        let e = &all["Opens"][10];
        let wall = &e["ReceivedAt"].as_str().unwrap_or_default()[..19];
        let v = get(
            &a,
            &format!("/messages/outbound/opens?count=500&fromdate={wall}&todate={wall}"),
        );
        if honoured {
            assert!(v["TotalCount"].as_u64().unwrap_or_default() >= 1);
            assert!(v["TotalCount"].as_u64() < all["TotalCount"].as_u64());
            assert!(v["Opens"].as_array().into_iter().flatten().any(|x| x == e));
            assert!(v["Opens"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|x| x["ReceivedAt"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(wall))));
        } else {
            assert_eq!(v["TotalCount"], all["TotalCount"], "{mode}");
        }
    }
}

#[test]
fn many_events_scenario_puts_over_10000_of_each_in_the_outbound_stream() {
    let a = app(&["--scenario", "many-events"]);
    for kind in ["opens", "clicks"] {
        let v = get(
            &a,
            &format!("/messages/outbound/{kind}?count=1&messagestream=outbound"),
        );
        assert!(
            v["TotalCount"].as_u64().unwrap_or_default() > 10_000,
            "{kind}"
        );
    }
}

#[test]
fn per_message_events_and_details_agree_with_the_listing() {
    let a = app(&[]);
    let all = get(&a, "/messages/outbound/clicks?count=500");
    let c = &all["Clicks"][0];
    let id = c["MessageID"].as_str().unwrap_or_default();
    let mine = get(&a, &format!("/messages/outbound/clicks/{id}?count=500"));
    assert!(mine["Clicks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x == c));
    assert!(mine["Clicks"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|x| x["MessageID"] == id));
    let opens = get(&a, &format!("/messages/outbound/opens/{id}?count=500"));
    let d = get(&a, &format!("/messages/outbound/{id}/details"));
    assert_eq!(d["MessageID"], id);
    assert_ne!(d["TrackLinks"], "None");
    let evs = d["MessageEvents"].as_array().cloned().unwrap_or_default();
    let count = |t: &str| evs.iter().filter(|e| e["Type"] == t).count() as u64;
    assert_eq!(
        count("LinkClicked"),
        mine["TotalCount"].as_u64().unwrap_or_default()
    );
    assert_eq!(
        count("Opened"),
        opens["TotalCount"].as_u64().unwrap_or_default()
    );
    assert!(evs
        .iter()
        .any(|e| e["Type"] == "LinkClicked" && e["ReceivedAt"] == c["ReceivedAt"]));
    for target in [
        "/messages/outbound/00000000-0000-4000-8000-000000000000/details".to_string(),
        "/messages/outbound/opens/nope?count=5".to_string(),
    ] {
        let (status, v) = err_code(&a, &target);
        assert_eq!(
            (status, v["ErrorCode"].as_u64()),
            (422, Some(701)),
            "{target}"
        );
    }
    // message_events truth holds the same events for this message.
    let keys = lines(&a, "stream=message_events");
    let n = keys.iter().filter(|k| k.contains(id)).count();
    assert_eq!(n, evs.len());
}

#[test]
fn stats_are_sparse_consistent_and_match_truth() {
    let a = app(&[]);
    let sends = get(&a, "/stats/outbound/sends?messagestream=outbound");
    let days = sends["Days"].as_array().cloned().unwrap_or_default();
    assert!(days.len() > 300, "stats reach far back: {}", days.len());
    let sum: u64 = days.iter().filter_map(|d| d["Sent"].as_u64()).sum();
    assert_eq!(sends["Sent"].as_u64(), Some(sum));
    let bounces = get(&a, "/stats/outbound/bounces?messagestream=outbound");
    assert!(
        bounces["Days"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d.get("SMTPApiError").is_none()),
        "zero keys left out"
    );
    let empty = get(
        &a,
        "/stats/outbound/opens?messagestream=outbound&fromdate=2000-01-01&todate=2000-01-02",
    );
    assert_eq!(empty, serde_json::json!({"Days": []}));
    let plat = get(
        &a,
        "/stats/outbound/opens/platforms?messagestream=broadcast",
    );
    let opens = get(&a, "/stats/outbound/opens?messagestream=broadcast");
    let psum: u64 = ["Desktop", "Mobile", "Unknown", "WebMail"]
        .iter()
        .filter_map(|k| plat[k].as_u64())
        .sum();
    assert_eq!(Some(psum), opens["Unique"].as_u64());
    // Truth records equal what the daily endpoints serve, day by day.
    let recs = lines(&a, "stream=stats_outbound_daily&records=1");
    let by_day: std::collections::HashMap<String, u64> = days
        .iter()
        .map(|d| {
            (
                d["Date"].as_str().unwrap_or_default().to_string(),
                d["Sent"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let mut n = 0;
    for r in &recs {
        let r: Value = serde_json::from_str(r).unwrap_or_default();
        if r["MessageStream"] == "outbound" && r["Sent"].as_u64() > Some(0) {
            assert_eq!(
                by_day.get(r["Date"].as_str().unwrap_or_default()),
                r["Sent"].as_u64().as_ref()
            );
            n += 1;
        }
    }
    assert_eq!(n, days.len());
    let clients = get(&a, "/stats/outbound/opens/emailclients?messagestream=outbound&fromdate=2026-11-01&todate=2026-11-19");
    let names = lines(
        &a,
        "stream=stats_open_email_clients&from=2026-11-01T00:00:00Z&to=2026-11-20T00:00:00Z",
    );
    let served: usize = clients["Days"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.as_object().map_or(0, |o| o.len() - 1))
        .sum();
    let truth = names.iter().filter(|l| l.contains("\"outbound\"")).count();
    assert_eq!(served, truth);
    let overview = get(&a, "/stats/outbound?messagestream=outbound");
    assert_eq!(overview["Sent"].as_u64(), Some(sum));
    assert_eq!(
        call(&a, "/stats/outbound/sends?fromdate=yesterday", true).0,
        422
    );
}

#[test]
fn arrivals_add_events_and_stats() {
    let a = app(&[]);
    let before = get(&a, "/messages/outbound/opens?count=1")["TotalCount"].as_u64();
    let sent_before = get(&a, "/stats/outbound/opens")["Opens"].as_u64();
    let (status, body) = call(
        &a,
        "/__fake/arrive?stream=opens&count=7&at=2026-11-20T11:59:00Z",
        false,
    );
    assert_eq!(status, 405, "{}", String::from_utf8_lossy(&body));
    let raw = "POST /__fake/arrive?stream=opens&count=7&at=2026-11-20T11:59:00Z HTTP/1.1\r\n\r\n";
    let req = read_request(&mut raw.as_bytes())
        .ok()
        .flatten()
        .expect("parses");
    let mut out = Vec::new();
    let _ = control::handle(&a, &req, &mut out);
    assert!(String::from_utf8_lossy(&out).contains("\"added\":7"));
    let after = get(&a, "/messages/outbound/opens?count=1");
    assert_eq!(after["TotalCount"].as_u64(), before.map(|n| n + 7));
    assert!(after["Opens"][0]["ReceivedAt"]
        .as_str()
        .is_some_and(|t| t.starts_with("2026-11-20T06:59:00.006")));
    assert_eq!(
        get(&a, "/stats/outbound/opens")["Opens"].as_u64(),
        sent_before.map(|n| n + 7)
    );
}

fn account(extra: &[&str]) -> std::sync::Arc<App> {
    let mut args = vec!["fake-postmark", "--now", NOW];
    args.extend_from_slice(extra);
    let cli = Cli::parse_from(args);
    let now = crate::eastern::parse_rfc3339_ticks(NOW).unwrap_or_default();
    App::account(cli, now)
}

/// A request routed like the server does: to the server of its token or `server=ID`.
fn send(
    acct: &std::sync::Arc<App>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let h: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let raw = format!("{method} {target} HTTP/1.1\r\n{h}\r\n");
    let req = read_request(&mut raw.as_bytes())
        .ok()
        .flatten()
        .expect("request parses");
    let app = acct.target(&req);
    let mut out = Vec::new();
    let status = if target.starts_with("/__fake/add-server") {
        match control::add_server(acct, &req, &mut out) {
            Outcome::Respond(h) => h.status,
            _ => 0,
        }
    } else if target.starts_with("/__fake/") {
        match control::handle(&app, &req, &mut out) {
            Outcome::Respond(h) => h.status,
            Outcome::Stream(h, _, writer) => {
                writer(&mut out).expect("writes to a Vec");
                h.status
            }
            _ => 0,
        }
    } else {
        api::handle(&app, &req, &mut out).status
    };
    let v = serde_json::from_slice(&out)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out).into_owned()));
    (status, v)
}

const ACCT: (&str, &str) = ("X-Postmark-Account-Token", "fake-account-token");

#[test]
fn account_lists_servers_with_their_own_tokens_and_data() {
    let a = account(&["--servers", "3", "--outbound", "500"]);
    let (status, list) = send(&a, "GET", "/servers?count=500&offset=0", &[ACCT]);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["TotalCount"], 3);
    let servers = list["Servers"].as_array().cloned().unwrap_or_default();
    let mut first_ids = HashSet::new();
    for s in &servers {
        let token = s["ApiTokens"][0].as_str().unwrap_or_default();
        let tok = ("X-Postmark-Server-Token", token);
        let (st, me) = send(&a, "GET", "/server", &[tok]);
        assert_eq!((st, &me["ID"]), (200, &s["ID"]));
        let (_, msgs) = send(&a, "GET", "/messages/outbound?count=500", &[tok]);
        for m in msgs["Messages"].as_array().into_iter().flatten() {
            assert!(
                first_ids.insert(m["MessageID"].to_string()),
                "message IDs differ per server"
            );
        }
        let (_, truth) = send(
            &a,
            "GET",
            &format!("/__fake/truth?stream=webhooks&server={}", s["ID"]),
            &[],
        );
        let (_, hooks) = send(&a, "GET", "/webhooks", &[tok]);
        assert_eq!(
            truth.as_str().map(|t| t.lines().count()),
            hooks["Webhooks"].as_array().map(Vec::len)
        );
        // An account token on a server endpoint (with the server token) is refused.
        assert_eq!(send(&a, "GET", "/server", &[tok, ACCT]).0, 401);
    }
    assert_eq!(servers[0]["ApiTokens"][0], "fake-server-token");
    let (_, keys) = send(&a, "GET", "/__fake/truth?stream=servers", &[]);
    assert_eq!(keys.as_str().map(|t| t.lines().count()), Some(3));
    assert_eq!(
        send(
            &a,
            "GET",
            "/servers?count=500",
            &[("X-Postmark-Server-Token", "fake-server-token")]
        )
        .0,
        401
    );
    assert_eq!(
        send(&a, "GET", "/servers?count=1&offset=2", &[ACCT]).1["Servers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (_, named) = send(&a, "GET", "/servers?count=5&name=staging", &[ACCT]);
    assert_eq!(named["TotalCount"], 1);
    for (path, key, stream) in [
        ("/domains", "Domains", "domains"),
        ("/senders", "SenderSignatures", "sender_signatures"),
    ] {
        let (st, v) = send(&a, "GET", &format!("{path}?count=500&offset=0"), &[ACCT]);
        assert_eq!(st, 200);
        let (_, t) = send(&a, "GET", &format!("/__fake/truth?stream={stream}"), &[]);
        assert_eq!(
            v[key].as_array().map(Vec::len),
            t.as_str().map(|t| t.lines().count())
        );
        assert_eq!(send(&a, "GET", path, &[ACCT]).0, 422, "count required");
        let id = &v[key][0]["ID"];
        let (st, d) = send(&a, "GET", &format!("{path}/{id}"), &[ACCT]);
        assert_eq!((st, &d["ID"]), (200, id));
        assert!(d["DKIMHost"].is_string() && d["ReturnPathDomainCNAMEValue"].is_string());
        assert_eq!(send(&a, "GET", &format!("{path}/1"), &[ACCT]).0, 422);
    }
}

#[test]
fn revoked_and_added_servers() {
    let a = account(&["--servers", "2", "--outbound", "300"]);
    let second = a.all_servers()[1].clone();
    let tok = ("X-Postmark-Server-Token", second.cfg.token.as_str());
    assert_eq!(send(&a, "GET", "/server", &[tok]).0, 200);
    let (st, _) = send(
        &a,
        "POST",
        &format!("/__fake/revoke?server={}", second.server_id),
        &[],
    );
    assert_eq!(st, 200);
    let (st, v) = send(&a, "GET", "/server", &[tok]);
    assert_eq!((st, v["ErrorCode"].as_u64()), (401, Some(10)));
    assert_eq!(
        send(
            &a,
            "GET",
            "/server",
            &[("X-Postmark-Server-Token", "fake-server-token")]
        )
        .0,
        200
    );
    let (st, added) = send(&a, "POST", "/__fake/add-server", &[]);
    assert_eq!(st, 200);
    let (_, list) = send(&a, "GET", "/servers?count=500", &[ACCT]);
    assert_eq!(list["TotalCount"], 3);
    let token = added["Token"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        send(
            &a,
            "GET",
            "/messages/outbound?count=1",
            &[("X-Postmark-Server-Token", &token)]
        )
        .0,
        200
    );
    let (st, _) = send(&a, "GET", "/__fake/truth?stream=opens&server=42", &[]);
    assert_eq!(st, 400);
}

#[test]
fn one_platform_scenario_crowds_one_platform_past_10000() {
    let a = app(&["--scenario", "many-events-one-platform"]);
    let opens = get(&a, "/messages/outbound/opens?count=1&platform=Mobile");
    assert!(opens["TotalCount"].as_u64().unwrap_or_default() > 10_000);
    let clicks = get(&a, "/messages/outbound/clicks?count=1&platform=Desktop");
    assert!(clicks["TotalCount"].as_u64().unwrap_or_default() > 10_000);
}

#[test]
fn each_server_serves_its_own_opens_and_stats_as_its_truth_says() {
    let a = account(&["--servers", "2", "--outbound", "400"]);
    let mut seen = HashSet::new();
    for s in a.all_servers() {
        let tok = ("X-Postmark-Server-Token", s.cfg.token.as_str());
        let (_, v) = send(&a, "GET", "/messages/outbound/opens?count=500", &[tok]);
        let (_, t) = send(
            &a,
            "GET",
            &format!("/__fake/truth?stream=opens&server={}", s.server_id),
            &[],
        );
        let keys = t.as_str().unwrap_or_default().to_string();
        assert!(keys.lines().count() as u64 >= v["TotalCount"].as_u64().unwrap_or_default());
        for o in v["Opens"].as_array().into_iter().flatten() {
            let id = o["MessageID"].as_str().unwrap_or_default().to_string();
            assert!(keys.contains(&id));
            seen.insert((s.server_id, id));
        }
        let (_, sends) = send(
            &a,
            "GET",
            "/stats/outbound/sends?messagestream=outbound",
            &[tok],
        );
        let (_, recs) = send(
            &a,
            "GET",
            &format!(
                "/__fake/truth?stream=stats_outbound_daily&records=1&server={}",
                s.server_id
            ),
            &[],
        );
        let truth_sent: u64 = recs
            .as_str()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["MessageStream"] == "outbound")
            .filter_map(|r| r["Sent"].as_u64())
            .sum();
        assert_eq!(sends["Sent"].as_u64(), Some(truth_sent));
    }
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids.len(),
        seen.len(),
        "no MessageID is shared between servers"
    );
}

#[test]
fn servers_differ_in_their_message_streams() {
    let a = account(&["--servers", "2", "--outbound", "300"]);
    let servers = a.all_servers();
    for (s, has_legacy) in [(&servers[0], true), (&servers[1], false)] {
        let tok = ("X-Postmark-Server-Token", s.cfg.token.as_str());
        let (_, list) = send(
            &a,
            "GET",
            "/message-streams?IncludeArchivedStreams=true",
            &[tok],
        );
        let ids: Vec<&str> = list["MessageStreams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["ID"].as_str())
            .collect();
        assert_eq!(ids.contains(&"legacy-tx"), has_legacy);
        let (_, t) = send(
            &a,
            "GET",
            &format!(
                "/__fake/truth?stream=message_streams&server={}",
                s.server_id
            ),
            &[],
        );
        assert_eq!(t.as_str().map(|t| t.lines().count()), Some(ids.len()));
        let (st, _) = send(
            &a,
            "GET",
            "/message-streams/legacy-tx/suppressions/dump",
            &[tok],
        );
        assert_eq!(st, if has_legacy { 200 } else { 422 });
        let (_, supp) = send(
            &a,
            "GET",
            &format!("/__fake/truth?stream=suppressions&server={}", s.server_id),
            &[],
        );
        assert_eq!(
            supp.as_str().is_some_and(|t| t.contains("\"legacy-tx\"")),
            has_legacy
        );
    }
}

#[test]
fn a_hot_message_pages_its_events_by_count_and_offset_up_to_the_cap() {
    let a = app(&[
        "--outbound",
        "300",
        "--opens",
        "100",
        "--clicks",
        "50",
        "--hot-message-events",
        "10600",
    ]);
    // The hot message is the one with the most opens in the truth.
    let mut per_message: std::collections::HashMap<String, usize> = Default::default();
    for k in lines(&a, "stream=opens") {
        let key: Value = serde_json::from_str(&k).expect("a composite key");
        let id = key[0].as_str().unwrap_or_default().to_string();
        *per_message.entry(id).or_default() += 1;
    }
    let (id, n) = per_message
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("opens");
    assert!(n >= 10_600, "{n}");
    let mut seen = HashSet::new();
    let mut last: Option<String> = None;
    for offset in (0..10_000).step_by(500) {
        let page = get(
            &a,
            &format!("/messages/outbound/opens/{id}?count=500&offset={offset}"),
        );
        assert_eq!(page["TotalCount"].as_u64(), Some(n as u64));
        let opens = page["Opens"].as_array().cloned().unwrap_or_default();
        assert_eq!(opens.len(), 500, "offset {offset}");
        for o in &opens {
            assert_eq!(o["MessageID"], id.as_str());
            let at = o["ReceivedAt"].as_str().unwrap_or_default().to_string();
            let key = format!("{}|{at}", o["Recipient"]);
            assert!(seen.insert(key), "offset {offset}: an open twice");
            last = Some(at);
        }
    }
    assert!(last.is_some());
    // Count + offset past 10,000 is refused, as by Postmark, and counted as a cap violation.
    let (status, v) = err_code(
        &a,
        &format!("/messages/outbound/opens/{id}?count=500&offset=9600"),
    );
    assert_eq!((status, v["ErrorCode"].as_u64()), (422, Some(700)));
    let clicks = get(&a, &format!("/messages/outbound/clicks/{id}?count=1"));
    assert!(clicks["TotalCount"].as_u64().unwrap_or_default() >= 10_600 / 3);
}
