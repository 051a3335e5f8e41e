//! What Singer tooling and people watching a sync read besides the records: METRIC lines,
//! table versions (ACTIVATE_VERSION), catalog metadata, progress with ETA and the summary.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::support::*;

fn metrics(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("INFO METRIC: "))
        .map(|m| serde_json::from_str(m).unwrap_or_else(|e| panic!("{e}: {m}")))
        .collect()
}

/// Does `path` fill the placeholders (`{...}` segments) of `template`?
fn fills(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

fn singer_catalog() -> Value {
    serde_json::from_str(include_str!("../../catalogs/singer_catalog.json")).expect("catalog")
}

#[test]
fn singer_metrics_count_every_record_per_stream_and_time_every_request() {
    let fake = Fake::start(&["--latency-ms", "5"]);
    let s = Scratch::new("metrics");
    let cfg = s.config(&fake, json!({"max_concurrency": 2}));
    let run = run(&["--config", &cfg, "--progress-every-ms", "40"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let metrics = metrics(&run.stderr);
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut counters = 0;
    let mut timers: BTreeMap<String, u64> = BTreeMap::new();
    for m in &metrics {
        match (m["type"].as_str(), m["metric"].as_str()) {
            (Some("counter"), Some("record_count")) => {
                counters += 1;
                let stream = m["tags"]["stream"].as_str().expect("stream tag");
                *counted.entry(stream.into()).or_default() += m["value"].as_u64().unwrap();
            }
            (Some("timer"), Some("http_request_duration")) => {
                assert!(m["value"].as_f64().is_some_and(|v| v >= 0.0), "{m}");
                assert_eq!(m["tags"]["status"], "succeeded", "{m}");
                assert_eq!(m["tags"]["http_status_code"], 200, "{m}");
                let endpoint = m["tags"]["endpoint"].as_str().expect("endpoint tag");
                *timers.entry(endpoint.into()).or_default() += 1;
            }
            _ => panic!("unexpected metric {m}"),
        }
    }
    let records = run.records();
    for stream in streams() {
        assert_eq!(
            counted.get(stream).copied(),
            Some(records[stream].len() as u64),
            "{stream}: the counters add up to its records"
        );
    }
    let total: usize = records.values().map(Vec::len).sum();
    assert!(
        counters < total / 20,
        "counters are periodic, not per record: {counters} for {total} records"
    );
    // One timer per page request, tagged with its endpoint's path template
    // (`/templates/{TemplateId}`); the message-stream list the plan starts from is not a page.
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for r in fake.requests() {
        let path = r["path"].as_str().unwrap();
        let endpoint = timers
            .keys()
            .filter(|t| fills(t, path))
            // An exact path before a template that would also match it.
            .min_by_key(|t| t.matches('{').count())
            .cloned()
            .unwrap_or_else(|| path.to_string());
        *requests.entry(endpoint).or_default() += 1;
    }
    *requests.get_mut("/message-streams").unwrap() -= 1;
    assert_eq!(timers, requests);

    // Airbyte counts by itself: no METRIC lines there.
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["bounces"], "incremental"),
    );
    let airbyte = crate::support::run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert_eq!(airbyte.code, 0);
    assert!(!airbyte.stdout.contains("METRIC") && !airbyte.stderr.contains("METRIC"));
}

#[test]
fn full_table_streams_carry_a_version_and_end_with_activate_version() {
    let about = run(&["--about", "--format", "json"]);
    let about: Value = serde_json::from_str(&about.stdout).unwrap();
    assert!(about["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("activate-version")));

    let fake = Fake::start(&[]);
    let s = Scratch::new("versions");
    let cfg = s.config(&fake, json!({}));
    // bounces is switched to FULL_TABLE: it gets a version too.
    let mut catalog = singer_catalog();
    for st in catalog["streams"].as_array_mut().unwrap() {
        if st["tap_stream_id"] == "bounces" {
            st["metadata"][0]["metadata"]["replication-method"] = json!("FULL_TABLE");
        }
    }
    let cat = s.write_json("catalog.json", &catalog);
    let run = run(&["--config", &cfg, "--catalog", &cat]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.lines();
    for stream in streams() {
        let spec = source_postmark::streams::find(stream).expect("a stream of the table");
        let full_table = !spec.is_incremental() || stream == "bounces";
        let records: Vec<(usize, &Value)> = lines
            .iter()
            .enumerate()
            .filter(|(_, m)| m["type"] == "RECORD" && m["stream"] == stream)
            .collect();
        assert!(!records.is_empty(), "{stream}");
        let activations: Vec<(usize, &Value)> = lines
            .iter()
            .enumerate()
            .filter(|(_, m)| m["type"] == "ACTIVATE_VERSION" && m["stream"] == stream)
            .collect();
        if !full_table {
            assert!(activations.is_empty(), "{stream} is incremental");
            assert!(records.iter().all(|(_, r)| r.get("version").is_none()));
            continue;
        }
        assert_eq!(activations.len(), 1, "{stream}: one ACTIVATE_VERSION");
        let (at, activate) = activations[0];
        let version = activate["version"].as_i64().expect("an integer version");
        assert!(
            records.iter().all(|(_, r)| r["version"] == version),
            "{stream}: every record carries the version"
        );
        assert!(
            records.iter().all(|(i, _)| *i < at),
            "{stream}: after its records"
        );
        let final_state = lines
            .iter()
            .enumerate()
            .skip(at)
            .find(|(_, m)| m["type"] == "STATE");
        assert!(
            final_state.is_some(),
            "{stream}: a STATE covers the activation"
        );
    }

    // A full-table stream that fails activates nothing: its rows must not be dropped.
    let fake = Fake::start(&[]);
    fake.fault("/templates", 500, 100, "");
    let cfg = s.config(&fake, json!({"max_retries": 0}));
    let failed = crate::support::run(&["--config", &cfg]);
    assert_eq!(failed.code, 1);
    assert!(!failed
        .stdout
        .contains("\"ACTIVATE_VERSION\",\"stream\":\"templates\""));
    assert!(failed
        .of_type("ACTIVATE_VERSION")
        .iter()
        .all(|m| m["stream"] != "templates"));
}

#[test]
fn the_singer_catalog_says_how_each_stream_replicates() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("singer-metadata");
    let cfg = s.config(&fake, json!({}));
    let run = run(&["--config", &cfg, "--discover"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let catalog = &run.lines()[0];
    for st in catalog["streams"].as_array().unwrap() {
        let name = st["tap_stream_id"].as_str().unwrap();
        let md = &st["metadata"][0]["metadata"];
        assert_eq!(md["table-key-properties"], json!(key_of(name)), "{name}");
        let spec = source_postmark::streams::find(name).expect("a stream of the table");
        if !spec.is_incremental() {
            assert_eq!(md["forced-replication-method"], "FULL_TABLE", "{name}");
            continue;
        }
        assert_eq!(md["forced-replication-method"], "INCREMENTAL", "{name}");
        assert_eq!(md["replication-method"], "INCREMENTAL", "{name}");
        let Some(key) = md["replication-key"].as_str() else {
            // Events listed per message: windowed on their messages, no field of their own.
            assert_eq!(
                name, "message_events",
                "only a fan-out has no replication key"
            );
            assert!(st.get("replication_key").is_none(), "{name}");
            continue;
        };
        assert_eq!(md["valid-replication-keys"], json!([key]), "{name}");
        assert_eq!(st["replication_key"], key, "{name}");
        let format = &st["schema"]["properties"][key]["format"];
        assert!(
            format == "date-time" || (format == "date" && name.starts_with("stats_")),
            "{name}: the key {key} is a date-time (a date for daily stats) of the records"
        );
    }
}

#[test]
fn progress_lines_give_the_share_done_and_an_eta_and_the_last_line_sums_up_every_stream() {
    let fake = Fake::start(&["--outbound", "6000", "--latency-ms", "30"]);
    let s = Scratch::new("progress-eta");
    let cfg = s.config(&fake, json!({"max_concurrency": 1}));
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(
            &["messages_outbound", "bounces", "templates"],
            "incremental",
        ),
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
    let shares: Vec<u32> = logs
        .iter()
        .filter(|l| l.starts_with("messages_outbound: ") && l.contains("% of the range done, ETA "))
        .map(|l| {
            let pct = l
                .split("records, ")
                .nth(1)
                .and_then(|r| r.split('%').next());
            pct.and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    assert!(
        shares.len() >= 2,
        "periodic progress with a share: {logs:?}"
    );
    assert!(
        shares.windows(2).all(|w| w[0] <= w[1]) && shares.iter().all(|p| *p <= 100),
        "the share grows: {shares:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("all streams: ") && l.contains("% done, ETA ")),
        "an overall line: {logs:?}"
    );

    let summary = logs.last().expect("logs");
    assert!(
        summary.starts_with("sync summary:"),
        "the last line: {summary}"
    );
    let records = run.records();
    let requests = fake.requests();
    for stream in ["messages_outbound", "bounces", "templates"] {
        let row = summary
            .lines()
            .find(|l| l.starts_with(&format!("{stream} ")))
            .unwrap_or_else(|| panic!("{stream} in {summary}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], records[stream].len().to_string(), "records: {row}");
        let path = match stream {
            "messages_outbound" => "/messages/outbound",
            "bounces" => "/bounces",
            _ => "/templates",
        };
        // Templates: the list and one detail request per template.
        let n = requests
            .iter()
            .filter(|r| {
                r["path"].as_str().is_some_and(|p| {
                    p == path || (stream == "templates" && p.starts_with("/templates/"))
                })
            })
            .count();
        assert_eq!(cols[2], n.to_string(), "requests: {row}");
        assert!(cols[3].parse::<f64>().is_ok(), "time: {row}");
        assert_eq!(cols[4], "0", "warnings: {row}");
        assert_eq!(cols[5], "complete", "{row}");
    }
    assert!(summary.lines().last().unwrap().starts_with("total "));
}
