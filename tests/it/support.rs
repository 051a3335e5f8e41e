//! Test support: the fake Postmark server as a child process, the connector binary as a
//! child process, and oracles for its output (the vendored Airbyte protocol schema and the
//! stream schemas).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};
use source_postmark::streams::Token;

/// Every test pretends the sync starts at this instant (fake and connector agree).
pub const NOW: &str = "2026-11-20T12:00:00Z";
pub const TOKEN: &str = "fake-server-token";
/// The fake's account token (`--account-token` default).
pub const ACCOUNT_TOKEN: &str = "fake-account-token";

/// Every server stream of the connector's table, in table order (what `discover` lists
/// with a server token).
pub fn all_streams() -> Vec<&'static str> {
    source_postmark::streams::STREAMS
        .iter()
        .filter(|s| s.token == Token::Server)
        .map(|s| s.name)
        .collect()
}

/// The account streams (read with the account token).
pub fn account_streams() -> Vec<&'static str> {
    source_postmark::streams::STREAMS
        .iter()
        .filter(|s| s.token == Token::Account)
        .map(|s| s.name)
        .collect()
}

/// The streams a read with the default config covers (opt-in streams left out).
pub fn streams() -> Vec<&'static str> {
    source_postmark::streams::STREAMS
        .iter()
        .filter(|s| s.opt_in.is_none() && s.token == Token::Server)
        .map(|s| s.name)
        .collect()
}

fn spec_of(stream: &str) -> &'static source_postmark::streams::StreamSpec {
    source_postmark::streams::find(stream).unwrap_or_else(|| panic!("unknown stream {stream}"))
}

pub fn connector_bin() -> &'static str {
    env!("CARGO_BIN_EXE_source-postmark")
}

/// A running fake Postmark; killed on drop.
pub struct Fake {
    child: Child,
    pub url: String,
}

impl Fake {
    pub fn start(args: &[&str]) -> Fake {
        let mut all = vec!["--now", NOW];
        all.extend_from_slice(args);
        Fake::start_real_time(&all)
    }

    /// A fake whose "now" is the real clock (for tools that cannot pass `--now`).
    pub fn start_real_time(args: &[&str]) -> Fake {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fake-postmark"));
        cmd.args(["--port", "0", "--token", TOKEN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start fake-postmark");
        let stdout = child.stdout.take().expect("fake stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("fake announces its address");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in fake's first line: {line}"))
            .to_string();
        Fake { child, url }
    }

    fn control(&self, method: &str, path_and_query: &str) -> String {
        let url = format!("{}{}", self.url, path_and_query);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = if method == "POST" {
            agent.post(&url).send_empty()
        } else {
            agent.get(&url).call()
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        resp.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .expect("control body")
    }

    /// Primary keys of every record of `stream` with time in `[from, to)`.
    pub fn truth(&self, stream: &str, range: Option<(&str, &str)>) -> Vec<String> {
        let q = match range {
            Some((f, t)) => format!("/__fake/truth?stream={stream}&from={f}&to={t}"),
            None => format!("/__fake/truth?stream={stream}"),
        };
        self.control("GET", &q)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The records the connector should emit for `stream` (`&records=1`), time-filtered.
    pub fn truth_records(&self, stream: &str, range: Option<(&str, &str)>) -> Vec<Value> {
        let q = match range {
            Some((f, t)) => format!("/__fake/truth?stream={stream}&records=1&from={f}&to={t}"),
            None => format!("/__fake/truth?stream={stream}&records=1"),
        };
        self.control("GET", &q)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("truth record JSON"))
            .collect()
    }

    /// Like [`Fake::truth`] over `default_range`, with extra truth parameters
    /// (`&keyed=true`: leave out records the fake renders without their key).
    pub fn truth_with(&self, stream: &str, extra: &str) -> Vec<String> {
        let (f, t) = default_range();
        self.control(
            "GET",
            &format!("/__fake/truth?stream={stream}&from={f}&to={t}{extra}"),
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
    }

    /// Like [`Fake::truth`] for one server of the account (`&server=ID`).
    pub fn truth_on(&self, server: u64, stream: &str, range: Option<(&str, &str)>) -> Vec<String> {
        let mut q = format!("/__fake/truth?stream={stream}&server={server}");
        if let Some((f, t)) = range {
            q.push_str(&format!("&from={f}&to={t}"));
        }
        self.control("GET", &q)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `count` records of `stream` arrive on one server of the account, from `at` on.
    pub fn arrive_on(&self, server: u64, stream: &str, count: u32, at: &str) {
        let body = self.control(
            "POST",
            &format!("/__fake/arrive?stream={stream}&count={count}&at={at}&server={server}"),
        );
        let v: Value = serde_json::from_str(&body).expect("arrive answer");
        assert_eq!(v["added"], count, "{body}");
    }

    /// That server's token is refused (401) from now on.
    pub fn revoke(&self, server: u64) {
        let body = self.control("POST", &format!("/__fake/revoke?server={server}"));
        assert!(body.contains(&server.to_string()), "{body}");
    }

    /// A new server joins the account; its ID.
    pub fn add_server(&self) -> u64 {
        let body = self.control("POST", "/__fake/add-server");
        let v: Value = serde_json::from_str(&body).expect("add-server answer");
        v["ID"]
            .as_u64()
            .unwrap_or_else(|| panic!("no ID in {body}"))
    }

    pub fn stats(&self) -> Value {
        serde_json::from_str(&self.control("GET", "/__fake/stats")).expect("stats JSON")
    }

    pub fn requests(&self) -> Vec<Value> {
        self.control("GET", "/__fake/requests")
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("request log line"))
            .collect()
    }

    pub fn fault(&self, path: &str, status: u16, count: u32, extra: &str) {
        self.control(
            "POST",
            &format!("/__fake/faults?path={path}&status={status}&count={count}{extra}"),
        );
    }

    pub fn arrive(&self, stream: &str, count: u32, at: &str) {
        self.control(
            "POST",
            &format!("/__fake/arrive?stream={stream}&count={count}&at={at}"),
        );
    }

    pub fn reset_stats(&self) {
        self.control("POST", "/__fake/reset-stats");
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for one test's files.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir }
    }

    pub fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write scratch file");
        p.to_string_lossy().into_owned()
    }

    pub fn write_json(&self, name: &str, v: &Value) -> String {
        self.write(name, &v.to_string())
    }

    /// A config pointing at `fake`, with `extra` merged in.
    pub fn config(&self, fake: &Fake, extra: Value) -> String {
        let mut c = json!({"server_token": TOKEN, "base_url": fake.url});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        self.write_json("config.json", &c)
    }
}

/// What a connector run printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub parsed: OnceLock<Vec<Value>>,
}

impl Run {
    pub fn new(code: i32, stdout: String, stderr: String) -> Run {
        Run {
            code,
            stdout,
            stderr,
            parsed: OnceLock::new(),
        }
    }

    /// Every stdout line as JSON (parsed once).
    pub fn lines(&self) -> &[Value] {
        self.parsed.get_or_init(|| {
            self.stdout
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
                })
                .collect()
        })
    }

    pub fn of_type(&self, t: &str) -> Vec<Value> {
        self.lines()
            .iter()
            .filter(|m| m["type"] == t)
            .cloned()
            .collect()
    }

    /// RECORD data per stream (both protocols).
    pub fn records(&self) -> BTreeMap<String, Vec<Value>> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for m in self.lines().iter().filter(|m| m["type"] == "RECORD") {
            let (stream, data) = if m.get("record").and_then(|r| r.get("data")).is_some() {
                (m["record"]["stream"].clone(), m["record"]["data"].clone())
            } else {
                (m["stream"].clone(), m["record"].clone())
            };
            out.entry(stream.as_str().unwrap_or("").to_string())
                .or_default()
                .push(data);
        }
        out
    }

    pub fn keys(&self, stream: &str) -> Vec<String> {
        self.lines()
            .iter()
            .filter(|m| m["type"] == "RECORD")
            .filter_map(|m| {
                let (s, data) = if m["record"].get("data").is_some() {
                    (&m["record"]["stream"], &m["record"]["data"])
                } else {
                    (&m["stream"], &m["record"])
                };
                (s == stream).then(|| record_key(stream, data))
            })
            .collect()
    }

    pub fn logs(&self) -> Vec<String> {
        self.of_type("LOG")
            .iter()
            .map(|m| m["log"]["message"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The last Airbyte STREAM state per stream.
    pub fn last_airbyte_states(&self) -> HashMap<String, Value> {
        let mut out = HashMap::new();
        for m in self.of_type("STATE") {
            let name = m["state"]["stream"]["stream_descriptor"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            out.insert(name, m["state"]["stream"]["stream_state"].clone());
        }
        out
    }

    /// Airbyte state input built from this run's last per-stream states.
    pub fn airbyte_state_file(&self) -> Value {
        let msgs: Vec<Value> = self
            .of_type("STATE")
            .into_iter()
            .map(|m| m["state"].clone())
            .collect();
        // Keep only the last per stream, as the platform would.
        let mut last: BTreeMap<String, Value> = BTreeMap::new();
        for s in msgs {
            let n = s["stream"]["stream_descriptor"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            last.insert(n, s);
        }
        Value::Array(last.into_values().collect())
    }
}

/// The primary key fields of `stream`, from the connector's table.
pub fn key_of(stream: &str) -> &'static [&'static str] {
    spec_of(stream).primary_key
}

/// A record's key as the fake's truth writes it: the value of a single key (strings bare),
/// or a compact JSON array of the values in key order.
pub fn record_key(stream: &str, data: &Value) -> String {
    match key_of(stream) {
        [one] => key_string(&data[*one]),
        many => Value::Array(many.iter().map(|k| data[*k].clone()).collect()).to_string(),
    }
}

pub fn key_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs the connector binary with `args` (plus `--now NOW` unless `real_now`).
pub fn run(args: &[&str]) -> Run {
    run_with(args, None)
}

pub fn run_with(args: &[&str], stdin: Option<&str>) -> Run {
    run_at(args, NOW, stdin)
}

/// Runs the connector as if the sync started at `now`.
pub fn run_at(args: &[&str], now: &str, stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(connector_bin());
    cmd.args(args)
        .args(["--now", now, "--retry-base-ms", "1"])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start connector");
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("connector output");
    Run::new(
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn protocol_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let text = include_str!("../fixtures/airbyte_protocol.schema.json");
        let doc: Value = serde_json::from_str(text).expect("vendored protocol schema");
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": "#/definitions/AirbyteMessage",
            "definitions": doc["definitions"],
        });
        jsonschema::draft7::new(&root).expect("protocol schema compiles")
    })
}

/// Asserts that every stdout line is an AirbyteMessage per the vendored protocol schema,
/// with the payload its `type` names (a rule the schema cannot express).
pub fn assert_valid_airbyte(run: &Run) {
    let v = protocol_validator();
    for (i, line) in run.lines().iter().enumerate() {
        let errors: Vec<String> = v.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "line {i} is not a valid AirbyteMessage: {errors:?}\n{line}"
        );
        let payload = match line["type"].as_str().unwrap_or("") {
            "RECORD" => "record",
            "STATE" => "state",
            "LOG" => "log",
            "SPEC" => "spec",
            "CONNECTION_STATUS" => "connectionStatus",
            "CATALOG" => "catalog",
            "TRACE" => "trace",
            "CONTROL" => "control",
            other => panic!("unexpected type {other}"),
        };
        assert!(
            line.get(payload).is_some(),
            "line {i} lacks '{payload}': {line}"
        );
        if line["type"] == "RECORD" {
            assert!(
                line["record"]["emitted_at"].is_i64(),
                "emitted_at must be integer ms"
            );
        }
    }
}

fn stream_validator(stream: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("catalogs/schemas")
        .join(format!("{stream}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema file"))
        .expect("schema JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .expect("stream schema compiles")
}

/// Asserts every record validates against its stream's schema (types and date-time
/// format), and that date-times are UTC with at most 6 fractional digits.
pub fn assert_records_match_schemas(run: &Run) {
    for (stream, records) in run.records() {
        let v = stream_validator(&stream);
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("catalogs/schemas/{stream}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let dt_fields: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| s["format"] == "date-time")
            .map(|(k, _)| k.clone())
            .collect();
        for r in &records {
            let errors: Vec<String> = v.iter_errors(r).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{stream} record fails its schema: {errors:?}\n{r}"
            );
            for f in &dt_fields {
                if let Some(s) = r.get(f).and_then(|x| x.as_str()) {
                    assert!(s.ends_with('Z'), "{stream}.{f} not UTC: {s}");
                    let frac = s.split('.').nth(1).map(|x| x.len() - 1).unwrap_or(0);
                    assert!(frac <= 6, "{stream}.{f} has {frac} fractional digits: {s}");
                }
            }
        }
    }
}

/// Asserts `got` holds exactly the keys of `truth`: none missing, none extra, no duplicate.
pub fn assert_exactly(stream: &str, got: &[String], truth: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for k in got {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(k, _)| *k)
        .take(5)
        .collect();
    let truth_set: std::collections::HashSet<&str> = truth.iter().map(String::as_str).collect();
    let missing: Vec<_> = truth
        .iter()
        .filter(|k| !counts.contains_key(k.as_str()))
        .take(5)
        .collect();
    let extra: Vec<_> = counts
        .keys()
        .filter(|k| !truth_set.contains(*k))
        .take(5)
        .collect();
    assert!(
        dups.is_empty() && missing.is_empty() && extra.is_empty(),
        "{stream}: got {} records for {} true keys; duplicates {dups:?}, missing {missing:?}, extra {extra:?}",
        got.len(),
        truth.len()
    );
}

/// Where the statistics of a default read start: the day 365 days before [`NOW`].
pub const STATS_START: &str = "2025-11-20T00:00:00Z";

/// The range a default read covers: [NOW - 45 days, NOW - 5 minutes).
pub fn default_range() -> (&'static str, &'static str) {
    ("2026-10-06T12:00:00Z", "2026-11-20T11:55:00Z")
}

/// An Airbyte configured catalog of the named streams.
pub fn airbyte_catalog(streams: &[&str], sync_mode: &str) -> Value {
    let all: Value = serde_json::from_str(include_str!("../../catalogs/configured_catalog.json"))
        .expect("configured catalog");
    let picked: Vec<Value> = all["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| streams.contains(&s["stream"]["name"].as_str().unwrap()))
        .map(|s| {
            let mut s = s.clone();
            s["sync_mode"] = json!(sync_mode);
            s
        })
        .collect();
    json!({ "streams": picked })
}

/// Is this config value's secret absent from everything the run printed?
pub fn assert_no_secret(run: &Run, secret: &str) {
    assert!(!run.stdout.contains(secret), "secret on stdout");
    assert!(!run.stderr.contains(secret), "secret on stderr");
}

/// An Airbyte `read` of `streams` (incremental) against `fake`, as if the sync started at `now`.
pub fn airbyte_read(
    fake: &Fake,
    s: &Scratch,
    streams: &[&str],
    extra: Value,
    state: Option<&Value>,
    now: &str,
) -> Run {
    airbyte_read_streaming(fake, s, streams, extra, state, now, |_| true)
}

/// The fake's keys of `stream` for a default read (time-based streams over `default_range`).
pub fn truth_of(fake: &Fake, stream: &str) -> Vec<String> {
    use source_postmark::streams::Cursor;
    match spec_of(stream).cursor {
        Cursor::Field(_) | Cursor::WindowEnd => fake.truth(stream, Some(default_range())),
        Cursor::Day(_) => fake.truth(stream, Some((STATS_START, default_range().1))),
        Cursor::None => fake.truth(stream, None),
    }
}

/// An Airbyte read like [`airbyte_read`], whose stdout lines are handed to `on_line` as they
/// arrive. When `on_line` returns `false` the connector is killed there, as a crash would
/// stop it; the run's code is then -1.
pub fn airbyte_read_streaming(
    fake: &Fake,
    s: &Scratch,
    streams: &[&str],
    extra: Value,
    state: Option<&Value>,
    now: &str,
    mut on_line: impl FnMut(&str) -> bool,
) -> Run {
    let cfg = s.config(fake, extra);
    let cat = s.write_json("catalog.json", &airbyte_catalog(streams, "incremental"));
    let mut args = vec![
        "read".to_string(),
        "--config".into(),
        cfg,
        "--catalog".into(),
        cat,
    ];
    args.extend([
        "--now".to_string(),
        now.to_string(),
        "--retry-base-ms".into(),
        "1".into(),
    ]);
    if let Some(st) = state {
        args.push("--state".into());
        args.push(s.write_json("state.json", st));
    }
    // stderr goes to a file, so a chatty connector never blocks on a full pipe.
    let stderr_path = s.dir.join("stderr.txt");
    let mut child = Command::new(connector_bin())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start connector");
    let mut lines = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("stdout line");
        let go_on = on_line(&line);
        lines.push(line);
        if !go_on {
            let _ = child.kill();
            killed = true;
            break;
        }
    }
    let status = child.wait().expect("connector exit");
    let code = if killed {
        -1
    } else {
        status.code().unwrap_or(-1)
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let stdout = if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n"
    };
    Run::new(code, stdout, stderr)
}

/// The `error` payloads of the run's TRACE ERROR messages.
pub fn trace_errors(run: &Run) -> Vec<serde_json::Value> {
    run.of_type("TRACE")
        .into_iter()
        .filter(|t| t["trace"]["type"] == "ERROR")
        .map(|t| t["trace"]["error"].clone())
        .collect()
}

/// The stream names a catalog lists, in order: `field` is `name` (Airbyte) or
/// `tap_stream_id` (Singer).
pub fn catalog_names<'a>(catalog: &'a Value, field: &str) -> Vec<&'a str> {
    catalog["streams"]
        .as_array()
        .expect("a catalog's streams")
        .iter()
        .map(|s| s[field].as_str().expect("a stream name"))
        .collect()
}

/// No STATE runs ahead of records: each stream's last record is followed by a STATE of
/// that stream (Airbyte output).
pub fn assert_state_follows_last_record(run: &Run, streams: &[&str]) {
    let lines = run.lines();
    for stream in streams {
        let last_record = lines.iter().rposition(|m| m["record"]["stream"] == *stream);
        let last_state = lines
            .iter()
            .rposition(|m| m["state"]["stream"]["stream_descriptor"]["name"] == *stream);
        assert!(
            last_state > last_record,
            "{stream}: a STATE follows the last record"
        );
    }
}
