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
