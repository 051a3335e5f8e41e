//! The bad-input corpus: every row of `tests/corpus/bad_inputs.jsonl` is a malformed config,
//! catalog, state or command line with the exact error it must produce. One table-driven
//! test runs each row through the real binary in every protocol the row names and checks
//! the exit code, the Airbyte `failure_type`, the message (TRACE, CONNECTION_STATUS and the
//! stderr line) and, for inputs that are accepted with a warning, the warning.
//!
//! Row fields: `id`; `runs` (`check`, `read`, `singer-read`, `cli`); `config` (whole file)
//! or `config_merge` (keys merged into a working config; `null` removes) or `config_text`;
//! `catalog` / `singer_catalog` / `catalog_text`; `state` / `state_text`; `args` (for
//! `cli`, with `{CONFIG}` and `{CATALOG}` placeholders); `exit`; `failure_type`; `message`;
//! `warn`. `{FAKE}` anywhere in a string is the fake server's URL.

use serde_json::{json, Value};

use crate::support::*;

const CORPUS: &str = include_str!("../corpus/bad_inputs.jsonl");

struct Files {
    config: String,
    catalog: String,
    singer_catalog: Option<String>,
    state: Option<String>,
}

fn substitute(v: &Value, fake: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{FAKE}", fake)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, fake)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, fake)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn files(row: &Value, fake: &Fake, s: &Scratch) -> Files {
    let config = if let Some(text) = row["config_text"].as_str() {
        s.write("config.json", text)
    } else if let Some(whole) = row.get("config") {
        s.write_json("config.json", &substitute(whole, &fake.url))
    } else {
        let mut c = json!({"server_token": TOKEN, "base_url": fake.url});
        if let Some(m) = row["config_merge"].as_object() {
            for (k, v) in m {
                c[k] = substitute(v, &fake.url);
            }
        }
        s.write_json("config.json", &c)
    };
    let catalog = match (row["catalog_text"].as_str(), row.get("catalog")) {
        (Some(text), _) => s.write("catalog.json", text),
        (None, Some(c)) => s.write_json("catalog.json", c),
        (None, None) => s.write_json(
            "catalog.json",
            &airbyte_catalog(&["bounces"], "incremental"),
        ),
    };
    let singer_catalog = match (row["catalog_text"].as_str(), row.get("singer_catalog")) {
        (Some(text), _) => Some(s.write("singer_catalog.json", text)),
        (None, Some(c)) => Some(s.write_json("singer_catalog.json", c)),
        (None, None) => None,
    };
    let state = match (row["state_text"].as_str(), row.get("state")) {
        (Some(text), _) => Some(s.write("state.json", text)),
        (None, Some(st)) => Some(s.write_json("state.json", st)),
        (None, None) => None,
    };
    Files {
        config,
        catalog,
        singer_catalog,
        state,
    }
}

/// What one run of one row got wrong (empty: nothing).
fn verify(row: &Value, kind: &str, run: &Run) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    let exit = row["exit"].as_i64().unwrap_or(1) as i32;
    let message = row["message"].as_str().unwrap_or("");
    let warn = row["warn"].as_str();
    let failure_type = row["failure_type"].as_str();
    let error_line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or("");
    let airbyte =
        kind == "check" || kind == "read" || (kind == "cli" && row["protocol"] == "airbyte");
    if airbyte && exit != 2 {
        // Every stdout line of an Airbyte run must parse, whatever happened.
        if let Some(bad) = run
            .stdout
            .lines()
            .find(|l| serde_json::from_str::<Value>(l).is_err())
        {
            return vec![format!("stdout line is not JSON: {bad}")];
        }
    }
    if kind == "check" && exit != 0 && failure_type == Some("config_error") {
        expect(run.code == 0, format!("check exit {} (want 0)", run.code));
        let status = run.of_type("CONNECTION_STATUS");
        let st = status
            .first()
            .map(|s| s["connectionStatus"].clone())
            .unwrap_or_default();
        expect(
            st["status"] == "FAILED",
            format!("check status {}", st["status"]),
        );
        let m = st["message"].as_str().unwrap_or("");
        expect(
            m.contains(message),
            format!("check message {m:?} lacks {message:?}"),
        );
        return wrong;
    }
    expect(
        run.code == exit,
        format!(
            "exit {} (want {exit}); stderr: {}",
            run.code,
            run.stderr.trim()
        ),
    );
    if exit == 0 {
        if kind == "check" {
            let st = run.of_type("CONNECTION_STATUS");
            let s = st.first().map(|s| s["connectionStatus"]["status"].clone());
            expect(s == Some(json!("SUCCEEDED")), format!("check status {s:?}"));
        }
        if let Some(w) = warn {
            let seen = if airbyte {
                run.of_type("LOG").iter().any(|l| {
                    l["log"]["level"] == "WARN"
                        && l["log"]["message"].as_str().unwrap_or("").contains(w)
                })
            } else {
                run.stderr
                    .lines()
                    .any(|l| l.starts_with("WARNING") && l.contains(w))
            };
            expect(
                seen,
                format!("no warning containing {w:?}; stderr: {}", run.stderr.trim()),
            );
        }
        return wrong;
    }
    let in_stderr = if exit == 2 {
        run.stderr.contains(message)
    } else {
        error_line.contains(message)
    };
    expect(
        in_stderr,
        format!("stderr {:?} lacks {message:?}", run.stderr.trim()),
    );
    if airbyte && exit == 1 {
        let errors = trace_errors(run);
        match errors.first() {
            None => expect(false, "no TRACE ERROR".into()),
            Some(e) => {
                let m = e["message"].as_str().unwrap_or("");
                expect(
                    m.contains(message),
                    format!("TRACE message {m:?} lacks {message:?}"),
                );
                if let Some(ft) = failure_type {
                    expect(
                        e["failure_type"] == ft,
                        format!("failure_type {} (want {ft})", e["failure_type"]),
                    );
                }
            }
        }
    }
    if !airbyte && exit == 1 {
        let stray = run.stdout.lines().find(|l| {
            let t = serde_json::from_str::<Value>(l)
                .map(|v| v["type"].clone())
                .unwrap_or_default();
            !(t == "SCHEMA" || t == "RECORD" || t == "STATE")
        });
        expect(stray.is_none(), format!("Singer stdout carries {stray:?}"));
    }
    wrong
}

fn args_for(row: &Value, kind: &str, f: &Files) -> Vec<String> {
    let mut args: Vec<String> = match kind {
        "check" => vec!["check".into(), "--config".into(), f.config.clone()],
        "read" => vec![
            "read".into(),
            "--config".into(),
            f.config.clone(),
            "--catalog".into(),
            f.catalog.clone(),
        ],
        "singer-read" => {
            let mut a = vec!["--config".to_string(), f.config.clone()];
            if let Some(c) = &f.singer_catalog {
                a.extend(["--catalog".to_string(), c.clone()]);
            }
            a
        }
        _ => row["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .unwrap_or("")
                            .replace("{CONFIG}", &f.config)
                            .replace("{CATALOG}", &f.catalog)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    if let (Some(st), "read" | "singer-read") = (&f.state, kind) {
        args.extend(["--state".to_string(), st.clone()]);
    }
    args
}

#[test]
fn every_bad_input_in_the_corpus_gets_its_exact_error_in_every_protocol() {
    let rows: Vec<Value> = CORPUS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line ({e}): {l}")))
        .collect();
    assert!(rows.len() >= 80, "the corpus holds {} rows", rows.len());
    let mut ids = std::collections::HashSet::new();
    let fake = Fake::start(&[]);
    let mut failures = Vec::new();
    let mut runs = 0;
    for row in &rows {
        let id = row["id"].as_str().expect("every row has an id");
        assert!(ids.insert(id.to_string()), "duplicate corpus id {id}");
        let s = Scratch::new(&format!("corpus-{id}"));
        let f = files(row, &fake, &s);
        for kind in row["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(Value::as_str)
        {
            let args = args_for(row, kind, &f);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = run(&argv);
            runs += 1;
            assert_no_secret(&run, TOKEN);
            for w in verify(row, kind, &run) {
                failures.push(format!("{id} [{kind}]: {w}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} corpus runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
