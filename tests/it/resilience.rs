//! Retries are bounded and classified: 429/5xx/timeouts/dropped connections are retried,
//! 401/422 are not, and a sync survives injected faults with exactly the truth.

use std::time::Instant;

use serde_json::json;

use crate::support::*;

fn read(fake: &Fake, streams: &[&str], extra: serde_json::Value) -> Run {
    airbyte_read(fake, &Scratch::new("resilience"), streams, extra, None, NOW)
}

fn bounce_truth(fake: &Fake) -> Vec<String> {
    fake.truth("bounces", Some(default_range()))
}

#[test]
fn rate_limits_server_errors_and_dropped_connections_are_retried() {
    let fake = Fake::start(&[]);
    fake.fault("/bounces", 429, 2, "&retry_after=0");
    fake.fault("/bounces", 503, 1, "");
    fake.fault("/bounces", 502, 1, "");
    fake.fault("/bounces", 0, 1, "");
    let run = read(&fake, &["bounces"], json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_exactly("bounces", &run.keys("bounces"), &bounce_truth(&fake));
    let retries: Vec<String> = run
        .logs()
        .into_iter()
        .filter(|l| l.contains("retry"))
        .collect();
    assert_eq!(retries.len(), 5, "one WARN per retry: {retries:?}");
    assert!(retries.iter().any(|l| l.contains("HTTP 429")));
    assert!(retries.iter().any(|l| l.contains("connection problem")));
    assert_eq!(fake.stats()["faults_injected"], 5);
    assert_valid_airbyte(&run);
}

#[test]
fn periodic_faults_on_every_path_still_give_exactly_the_truth() {
    let fake = Fake::start(&[
        "--fail-every",
        "4",
        "--fail-status",
        "500",
        "--drop-every",
        "7",
    ]);
    let run = read(&fake, &streams(), json!({"max_retries": 8}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stream in ["messages_outbound", "messages_inbound", "bounces"] {
        assert_exactly(
            stream,
            &run.keys(stream),
            &fake.truth(stream, Some(default_range())),
        );
    }
    assert_exactly(
        "templates",
        &run.keys("templates"),
        &fake.truth("templates", None),
    );
}

#[test]
fn retry_after_is_honoured() {
    let fake = Fake::start(&[]);
    fake.fault("/templates", 429, 1, "&retry_after=1");
    let started = Instant::now();
    let run = read(&fake, &["templates"], json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        started.elapsed().as_millis() >= 1000,
        "waited for Retry-After"
    );
    assert!(run.logs().iter().any(|l| l.contains("waiting 1.0 s")));
}

#[test]
fn a_server_that_keeps_failing_is_a_transient_error_after_bounded_retries() {
    let fake = Fake::start(&[]);
    fake.fault("/templates", 503, 50, "");
    let run = read(&fake, &["templates"], json!({"max_retries": 2}));
    assert_eq!(run.code, 1);
    let err = trace_errors(&run)
        .into_iter()
        .next()
        .expect("a TRACE ERROR");
    assert_eq!(err["failure_type"], "transient_error");
    assert_eq!(err["stream_descriptor"]["name"], "templates");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("after 3 attempts") && msg.contains("HTTP 503"),
        "{msg}"
    );
    assert_eq!(fake.stats()["by_path"]["/templates"], 3);
    assert!(run
        .of_type("TRACE")
        .iter()
        .any(|t| t["trace"]["stream_status"]["status"] == "INCOMPLETE"));
}

#[test]
fn a_422_is_not_retried_and_quotes_postmark() {
    let fake = Fake::start(&[]);
    fake.fault("/templates", 422, 1, "");
    let run = read(&fake, &["templates"], json!({}));
    assert_eq!(run.code, 1);
    assert_eq!(fake.stats()["by_path"]["/templates"], 1, "no retry");
    assert!(run.stderr.contains("HTTP 422"), "{}", run.stderr);
}

#[test]
fn a_slow_answer_times_out_and_is_retried() {
    let fake = Fake::start(&[]);
    fake.fault("/templates", 200, 1, "&delay_ms=2500");
    let run = read(&fake, &["templates"], json!({"request_timeout_seconds": 1}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_exactly(
        "templates",
        &run.keys("templates"),
        &fake.truth("templates", None),
    );
    assert!(run.logs().iter().any(|l| l.contains("retry 1")));
}

#[test]
fn rate_limited_workers_back_off_together_and_still_return_the_truth() {
    let fake = Fake::start(&[
        "--outbound",
        "20000",
        "--fail-every",
        "5",
        "--fail-status",
        "429",
        "--retry-after",
        "0",
    ]);
    let run = read(
        &fake,
        &["messages_outbound", "bounces"],
        json!({"max_concurrency": 4, "max_retries": 10}),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stream in ["messages_outbound", "bounces"] {
        assert_exactly(
            stream,
            &run.keys(stream),
            &fake.truth(stream, Some(default_range())),
        );
    }
    assert!(fake.stats()["status_counts"]["429"].as_u64().unwrap() > 5);
}

#[test]
fn max_requests_per_second_paces_all_workers_together() {
    let fake = Fake::start(&[]);
    let started = Instant::now();
    let run = read(
        &fake,
        &streams(),
        json!({"max_concurrency": 4, "max_requests_per_second": 10}),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = fake.stats()["requests"].as_u64().unwrap();
    assert!(requests >= 15, "{requests}");
    // n requests at 10 per second take at least (n - 1) / 10 seconds, however many workers.
    let floor = (requests - 1) as f64 / 10.0;
    assert!(
        started.elapsed().as_secs_f64() >= floor * 0.95,
        "{:?} for {requests} requests",
        started.elapsed()
    );
}

#[test]
fn an_unreachable_server_is_a_transient_error_after_retries() {
    let s = Scratch::new("refused");
    // Port 9 on loopback: nothing listens there.
    let cfg = s.write_json(
        "config.json",
        &json!({"server_token": TOKEN, "base_url": "http://127.0.0.1:9", "max_retries": 1}),
    );
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["templates"], "full_refresh"),
    );
    let run = run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert_eq!(run.code, 1);
    let err = trace_errors(&run)
        .into_iter()
        .next()
        .expect("a TRACE ERROR");
    assert_eq!(err["failure_type"], "transient_error");
    assert!(run.stderr.contains("connection problem"), "{}", run.stderr);
    assert_valid_airbyte(&run);
}
