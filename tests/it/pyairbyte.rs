//! PyAirbyte end to end: the Python client Airbyte users script with. It validates the
//! config against our `spec`, runs `check`, `discover` and `read` (with `--state`, asking
//! `incremental` of every stream, full-refresh ones included), caches in DuckDB and keeps
//! state for the next read.

use std::path::PathBuf;
use std::process::Command;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::support::*;

#[test]
fn pyairbyte_reads_every_stream_into_its_cache_and_then_reads_incrementally() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv-pyairbyte/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PyAirbyte is not installed; .ci/run installs it"
        );
        eprintln!("skipped: PyAirbyte not installed (bash .ci/run installs it)");
        return;
    }
    // PyAirbyte passes no --now: the fake runs on the real clock, and the start date lies
    // safely before its oldest row.
    let fake = Fake::start_real_time(&[]);
    let s = Scratch::new("pyairbyte");
    let start = (Utc::now() - Duration::days(46))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let stats_from = format!("{}T00:00:00Z", &start[..10]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/pyairbyte_read.py"))
        .args([connector_bin(), &fake.url, &start])
        .arg(s.dir.join("cache"))
        .env("AIRBYTE_OFFLINE_MODE", "1")
        .env("DO_NOT_TRACK", "1")
        .env("HOME", &s.dir)
        .current_dir(&s.dir)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PyAirbyte failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report");
    let mut total = 0;
    for stream in streams() {
        // Statistics start at the midnight of the start date's day; the rest has no older rows.
        let truth = if stream.starts_with("stats_") {
            fake.truth(stream, Some((&stats_from, "2100-01-01T00:00:00Z")))
        } else {
            fake.truth(stream, None)
        }
        .len() as u64;
        assert_eq!(report["cached"][stream].as_u64(), Some(truth), "{stream}");
        total += truth;
    }
    assert_eq!(report["first_processed"].as_u64(), Some(total));
    let second = report["second_processed"].as_u64().unwrap();
    assert!(
        second < total / 4,
        "the second read is incremental: {second} of {total}"
    );
}
