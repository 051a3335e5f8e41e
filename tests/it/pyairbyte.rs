//! PyAirbyte end to end: the Python client Airbyte users script with. It validates the
//! config against our `spec`, runs `check`, `discover` and `read` (with `--state`, asking
//! `incremental` of every stream, full-refresh ones included), caches in DuckDB and keeps
//! state for the next read.

use std::process::Command;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::support::*;
use crate::tools::*;

#[test]
#[ignore = "needs PyAirbyte in .venv-pyairbyte; scripts/ci/singer.sh runs it"]
fn pyairbyte_reads_every_stream_into_its_cache_and_then_reads_incrementally() {
    let root = repo();
    let python = venv_tool(".venv-pyairbyte", "python");
    assert!(
        Command::new(&python)
            .args(["-c", "import airbyte"])
            .status()
            .is_ok_and(|s| s.success()),
        "PyAirbyte is not installed in .venv-pyairbyte: run `bash scripts/ci/singer.sh`"
    );
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

#[test]
#[ignore = "needs PyAirbyte in .venv-pyairbyte; scripts/ci/singer.sh runs it"]
fn the_documented_pyairbyte_one_liner_reads_every_stream() {
    let python = venv_tool(".venv-pyairbyte", "python");
    let venv_bin = python.parent().expect("venv bin").to_path_buf();
    // PyAirbyte passes no --now: the fake runs on the real clock.
    let fake = Fake::start_real_time(&[]);
    let s = Scratch::new("pyairbyte-doc");
    let start = (Utc::now() - Duration::days(46))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    s.write_json(
        "config.json",
        &serde_json::json!({"server_token": TOKEN, "base_url": fake.url, "start_date": start}),
    );
    // The documentation runs the release binary from a clone; here it is this build's.
    std::fs::create_dir_all(s.dir.join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        connector_bin(),
        s.dir.join("target/release/source-postmark"),
    )
    .unwrap();
    let block = doc_block("pyairbyte");
    let path = path_with(&[&venv_bin]);
    let (ok, out) = bash(
        &block,
        &s.dir,
        &[("PATH", &path), ("HOME", &s.dir.to_string_lossy())],
    );
    assert!(
        ok,
        "the documented PyAirbyte one-liner failed:\n{block}\n{out}"
    );
    // It prints {'stream': rows, ...} for the rows in PyAirbyte's cache.
    let printed = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no row counts printed:\n{out}"));
    for stream in CORE_STREAMS {
        let rows: u64 = printed
            .split(&format!("'{stream}': "))
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stream} in {printed}"));
        assert_eq!(
            rows,
            fake.truth(stream, None).len() as u64,
            "{stream}: {printed}"
        );
    }
}
