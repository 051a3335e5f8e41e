//! Every retained record, incrementally: windows past the 10,000 cap, filter splits for
//! crowded seconds, DST, incremental cursors with lookback, and resumable checkpoints.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::support::*;

const TIME_STREAMS: [&str; 3] = ["messages_outbound", "messages_inbound", "bounces"];

fn requests_to(fake: &Fake, path: &str) -> usize {
    fake.requests().iter().filter(|r| r["path"] == path).count()
}

#[test]
fn a_big_account_is_read_exactly_past_the_cap_across_dst_and_crowded_seconds() {
    let fake = Fake::start(&[
        "--outbound",
        "100000",
        "--inbound",
        "12000",
        "--bounces",
        "3000",
        "--scenario",
        "big-day",
        "--scenario",
        "hot-second",
        "--scenario",
        "status-second",
        "--scenario",
        "dst",
    ]);
    let s = Scratch::new("big");
    let start = "2026-03-01T00:00:00Z";
    let run = airbyte_read(
        &fake,
        &s,
        &TIME_STREAMS,
        json!({"start_date": start}),
        None,
        NOW,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let range = (start, "2026-11-20T11:55:00Z");
    for stream in TIME_STREAMS {
        let truth = fake.truth(stream, Some(range));
        assert_exactly(stream, &run.keys(stream), &truth);
    }
    let outbound_truth = fake.truth("messages_outbound", Some(range)).len();
    assert!(
        outbound_truth > 100_000 + 15_000 + 12_000,
        "the dataset is as big as claimed"
    );
    assert_eq!(fake.stats()["cap_violations"], 0);
    assert!(
        !run.logs().iter().any(|l| l.contains("unreachable")),
        "nothing unreachable"
    );
    // Both occurrences of the repeated autumn hour are there, exactly once each.
    let autumn = fake.truth(
        "messages_outbound",
        Some(("2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z")),
    );
    assert!(autumn.len() > 100);
    let spring = fake.truth(
        "messages_outbound",
        Some(("2026-03-08T04:00:00Z", "2026-03-08T10:00:00Z")),
    );
    assert!(spring.len() > 100);
    let got: HashSet<String> = run.keys("messages_outbound").into_iter().collect();
    assert!(autumn.iter().chain(spring.iter()).all(|k| got.contains(k)));
    // Request economy: report the ratio to ceil(rows / 500).
    let requests = requests_to(&fake, "/messages/outbound");
    let minimum = outbound_truth.div_ceil(500);
    let ratio = requests as f64 / minimum as f64;
    eprintln!("messages_outbound: {outbound_truth} rows, {requests} requests, minimum {minimum}, ratio {ratio:.3}");
    assert!(ratio < 1.35, "request ratio {ratio:.3}");
    assert_valid_airbyte(&run);
}

#[test]
fn capped_total_counts_still_split_down_to_every_row() {
    let fake = Fake::start(&[
        "--outbound",
        "40000",
        "--scenario",
        "hot-second",
        "--cap-total-count",
    ]);
    let s = Scratch::new("capped");
    let run = airbyte_read(&fake, &s, &["messages_outbound"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_exactly(
        "messages_outbound",
        &run.keys("messages_outbound"),
        &fake.truth("messages_outbound", Some(default_range())),
    );
}

#[test]
fn an_unsplittable_second_is_a_loud_warning_or_a_failure_by_choice() {
    let fake = Fake::start(&["--outbound", "500", "--scenario", "unreachable-second"]);
    let s = Scratch::new("unreachable");
    let run = airbyte_read(&fake, &s, &["messages_outbound"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warning = run
        .logs()
        .into_iter()
        .find(|l| l.contains("unreachable"))
        .expect("a warning");
    assert!(
        warning.contains("200 rows are unreachable") && warning.contains("messages_outbound"),
        "{warning}"
    );
    assert!(run
        .of_type("TRACE")
        .iter()
        .any(|t| t["trace"]["type"] == "ANALYTICS"));
    let truth = fake.truth("messages_outbound", Some(default_range()));
    let got = run.keys("messages_outbound");
    assert_eq!(
        got.len(),
        truth.len() - 200,
        "everything reachable is synced"
    );
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "no duplicates"
    );

    let s = Scratch::new("unreachable-fail");
    let run = airbyte_read(
        &fake,
        &s,
        &["messages_outbound"],
        json!({"fail_on_unreachable_rows": true}),
        None,
        NOW,
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("200 rows of 'messages_outbound' cannot be reached"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_incremental_sync_returns_new_records_plus_the_lookback_and_nothing_older() {
    let fake = Fake::start(&["--outbound", "5000"]);
    let s = Scratch::new("incremental");
    let first = airbyte_read(&fake, &s, &TIME_STREAMS, json!({}), None, NOW);
    assert_eq!(first.code, 0, "{}", first.stderr);
    fake.arrive("messages_outbound", 300, "2026-11-20T12:30:00Z");
    fake.arrive("bounces", 40, "2026-11-20T12:40:00Z");
    let later = "2026-11-20T14:00:00Z";
    let second = airbyte_read(
        &fake,
        &s,
        &TIME_STREAMS,
        json!({}),
        Some(&first.airbyte_state_file()),
        later,
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    // Lookback 24 h before the first sync's cursor (11:55), up to 5 minutes before now.
    let range = ("2026-11-19T11:55:00Z", "2026-11-20T13:55:00Z");
    for stream in TIME_STREAMS {
        assert_exactly(
            stream,
            &second.keys(stream),
            &fake.truth(stream, Some(range)),
        );
    }
    let new = fake.truth(
        "messages_outbound",
        Some(("2026-11-20T12:00:00Z", "2026-11-20T13:00:00Z")),
    );
    assert_eq!(new.len(), 300);
    assert_eq!(
        second.last_airbyte_states()["messages_outbound"],
        json!({"synced_until": "2026-11-20T13:55:00Z"})
    );
}

#[test]
fn every_accepted_state_form_starts_at_the_same_place() {
    let fake = Fake::start(&[]);
    let cursor = json!({"synced_until": "2026-11-10T00:00:00Z"});
    let forms = [
        json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "bounces"}, "stream_state": cursor}}]),
        json!({"bounces": {"BouncedAt": "2026-11-10T00:00:00Z"}}),
        json!({"bookmarks": {"bounces": cursor}}),
    ];
    for form in forms {
        fake.reset_stats();
        let s = Scratch::new("state-forms");
        let run = airbyte_read(
            &fake,
            &s,
            &["bounces"],
            json!({"lookback_hours": 0}),
            Some(&form),
            NOW,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_exactly(
            "bounces",
            &run.keys("bounces"),
            &fake.truth(
                "bounces",
                Some(("2026-11-10T00:00:00Z", "2026-11-20T11:55:00Z")),
            ),
        );
        // 2026-11-10T00:00:00Z is 2026-11-09T19:00:00 Eastern (EST).
        assert!(fake
            .requests()
            .iter()
            .any(|r| r["query"]["fromdate"] == "2026-11-09T19:00:00"));
    }
}

#[test]
fn messages_arriving_during_a_sync_cause_no_duplicate_or_gap() {
    let fake = Fake::start(&[
        "--outbound",
        "15000",
        "--arrivals-per-request",
        "25",
        "--latency-ms",
        "2",
    ]);
    let s = Scratch::new("arrivals");
    let run = airbyte_read(&fake, &s, &["messages_outbound"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_exactly(
        "messages_outbound",
        &run.keys("messages_outbound"),
        &fake.truth("messages_outbound", Some(default_range())),
    );
    assert!(
        fake.truth("messages_outbound", None).len() > 15_000,
        "records did arrive meanwhile"
    );
}

#[test]
fn a_killed_sync_resumes_from_its_last_state_without_loss() {
    let fake = Fake::start(&["--outbound", "30000", "--latency-ms", "15"]);
    let s = Scratch::new("resume");
    // Killed right after its first checkpoint, as a crash would stop it.
    let first = airbyte_read_streaming(
        &fake,
        &s,
        &["messages_outbound"],
        json!({"max_concurrency": 2}),
        None,
        NOW,
        |line| !(line.starts_with("{\"type\":\"STATE\"") && line.contains("\"in_progress\":true")),
    );
    assert_eq!(first.code, -1, "the sync was killed mid-way");
    let state = first.airbyte_state_file();
    let until = state[0]["stream"]["stream_state"]["synced_until"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(state[0]["stream"]["stream_state"]["in_progress"], true);

    let second = airbyte_read(
        &fake,
        &s,
        &["messages_outbound"],
        json!({"max_concurrency": 2}),
        Some(&state),
        NOW,
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let truth = fake.truth("messages_outbound", Some(default_range()));
    let mut union: Vec<String> = first.keys("messages_outbound");
    union.extend(second.keys("messages_outbound"));
    let union_set: HashSet<&String> = union.iter().collect();
    assert!(truth.iter().all(|k| union_set.contains(k)), "nothing lost");
    assert_eq!(union_set.len(), truth.len(), "nothing extra");
    // Repeats come only from windows in flight, after the checkpoint: the resumed run
    // re-reads nothing before it (no lookback on a resumed checkpoint).
    let received: HashMap<String, String> = second.records()["messages_outbound"]
        .iter()
        .map(|r| {
            (
                r["MessageID"].as_str().unwrap().to_string(),
                r["ReceivedAt"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let first_keys: HashSet<String> = first.keys("messages_outbound").into_iter().collect();
    for (k, at) in &received {
        if first_keys.contains(k) {
            assert!(
                at.as_str() >= until.as_str(),
                "repeat {k} at {at} is before the checkpoint {until}"
            );
        }
    }
    assert!(received.values().all(|at| at.as_str() >= until.as_str()));
}

#[test]
fn a_wrong_account_time_zone_is_reported_loudly() {
    let fake = Fake::start(&["--zone", "utc", "--outbound", "3000"]);
    let s = Scratch::new("zone");
    let run = airbyte_read(
        &fake,
        &s,
        &["messages_outbound"],
        json!({"start_date": "2026-10-20T00:00:00Z"}),
        None,
        NOW,
    );
    assert!(
        run.logs().iter().any(|l| l.contains("US Eastern")),
        "{:?}",
        run.logs()
    );
}

#[test]
fn singer_mode_reads_past_the_cap_too() {
    let fake = Fake::start(&["--outbound", "25000", "--scenario", "hot-second"]);
    let s = Scratch::new("singer-windows");
    let cfg = s.config(&fake, json!({}));
    let run = run(&["--config", &cfg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_exactly(
        "messages_outbound",
        &run.keys("messages_outbound"),
        &fake.truth("messages_outbound", Some(default_range())),
    );
    let in_progress = run
        .of_type("STATE")
        .iter()
        .filter(|m| m["value"]["bookmarks"]["messages_outbound"]["in_progress"] == true)
        .count();
    assert!(in_progress > 0, "checkpoints during the stream");
}

#[test]
fn a_sync_killed_during_its_lookback_still_re_reads_the_whole_lookback() {
    let fake = Fake::start(&["--outbound", "5000"]);
    let s = Scratch::new("lookback-kill");
    let first = airbyte_read(&fake, &s, &["messages_outbound"], json!({}), None, NOW);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // A burst after the first sync makes the second sync's range several windows long.
    fake.arrive("messages_outbound", 12_000, "2026-11-21T06:00:00Z");
    let later = "2026-11-22T00:00:00Z";
    let slow = json!({"max_concurrency": 1});
    let state = first.airbyte_state_file();
    let killed = airbyte_read_streaming(
        &fake,
        &s,
        &["messages_outbound"],
        slow.clone(),
        Some(&state),
        later,
        |line| !line.starts_with("{\"type\":\"STATE\""),
    );
    let checkpoint = killed.airbyte_state_file();
    assert_eq!(
        checkpoint[0]["stream"]["stream_state"]["in_progress"], true,
        "killed mid-way"
    );
    let until = checkpoint[0]["stream"]["stream_state"]["synced_until"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        until.as_str() > "2026-11-20T11:55:00Z",
        "no checkpoint inside the lookback: {until}"
    );
    let resumed = airbyte_read(
        &fake,
        &s,
        &["messages_outbound"],
        slow,
        Some(&checkpoint),
        later,
    );
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let got: HashSet<String> = killed
        .keys("messages_outbound")
        .into_iter()
        .chain(resumed.keys("messages_outbound"))
        .collect();
    let truth = fake.truth(
        "messages_outbound",
        Some(("2026-11-19T11:55:00Z", "2026-11-21T23:55:00Z")),
    );
    let missing: Vec<&String> = truth.iter().filter(|k| !got.contains(*k)).take(5).collect();
    assert!(
        missing.is_empty(),
        "lookback records lost by the kill: {missing:?}"
    );
}

/// Reads `messages_outbound` one request at a time and, once the first page of the
/// `outbound` message stream has been emitted, lets `count` rows appear at `at` (inside the
/// window being read), as if Postmark had indexed them late.
fn read_while_rows_arrive(fake: &Fake, count: u32, at: &str, extra: Value) -> Run {
    let mut config = json!({"max_concurrency": 1});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let mut arrived = false;
    let run = airbyte_read_streaming(
        fake,
        &Scratch::new("late-rows"),
        &["messages_outbound"],
        config,
        None,
        NOW,
        |line| {
            if !arrived && line.contains("\"MessageStream\":\"outbound\"") {
                fake.arrive("messages_outbound", count, at);
                arrived = true;
            }
            true
        },
    );
    assert!(arrived);
    run
}

#[test]
fn rows_indexed_late_inside_a_window_being_read_are_not_lost() {
    // Rows appearing in the part of the window already read (newest first) and in the part
    // not read yet: either way the window is read again and nothing is missing.
    for at in ["2026-11-20T11:00:00Z", "2026-11-10T00:00:00Z"] {
        let fake = Fake::start(&["--outbound", "6000", "--latency-ms", "60"]);
        let run = read_while_rows_arrive(&fake, 100, at, json!({}));
        assert_eq!(run.code, 0);
        assert_exactly(
            "messages_outbound",
            &run.keys("messages_outbound"),
            &fake.truth("messages_outbound", Some(default_range())),
        );
        assert!(
            run.logs().iter().any(|l| l.contains("grew from")),
            "the change is reported"
        );
    }
}

#[test]
fn a_window_that_grows_past_the_cap_while_read_is_split_not_truncated() {
    // About 9,960 rows in the 'outbound' message stream: one window, until 400 more appear.
    let fake = Fake::start(&["--outbound", "14040", "--latency-ms", "20"]);
    let run = read_while_rows_arrive(
        &fake,
        400,
        "2026-11-12T00:00:00Z",
        json!({"fail_on_unreachable_rows": true}),
    );
    assert_eq!(
        run.code,
        0,
        "the grown window is reachable: {:?}",
        run.logs()
    );
    assert_exactly(
        "messages_outbound",
        &run.keys("messages_outbound"),
        &fake.truth("messages_outbound", Some(default_range())),
    );
    assert!(!run.logs().iter().any(|l| l.contains("unreachable")));
    let grew = run
        .logs()
        .into_iter()
        .find(|l| l.contains("grew from"))
        .expect("growth reported");
    let to: u64 = grew
        .split(" to ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(to >= 10_000, "the window crossed the cap: {grew}");
    assert_valid_airbyte(&run);
}

#[test]
fn no_checkpoint_ever_runs_ahead_of_the_records_it_covers() {
    let fake = Fake::start(&[
        "--outbound",
        "30000",
        "--scenario",
        "hot-second",
        "--scenario",
        "big-day",
    ]);
    let s = Scratch::new("state-order");
    let run = airbyte_read(
        &fake,
        &s,
        &["messages_outbound"],
        json!({"max_concurrency": 6}),
        None,
        NOW,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut seen: HashSet<String> = HashSet::new();
    let mut checkpoints = 0;
    for line in run.lines() {
        match line["type"].as_str().unwrap() {
            "RECORD" => {
                seen.insert(key_string(&line["record"]["data"]["MessageID"]));
            }
            "STATE" => {
                let until = line["state"]["stream"]["stream_state"]["synced_until"]
                    .as_str()
                    .unwrap();
                for k in fake.truth("messages_outbound", Some((default_range().0, until))) {
                    assert!(seen.contains(&k), "STATE {until} came before record {k}");
                }
                checkpoints += 1;
            }
            _ => {}
        }
    }
    assert!(
        checkpoints > 3,
        "checkpoints during the stream: {checkpoints}"
    );
}

#[test]
fn a_window_that_changes_several_times_while_read_yields_every_row_once() {
    let fake = Fake::start(&["--outbound", "4000", "--latency-ms", "30"]);
    let (mut seen, mut arrivals) = (0, 0);
    let run = airbyte_read_streaming(
        &fake,
        &Scratch::new("churn"),
        &["messages_outbound"],
        json!({"max_concurrency": 1}),
        None,
        NOW,
        |line| {
            // While the first page of the 'outbound' message stream is emitted (its next
            // page is not requested yet), rows appear on several days of its window. Rows
            // arriving after a window's last page was fetched are for the next sync.
            if line.contains("\"MessageStream\":\"outbound\"") {
                seen += 1;
                if seen % 100 == 0 && seen <= 400 {
                    fake.arrive(
                        "messages_outbound",
                        3,
                        &format!("2026-11-1{}T00:00:00Z", arrivals % 9),
                    );
                    arrivals += 1;
                }
            }
            true
        },
    );
    assert_eq!(run.code, 0, "the sync ends: {:?}", run.logs());
    assert_eq!(arrivals, 4, "rows arrived while the window was read");
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("reading the whole window again")),
        "the window was read again"
    );
    assert_exactly(
        "messages_outbound",
        &run.keys("messages_outbound"),
        &fake.truth("messages_outbound", Some(default_range())),
    );
}

#[test]
fn a_churning_window_that_then_crosses_the_cap_is_still_split_and_read_whole() {
    let fake = Fake::start(&["--outbound", "6000", "--latency-ms", "30"]);
    let mut seen = 0;
    let run = airbyte_read_streaming(
        &fake,
        &Scratch::new("churn-cap"),
        &["messages_outbound"],
        json!({"max_concurrency": 1, "fail_on_unreachable_rows": true}),
        None,
        NOW,
        |line| {
            if line.contains("\"MessageStream\":\"outbound\"") {
                seen += 1;
                // Small changes make the window be read again; then it crosses the cap.
                match seen {
                    10 | 600 | 1200 => fake.arrive("messages_outbound", 5, "2026-11-12T00:00:00Z"),
                    1800 => fake.arrive("messages_outbound", 6000, "2026-11-12T01:00:00Z"),
                    _ => {}
                }
            }
            true
        },
    );
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert_exactly(
        "messages_outbound",
        &run.keys("messages_outbound"),
        &fake.truth("messages_outbound", Some(default_range())),
    );
    assert!(!run.logs().iter().any(|l| l.contains("unreachable")));
    let logs = run.logs();
    let count = |needle: &str| logs.iter().filter(|l| l.contains(needle)).count();
    assert!(count("reading the whole window again") >= 1, "{logs:?}");
    assert_eq!(count("past what one query reaches"), 1, "{logs:?}");
}

#[test]
fn rows_just_before_a_crowded_second_are_still_reached() {
    // 10,200 rows in 2026-11-13T12:00:00Z (one stream, one status): 200 are truly unreachable.
    // Rows one second earlier sort behind them in any query that includes 12:00:00.
    let fake = Fake::start(&["--outbound", "500", "--scenario", "unreachable-second"]);
    fake.arrive("messages_outbound", 20, "2026-11-13T11:59:59.500Z");
    let s = Scratch::new("neighbour");
    let run = airbyte_read(&fake, &s, &["messages_outbound"], json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: HashSet<String> = run.keys("messages_outbound").into_iter().collect();
    let before = fake.truth(
        "messages_outbound",
        Some(("2026-11-13T11:59:59Z", "2026-11-13T12:00:00Z")),
    );
    assert_eq!(before.len(), 20);
    assert!(
        before.iter().all(|k| got.contains(k)),
        "the second before the crowded one is complete"
    );
    let truth = fake.truth("messages_outbound", Some(default_range()));
    assert_eq!(
        truth.len() - got.len(),
        200,
        "only the crowded second's overflow is missing"
    );
    let unreachable: Vec<String> = run
        .logs()
        .into_iter()
        .filter(|l| l.contains("unreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1, "{unreachable:?}");
}
