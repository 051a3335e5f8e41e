//! Opens and clicks past 10,000 in one message stream, whether Postmark honours
//! `fromdate`/`todate` on them or not (api.md §13.1, unconfirmed): the connector detects
//! which, logs it, and returns exactly the fake's truth either way, in both protocols, and
//! incrementally.

use serde_json::{json, Value};

use crate::support::*;

const EVENTS: [&str; 2] = ["opens", "clicks"];
const MODES: [&str; 2] = ["honoured", "ignored"];

/// The composite key of an event record, as the fake's truth writes it.
fn event_key(stream: &str, r: &Value) -> String {
    let mut key = vec![
        r["MessageID"].clone(),
        r["Recipient"].clone(),
        r["ReceivedAt"].clone(),
    ];
    if stream == "clicks" {
        key.push(r["OriginalLink"].clone());
    }
    Value::Array(key).to_string()
}

fn event_keys(run: &Run, stream: &str) -> Vec<String> {
    run.records()
        .get(stream)
        .map(|rs| rs.iter().map(|r| event_key(stream, r)).collect())
        .unwrap_or_default()
}

/// The fake's records of `stream` in `[from, to)`, as the connector should emit them.
fn truth_records(fake: &Fake, stream: &str, (from, to): (&str, &str)) -> Vec<Value> {
    let url = format!(
        "{}/__fake/truth?stream={stream}&from={from}&to={to}&records=1",
        fake.url
    );
    let mut resp = ureq::get(&url).call().expect("truth records");
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .expect("truth body");
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("truth record"))
        .collect()
}

/// Events of the `outbound` message stream in the truth.
fn in_outbound(fake: &Fake, stream: &str) -> usize {
    let records = truth_records(fake, stream, default_range());
    records
        .iter()
        .filter(|r| r["MessageStream"] == "outbound")
        .count()
}

fn singer_catalog_of(streams: &[&str]) -> Value {
    let mut catalog: Value =
        serde_json::from_str(include_str!("../../catalogs/singer_catalog.json")).unwrap();
    catalog["streams"]
        .as_array_mut()
        .unwrap()
        .retain(|st| streams.contains(&st["tap_stream_id"].as_str().unwrap_or("")));
    catalog
}

fn detection_line(logs: &[String], stream: &str, mode: &str) -> bool {
    let verb = if mode == "ignored" {
        "ignores"
    } else {
        "honours"
    };
    logs.iter().any(|l| {
        l.starts_with(&format!(
            "{stream} (messagestream outbound): Postmark {verb} fromdate/todate"
        ))
    })
}

#[test]
fn opens_and_clicks_past_the_cap_in_one_message_stream_equal_the_truth_whether_the_date_filter_is_honoured_or_ignored(
) {
    for mode in MODES {
        let fake = Fake::start(&["--scenario", "many-events", "--events-date-filter", mode]);
        for stream in EVENTS {
            assert!(
                in_outbound(&fake, stream) > 10_000,
                "{stream}: more than one query reaches in one message stream"
            );
        }
        let s = Scratch::new(&format!("events-{mode}"));
        let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
        assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
        assert_valid_airbyte(&run);
        let logs = run.logs();
        for stream in EVENTS {
            let truth = fake.truth(stream, Some(default_range()));
            assert_exactly(stream, &event_keys(&run, stream), &truth);
            assert!(
                detection_line(&logs, stream, mode),
                "{mode}: the detection of {stream} is logged: {logs:#?}"
            );
        }
        assert_eq!(fake.stats()["cap_violations"], 0, "{mode}");
        assert!(
            !logs.iter().any(|l| l.contains("unreachable")),
            "{mode}: nothing unreachable"
        );
    }
}

#[test]
fn a_singer_sync_of_events_whose_date_filter_is_ignored_is_exact_and_logs_the_detection() {
    let fake = Fake::start(&[
        "--scenario",
        "many-events",
        "--events-date-filter",
        "ignored",
    ]);
    let s = Scratch::new("events-singer");
    // Without a lag no event lies past the window, so the first page cannot tell: the
    // oldest piece of the split is asked first, and its answer shows the filter ignored.
    let cfg = s.config(&fake, json!({"window_lag_seconds": 0}));
    let cat = s.write_json("catalog.json", &singer_catalog_of(&EVENTS));
    let run = run(&["--config", &cfg, "--catalog", &cat]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stream in EVENTS {
        let truth = fake.truth(stream, Some((default_range().0, NOW)));
        assert_exactly(stream, &event_keys(&run, stream), &truth);
        let detected =
            format!("{stream} (messagestream outbound): Postmark ignores fromdate/todate");
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&detected) && l.contains("in its oldest part")),
            "{}",
            run.stderr
        );
    }
    let state = run.of_type("STATE").pop().unwrap();
    for stream in EVENTS {
        assert_eq!(state["value"]["bookmarks"][stream]["synced_until"], NOW);
    }
}

#[test]
fn an_incremental_second_sync_returns_the_new_events_and_nothing_older_than_its_lookback() {
    for mode in MODES {
        let fake = Fake::start(&["--scenario", "many-events", "--events-date-filter", mode]);
        let s = Scratch::new(&format!("events-incremental-{mode}"));
        let first = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
        assert_eq!(first.code, 0, "{mode}: {}", first.stderr);
        let state = first.airbyte_state_file();
        // An hour later, new events arrived (after the first sync's end, before the second's).
        let later = "2026-11-20T13:00:00Z";
        for stream in EVENTS {
            fake.arrive(stream, 700, "2026-11-20T12:10:00Z");
        }
        let second = airbyte_read(&fake, &s, &EVENTS, json!({}), Some(&state), later);
        assert_eq!(second.code, 0, "{mode}: {}", second.stderr);
        for stream in EVENTS {
            // Lookback 24 h before the first sync's end, up to the second sync's end.
            let truth = fake.truth(
                stream,
                Some(("2026-11-19T11:55:00Z", "2026-11-20T12:55:00Z")),
            );
            let got = event_keys(&second, stream);
            assert_exactly(stream, &got, &truth);
            let new = fake.truth(
                stream,
                Some(("2026-11-20T12:10:00Z", "2026-11-20T12:55:00Z")),
            );
            assert_eq!(new.len(), 700, "{mode}: {stream} arrivals are in the truth");
        }
    }
}

#[test]
fn with_an_honoured_date_filter_events_cost_within_a_tenth_of_the_minimum_requests() {
    let fake = Fake::start(&[
        "--scenario",
        "many-events",
        "--events-date-filter",
        "honoured",
    ]);
    let s = Scratch::new("events-cost");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = fake.requests();
    for (stream, path) in [
        ("opens", "/messages/outbound/opens"),
        ("clicks", "/messages/outbound/clicks"),
    ] {
        let made = requests.iter().filter(|r| r["path"] == path).count();
        // The minimum: every message stream's events in range, 500 per request.
        let records = truth_records(&fake, stream, default_range());
        let mut per_stream: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &records {
            *per_stream
                .entry(r["MessageStream"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        let minimum: usize = per_stream.values().map(|n| n.div_ceil(500).max(1)).sum();
        assert!(
            made as f64 <= minimum as f64 * 1.1,
            "{stream}: {made} requests for a minimum of {minimum}"
        );
    }
}

#[test]
fn opens_and_clicks_beyond_what_one_platform_can_reach_come_from_the_per_message_fallback() {
    let fake = Fake::start(&[
        "--scenario",
        "many-events-one-platform",
        "--events-date-filter",
        "ignored",
    ]);
    let s = Scratch::new("events-fallback");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_valid_airbyte(&run);
    let logs = run.logs();
    for stream in EVENTS {
        let truth = fake.truth(stream, Some(default_range()));
        // Every extra open is Mobile, every extra click Desktop: one platform of `outbound`
        // holds more than one query reaches, so only the per-message fallback reaches the rest.
        assert!(in_outbound(&fake, stream) > 10_000, "{stream}");
        let got = event_keys(&run, stream);
        let unique: std::collections::HashSet<&String> = got.iter().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "{stream}: no event is emitted twice"
        );
        assert_exactly(stream, &got, &truth);
        assert!(
            logs.iter().any(|l| l
                .starts_with(&format!("{stream} (messagestream outbound, platform "))
                && l.contains("reading them per message")),
            "{stream}: the fallback's start is logged: {logs:#?}"
        );
        assert!(
            logs.iter()
                .any(|l| l.starts_with(&format!("{stream}: the per-message fallback read "))),
            "{stream}: the fallback's cost is logged: {logs:#?}"
        );
    }
    let per_message = fake
        .requests()
        .iter()
        .filter(|r| {
            let p = r["path"].as_str().unwrap_or("");
            p.starts_with("/messages/outbound/opens/")
                || p.starts_with("/messages/outbound/clicks/")
        })
        .count();
    assert!(per_message > 0, "the per-message endpoints were asked");
    assert!(
        !logs.iter().any(|l| l.contains("unreachable")),
        "nothing unreachable: {logs:#?}"
    );
    assert_eq!(fake.stats()["cap_violations"], 0);
}

#[test]
fn the_per_message_fallback_splits_a_message_listing_past_10000_and_stays_exact() {
    // 80,000 outbound messages: more than 10,000 were sent before the range the Mobile opens
    // read could not reach, so the fallback's listing of them must split in time.
    let fake = Fake::start(&[
        "--scenario",
        "many-events-one-platform",
        "--events-date-filter",
        "ignored",
        "--outbound",
        "80000",
        "--opens",
        "3000",
        "--clicks",
        "1000",
    ]);
    let s = Scratch::new("events-fallback-split");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs = run.logs();
    for stream in EVENTS {
        let truth = fake.truth(stream, Some(default_range()));
        assert_exactly(stream, &event_keys(&run, stream), &truth);
    }
    let listing_pages = |stream: &str| -> u64 {
        let prefix = format!("{stream}: the per-message fallback read ");
        let line = logs
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{stream}: the fallback's cost is logged: {logs:#?}"));
        let before = line
            .split(" listing outbound messages")
            .next()
            .unwrap_or("");
        before
            .rsplit('(')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a listing count in {line}"))
    };
    // One query lists at most 20 pages of 500: more means the listing was split.
    assert!(listing_pages("opens") > 20, "{logs:#?}");
    assert!(
        !logs.iter().any(|l| l.contains("unreachable")),
        "nothing unreachable: {logs:#?}"
    );
}
