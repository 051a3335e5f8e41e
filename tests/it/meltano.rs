//! Meltano end to end: the README's `meltano.yml` shape with this binary as a custom
//! extractor (no pip_url) and the real target-jsonl as loader. Selection (stream and field),
//! state storage and the incremental second run all go through Meltano itself.

use std::path::PathBuf;
use std::process::Command;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::support::*;

fn venv_bin(venv: &str, name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(venv)
        .join("bin")
        .join(name);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is not installed; .ci/run installs it into .venv"
    );
    None
}

fn meltano(bin: &PathBuf, dir: &std::path::Path, fake: &Fake, args: &[&str]) -> (bool, String) {
    let start = (Utc::now() - Duration::days(60))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("MELTANO_DISABLE_TRACKING", "true")
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("TAP_POSTMARK_SERVER_TOKEN", TOKEN)
        .env("TAP_POSTMARK_BASE_URL", &fake.url)
        .env("TAP_POSTMARK_START_DATE", start)
        .output()
        .expect("run meltano");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn lines(path: PathBuf) -> Vec<Value> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} written", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn meltano_runs_the_tap_into_target_jsonl_and_resumes_from_its_state() {
    let (Some(meltano_bin), Some(target)) = (
        venv_bin(".venv-meltano", "meltano"),
        venv_bin(".venv", "target-jsonl"),
    ) else {
        eprintln!("skipped: meltano/target-jsonl not installed (bash .ci/run installs them)");
        return;
    };
    // Real time: Meltano passes no --now, so the fake uses the real clock too.
    let fake = Fake::start_real_time(&[]);
    let s = Scratch::new("meltano");
    std::fs::create_dir_all(s.dir.join("output")).unwrap();
    s.write(
        "meltano.yml",
        &format!(
            r#"version: 1
default_environment: test
environments:
- name: test
project_id: source-postmark-it
send_anonymous_usage_stats: false
plugins:
  extractors:
  - name: tap-postmark
    namespace: tap_postmark
    executable: {tap}
    capabilities: [catalog, discover, state, about]
    settings:
    - {{name: server_token, kind: string, sensitive: true}}
    - {{name: base_url}}
    - {{name: start_date, kind: string}}
    select:
    - messages_outbound.*
    - bounces.*
    - '!bounces.Details'
    - templates.*
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    executable: {target}
    settings:
    - {{name: destination_path}}
    - {{name: do_timestamp_file, kind: boolean}}
    config:
      destination_path: output
      do_timestamp_file: false
"#,
            tap = connector_bin(),
            target = target.display()
        ),
    );
    let (ok, log) = meltano(
        &meltano_bin,
        &s.dir,
        &fake,
        &["run", "tap-postmark", "target-jsonl"],
    );
    assert!(ok, "meltano run failed:\n{log}");
    assert!(!log.contains(TOKEN), "the token stays out of Meltano's log");

    let outbound = lines(s.dir.join("output/messages_outbound.jsonl"));
    let truth = fake.truth("messages_outbound", None);
    let keys: Vec<String> = outbound
        .iter()
        .map(|r| key_string(&r["MessageID"]))
        .collect();
    assert_exactly("messages_outbound", &keys, &truth);
    let bounces = lines(s.dir.join("output/bounces.jsonl"));
    assert_eq!(bounces.len(), fake.truth("bounces", None).len());
    assert!(
        bounces.iter().all(|b| b.get("Details").is_none()),
        "field deselection honoured"
    );
    assert!(
        !s.dir.join("output/messages_inbound.jsonl").exists(),
        "unselected stream not synced"
    );

    let (ok, state) = meltano(
        &meltano_bin,
        &s.dir,
        &fake,
        &["state", "get", "test:tap-postmark-to-target-jsonl"],
    );
    assert!(ok, "{state}");
    assert!(
        state.contains("\"messages_outbound\": {\"synced_until\"")
            || state.contains("\"messages_outbound\":{\"synced_until\""),
        "{state}"
    );

    // The second run is incremental: it starts 24 hours (the lookback) before the bookmark.
    let (ok, log) = meltano(
        &meltano_bin,
        &s.dir,
        &fake,
        &["run", "tap-postmark", "target-jsonl"],
    );
    assert!(ok, "second meltano run failed:\n{log}");
    let started = log
        .lines()
        .find(|l| l.contains("messages_outbound: starting incremental sync"))
        .expect("a start line");
    let finished = log
        .lines()
        .find(|l| l.contains("messages_outbound: finished"))
        .expect("an end line");
    let n: usize = finished
        .split("finished: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a record count");
    assert!(
        n < truth.len() / 4,
        "the second run reads only the last day: {n} of {}\n{started}",
        truth.len()
    );
}
