//! Bad inputs and failures give one clear line on stderr (and a TRACE ERROR in Airbyte
//! mode), never a secret, and the right exit code.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::*;

fn read(cfg: &str, catalog: &str) -> Run {
    run(&["read", "--config", cfg, "--catalog", catalog])
}

fn one_error_line(run: &Run) -> String {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line on stderr: {}", run.stderr);
    lines[0].to_string()
}

#[test]
fn a_missing_config_file_is_a_config_error_naming_the_path() {
    let s = Scratch::new("missing-config");
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["templates"], "full_refresh"),
    );
    let run = read("/nonexistent/config.json", &cat);
    assert_eq!(run.code, 1);
    assert!(
        one_error_line(&run).contains("config '/nonexistent/config.json': cannot read the file")
    );
    let errors = trace_errors(&run);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["failure_type"], "config_error");
    assert_valid_airbyte(&run);
}

#[test]
fn invalid_json_in_the_config_is_reported_with_its_position() {
    let s = Scratch::new("bad-json");
    let cfg = s.write("config.json", "{\"server_token\": \"abc\",,}");
    let run = run(&["--config", &cfg, "--discover"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty(), "Singer mode keeps errors off stdout");
    let line = one_error_line(&run);
    assert!(
        line.contains("not valid JSON") && line.contains("line 1"),
        "{line}"
    );
}

#[test]
fn a_wrong_typed_field_names_the_field_and_the_expected_value() {
    let s = Scratch::new("wrong-type");
    let cfg = s.write_json(
        "config.json",
        &json!({"server_token": "t", "lookback_hours": "a day"}),
    );
    let run = run(&["discover", "--config", &cfg]);
    assert_eq!(run.code, 1);
    let line = one_error_line(&run);
    assert!(
        line.contains("'lookback_hours' is \"a day\"; expected a whole number"),
        "{line}"
    );
}

#[test]
fn a_bad_token_on_read_is_a_config_error_and_never_printed() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("bad-token-read");
    let secret = "not-the-token-0987654321";
    let cfg = s.config(&fake, json!({"server_token": secret}));
    let cat = s.write_json("catalog.json", &airbyte_catalog(&streams(), "incremental"));
    let run = read(&cfg, &cat);
    assert_eq!(run.code, 1);
    assert_valid_airbyte(&run);
    let errors = trace_errors(&run);
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e["failure_type"] == "config_error"));
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("Server API token"));
    assert!(one_error_line(&run).contains("Server API token"));
    assert_no_secret(&run, secret);
    assert!(run.of_type("RECORD").is_empty());
}

#[test]
fn an_invalid_sync_mode_fails_the_read_with_a_trace_error() {
    let s = Scratch::new("bad-catalog");
    let cfg = s.write_json("config.json", &json!({"server_token": "t"}));
    let cat = s.write_json(
        "catalog.json",
        &json!({"streams": [{"stream": {"name": "__AIRBYTE__stream_that_does_not_exist", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                 "sync_mode": "INVALID", "destination_sync_mode": "INVALID"}]}),
    );
    let run = read(&cfg, &cat);
    assert_eq!(run.code, 1);
    assert_eq!(trace_errors(&run).len(), 1);
}

#[test]
fn an_unknown_configured_stream_is_incomplete_but_not_fatal() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("unknown-stream");
    let cfg = s.config(&fake, json!({}));
    let mut cat = airbyte_catalog(&["templates"], "full_refresh");
    cat["streams"].as_array_mut().unwrap().push(json!({"stream": {"name": "not_a_postmark_stream", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append"}));
    let cat = s.write_json("catalog.json", &cat);
    let run = read(&cfg, &cat);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run
        .of_type("TRACE")
        .iter()
        .any(|t| t["trace"]["stream_status"]["stream_descriptor"]["name"]
            == "not_a_postmark_stream"
            && t["trace"]["stream_status"]["status"] == "INCOMPLETE"));
    assert!(!run.keys("templates").is_empty());
}

#[test]
fn malformed_state_is_rejected_naming_the_stream_and_field() {
    let s = Scratch::new("bad-state");
    let cfg = s.write_json("config.json", &json!({"server_token": "t"}));
    let cat = s.write_json(
        "catalog.json",
        &airbyte_catalog(&["bounces"], "incremental"),
    );
    let state = s.write_json(
        "state.json",
        &json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "bounces"},
        "stream_state": {"synced_until": "soon"}}}]),
    );
    let run = run(&[
        "read",
        "--config",
        &cfg,
        "--catalog",
        &cat,
        "--state",
        &state,
    ]);
    assert_eq!(run.code, 1);
    let line = one_error_line(&run);
    assert!(
        line.contains("stream 'bounces'") && line.contains("'synced_until'"),
        "{line}"
    );
}

#[test]
fn a_closed_stdout_ends_the_read_quietly() {
    let fake = Fake::start(&["--outbound", "20000"]);
    let s = Scratch::new("broken-pipe");
    let cfg = s.config(&fake, json!({}));
    let cat = s.write_json("catalog.json", &airbyte_catalog(&streams(), "incremental"));
    let script = format!(
        "'{}' read --config '{cfg}' --catalog '{cat}' --now {NOW} 2>'{}/stderr' | head -n 3 >/dev/null; echo ${{PIPESTATUS[0]}}",
        connector_bin(),
        s.dir.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(code, "0", "exit status of the connector");
    let stderr = std::fs::read_to_string(s.dir.join("stderr")).unwrap();
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

#[test]
fn singer_mode_without_flags_explains_usage() {
    let run = run(&[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--config"));
}
