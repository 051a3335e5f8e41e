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

/// The platform whose scope the many-events-one-platform scenario overfills, per stream:
/// the one the per-message fallback reads.
const FALLBACK_PLATFORM: [(&str, &str); 2] = [("opens", "Mobile"), ("clicks", "Desktop")];

/// `--hot-message-events`: one message gets this many opens and a third as many clicks,
/// both more than one page of 500.
const HOT_EVENTS: &str = "1800";

/// The fallback scenario plus one message with more than 500 opens and clicks.
fn fake_with_a_hot_message() -> Fake {
    Fake::start(&[
        "--scenario",
        "many-events-one-platform",
        "--events-date-filter",
        "ignored",
        "--hot-message-events",
        HOT_EVENTS,
    ])
}

/// The MessageID of the message with the most opens in the truth (the hot one).
fn hot_message(fake: &Fake) -> String {
    let mut per_message: std::collections::HashMap<String, usize> = Default::default();
    for r in fake.truth_records("opens", None) {
        let id = r["MessageID"].as_str().unwrap_or_default().to_string();
        *per_message.entry(id).or_default() += 1;
    }
    per_message
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(id, _)| id)
        .expect("the truth has opens")
}

fn received_at(r: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = r["ReceivedAt"].as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("ReceivedAt {s}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Every event of `message` in the truth (at any time), newest first: the order of its
/// per-message endpoint.
fn events_of_message(fake: &Fake, stream: &str, message: &str) -> Vec<Value> {
    let mut mine: Vec<Value> = fake
        .truth_records(stream, None)
        .into_iter()
        .filter(|r| r["MessageID"] == message)
        .collect();
    mine.sort_by_key(|r| std::cmp::Reverse(received_at(r)));
    mine
}

/// `[from, to)` of the events the per-message fallback of `stream`'s `platform` scope was
/// started for, from its INFO line (whole seconds: `to` is at or before the true end).
fn fallback_range(
    logs: &[String],
    stream: &str,
    platform: &str,
) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let prefix = format!("{stream} (messagestream outbound, platform {platform}): about ");
    let line = logs
        .iter()
        .find(|l| l.starts_with(&prefix) && l.contains("reading them per message"))
        .unwrap_or_else(|| panic!("{stream}: the fallback's start is logged: {logs:#?}"));
    let range = line
        .split(" events in [")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("a range in {line}"));
    let mut ends = range.split(", ").map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|e| panic!("{t} in {line}: {e}"))
            .with_timezone(&chrono::Utc)
    });
    match (ends.next(), ends.next()) {
        (Some(from), Some(to)) => (from, to),
        _ => panic!("two ends in {line}"),
    }
}

/// The API requests made for `path` (compared without case: MessageIDs are hex).
fn requests_to(fake: &Fake, path: &str) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(path))
        })
        .collect()
}

#[test]
fn a_message_with_more_than_500_events_is_paged_by_the_per_message_fallback_and_stays_exact() {
    let fake = fake_with_a_hot_message();
    let hot = hot_message(&fake);
    let s = Scratch::new("events-fallback-hot");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_valid_airbyte(&run);
    let logs = run.logs();
    for (stream, platform) in FALLBACK_PLATFORM {
        let truth = fake.truth(stream, Some(default_range()));
        // Exactly the truth: nothing missing, nothing extra, no key twice.
        assert_exactly(stream, &event_keys(&run, stream), &truth);
        let mine = events_of_message(&fake, stream, &hot);
        assert!(mine.len() > 500, "{stream}: {} events", mine.len());
        // Some events only the fallback reaches lie past the message's first page (a few
        // past offset 500, clear of ties at its edge): stopping at 500 would lose them.
        let (from, to) = fallback_range(&logs, stream, platform);
        let beyond = mine
            .iter()
            .skip(510)
            .filter(|r| r["Platform"] == platform && (from..to).contains(&received_at(r)))
            .count();
        assert!(
            beyond >= 10,
            "{stream}: {beyond} {platform} events of the hot message in [{from}, {to}) past its first page"
        );
        // Every page of the message was asked, once each, by count and offset.
        let path = format!("/messages/outbound/{stream}/{hot}");
        let mut pages: Vec<(u64, u64)> = requests_to(&fake, &path)
            .iter()
            .map(|r| {
                assert_eq!(r["status"], 200, "{r}");
                let n = |k: &str| r["query"][k].as_str().and_then(|v| v.parse().ok());
                (n("offset").unwrap_or(0), n("count").unwrap_or(0))
            })
            .collect();
        pages.sort_unstable();
        let want: Vec<(u64, u64)> = (0..mine.len() as u64)
            .step_by(500)
            .map(|o| (o, 500))
            .collect();
        assert_eq!(pages, want, "{stream}: the pages of {path}");
    }
    assert_eq!(fake.stats()["cap_violations"], 0);
    assert!(
        !logs.iter().any(|l| l.contains("unreachable")),
        "nothing unreachable: {logs:#?}"
    );
}

#[test]
fn a_message_gone_during_the_per_message_fallback_is_skipped_counted_and_warned_and_the_rest_is_exact(
) {
    let fake = fake_with_a_hot_message();
    let gone = hot_message(&fake);
    // Listed with the outbound messages, gone when its opens are asked: 422, ErrorCode 701.
    let path = format!("/messages/outbound/opens/{gone}");
    fake.fault(&path, 422, 5, "&error_code=701");
    let s = Scratch::new("events-fallback-gone");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "the sync completes: {}", run.stderr);
    assert_valid_airbyte(&run);
    let logs = run.logs();
    // Lost: the opens of that message only the fallback would have read, its Mobile opens
    // older than the oldest the Mobile scope reached (`to`, in whole seconds: none lies
    // within a second of it, so the cut is exact).
    let (_, to) = fallback_range(&logs, "opens", "Mobile");
    let in_range = truth_records(&fake, "opens", default_range());
    let mobile: Vec<&Value> = in_range
        .iter()
        .filter(|r| r["MessageID"] == gone.as_str() && r["Platform"] == "Mobile")
        .collect();
    assert!(
        !mobile
            .iter()
            .any(|r| (to..to + chrono::Duration::seconds(1)).contains(&received_at(r))),
        "premise: no Mobile open of the gone message at the fallback's edge {to}"
    );
    let lost: std::collections::HashSet<String> = mobile
        .iter()
        .filter(|r| received_at(r) < to)
        .map(|r| event_key("opens", r))
        .collect();
    assert!(lost.len() > 100, "{} opens are lost", lost.len());
    let expected: Vec<String> = fake
        .truth("opens", Some(default_range()))
        .into_iter()
        .filter(|k| !lost.contains(k))
        .collect();
    assert_exactly("opens", &event_keys(&run, "opens"), &expected);
    // Its other opens came from the platform scopes; clicks are untouched.
    assert!(
        in_range
            .iter()
            .any(|r| r["MessageID"] == gone.as_str() && r["Platform"] != "Mobile"),
        "the gone message has opens no fallback reads"
    );
    let clicks = fake.truth("clicks", Some(default_range()));
    assert_exactly("clicks", &event_keys(&run, "clicks"), &clicks);
    // Asked once, skipped (not retried), and not asked for a second page.
    let asked = requests_to(&fake, &path);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["status"], 422);
    // Warned by name, counted in the stream's end line, the fallback's cost and the summary.
    let warnings: Vec<String> = run
        .of_type("LOG")
        .iter()
        .filter(|m| m["log"]["level"] == "WARN")
        .map(|m| m["log"]["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        warnings.iter().any(|l| l.starts_with("opens: skipped GET ")
            && l.to_ascii_lowercase().contains(&path.to_ascii_lowercase())
            && l.contains("ErrorCode 701")),
        "the skip is warned: {warnings:#?}"
    );
    assert!(
        warnings.iter().any(|l| l.starts_with("opens: finished: ")
            && l.contains("1 listed records whose own request Postmark could not answer")),
        "the stream's end counts the skip: {warnings:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("opens: the per-message fallback read ")
                && l.ends_with(", 1 messages skipped")),
        "the fallback's cost counts the skip: {logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("clicks: the per-message fallback read ")
                && l.ends_with(", 0 messages skipped")),
        "{logs:#?}"
    );
    let summary = logs
        .iter()
        .find(|l| l.starts_with("sync summary:"))
        .unwrap_or_else(|| panic!("a summary: {logs:#?}"));
    let row: Vec<&str> = summary
        .lines()
        .find(|l| l.starts_with("opens "))
        .unwrap_or_else(|| panic!("an opens row: {summary}"))
        .split_whitespace()
        .collect();
    assert_eq!(row.last(), Some(&"complete"), "{summary}");
    assert_eq!(row[1], expected.len().to_string(), "records: {summary}");
    let row_warnings: u64 = row[row.len() - 2].parse().unwrap_or(0);
    assert!(
        row_warnings >= 2,
        "the opens row counts the warnings: {summary}"
    );
    assert_eq!(fake.stats()["cap_violations"], 0);
}

#[test]
fn a_message_with_more_events_than_one_query_reaches_is_read_to_the_cap_and_the_rest_is_warned() {
    // 10,600 opens on one message: its per-message endpoint reaches the newest 10,000.
    let fake = Fake::start(&[
        "--scenario",
        "many-events-one-platform",
        "--events-date-filter",
        "ignored",
        "--hot-message-events",
        "10600",
    ]);
    let hot = hot_message(&fake);
    let s = Scratch::new("events-fallback-hot-cap");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs = run.logs();
    let mine = events_of_message(&fake, "opens", &hot);
    assert!(mine.len() > 10_000, "{}", mine.len());
    // Lost: its opens past the newest 10,000 that only the fallback would have read.
    let (_, to) = fallback_range(&logs, "opens", "Mobile");
    let lost: std::collections::HashSet<String> = mine[10_000..]
        .iter()
        .filter(|r| r["Platform"] == "Mobile" && received_at(r) < to)
        .map(|r| event_key("opens", r))
        .collect();
    assert!(lost.len() > 50, "{} opens are out of reach", lost.len());
    let expected: Vec<String> = fake
        .truth("opens", Some(default_range()))
        .into_iter()
        .filter(|k| !lost.contains(k))
        .collect();
    assert_exactly("opens", &event_keys(&run, "opens"), &expected);
    let clicks = fake.truth("clicks", Some(default_range()));
    assert_exactly("clicks", &event_keys(&run, "clicks"), &clicks);
    // Paged to the cap, never past it.
    let path = format!("/messages/outbound/opens/{hot}");
    let mut offsets: Vec<u64> = requests_to(&fake, &path)
        .iter()
        .map(|r| {
            r["query"]["offset"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10_000).step_by(500).collect::<Vec<u64>>());
    assert_eq!(fake.stats()["cap_violations"], 0);
    // What it could not reach is warned, with the count, naming the message.
    let beyond = mine.len() - 10_000;
    let warnings: Vec<String> = run
        .of_type("LOG")
        .iter()
        .filter(|m| m["log"]["level"] == "WARN")
        .map(|m| m["log"]["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        warnings.iter().any(|l| l.starts_with("opens: ")
            && l.to_ascii_lowercase().contains(&path.to_ascii_lowercase())
            && l.contains(&format!("{beyond} oldest events are unreachable"))),
        "the events past the cap are warned: {warnings:#?}"
    );
    // With fail_on_unreachable_rows, opens fails on them and names the count.
    let s = Scratch::new("events-fallback-hot-cap-fail");
    let strict = airbyte_read(
        &fake,
        &s,
        &EVENTS,
        json!({"fail_on_unreachable_rows": true}),
        None,
        NOW,
    );
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    assert!(
        strict
            .stderr
            .contains(&format!("{beyond} rows of 'opens' cannot be reached")),
        "{}",
        strict.stderr
    );
}

#[test]
fn a_message_gone_between_two_pages_of_its_events_keeps_its_first_page_and_is_skipped_and_warned() {
    let fake = fake_with_a_hot_message();
    let gone = hot_message(&fake);
    // Its first page of opens is read; when the second is asked, the message is gone.
    let path = format!("/messages/outbound/opens/{gone}");
    fake.fault(&path, 422, 5, "&error_code=701&offset=500");
    let s = Scratch::new("events-fallback-gone-midway");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "the sync completes: {}", run.stderr);
    let logs = run.logs();
    // Lost: the opens past its first page that only the fallback would have read.
    let mine = events_of_message(&fake, "opens", &gone);
    assert_ne!(
        received_at(&mine[499]),
        received_at(&mine[500]),
        "premise: the first page ends between two instants"
    );
    let (_, to) = fallback_range(&logs, "opens", "Mobile");
    let mobile_before = |r: &&Value| r["Platform"] == "Mobile" && received_at(r) < to;
    let lost: std::collections::HashSet<String> = mine[500..]
        .iter()
        .filter(mobile_before)
        .map(|r| event_key("opens", r))
        .collect();
    assert!(lost.len() > 100, "{} opens are lost", lost.len());
    assert!(
        mine[..500].iter().filter(mobile_before).count() > 50,
        "premise: its first page holds opens only the fallback reads"
    );
    let expected: Vec<String> = fake
        .truth("opens", Some(default_range()))
        .into_iter()
        .filter(|k| !lost.contains(k))
        .collect();
    assert_exactly("opens", &event_keys(&run, "opens"), &expected);
    let clicks = fake.truth("clicks", Some(default_range()));
    assert_exactly("clicks", &event_keys(&run, "clicks"), &clicks);
    // Two pages asked: the first answered, the second gone; no third.
    let mut asked: Vec<(String, u64)> = requests_to(&fake, &path)
        .iter()
        .map(|r| {
            let offset = r["query"]["offset"].as_str().unwrap_or("0").to_string();
            (offset, r["status"].as_u64().unwrap_or(0))
        })
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        vec![("0".to_string(), 200), ("500".to_string(), 422)]
    );
    assert!(
        logs.iter().any(|l| l.starts_with("opens: skipped GET ")
            && l.to_ascii_lowercase().contains(&path.to_ascii_lowercase())
            && l.contains("ErrorCode 701")),
        "the skip is warned: {logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("opens: the per-message fallback read ")
                && l.ends_with(", 1 messages skipped")),
        "the fallback's cost counts the skip: {logs:#?}"
    );
}

#[test]
fn more_than_ten_messages_gone_during_the_fallback_are_all_counted_though_ten_are_named() {
    let fake = Fake::start(&[
        "--scenario",
        "many-events-one-platform",
        "--events-date-filter",
        "ignored",
    ]);
    // Twelve `outbound` messages with Mobile opens in the range's first two days (far older
    // than the 10,000 newest Mobile opens there): the fallback asks each, and each is gone.
    let in_range = truth_records(&fake, "opens", default_range());
    let early = chrono::DateTime::parse_from_rfc3339("2026-10-08T12:00:00Z")
        .expect("a time")
        .with_timezone(&chrono::Utc);
    let mut gone: Vec<String> = in_range
        .iter()
        .filter(|r| r["MessageStream"] == "outbound")
        .filter(|r| r["Platform"] == "Mobile" && received_at(r) < early)
        .filter_map(|r| r["MessageID"].as_str().map(str::to_string))
        .collect();
    gone.sort();
    gone.dedup();
    gone.truncate(12);
    assert_eq!(gone.len(), 12);
    for id in &gone {
        fake.fault(
            &format!("/messages/outbound/opens/{id}"),
            422,
            3,
            "&error_code=701",
        );
    }
    let s = Scratch::new("events-fallback-gone-many");
    let run = airbyte_read(&fake, &s, &EVENTS, json!({}), None, NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs = run.logs();
    let (_, to) = fallback_range(&logs, "opens", "Mobile");
    let theirs: Vec<&Value> = in_range
        .iter()
        .filter(|r| {
            r["Platform"] == "Mobile"
                && gone
                    .iter()
                    .any(|g| r["MessageID"].as_str() == Some(g.as_str()))
        })
        .collect();
    assert!(
        !theirs
            .iter()
            .any(|r| (to..to + chrono::Duration::seconds(1)).contains(&received_at(r))),
        "premise: none at the fallback's edge {to}"
    );
    let lost: std::collections::HashSet<String> = theirs
        .iter()
        .filter(|r| received_at(r) < to)
        .map(|r| event_key("opens", r))
        .collect();
    assert!(lost.len() >= 12, "{}", lost.len());
    let expected: Vec<String> = fake
        .truth("opens", Some(default_range()))
        .into_iter()
        .filter(|k| !lost.contains(k))
        .collect();
    assert_exactly("opens", &event_keys(&run, "opens"), &expected);
    // Ten are named, then they are only counted; every count says twelve.
    let named = logs
        .iter()
        .filter(|l| l.starts_with("opens: skipped GET /messages/outbound/opens/"))
        .count();
    assert_eq!(named, 10, "{logs:#?}");
    assert!(
        logs.iter().any(|l| l.starts_with("opens: finished: ")
            && l.contains("12 listed records whose own request Postmark could not answer")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("opens: the per-message fallback read ")
                && l.ends_with(", 12 messages skipped")),
        "{logs:#?}"
    );
}
