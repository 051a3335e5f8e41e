//! Late rows: windows whose rows change while they are paged (rows indexed late at the
//! newest end or in the middle, rows vanishing) still yield each row exactly once, and a
//! window that never settles fails its stream instead of running on.

use std::collections::HashSet;

use serde_json::json;

use crate::support::*;

const STREAM: &str = "messages_outbound";

/// Reads `messages_outbound` from a fake started with `args` (plus a little latency).
fn read_hostile(args: &[&str], name: &str) -> (Fake, Run) {
    let mut all = vec!["--outbound", "6000", "--latency-ms", "2"];
    // Each flag once: the fake rejects repeated flags.
    all.extend_from_slice(args);
    let fake = Fake::start(&all);
    let run = airbyte_read(
        &fake,
        &Scratch::new(name),
        &[STREAM],
        json!({"max_concurrency": 2}),
        None,
        NOW,
    );
    (fake, run)
}

fn hostile_stat(fake: &Fake, what: &str) -> u64 {
    fake.stats()["hostile"][what].as_u64().unwrap_or(0)
}

#[test]
fn rows_indexed_late_on_every_page_at_the_newest_end_come_exactly_once() {
    let (fake, run) = read_hostile(
        &[
            "--late-rows",
            "3",
            "--late-rows-at",
            "newest",
            "--hostile-requests",
            "20",
        ],
        "late-newest",
    );
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert!(
        hostile_stat(&fake, "late_rows_added") >= 50,
        "rows did arrive"
    );
    assert_exactly(STREAM, &run.keys(STREAM), &truth_of(&fake, STREAM));
    assert!(run.logs().iter().any(|l| l.contains("grew from")));
    assert_valid_airbyte(&run);
}

#[test]
fn rows_indexed_late_on_every_page_in_the_middle_of_a_window_come_exactly_once() {
    let (fake, run) = read_hostile(
        &[
            "--late-rows",
            "5",
            "--late-rows-at",
            "middle",
            "--hostile-requests",
            "20",
        ],
        "late-middle",
    );
    assert_eq!(run.code, 0, "{:?}", run.logs());
    assert!(
        hostile_stat(&fake, "late_rows_added") >= 80,
        "rows did arrive"
    );
    assert_exactly(STREAM, &run.keys(STREAM), &truth_of(&fake, STREAM));
}

#[test]
fn rows_vanishing_while_a_window_is_read_are_neither_lost_nor_duplicated() {
    let (fake, run) = read_hostile(
        &["--vanish-rows", "4", "--hostile-requests", "20"],
        "vanish",
    );
    assert_eq!(run.code, 0, "{:?}", run.logs());
    let vanished = hostile_stat(&fake, "rows_vanished");
    assert!(vanished >= 50, "rows did vanish: {vanished}");
    let got = run.keys(STREAM);
    let set: HashSet<&String> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "no duplicate");
    let truth = truth_of(&fake, STREAM);
    let missing: Vec<&String> = truth.iter().filter(|k| !set.contains(k)).take(5).collect();
    assert!(
        missing.is_empty(),
        "rows still there were lost: {missing:?}"
    );
    // Rows emitted before they vanished are the only extras.
    assert!((got.len() - truth.len()) as u64 <= vanished);
    assert!(run.logs().iter().any(|l| l.contains("shrank from")));
}

#[test]
fn a_window_that_never_settles_fails_its_stream_with_a_clear_error_and_the_sync_ends() {
    // Every search sees one more row in its window, for ever.
    let (_fake, run) = read_hostile(&["--late-rows", "1", "--hostile-requests", "0"], "never");
    assert_eq!(run.code, 1, "{:?}", run.logs());
    let errors = trace_errors(&run);
    let err = errors
        .iter()
        .find(|e| e["stream_descriptor"]["name"] == STREAM)
        .unwrap_or_else(|| panic!("a TRACE ERROR naming the stream: {errors:?}"));
    assert_eq!(err["failure_type"], "transient_error");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("could not be read consistently") && msg.contains("kept changing over"),
        "{msg}"
    );
    // No final STATE for the failed stream: only checkpoints of complete windows.
    for m in run.of_type("STATE") {
        assert_eq!(
            m["state"]["stream"]["stream_state"]["in_progress"], true,
            "{m}"
        );
    }
    assert_valid_airbyte(&run);
}

#[test]
fn singer_mode_yields_every_row_once_while_rows_arrive_and_vanish_in_every_time_stream() {
    let fake = Fake::start(&[
        "--outbound",
        "6000",
        "--latency-ms",
        "2",
        "--late-rows",
        "3",
        "--vanish-rows",
        "1",
        "--hostile-requests",
        "30",
    ]);
    let s = Scratch::new("late-singer");
    let cfg = s.config(&fake, json!({"max_concurrency": 2}));
    let run = run(&["--config", &cfg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        hostile_stat(&fake, "late_rows_added") >= 30,
        "rows did arrive"
    );
    for stream in ["messages_outbound", "messages_inbound", "bounces"] {
        let got = run.keys(stream);
        let set: HashSet<&String> = got.iter().collect();
        assert_eq!(set.len(), got.len(), "{stream}: no duplicate");
        let truth = truth_of(&fake, stream);
        let missing: Vec<&String> = truth.iter().filter(|k| !set.contains(k)).take(5).collect();
        assert!(missing.is_empty(), "{stream}: rows lost: {missing:?}");
    }
    assert!(run.stderr.contains("while it was read"), "{}", run.stderr);
}
