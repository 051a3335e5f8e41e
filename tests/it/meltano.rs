//! Meltano end to end, with the repository's plugin definition
//! (`meltano/extractors/tap-postmark/rust-native.yml`) added verbatim through
//! `meltano add --from-ref`, exactly as the documentation says, and the real target-jsonl as
//! loader. Selection (stream and field), settings (`meltano config set` and environment
//! variables), state storage and the incremental second run all go through Meltano itself.
//!
//! Ignored by default (see `tools.rs`): `scripts/ci/singer.sh` runs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::support::*;
use crate::tools::*;

const PLUGIN: &str = "meltano/extractors/tap-postmark/rust-native.yml";

struct Meltano {
    bin: PathBuf,
    path: String,
}

impl Meltano {
    fn new() -> Meltano {
        let bin = venv_tool(".venv-meltano", "meltano");
        let venv_bin = bin.parent().expect("venv bin").to_path_buf();
        Meltano {
            path: path_with(&[&venv_bin]),
            bin,
        }
    }

    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("PATH", self.path.as_str()),
            ("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false"),
            ("MELTANO_DISABLE_TRACKING", "true"),
        ];
        env.extend_from_slice(extra);
        env
    }

    /// `meltano ARGS` in `dir` with `extra` environment; (success, stdout+stderr).
    fn run(&self, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> (bool, String) {
        let script = std::iter::once(self.bin.to_string_lossy().into_owned())
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        bash(&script, dir, &self.env(extra))
    }

    fn ok(&self, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> String {
        let (ok, out) = self.run(dir, args, extra);
        assert!(ok, "meltano {args:?} failed:\n{out}");
        out
    }

    /// A new project with the plugin definition added from the repository's file.
    fn project(&self, s: &Scratch) -> PathBuf {
        self.ok(&s.dir, &["init", "proj"], &[]);
        let dir = s.dir.join("proj");
        let plugin = repo().join(PLUGIN);
        self.ok(
            &dir,
            &[
                "add",
                "--plugin-type",
                "extractor",
                "tap-postmark",
                "--from-ref",
                &plugin.to_string_lossy(),
            ],
            &[],
        );
        dir
    }

    /// The config file Meltano hands the tap.
    fn tap_config(&self, dir: &Path, extra: &[(&str, &str)]) -> Value {
        let out = std::process::Command::new(&self.bin)
            .args(["invoke", "--dump=config", "tap-postmark"])
            .current_dir(dir)
            .envs(self.env(extra))
            .output()
            .expect("run meltano");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn yaml_as_json(path: &Path) -> Value {
    let python = venv_tool(".venv-meltano", "python");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("YAML as JSON")
}

#[test]
#[ignore = "needs Meltano's Python (YAML) in .venv-meltano; scripts/ci/singer.sh runs it"]
fn the_plugin_definition_declares_every_setting_of_the_spec_with_its_kind_label_and_default() {
    let plugin = yaml_as_json(&repo().join(PLUGIN));
    let spec: Value = serde_json::from_str(include_str!("../../spec.json")).expect("spec.json");
    let props = spec["connectionSpecification"]["properties"]
        .as_object()
        .expect("properties");
    assert_eq!(plugin["name"], "tap-postmark");
    assert_eq!(plugin["namespace"], "tap_postmark");
    assert_eq!(plugin["variant"], "rust-native");
    assert_eq!(plugin["executable"], "source-postmark");
    let about: Value =
        serde_json::from_str(&run(&["--about", "--format", "json"]).stdout).expect("--about JSON");
    assert_eq!(
        plugin["capabilities"].as_array().map(|c| c.len()),
        about["capabilities"].as_array().map(|c| c.len())
    );
    for c in about["capabilities"].as_array().expect("capabilities") {
        assert!(
            plugin["capabilities"].as_array().unwrap().contains(c),
            "{c}"
        );
    }
    let settings = plugin["settings"].as_array().expect("settings");
    let names: Vec<&str> = settings.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, props.keys().map(String::as_str).collect::<Vec<_>>());
    for s in settings {
        let name = s["name"].as_str().unwrap();
        let p = &props[name];
        assert_eq!(s["label"], p["title"], "{name}");
        assert_eq!(s["description"], p["description"], "{name}");
        assert_eq!(s["value"], p["default"], "{name}: default");
        let secret = p["airbyte_secret"] == true;
        assert_eq!(s["sensitive"] == true, secret, "{name}: sensitive");
        let kind = s["kind"].as_str().unwrap();
        let ok = match p["type"].as_str().unwrap() {
            "integer" => kind == "integer",
            // Not `decimal`: Meltano 4.4 crashes on a decimal given as environment variable.
            "number" => kind == "string",
            "boolean" => kind == "boolean",
            "array" => kind == "array",
            _ if name == "start_date" => kind == "date_iso8601",
            _ => kind == "string",
        };
        assert!(ok, "{name}: kind {kind} for {}", p["type"]);
    }
}

#[test]
#[ignore = "needs Meltano in .venv-meltano; scripts/ci/singer.sh runs it"]
fn the_documented_meltano_commands_add_the_plugin_and_sync_with_it() {
    let m = Meltano::new();
    let fake = Fake::start_real_time(&[]);
    let s = Scratch::new("meltano-doc");
    std::os::unix::fs::symlink(repo(), s.dir.join("source-postmark")).expect("symlink");
    let block = doc_block("meltano");
    let (ok, log) = bash(
        &block,
        &s.dir,
        &m.env(&[
            ("POSTMARK_SERVER_TOKEN", TOKEN),
            ("TAP_POSTMARK_BASE_URL", &fake.url),
        ]),
    );
    assert!(
        ok,
        "the documented Meltano commands failed:\n{block}\n{log}"
    );
    assert!(
        !log.contains(TOKEN),
        "the token stays out of Meltano's output"
    );
    let project = s.dir.join("postmark-elt");
    let yml = std::fs::read_to_string(project.join("meltano.yml")).expect("meltano.yml");
    assert!(yml.contains("variant: rust-native"), "{yml}");
    assert!(
        !yml.contains(TOKEN),
        "a sensitive setting stays out of meltano.yml"
    );
    assert!(
        std::fs::read_to_string(project.join(".env"))
            .unwrap_or_default()
            .contains(TOKEN),
        "meltano config set keeps the token in .env"
    );

    let out = std::fs::read_to_string(project.join("postmark.jsonl")).expect("tap output");
    let msgs = jsonl(&out);
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in msgs.iter().filter(|m| m["type"] == "RECORD") {
        let stream = m["stream"].as_str().unwrap().to_string();
        let k = record_key(&stream, &m["record"]);
        keys.entry(stream).or_default().push(k);
    }
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        vec!["bounces", "messages_outbound"],
        "only the selected streams"
    );
    let last = msgs
        .iter()
        .rev()
        .find(|m| m["type"] == "STATE")
        .expect("a STATE");
    let start = (Utc::now() - Duration::days(30))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    for (stream, got) in &keys {
        let end = last["value"]["bookmarks"][stream]["synced_until"]
            .as_str()
            .expect("synced_until");
        assert_exactly(stream, got, &fake.truth(stream, Some((&start, end))));
    }
}

#[test]
#[ignore = "needs Meltano in .venv-meltano; scripts/ci/singer.sh runs it"]
fn every_setting_works_through_meltano_config_set_and_through_its_environment_variable() {
    let m = Meltano::new();
    let fake = Fake::start_real_time(&[]);
    let s = Scratch::new("meltano-settings");
    let dir = m.project(&s);
    let start = (Utc::now() - Duration::days(20))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();

    // 1. `meltano config set`, every setting; the token first with a stale value.
    let set: Vec<(&str, &str)> = vec![
        ("server_token", "stale-token"),
        ("start_date", &start),
        ("lookback_hours", "12"),
        ("max_concurrency", "3"),
        ("max_requests_per_second", "250.5"),
        ("window_lag_seconds", "120"),
        ("fail_on_unreachable_rows", "true"),
        ("request_timeout_seconds", "30"),
        ("max_retries", "2"),
        ("base_url", &fake.url),
    ];
    for (name, value) in &set {
        m.ok(&dir, &["config", "set", "tap-postmark", name, value], &[]);
    }
    let config = m.tap_config(&dir, &[]);
    let want = json!({
        "server_token": "stale-token", "lookback_hours": 12, "max_concurrency": 3,
        "max_requests_per_second": "250.5", "window_lag_seconds": 120,
        "fail_on_unreachable_rows": true, "request_timeout_seconds": 30, "max_retries": 2,
        "base_url": fake.url,
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&config[k], v, "{k} through config set: {config}");
    }
    assert!(
        config["start_date"]
            .as_str()
            .is_some_and(|d| d.starts_with(&start[..10])),
        "{config}"
    );
    // The connector accepts all of it ("250.5" becomes a number) ...
    let discovered = m.ok(&dir, &["invoke", "tap-postmark", "--discover"], &[]);
    assert!(discovered.contains("\"tap_stream_id\""), "{discovered}");
    // ... and really uses the token set with `config set`: the stale one is refused.
    m.ok(&dir, &["select", "tap-postmark", "templates", "*"], &[]);
    let (ok, log) = m.run(&dir, &["invoke", "tap-postmark"], &[]);
    assert!(
        !ok && log.contains("rejected the server token"),
        "a stale token fails the sync:\n{log}"
    );

    // 2. Environment variables override every setting.
    let lag = "60";
    let env: Vec<(&str, &str)> = vec![
        ("TAP_POSTMARK_SERVER_TOKEN", TOKEN),
        ("TAP_POSTMARK_START_DATE", &start),
        ("TAP_POSTMARK_LOOKBACK_HOURS", "6"),
        ("TAP_POSTMARK_MAX_CONCURRENCY", "2"),
        ("TAP_POSTMARK_MAX_REQUESTS_PER_SECOND", "100"),
        ("TAP_POSTMARK_WINDOW_LAG_SECONDS", lag),
        ("TAP_POSTMARK_FAIL_ON_UNREACHABLE_ROWS", "false"),
        ("TAP_POSTMARK_REQUEST_TIMEOUT_SECONDS", "20"),
        ("TAP_POSTMARK_MAX_RETRIES", "1"),
        ("TAP_POSTMARK_BASE_URL", &fake.url),
    ];
    let config = m.tap_config(&dir, &env);
    let want = json!({
        "server_token": TOKEN, "lookback_hours": 6, "max_concurrency": 2,
        "max_requests_per_second": "100", "window_lag_seconds": 60,
        "fail_on_unreachable_rows": false, "request_timeout_seconds": 20, "max_retries": 1,
        "base_url": fake.url,
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(
            &config[k], v,
            "{k} through its environment variable: {config}"
        );
    }
    let (ok, out) = m.run(&dir, &["invoke", "tap-postmark"], &env);
    assert!(ok, "the token from the environment works:\n{out}");
    assert!(!out.contains(TOKEN), "the token stays out of the output");
    let templates: Vec<String> = jsonl(&out)
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| key_string(&m["record"]["TemplateId"]))
        .collect();
    assert_exactly("templates", &templates, &fake.truth("templates", None));
    assert!(
        out.contains("METRIC: {\"type\": \"counter\", \"metric\": \"record_count\""),
        "Singer metrics reach Meltano's log"
    );

    // 3. A number that is not one still gets the connector's clear error.
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "TAP_POSTMARK_MAX_REQUESTS_PER_SECOND");
    bad.push(("TAP_POSTMARK_MAX_REQUESTS_PER_SECOND", "ten"));
    let (ok, out) = m.run(&dir, &["invoke", "tap-postmark", "--discover"], &bad);
    assert!(!ok, "{out}");
    assert!(
        out.contains("'max_requests_per_second' is \"ten\"; expected a number"),
        "{out}"
    );
}

#[test]
#[ignore = "needs Meltano and target-jsonl (.venv-meltano, .venv); scripts/ci/singer.sh runs it"]
fn meltano_runs_the_tap_into_target_jsonl_and_resumes_from_its_state() {
    let m = Meltano::new();
    let target = venv_tool(".venv", "target-jsonl");
    // Real time: Meltano passes no --now, so the fake uses the real clock too.
    let fake = Fake::start_real_time(&[]);
    let s = Scratch::new("meltano");
    let dir = m.project(&s);
    std::fs::create_dir_all(dir.join("output")).unwrap();
    let loader = s.write(
        "target-jsonl.yml",
        &format!(
            "name: target-jsonl\nnamespace: target_jsonl\nexecutable: {}\nsettings:\n\
             - {{name: destination_path}}\n- {{name: do_timestamp_file, kind: boolean}}\n",
            target.display()
        ),
    );
    m.ok(
        &dir,
        &[
            "add",
            "--plugin-type",
            "loader",
            "target-jsonl",
            "--from-ref",
            &loader,
        ],
        &[],
    );
    m.ok(
        &dir,
        &[
            "config",
            "set",
            "target-jsonl",
            "destination_path",
            "output",
        ],
        &[],
    );
    m.ok(
        &dir,
        &[
            "config",
            "set",
            "target-jsonl",
            "do_timestamp_file",
            "false",
        ],
        &[],
    );
    for (stream, pattern) in [
        ("messages_outbound", "*"),
        ("bounces", "*"),
        ("templates", "*"),
    ] {
        m.ok(&dir, &["select", "tap-postmark", stream, pattern], &[]);
    }
    m.ok(
        &dir,
        &["select", "tap-postmark", "--exclude", "bounces", "Details"],
        &[],
    );
    let start = (Utc::now() - Duration::days(60))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let env = [
        ("TAP_POSTMARK_SERVER_TOKEN", TOKEN),
        ("TAP_POSTMARK_BASE_URL", fake.url.as_str()),
        ("TAP_POSTMARK_START_DATE", start.as_str()),
    ];
    let log = m.ok(&dir, &["run", "tap-postmark", "target-jsonl"], &env);
    assert!(!log.contains(TOKEN), "the token stays out of Meltano's log");

    let lines = |name: &str| -> Vec<Value> {
        jsonl(&std::fs::read_to_string(dir.join("output").join(name)).expect("written"))
    };
    let outbound = lines("messages_outbound.jsonl");
    let truth = fake.truth("messages_outbound", None);
    let keys: Vec<String> = outbound
        .iter()
        .map(|r| key_string(&r["MessageID"]))
        .collect();
    assert_exactly("messages_outbound", &keys, &truth);
    let bounces = lines("bounces.jsonl");
    assert_eq!(bounces.len(), fake.truth("bounces", None).len());
    assert!(
        bounces.iter().all(|b| b.get("Details").is_none()),
        "field deselection honoured"
    );
    assert!(
        !dir.join("output/messages_inbound.jsonl").exists(),
        "unselected stream not synced"
    );

    let state = m.ok(
        &dir,
        &["state", "get", "dev:tap-postmark-to-target-jsonl"],
        &[],
    );
    assert!(
        state.contains("\"messages_outbound\": {\"synced_until\"")
            || state.contains("\"messages_outbound\":{\"synced_until\""),
        "{state}"
    );

    // The second run is incremental: it starts 24 hours (the lookback) before the bookmark.
    let log = m.ok(&dir, &["run", "tap-postmark", "target-jsonl"], &env);
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
