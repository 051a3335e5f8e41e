//! Airbyte `read`: a full sync returns exactly the fake's ground truth, and every line
//! follows the protocol.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::support::*;

fn read_all(fake: &Fake, extra: Value) -> Run {
    airbyte_read(fake, &Scratch::new("read"), &streams(), extra, None, NOW)
}

#[test]
fn a_full_read_returns_exactly_the_fakes_truth_for_every_stream() {
    let fake = Fake::start(&[]);
    let run = read_all(&fake, json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stream in streams() {
        let truth = truth_of(&fake, stream);
        assert!(!truth.is_empty(), "{stream}: the fake has data");
        assert_exactly(stream, &run.keys(stream), &truth);
    }
    assert_valid_airbyte(&run);
    assert_records_match_schemas(&run);
    assert_no_secret(&run, TOKEN);
    assert_eq!(fake.stats()["cap_violations"], 0);
}

#[test]
fn every_stream_reports_started_running_complete_and_ends_with_its_state() {
    let fake = Fake::start(&["--outbound", "3000"]);
    let run = read_all(&fake, json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut statuses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in run.of_type("TRACE") {
        if t["trace"]["type"] == "STREAM_STATUS" {
            let s = &t["trace"]["stream_status"];
            statuses
                .entry(s["stream_descriptor"]["name"].as_str().unwrap().to_string())
                .or_default()
                .push(s["status"].as_str().unwrap().to_string());
        }
    }
    for stream in streams() {
        assert_eq!(
            statuses[stream],
            vec!["STARTED", "RUNNING", "COMPLETE"],
            "{stream}"
        );
    }
    // recordCount adds up to the records emitted, per stream.
    let mut counted: BTreeMap<String, f64> = BTreeMap::new();
    for st in run.of_type("STATE") {
        let name = st["state"]["stream"]["stream_descriptor"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        *counted.entry(name).or_default() +=
            st["state"]["sourceStats"]["recordCount"].as_f64().unwrap();
    }
    for (stream, records) in run.records() {
        assert_eq!(counted[&stream] as usize, records.len(), "{stream}");
    }
    let states = run.last_airbyte_states();
    for stream in ["messages_outbound", "messages_inbound", "bounces"] {
        assert_eq!(
            states[stream],
            json!({"synced_until": "2026-11-20T11:55:00Z"}),
            "{stream}"
        );
    }
    assert_eq!(states["templates"], json!({}));
    // Airbyte hears how many rows to expect once the first pages are in.
    let estimates: BTreeMap<String, u64> = run
        .of_type("TRACE")
        .iter()
        .filter(|t| t["trace"]["type"] == "ESTIMATE")
        .map(|t| {
            let e = &t["trace"]["estimate"];
            (
                e["name"].as_str().unwrap().to_string(),
                e["row_estimate"].as_u64().unwrap(),
            )
        })
        .collect();
    let outbound = run.keys("messages_outbound").len() as u64;
    let estimate = estimates["messages_outbound"];
    assert!(
        estimate >= outbound && estimate <= outbound + 50,
        "{estimate} vs {outbound}"
    );
    assert_state_follows_last_record(&run, &streams());
}

#[test]
fn outbound_and_bounces_are_read_once_per_message_stream_archived_included() {
    let fake = Fake::start(&[]);
    let run = read_all(&fake, json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in fake.requests() {
        let path = r["path"].as_str().unwrap().to_string();
        let ms = r["query"]["messagestream"]
            .as_str()
            .unwrap_or("<none>")
            .to_string();
        by_path.entry(path).or_default().insert(ms);
        if let (Some(c), Some(o)) = (r["query"]["count"].as_str(), r["query"]["offset"].as_str()) {
            let (c, o): (u32, u32) = (c.parse().unwrap(), o.parse().unwrap());
            assert!(c <= 500 && c + o <= 10_000, "count {c} offset {o}");
        }
    }
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        by_path["/messages/outbound"],
        set(&["outbound", "broadcast", "legacy-tx", "spring-promo"])
    );
    assert_eq!(
        by_path["/bounces"],
        set(&[
            "outbound",
            "broadcast",
            "legacy-tx",
            "spring-promo",
            "inbound"
        ])
    );
    assert_eq!(by_path["/messages/inbound"], set(&["<none>"]));
}

#[test]
fn date_filters_are_eastern_wall_time_without_offset() {
    let fake = Fake::start(&[]);
    let run = read_all(&fake, json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let outbound: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/messages/outbound")
        .collect();
    // The range [2026-10-06T12:00:00Z, 2026-11-20T11:55:00Z) is EDT at the start, EST at the end.
    assert!(outbound
        .iter()
        .any(|r| r["query"]["fromdate"] == "2026-10-06T08:00:00"));
    assert!(outbound
        .iter()
        .any(|r| r["query"]["todate"] == "2026-11-20T06:55:00"));
    for r in &outbound {
        for k in ["fromdate", "todate"] {
            let v = r["query"][k].as_str().unwrap();
            assert_eq!(v.len(), 19, "{k}={v} has no offset or fraction");
        }
    }
}

#[test]
fn gzip_compressed_answers_are_read_the_same() {
    let fake = Fake::start(&["--gzip"]);
    let run = read_all(&fake, json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    for r in fake.requests() {
        assert!(
            r["accept_encoding"].as_str().unwrap().contains("gzip"),
            "{r}"
        );
        assert_eq!(r["accept"], "application/json");
        let ua = r["user_agent"].as_str().unwrap();
        assert!(
            ua.starts_with(concat!("source-postmark/", env!("CARGO_PKG_VERSION"))),
            "{ua}"
        );
    }
    for stream in streams() {
        assert_exactly(stream, &run.keys(stream), &truth_of(&fake, stream));
    }
}

#[test]
fn every_field_postmark_returns_arrives_unknown_ones_too() {
    let fake = Fake::start(&[]);
    let run = read_all(&fake, json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = run.records();
    let with_future = records["messages_outbound"]
        .iter()
        .filter(|r| r.get("FutureField").is_some())
        .count();
    assert!(
        with_future > 0,
        "the fake's unknown field reaches the record"
    );
    let sample = &records["messages_outbound"][0];
    for f in [
        "MessageID",
        "To",
        "Recipients",
        "ReceivedAt",
        "Status",
        "Metadata",
    ] {
        assert!(sample.get(f).is_some(), "{f} present");
    }
}

#[test]
fn a_read_with_more_workers_returns_the_same_truth_and_respects_the_bound() {
    let fake = Fake::start(&["--outbound", "20000", "--latency-ms", "5"]);
    let run = read_all(&fake, json!({"max_concurrency": 3}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stream in streams() {
        assert_exactly(stream, &run.keys(stream), &truth_of(&fake, stream));
    }
    let states = run.last_airbyte_states();
    for stream in ["messages_outbound", "messages_inbound", "bounces"] {
        assert_eq!(
            states[stream],
            json!({"synced_until": "2026-11-20T11:55:00Z"}),
            "{stream}"
        );
    }
    let peak = fake.stats()["max_in_flight"].as_u64().unwrap();
    assert!(
        peak <= 3,
        "at most max_concurrency requests in flight, saw {peak}"
    );
    assert!(peak >= 2, "requests do overlap, saw {peak}");
}

#[test]
fn a_long_sync_is_visibly_alive_with_start_progress_and_end_lines() {
    let fake = Fake::start(&["--outbound", "6000", "--latency-ms", "30"]);
    let s = Scratch::new("progress");
    let cfg = s.config(&fake, json!({"max_concurrency": 1}));
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["messages_outbound"], "incremental"),
    );
    let run = run(&[
        "read",
        "--config",
        &cfg,
        "--catalog",
        &cat,
        "--progress-every-ms",
        "100",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs = run.logs();
    assert!(logs
        .iter()
        .any(|l| l.starts_with("messages_outbound: starting incremental sync")));
    let progress = logs
        .iter()
        .filter(|l| {
            l.starts_with("messages_outbound:")
                && l.contains("records,")
                && l.contains("windows done")
        })
        .count();
    assert!(progress >= 2, "periodic progress lines: {logs:?}");
    let end = logs
        .iter()
        .find(|l| l.contains("messages_outbound: finished"))
        .expect("an end line");
    let records = run.keys("messages_outbound").len();
    assert!(
        end.contains(&format!("{records} records")) && end.contains(" s"),
        "{end}"
    );
}

#[test]
fn templates_past_the_cap_warn_how_many_rows_were_left_unread() {
    let fake = Fake::start(&["--templates", "10400"]);
    let s = Scratch::new("templates-cap");
    let cfg = s.config(&fake, json!({}));
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["templates"], "full_refresh"),
    );
    let run = run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.keys("templates").len(), 10_000);
    let warn: Vec<String> = run
        .of_type("LOG")
        .iter()
        .filter(|l| l["log"]["level"] == "WARN")
        .map(|l| l["log"]["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        warn.iter()
            .any(|w| w.contains("templates: 400 rows are unreachable")),
        "{warn:?}"
    );
    assert_eq!(fake.stats()["cap_violations"], 0);
}
