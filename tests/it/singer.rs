//! Singer mode: what Meltano and Singer targets see.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::*;

fn sync(fake: &Fake, s: &Scratch, catalog: Option<&Value>, state: Option<&Value>) -> Run {
    let cfg = s.config(fake, json!({}));
    let mut args = vec!["--config".to_string(), cfg];
    if let Some(c) = catalog {
        args.push("--catalog".into());
        args.push(s.write_json("catalog.json", c));
    }
    if let Some(st) = state {
        args.push("--state".into());
        args.push(s.write_json("state.json", st));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

#[test]
fn a_sync_without_catalog_emits_schema_before_records_and_only_singer_messages() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("singer-all");
    let run = sync(&fake, &s, None, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut schemas = BTreeSet::new();
    for m in run.lines() {
        match m["type"].as_str().unwrap() {
            "SCHEMA" => {
                assert!(m["key_properties"].is_array());
                assert!(m["schema"]["properties"].is_object());
                schemas.insert(m["stream"].as_str().unwrap().to_string());
            }
            "RECORD" => {
                let stream = m["stream"].as_str().unwrap();
                assert!(
                    schemas.contains(stream),
                    "SCHEMA of {stream} precedes its records"
                );
                assert!(m["time_extracted"].as_str().unwrap().ends_with('Z'));
            }
            "STATE" => assert!(m["value"]["bookmarks"].is_object()),
            "ACTIVATE_VERSION" => assert!(m["version"].is_i64()),
            other => panic!("{other} on a Singer stdout"),
        }
    }
    for stream in streams() {
        assert!(schemas.contains(stream));
    }
    assert_exactly(
        "bounces",
        &run.keys("bounces"),
        &fake.truth("bounces", Some(default_range())),
    );
    assert!(
        run.stderr.contains("INFO messages_outbound: finished"),
        "progress goes to stderr"
    );
    assert_records_match_schemas(&run);
    assert_no_secret(&run, TOKEN);
    let last = run.of_type("STATE").pop().unwrap();
    assert_eq!(
        last["value"]["bookmarks"]["messages_outbound"],
        json!({"synced_until": "2026-11-20T11:55:00Z"})
    );
}

#[test]
fn selection_honours_stream_and_field_flags_from_discovery() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("singer-select");
    let mut catalog: Value =
        serde_json::from_str(include_str!("../../catalogs/singer_catalog.json")).unwrap();
    for stream in catalog["streams"].as_array_mut().unwrap() {
        let selected = stream["tap_stream_id"] == "bounces";
        for md in stream["metadata"].as_array_mut().unwrap() {
            if md["breadcrumb"] == json!([]) {
                md["metadata"]["selected"] = json!(selected);
            }
            if md["breadcrumb"] == json!(["properties", "Details"]) {
                md["metadata"]["selected"] = json!(false);
            }
        }
    }
    let run = sync(&fake, &s, Some(&catalog), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = run.records();
    assert_eq!(records.keys().collect::<Vec<_>>(), vec!["bounces"]);
    assert!(records["bounces"]
        .iter()
        .all(|r| r.get("Details").is_none() && r.get("ID").is_some()));
    let schema = &run.of_type("SCHEMA")[0];
    assert!(schema["schema"]["properties"].get("Details").is_none());
    assert_eq!(schema["key_properties"], json!(["ID"]));
    assert_eq!(schema["bookmark_properties"], json!(["BouncedAt"]));
    // Only bounces was requested from the API (plus the message-stream list).
    assert!(fake
        .requests()
        .iter()
        .all(|r| r["path"] == "/bounces" || r["path"] == "/message-streams"));
}

#[test]
fn the_old_properties_flag_is_accepted() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("singer-properties");
    let cfg = s.config(&fake, json!({}));
    let mut catalog: Value =
        serde_json::from_str(include_str!("../../catalogs/singer_catalog.json")).unwrap();
    catalog["streams"]
        .as_array_mut()
        .unwrap()
        .retain(|st| st["tap_stream_id"] == "templates");
    let cat = s.write_json("catalog.json", &catalog);
    let run = run(&["--config", &cfg, "--properties", &cat]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_exactly(
        "templates",
        &run.keys("templates"),
        &fake.truth("templates", None),
    );
}

fn target_jsonl() -> PathBuf {
    match std::env::var_os("TARGET_JSONL") {
        Some(p) => PathBuf::from(p),
        None => crate::tools::venv_tool(".venv", "target-jsonl"),
    }
}

#[test]
#[ignore = "needs target-jsonl in .venv; scripts/ci/singer.sh runs it"]
fn singer_output_piped_into_target_jsonl_lands_every_record() {
    let target = target_jsonl();
    let fake = Fake::start(&[]);
    let s = Scratch::new("target-jsonl");
    let tap = sync(&fake, &s, None, None);
    assert_eq!(tap.code, 0, "{}", tap.stderr);
    let out_dir = s.dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target_cfg = s.write_json(
        "target.json",
        &json!({"destination_path": out_dir, "do_timestamp_file": false}),
    );
    let mut child = Command::new(&target)
        .args(["--config", &target_cfg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target-jsonl");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(tap.stdout.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "target-jsonl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // target-jsonl echoes the last state it received.
    let echoed = String::from_utf8_lossy(&out.stdout);
    assert!(echoed.contains("bookmarks"), "state echoed: {echoed}");
    for stream in streams() {
        let file = out_dir.join(format!("{stream}.jsonl"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{} written", file.display()));
        let keys: Vec<String> = text
            .lines()
            .map(|l| record_key(stream, &serde_json::from_str::<Value>(l).unwrap()))
            .collect();
        let truth = truth_of(&fake, stream);
        assert_exactly(stream, &keys, &truth);
    }
}

#[test]
fn a_second_sync_starts_from_the_bookmark_minus_the_lookback() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("singer-state");
    let state = json!({"bookmarks": {"bounces": {"synced_until": "2026-11-19T00:00:00Z"}, "some_other_tap_stream": {"x": 1}}});
    let mut catalog: Value =
        serde_json::from_str(include_str!("../../catalogs/singer_catalog.json")).unwrap();
    catalog["streams"]
        .as_array_mut()
        .unwrap()
        .retain(|st| st["tap_stream_id"] == "bounces");
    let run = sync(&fake, &s, Some(&catalog), Some(&state));
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Default lookback: 24 hours before the bookmark.
    let truth = fake.truth(
        "bounces",
        Some(("2026-11-18T00:00:00Z", "2026-11-20T11:55:00Z")),
    );
    assert_exactly("bounces", &run.keys("bounces"), &truth);
    let last = run.of_type("STATE").pop().unwrap();
    assert_eq!(
        last["value"]["bookmarks"]["some_other_tap_stream"],
        json!({"x": 1}),
        "foreign bookmarks are kept"
    );
}
