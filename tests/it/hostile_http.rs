//! A misbehaving server (or proxy): each of the fake's hostile flags, through the real
//! binary. The token never leaves for another host or reaches the output, nothing hangs,
//! and each failure has the right `failure_type` and a message naming the real cause.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

fn check(cfg: &str) -> Run {
    run(&["check", "--config", cfg])
}

fn status_of(run: &Run) -> Value {
    let s = run.of_type("CONNECTION_STATUS");
    assert_eq!(s.len(), 1, "one CONNECTION_STATUS: {}", run.stdout);
    s[0]["connectionStatus"].clone()
}

fn read_bounces(fake: &Fake, s: &Scratch, extra: Value) -> Run {
    let cfg = s.config(fake, extra);
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["bounces"], "incremental"),
    );
    run(&["read", "--config", &cfg, "--catalog", &cat])
}

fn singer_sync(fake: &Fake, s: &Scratch, extra: Value) -> Run {
    let cfg = s.config(fake, extra);
    run(&["--config", &cfg])
}

/// The one TRACE ERROR of a failed Airbyte read, after checking the run's shape.
fn the_error(run: &Run) -> Value {
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_valid_airbyte(run);
    let errors = trace_errors(run);
    assert!(!errors.is_empty(), "a TRACE ERROR: {}", run.stdout);
    errors[0].clone()
}

fn api_requests(fake: &Fake) -> u64 {
    fake.stats()["requests"].as_u64().unwrap_or(0)
}

#[test]
fn a_redirect_to_another_port_is_a_config_error_naming_the_location_and_is_not_followed() {
    let elsewhere = Fake::start(&[]);
    let fake = Fake::start(&["--redirect-to", &elsewhere.url]);
    let s = Scratch::new("redirect");
    let status = status_of(&check(&s.config(&fake, json!({}))));
    assert_eq!(status["status"], "FAILED");
    let msg = status["message"].as_str().unwrap();
    assert!(
        msg.contains("redirected (HTTP 302)") && msg.contains(&format!("{}/server", elsewhere.url)),
        "{msg}"
    );
    let err = the_error(&read_bounces(&fake, &s, json!({})));
    assert_eq!(err["failure_type"], "config_error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("never follows redirects"));
    let singer = singer_sync(&fake, &s, json!({}));
    assert_eq!(singer.code, 1);
    assert!(
        singer.stderr.contains("redirected (HTTP 302)"),
        "{}",
        singer.stderr
    );
    assert_eq!(
        api_requests(&elsewhere),
        0,
        "the token never went to the other host"
    );
}

#[test]
fn an_error_body_that_echoes_the_token_is_redacted_everywhere() {
    let fake = Fake::start(&["--echo-token", "--fail-every", "1", "--fail-status", "500"]);
    let s = Scratch::new("echo");
    let run = read_bounces(&fake, &s, json!({"max_retries": 1}));
    let err = the_error(&run);
    assert_eq!(err["failure_type"], "transient_error");
    assert_no_secret(&run, TOKEN);
    // The server's message is still quoted, with the token blanked.
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("X-Postmark-Server-Token: ***")),
        "{:?}",
        run.logs()
    );
    let singer = singer_sync(&fake, &s, json!({"max_retries": 1}));
    assert_eq!(singer.code, 1);
    assert_no_secret(&singer, TOKEN);
    assert!(
        singer.stderr.contains("X-Postmark-Server-Token: ***"),
        "{}",
        singer.stderr
    );
}

#[test]
fn check_fails_when_server_answers_a_landing_page_or_an_empty_object() {
    for (flag, what) in [
        ("html", "an HTML or XML page"),
        ("empty-object", "a JSON object without a numeric \"ID\""),
    ] {
        let fake = Fake::start(&["--server-body", flag]);
        let s = Scratch::new("landing");
        let run = check(&s.config(&fake, json!({})));
        assert_eq!(run.code, 0);
        let status = status_of(&run);
        assert_eq!(status["status"], "FAILED", "{flag}");
        let msg = status["message"].as_str().unwrap();
        assert!(
            msg.contains(what) && msg.contains("instead of a Postmark server object"),
            "{msg}"
        );
    }
}

#[test]
fn a_huge_retry_after_fails_at_once_as_transient_instead_of_stalling() {
    let fake = Fake::start(&[
        "--fail-every",
        "1",
        "--fail-status",
        "503",
        "--retry-after",
        "3600",
    ]);
    let s = Scratch::new("retry-after");
    let started = Instant::now();
    let run = read_bounces(&fake, &s, json!({}));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let err = the_error(&run);
    assert_eq!(err["failure_type"], "transient_error");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("asked to wait 3600 s (Retry-After), longer than the 120 s"),
        "{msg}"
    );
}

/// Stdout (Airbyte) or stderr (Singer) lines with the time each arrived, and the exit time.
fn timed_lines(args: &[&str], from_stderr: bool) -> (Vec<(Duration, String)>, Duration) {
    let started = Instant::now();
    let mut cmd = Command::new(connector_bin());
    cmd.args(args).args(["--now", NOW]).stdin(Stdio::null());
    if from_stderr {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn().expect("start connector");
    let pipe: Box<dyn std::io::Read> = if from_stderr {
        Box::new(child.stderr.take().expect("stderr"))
    } else {
        Box::new(child.stdout.take().expect("stdout"))
    };
    let lines = BufReader::new(pipe)
        .lines()
        .map_while(Result::ok)
        .map(|l| (started.elapsed(), l))
        .collect();
    let _ = child.wait();
    (lines, started.elapsed())
}

#[test]
fn a_wait_is_announced_before_it_starts_in_both_protocols() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("announce");
    let cfg = s.config(&fake, json!({}));
    // Airbyte check: GET /server answers 503 with Retry-After 2, then succeeds.
    fake.fault("/server", 503, 1, "&retry_after=2");
    let (lines, ended) = timed_lines(&["check", "--config", &cfg], false);
    let (at, line) = lines
        .iter()
        .find(|(_, l)| l.contains("waiting 2.0 s"))
        .unwrap_or_else(|| panic!("no announcement: {lines:?}"));
    assert!(line.contains("\"WARN\""), "{line}");
    assert!(
        ended - *at >= Duration::from_millis(1500),
        "announced at {at:?}, ended {ended:?}"
    );
    assert!(lines.iter().any(|(_, l)| l.contains("SUCCEEDED")));
    // Singer: the message-stream listing answers 503 once; the WARNING is on stderr first.
    fake.fault("/message-streams", 503, 1, "&retry_after=2");
    let (lines, ended) = timed_lines(&["--config", &cfg], true);
    let (at, line) = lines
        .iter()
        .find(|(_, l)| l.contains("waiting 2.0 s"))
        .unwrap_or_else(|| panic!("no announcement: {lines:?}"));
    assert!(line.starts_with("WARNING"), "{line}");
    assert!(
        ended - *at >= Duration::from_millis(1500),
        "announced at {at:?}, ended {ended:?}"
    );
}

#[test]
fn a_bad_gzip_body_is_a_system_error_and_not_retried() {
    let fake = Fake::start(&["--bad-gzip"]);
    let s = Scratch::new("bad-gzip");
    let run = read_bounces(&fake, &s, json!({}));
    let err = the_error(&run);
    assert_eq!(err["failure_type"], "system_error");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("gzip-compressed body cannot be decompressed"),
        "{msg}"
    );
    assert!(!msg.contains("max_concurrency"), "{msg}");
    assert_eq!(api_requests(&fake), 1, "no retry of a corrupt body");
}

#[test]
fn an_invalid_utf8_body_is_a_system_error_and_not_retried() {
    let fake = Fake::start(&["--invalid-utf8"]);
    let s = Scratch::new("utf8");
    let run = read_bounces(&fake, &s, json!({}));
    let err = the_error(&run);
    assert_eq!(err["failure_type"], "system_error");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("not UTF-8 text"), "{msg}");
    assert!(!msg.contains("max_concurrency"), "{msg}");
    assert_eq!(api_requests(&fake), 1, "no retry of a corrupt body");
}

#[test]
fn a_body_that_stalls_times_out_and_the_request_gives_up_in_bounded_time() {
    let fake = Fake::start(&["--stall-body-secs", "60"]);
    let s = Scratch::new("stall");
    let started = Instant::now();
    let run = read_bounces(
        &fake,
        &s,
        json!({"request_timeout_seconds": 1, "max_retries": 1}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let err = the_error(&run);
    assert_eq!(err["failure_type"], "transient_error");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("no complete answer within 1 s"), "{msg}");
    assert!(msg.contains("request_timeout_seconds"), "{msg}");
}

#[test]
fn https_to_a_server_that_does_not_speak_tls_is_a_config_error_not_a_connection_problem() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("tls");
    let https = fake.url.replace("http://", "https://");
    let run = check(&s.config(&fake, json!({"base_url": https})));
    let status = status_of(&run);
    assert_eq!(status["status"], "FAILED");
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("TLS connection failed"), "{msg}");
    let err = the_error(&read_bounces(&fake, &s, json!({"base_url": https})));
    assert_eq!(err["failure_type"], "config_error");
    assert!(!err["message"].as_str().unwrap().contains("max_concurrency"));
}

#[test]
fn a_token_with_a_trailing_newline_is_trimmed_with_a_warning_not_a_network_outage() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("newline-token");
    let run = check(&s.config(&fake, json!({"server_token": format!("{TOKEN}\n")})));
    assert_eq!(status_of(&run)["status"], "SUCCEEDED", "{}", run.stdout);
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("'server_token' had leading or trailing whitespace")),
        "{:?}",
        run.logs()
    );
}
