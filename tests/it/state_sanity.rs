//! State that cannot be taken as it is: a cursor in the future is rejected (it used to read
//! nothing and be handed back for good), one past the sync's end is reset to it, one older
//! than any retention starts at the retention edge; each says so.

use serde_json::json;

use crate::support::*;

fn bounces_state(at: &str) -> serde_json::Value {
    json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "bounces"},
        "stream_state": {"synced_until": at}}}])
}

#[test]
fn a_far_future_state_is_a_config_error_instead_of_stopping_the_stream_for_good() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("future-state");
    let st = bounces_state("2099-01-01T00:00:00Z");
    let run = airbyte_read(&fake, &s, &["bounces"], json!({}), Some(&st), NOW);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_valid_airbyte(&run);
    let errors = trace_errors(&run);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["failure_type"], "config_error");
    let msg = errors[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("stream 'bounces': 'synced_until' 2099-01-01T00:00:00Z is in the future"),
        "{msg}"
    );
    assert!(run.of_type("RECORD").is_empty());
    assert!(
        run.of_type("STATE").is_empty(),
        "the bad state is not handed back"
    );
}

#[test]
fn a_cursor_past_the_syncs_end_is_reset_to_it_with_a_warning_and_reads_the_lookback() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("late-state");
    // NOW is 12:00 and the default lag 5 minutes: the sync ends at 11:55.
    let st = bounces_state("2026-11-20T11:58:00Z");
    let run = airbyte_read(&fake, &s, &["bounces"], json!({}), Some(&st), NOW);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("is after this sync's end 2026-11-20T11:55:00Z")),
        "{:?}",
        run.logs()
    );
    assert_eq!(
        run.last_airbyte_states()["bounces"],
        json!({"synced_until": "2026-11-20T11:55:00Z"})
    );
    // The 24 h lookback before the end was read: exactly the fake's bounces in it.
    let truth = fake.truth(
        "bounces",
        Some(("2026-11-19T11:55:00Z", "2026-11-20T11:55:00Z")),
    );
    assert_exactly("bounces", &run.keys("bounces"), &truth);
}

#[test]
fn a_cursor_older_than_any_retention_starts_at_the_edge_with_a_warning() {
    let fake = Fake::start(&[]);
    let s = Scratch::new("ancient-state");
    let st = json!({"bookmarks": {"bounces": {"synced_until": "2019-01-01T00:00:00Z"}}});
    let cfg = s.config(&fake, json!({}));
    let st = s.write_json("state.json", &st);
    let cat = s.write_json(
        "singer.json",
        &json!({"streams": [{"tap_stream_id": "bounces", "stream": "bounces", "schema": {}}]}),
    );
    let run = run(&["--config", &cfg, "--catalog", &cat, "--state", &st]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("WARNING")
            && l.contains(
                "'synced_until' 2019-01-01T00:00:00Z is older than 2025-11-20T12:00:00Z"
            )),
        "{}",
        run.stderr
    );
    let truth = fake.truth(
        "bounces",
        Some(("2025-11-20T12:00:00Z", "2026-11-20T11:55:00Z")),
    );
    assert_exactly("bounces", &run.keys("bounces"), &truth);
}
