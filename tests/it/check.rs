//! Airbyte `check`: SUCCEEDED with a Server token; FAILED (exit 0) with a hint otherwise.

use serde_json::json;

use crate::support::*;

fn check(cfg: &str) -> Run {
    run(&["check", "--config", cfg])
}

#[test]
fn check_succeeds_with_a_valid_server_token() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("check-ok");
    let run = check(&s.config(&fake, json!({})));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_valid_airbyte(&run);
    let status = run.of_type("CONNECTION_STATUS");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["connectionStatus"]["status"], "SUCCEEDED");
    assert_eq!(fake.requests()[0]["path"], "/server");
}

#[test]
fn a_bad_token_fails_the_check_with_a_server_token_hint_and_exit_0() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("check-bad");
    let secret = "wrong-token-1234567890";
    let run = check(&s.config(&fake, json!({"server_token": secret})));
    assert_eq!(run.code, 0, "a failed check still exits 0");
    assert_valid_airbyte(&run);
    let status = run.of_type("CONNECTION_STATUS");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["connectionStatus"]["status"], "FAILED");
    let msg = status[0]["connectionStatus"]["message"].as_str().unwrap();
    assert!(msg.contains("Server API token"), "{msg}");
    assert!(msg.contains("401"), "{msg}");
    assert_no_secret(&run, secret);
}

#[test]
fn an_invalid_config_fails_the_check_naming_the_field() {
    let s = Scratch::new("check-invalid");
    let cfg = s.write_json(
        "config.json",
        &json!({"server_token": "t", "max_concurrency": "four"}),
    );
    let run = check(&cfg);
    assert_eq!(run.code, 0);
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("'max_concurrency'"));
}

#[test]
fn airbytes_own_postmark_config_keys_work() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("check-alias");
    let cfg = s.write_json(
        "config.json",
        &json!({"X-Postmark-Server-Token": TOKEN, "X-Postmark-Account-Token": ACCOUNT_TOKEN, "base_url": fake.url}),
    );
    let run = check(&cfg);
    assert_eq!(
        run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"],
        "SUCCEEDED",
        "{}",
        run.stdout
    );
    // Each token goes only to its own endpoints (Postmark rejects both on one call).
    let requests = fake.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/server", "/servers"]);
    for r in &requests {
        assert_eq!(r["account_token"], r["path"] == "/servers", "{r}");
    }
    assert_no_secret(&run, ACCOUNT_TOKEN);
}
