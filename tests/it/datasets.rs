//! The datasets of issue 7 (opens, clicks, message events, suppressions, delivery stats,
//! daily statistics, webhooks, inbound rules, template bodies) through the real binary in
//! both protocols, against the fake's ground truth.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::support::*;

/// Every stream of issue 7 (and the enriched templates).
const NEW_STREAMS: [&str; 14] = [
    "templates",
    "suppressions",
    "delivery_stats",
    "webhooks",
    "inbound_rules",
    "stats_outbound_daily",
    "stats_open_platforms",
    "stats_click_platforms",
    "stats_click_locations",
    "stats_open_email_clients",
    "stats_click_browser_families",
    "opens",
    "clicks",
    "message_events",
];

/// The prefix of every secret the fake puts in its webhooks.
const WEBHOOK_SECRET: &str = "fake-webhook-secret-";

fn events_config() -> Value {
    json!({ "message_events": true })
}

/// Asserts that the records of a statistics stream carry exactly the fake's counts: a count
/// the connector left out (Postmark did not return it) must be 0 in the truth.
fn assert_stats_counts(stream: &str, got: &[Value], truth: &[Value]) {
    let by_key: HashMap<String, &Value> = got.iter().map(|r| (record_key(stream, r), r)).collect();
    assert_eq!(by_key.len(), got.len(), "{stream}: one record per key");
    for t in truth {
        let key = record_key(stream, t);
        let r = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("{stream}: {key} missing"));
        for (field, want) in t.as_object().unwrap() {
            let have = r.get(field).cloned().unwrap_or(json!(0));
            assert_eq!(&have, want, "{stream} {key}: {field}");
        }
        for field in r.as_object().unwrap().keys() {
            assert!(t.get(field).is_some(), "{stream} {key}: unexpected {field}");
        }
    }
}

/// The records of `stream` in `run`.
fn records_of(run: &Run, stream: &str) -> Vec<Value> {
    run.records().remove(stream).unwrap_or_default()
}

#[test]
fn every_new_stream_returns_exactly_the_fakes_truth_over_airbyte_at_the_minimum_request_count() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("datasets-airbyte");
    let run = airbyte_read(&fake, &s, &NEW_STREAMS, events_config(), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_valid_airbyte(&run);
    assert_records_match_schemas(&run);
    for stream in NEW_STREAMS {
        let truth = truth_of(&fake, stream);
        assert!(!truth.is_empty(), "{stream}: the fake has data");
        assert_exactly(stream, &run.keys(stream), &truth);
    }
    for stream in NEW_STREAMS.iter().filter(|s| s.starts_with("stats_")) {
        let truth = fake.truth_records(stream, Some((STATS_START, default_range().1)));
        assert_stats_counts(stream, &records_of(&run, stream), &truth);
    }
    // Template bodies come from the detail endpoint.
    let templates = fake.truth_records("templates", None);
    let got: HashMap<String, Value> = records_of(&run, "templates")
        .into_iter()
        .map(|r| (record_key("templates", &r), r))
        .collect();
    for t in &templates {
        let r = &got[&record_key("templates", t)];
        for f in ["Subject", "HtmlBody", "TextBody"] {
            assert_eq!(r[f], t[f], "templates {}: {f}", t["TemplateId"]);
        }
    }

    // Requests: paged streams within 1.1x of the fewest pages that can hold their rows;
    // one details request per outbound message; one request per template, stream, part.
    let mut by_path: BTreeMap<String, u64> = BTreeMap::new();
    let mut details = 0u64;
    let mut template_details = 0u64;
    for r in fake.requests() {
        let path = r["path"].as_str().unwrap().to_string();
        if path.ends_with("/details") {
            details += 1;
        } else if path.starts_with("/templates/") {
            template_details += 1;
        } else {
            *by_path.entry(path).or_default() += 1;
        }
    }
    let min_pages = |stream: &str| -> u64 {
        let mut per_stream: BTreeMap<String, u64> = BTreeMap::new();
        for r in fake.truth_records(stream, Some(default_range())) {
            *per_stream
                .entry(r["MessageStream"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        // Every sending stream is asked at least once, even when it has no events.
        let sending = 4u64;
        let pages: u64 = per_stream.values().map(|n| n.div_ceil(500)).sum();
        pages.max(sending)
    };
    for (stream, path) in [
        ("opens", "/messages/outbound/opens"),
        ("clicks", "/messages/outbound/clicks"),
    ] {
        let min = min_pages(stream);
        let got = by_path[path];
        assert!(
            got as f64 <= 1.1 * min as f64,
            "{stream}: {got} requests for at least {min}"
        );
    }
    let messages = truth_of(&fake, "messages_outbound").len() as u64;
    assert_eq!(
        details, messages,
        "one details request per outbound message"
    );
    assert_eq!(template_details, templates.len() as u64);
    assert_eq!(by_path["/deliverystats"], 1);
    assert_eq!(by_path["/webhooks"], 1);
    assert_eq!(by_path["/triggers/inboundrules"], 1);
    for part in ["sends", "bounces", "spam", "tracked", "opens", "clicks"] {
        assert_eq!(by_path[&format!("/stats/outbound/{part}")], 4, "{part}");
    }
    assert_eq!(fake.stats()["cap_violations"], 0);
}

#[test]
fn every_new_stream_returns_exactly_the_fakes_truth_over_singer() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("datasets-singer");
    let cfg = s.config(&fake, events_config());
    let discover = run(&["--config", &cfg, "--discover"]);
    assert_eq!(discover.code, 0, "{}", discover.stderr);
    let mut catalog: Value = serde_json::from_str(&discover.stdout).unwrap();
    for entry in catalog["streams"].as_array_mut().unwrap() {
        let name = entry["tap_stream_id"].as_str().unwrap().to_string();
        entry["metadata"][0]["metadata"]["selected"] = json!(NEW_STREAMS.contains(&name.as_str()));
    }
    let cat = s.write_json("catalog.json", &catalog);
    let run = run(&["--config", &cfg, "--catalog", &cat]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let schemas: HashMap<String, Value> = run
        .of_type("SCHEMA")
        .into_iter()
        .map(|m| (m["stream"].as_str().unwrap().to_string(), m))
        .collect();
    for stream in NEW_STREAMS {
        assert_eq!(
            schemas[stream]["key_properties"],
            json!(key_of(stream)),
            "{stream}: SCHEMA names the composite key"
        );
        assert_exactly(stream, &run.keys(stream), &truth_of(&fake, stream));
    }
    for stream in NEW_STREAMS.iter().filter(|s| s.starts_with("stats_")) {
        let truth = fake.truth_records(stream, Some((STATS_START, default_range().1)));
        assert_stats_counts(stream, &records_of(&run, stream), &truth);
    }
    assert_no_secret(&run, TOKEN);
    assert!(!run.stdout.contains(WEBHOOK_SECRET) && !run.stderr.contains(WEBHOOK_SECRET));
}

#[test]
fn no_webhook_password_header_value_or_token_appears_in_any_output() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("datasets-secrets");
    let run = airbyte_read(&fake, &s, &["webhooks"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let truth = fake.truth_records("webhooks", None);
    let secrets: Vec<String> = truth
        .iter()
        .flat_map(|w| {
            let mut v: Vec<String> = w["HttpHeaders"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["Value"].as_str().map(str::to_string))
                .collect();
            v.extend(w["HttpAuth"]["Password"].as_str().map(str::to_string));
            v
        })
        .collect();
    assert!(
        secrets.iter().any(|s| s.starts_with(WEBHOOK_SECRET)),
        "the fake has webhook secrets: {secrets:?}"
    );
    // Every header value is masked in the records (below); the credentials must not appear
    // anywhere at all.
    for secret in secrets.iter().filter(|s| s.starts_with(WEBHOOK_SECRET)) {
        assert_no_secret(&run, secret);
    }
    assert_no_secret(&run, TOKEN);
    for w in records_of(&run, "webhooks") {
        if !w["HttpAuth"].is_null() {
            assert_eq!(w["HttpAuth"]["Password"], "***", "{w}");
        }
        for h in w["HttpHeaders"].as_array().unwrap() {
            assert_eq!(h["Value"], "***", "{w}");
        }
    }
}

#[test]
fn message_events_are_read_only_when_switched_on() {
    let fake = Fake::start(&["--outbound", "300"]);
    let s = Scratch::new("datasets-opt-in");
    let run = airbyte_read(&fake, &s, &["message_events"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(records_of(&run, "message_events").is_empty());
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("message_events") && l.contains("\"message_events\": true")),
        "a warning names the switch: {:?}",
        run.logs()
    );
    assert!(fake
        .requests()
        .iter()
        .all(|r| !r["path"].as_str().unwrap().ends_with("/details")));
}

#[test]
fn a_second_sync_returns_new_events_and_re_reads_only_the_recent_stats_days() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("datasets-incremental");
    let streams = [
        "opens",
        "clicks",
        "stats_outbound_daily",
        "stats_open_email_clients",
    ];
    let first = airbyte_read(&fake, &s, &streams, json!({}), None, NOW);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = first.airbyte_state_file();

    // New events after the first sync's end.
    fake.arrive("opens", 40, "2026-11-20T13:00:00Z");
    fake.arrive("clicks", 25, "2026-11-20T14:00:00Z");
    let later = "2026-11-21T12:00:00Z";
    let second = airbyte_read(&fake, &s, &streams, json!({}), Some(&state), later);
    assert_eq!(second.code, 0, "{}", second.stderr);

    // Events: the lookback (24 h before the saved cursor) through the new end, exactly.
    let range = ("2026-11-19T11:55:00Z", "2026-11-21T11:55:00Z");
    for stream in ["opens", "clicks"] {
        let truth = fake.truth(stream, Some(range));
        assert_exactly(stream, &second.keys(stream), &truth);
        let new = fake.truth(stream, Some(("2026-11-20T11:55:00Z", range.1)));
        assert!(
            new.len() >= 25,
            "{stream}: new events arrived ({})",
            new.len()
        );
    }
    // Stats: the last `stats_lookback_days` (7) days before the saved cursor, with counts.
    let stats_range = ("2026-11-13T00:00:00Z", range.1);
    for stream in ["stats_outbound_daily", "stats_open_email_clients"] {
        let got = records_of(&second, stream);
        assert!(
            got.iter()
                .all(|r| r["Date"].as_str().unwrap() >= "2026-11-13"),
            "{stream}: nothing older than the stats lookback"
        );
        assert_exactly(
            stream,
            &second.keys(stream),
            &fake.truth(stream, Some(stats_range)),
        );
        assert_stats_counts(stream, &got, &fake.truth_records(stream, Some(stats_range)));
    }
    let opens_today: u64 = records_of(&second, "stats_outbound_daily")
        .iter()
        .filter(|r| r["Date"] == "2026-11-20")
        .map(|r| r["Opens"].as_u64().unwrap_or(0))
        .sum();
    let opens_before: u64 = records_of(&first, "stats_outbound_daily")
        .iter()
        .filter(|r| r["Date"] == "2026-11-20")
        .map(|r| r["Opens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        opens_today,
        opens_before + 40,
        "the re-read day counts the new opens"
    );
}

#[test]
fn opens_and_clicks_past_10000_in_one_message_stream_are_complete_when_dates_are_honoured() {
    let fake = Fake::start(&[
        "--scenario",
        "many-events",
        "--events-date-filter",
        "honoured",
    ]);
    let s = Scratch::new("datasets-many-events");
    let run = airbyte_read(&fake, &s, &["opens", "clicks"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stream in ["opens", "clicks"] {
        let truth = fake.truth_records(stream, Some(default_range()));
        let in_outbound = truth
            .iter()
            .filter(|r| r["MessageStream"] == "outbound")
            .count();
        assert!(
            in_outbound > 10_000,
            "{stream}: {in_outbound} in one stream"
        );
        assert_exactly(stream, &run.keys(stream), &truth_of(&fake, stream));
    }
    assert_eq!(fake.stats()["cap_violations"], 0);
}

#[test]
fn a_second_singer_sync_continues_from_its_bookmarks_for_events_and_stats() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("datasets-singer-incremental");
    let cfg = s.config(&fake, json!({}));
    let discover = run(&["--config", &cfg, "--discover"]);
    let mut catalog: Value = serde_json::from_str(&discover.stdout).unwrap();
    let picked = ["opens", "stats_outbound_daily"];
    for entry in catalog["streams"].as_array_mut().unwrap() {
        let name = entry["tap_stream_id"].as_str().unwrap().to_string();
        entry["metadata"][0]["metadata"]["selected"] = json!(picked.contains(&name.as_str()));
    }
    let cat = s.write_json("catalog.json", &catalog);
    let first = run(&["--config", &cfg, "--catalog", &cat]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = first.of_type("STATE").last().cloned().expect("a STATE")["value"].clone();
    assert!(state["bookmarks"]["opens"].is_object(), "{state}");
    assert!(
        state["bookmarks"]["stats_outbound_daily"].is_object(),
        "{state}"
    );

    fake.arrive("opens", 30, "2026-11-20T13:00:00Z");
    let st = s.write_json("state.json", &state);
    let later = "2026-11-21T12:00:00Z";
    let second = run_at(
        &["--config", &cfg, "--catalog", &cat, "--state", &st],
        later,
        None,
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let range = ("2026-11-19T11:55:00Z", "2026-11-21T11:55:00Z");
    assert_exactly(
        "opens",
        &second.keys("opens"),
        &fake.truth("opens", Some(range)),
    );
    let stats_range = ("2026-11-13T00:00:00Z", range.1);
    assert_exactly(
        "stats_outbound_daily",
        &second.keys("stats_outbound_daily"),
        &fake.truth("stats_outbound_daily", Some(stats_range)),
    );
}
