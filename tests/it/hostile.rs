//! A server whose answers contradict their queries (an ignored offset, filter or date
//! filter, a lying TotalCount, records without a key, garbage message streams) and panics:
//! each is detected and named, duplicates are not emitted, nothing is skipped silently, and
//! every sync ends.

use std::collections::HashSet;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::*;

const OUTBOUND: &str = "messages_outbound";

fn read(fake: &Fake, name: &str, streams: &[&str], extra: Value) -> Run {
    airbyte_read(fake, &Scratch::new(name), streams, extra, None, NOW)
}

fn warned(run: &Run, needle: &str) -> bool {
    run.logs().iter().any(|l| l.contains(needle))
}

fn no_duplicates(run: &Run, stream: &str) -> HashSet<String> {
    let got = run.keys(stream);
    let set: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "{stream}: duplicates emitted");
    set
}

fn api_requests(fake: &Fake) -> u64 {
    fake.stats()["requests"].as_u64().unwrap_or(0)
}

#[test]
fn an_ignored_offset_is_named_its_repeats_are_not_emitted_and_missing_rows_are_counted() {
    let fake = Fake::start(&["--outbound", "3000", "--ignore-offset"]);
    let run = read(&fake, "ignored-offset", &[OUTBOUND], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    let got = no_duplicates(&run, OUTBOUND);
    let truth: HashSet<String> = truth_of(&fake, OUTBOUND).into_iter().collect();
    assert!(got.is_subset(&truth));
    assert!(
        got.len() < truth.len(),
        "pages past the first were unreachable"
    );
    assert!(warned(&run, "ignored 'offset'"), "{:?}", run.logs());
    assert!(warned(&run, "were never returned"), "{:?}", run.logs());
}

#[test]
fn an_ignored_messagestream_filter_is_named_and_duplicates_nothing() {
    let fake = Fake::start(&["--outbound", "2000", "--ignore-messagestream"]);
    let run = read(&fake, "ignored-stream", &[OUTBOUND, "bounces"], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    for stream in [OUTBOUND, "bounces"] {
        assert_exactly(stream, &run.keys(stream), &truth_of(&fake, stream));
    }
    assert!(warned(&run, "ignored the filter"), "{:?}", run.logs());
}

#[test]
fn an_ignored_date_filter_is_named_and_its_out_of_window_rows_are_not_emitted() {
    // Rows over 60 days, a read of the default 45: the server sends all of them.
    let fake = Fake::start(&["--outbound", "3000", "--days", "60", "--ignore-date-filter"]);
    let run = read(&fake, "ignored-dates", &[OUTBOUND], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert_exactly(OUTBOUND, &run.keys(OUTBOUND), &truth_of(&fake, OUTBOUND));
    assert!(warned(&run, "ignored the date filter"), "{:?}", run.logs());
}

#[test]
fn an_ignored_date_filter_on_a_big_account_fails_the_stream_instead_of_splitting_for_ever() {
    let fake = Fake::start(&["--outbound", "30000", "--ignore-date-filter"]);
    let run = read(&fake, "ignored-dates-big", &[OUTBOUND], json!({}));
    assert_eq!(run.code, 1, "{:?}", run.logs());
    let errors = trace_errors(&run);
    assert!(
        errors
            .iter()
            .any(|e| e["stream_descriptor"]["name"] == OUTBOUND
                && e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("ignored the date filter")),
        "{errors:?}"
    );
    assert!(
        api_requests(&fake) < 100,
        "bounded: {}",
        api_requests(&fake)
    );
}

#[test]
fn a_constant_huge_total_count_neither_runs_without_end_nor_loses_rows() {
    let fake = Fake::start(&["--outbound", "2000", "--lying-total-count", "50000"]);
    let run = read(&fake, "lying-total", &[OUTBOUND], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert_exactly(OUTBOUND, &run.keys(OUTBOUND), &truth_of(&fake, OUTBOUND));
    assert!(warned(&run, "overstates its own page"), "{:?}", run.logs());
    assert!(
        api_requests(&fake) < 200,
        "bounded: {}",
        api_requests(&fake)
    );
}

#[test]
fn a_total_count_below_the_rows_sent_is_paged_past_without_loss() {
    let fake = Fake::start(&["--outbound", "3000", "--lying-total-count", "100"]);
    let run = read(&fake, "small-total", &[OUTBOUND], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert_exactly(OUTBOUND, &run.keys(OUTBOUND), &truth_of(&fake, OUTBOUND));
    assert!(warned(&run, "understates its own page"), "{:?}", run.logs());
}

#[test]
fn records_without_their_primary_key_are_counted_warned_and_not_emitted() {
    let fake = Fake::start(&["--outbound", "2000", "--keyless-every", "7"]);
    let run = read(&fake, "keyless", &[OUTBOUND, "bounces"], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    for stream in [OUTBOUND, "bounces"] {
        let keyed = fake.truth_with(stream, "&keyed=true");
        assert!(
            keyed.len() < truth_of(&fake, stream).len(),
            "some keys went"
        );
        assert_exactly(stream, &run.keys(stream), &keyed);
    }
    assert!(warned(&run, "without their primary key 'MessageID'"));
    assert!(warned(&run, "without their primary key 'ID'"));
    let finished = run
        .logs()
        .into_iter()
        .find(|l| l.starts_with(OUTBOUND) && l.contains("finished"))
        .expect("a final line");
    assert!(finished.contains("without their primary key"), "{finished}");
}

#[test]
fn unreadable_message_stream_rows_fail_the_streams_that_need_them_loudly() {
    let fake = Fake::start(&["--message-stream-rows", "garbage"]);
    let run = read(
        &fake,
        "garbage-streams",
        &[OUTBOUND, "messages_inbound"],
        json!({}),
    );
    assert_eq!(run.code, 1, "{:?}", run.logs());
    let errors = trace_errors(&run);
    let err = errors
        .iter()
        .find(|e| e["stream_descriptor"]["name"] == OUTBOUND)
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2 rows of GET /message-streams"),
        "{err}"
    );
    assert!(run.keys(OUTBOUND).is_empty());
    assert!(
        !run.last_airbyte_states().contains_key(OUTBOUND),
        "no state moves on"
    );
    // The stream that needs no list is read whole.
    assert_exactly(
        "messages_inbound",
        &run.keys("messages_inbound"),
        &truth_of(&fake, "messages_inbound"),
    );
}

#[test]
fn a_message_stream_of_an_undocumented_type_is_read_with_a_warning() {
    let fake = Fake::start(&["--message-stream-rows", "unknown-type"]);
    let run = read(&fake, "unknown-type", &[OUTBOUND, "bounces"], json!({}));
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert!(warned(&run, "newsletters"), "{:?}", run.logs());
    assert!(
        fake.requests()
            .iter()
            .any(|r| r["path"] == "/messages/outbound"
                && r["query"]["messagestream"] == "newsletters")
    );
    assert_exactly(OUTBOUND, &run.keys(OUTBOUND), &truth_of(&fake, OUTBOUND));
}

/// Runs the connector with the test-only panic hook set.
fn run_with_panic(args: &[&str], hook: &str) -> Run {
    let out = Command::new(connector_bin())
        .args(args)
        .args(["--now", NOW, "--retry-base-ms", "1"])
        .env("SOURCE_POSTMARK_TEST_PANIC", hook)
        .stdin(Stdio::null())
        .output()
        .expect("run connector");
    Run::new(
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_loud_panic(run: &Run, stream: &str) {
    assert_eq!(run.code, 1, "non-zero exit: {}", run.stderr);
    let errors = trace_errors(run);
    let err = errors
        .iter()
        .find(|e| e["stream_descriptor"]["name"] == stream)
        .unwrap_or_else(|| panic!("a TRACE ERROR naming {stream}: {errors:?}"));
    assert_eq!(err["failure_type"], "system_error");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("panicked"),
        "{err}"
    );
    // No final STATE for the stream the panic stopped.
    for m in run.of_type("STATE") {
        if m["state"]["stream"]["stream_descriptor"]["name"] == stream {
            assert_eq!(
                m["state"]["stream"]["stream_state"]["in_progress"], true,
                "{m}"
            );
        }
    }
    assert_valid_airbyte(run);
}

#[test]
fn a_worker_thread_panic_fails_the_sync_loudly() {
    let fake = Fake::start(&["--outbound", "3000"]);
    let s = Scratch::new("worker-panic");
    let cfg = s.config(&fake, json!({}));
    let cat = s.write_json("catalog.json", &airbyte_catalog(&[OUTBOUND], "incremental"));
    let run = run_with_panic(&["read", "--config", &cfg, "--catalog", &cat], "worker:4");
    assert_loud_panic(&run, OUTBOUND);
    // Singer too: non-zero exit, the stream named on stderr.
    let singer = run_with_panic(&["--config", &cfg], "worker:4");
    assert_ne!(singer.code, 0);
    assert!(singer.stderr.contains("panicked"), "{}", singer.stderr);
}

#[test]
fn a_main_thread_panic_fails_the_sync_loudly() {
    let fake = Fake::start(&["--outbound", "3000"]);
    let s = Scratch::new("main-panic");
    let cfg = s.config(&fake, json!({}));
    let cat = s.write_json("catalog.json", &airbyte_catalog(&[OUTBOUND], "incremental"));
    let run = run_with_panic(&["read", "--config", &cfg, "--catalog", &cat], "main:3");
    assert_loud_panic(&run, OUTBOUND);
}
