//! PostgreSQL for real: the connector's Singer output piped into `meltanolabs-target-postgres`
//! (the target Meltano Hub installs for `target-postgres`) and a real PostgreSQL server, a
//! full sync and then an incremental one, checked with SQL against the fake's truth.
//!
//! `scripts/ci/singer.sh` starts the server and exports `SOURCE_POSTMARK_PG_HOST`, `_PORT` and
//! `_USER`; ignored by default (see `tools.rs`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::DateTime;
use serde_json::{json, Value};

use crate::support::*;
use crate::tools::*;

struct Pg {
    host: String,
    port: String,
    user: String,
    db: String,
}

impl Pg {
    /// A fresh database on the server `scripts/ci/singer.sh` started.
    fn new(name: &str) -> Pg {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!(
                    "{k} is not set: run `bash scripts/ci/singer.sh`, which starts PostgreSQL and runs this test"
                )
            })
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut pg = Pg {
            host: var("SOURCE_POSTMARK_PG_HOST"),
            port: var("SOURCE_POSTMARK_PG_PORT"),
            user: var("SOURCE_POSTMARK_PG_USER"),
            db: "postgres".into(),
        };
        let db = format!(
            "{name}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        pg.sql(&format!("CREATE DATABASE {db}"));
        pg.db = db;
        pg
    }

    /// Runs SQL through psql; rows as `|`-separated lines.
    fn sql(&self, sql: &str) -> Vec<String> {
        let conn = format!(
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.user, self.db
        );
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", &conn, "-c", sql])
            .output()
            .expect("psql (installed with PostgreSQL) on PATH");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn one(&self, sql: &str) -> String {
        self.sql(sql).into_iter().next().unwrap_or_default()
    }

    fn target_config(&self, s: &Scratch) -> String {
        s.write_json(
            "target-postgres.json",
            &json!({"host": self.host, "port": self.port.parse::<u16>().unwrap_or(5432),
                    "user": self.user, "password": "", "database": self.db,
                    "default_target_schema": "postmark"}),
        )
    }
}

/// Pipes Singer messages into target-postgres; returns the last STATE it echoed.
fn load(target_cfg: &str, singer: &str) -> Value {
    let target = venv_tool(".venv-target-postgres", "target-postgres");
    let mut child = Command::new(target)
        .args(["--config", target_cfg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start target-postgres");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = singer.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("target-postgres");
    writer
        .join()
        .expect("writer")
        .expect("feed target-postgres");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "target-postgres failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.contains("bookmarks"));
    serde_json::from_str(last.unwrap_or_else(|| panic!("no state echoed:\n{stdout}\n{stderr}")))
        .expect("state JSON")
}

/// The column of `table` that holds field `field` (targets may snake_case names).
fn column(pg: &Pg, table: &str, field: &str) -> (String, String) {
    let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
    pg.sql(&format!(
        "SELECT column_name, udt_name FROM information_schema.columns \
         WHERE table_schema = 'postmark' AND table_name = '{table}'"
    ))
    .into_iter()
    .filter_map(|l| {
        let (c, t) = l.split_once('|')?;
        (norm(c) == norm(field)).then(|| (c.to_string(), t.to_string()))
    })
    .next()
    .unwrap_or_else(|| panic!("no column for {table}.{field}"))
}

fn epoch_micros(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .timestamp_micros()
}

/// Every table holds exactly the truth's keys, each once (the five core streams, key by key),
/// or exactly as many rows as the truth (every other stream: their keys are composite and
/// typed by the target); rows of full-table streams that ACTIVATE_VERSION marked deleted
/// are not counted.
fn assert_tables_hold_the_truth(pg: &Pg, truth: &dyn Fn(&str) -> Vec<String>) {
    for stream in streams().into_iter().filter(|s| !CORE_STREAMS.contains(s)) {
        let full_table = source_postmark::streams::find(stream)
            .is_some_and(|s| s.cursor == source_postmark::streams::Cursor::None);
        let live = if full_table {
            " WHERE _sdc_deleted_at IS NULL"
        } else {
            ""
        };
        let rows = pg.one(&format!("SELECT count(*) FROM postmark.{stream}{live}"));
        let want = truth(stream).len();
        assert!(want > 0, "{stream}: the fake has rows");
        assert_eq!(rows, want.to_string(), "rows of table {stream}");
    }
    for stream in CORE_STREAMS {
        let (key, _) = column(pg, stream, key_of(stream)[0]);
        let live = if stream == "templates" || stream == "message_streams" {
            " WHERE _sdc_deleted_at IS NULL"
        } else {
            ""
        };
        let keys = pg.sql(&format!("SELECT \"{key}\" FROM postmark.{stream}{live}"));
        assert_exactly(stream, &keys, &truth(stream));
    }
}

#[test]
#[ignore = "needs PostgreSQL and target-postgres (.venv-target-postgres); scripts/ci/singer.sh runs it"]
fn a_full_then_an_incremental_sync_load_postgres_with_the_truth_and_sensible_types() {
    let pg = Pg::new("postmark");
    let fake = Fake::start(&[]);
    let s = Scratch::new("postgres");
    let cfg = s.config(&fake, json!({}));
    let target_cfg = pg.target_config(&s);

    // 1. A full sync of every stream.
    let first = run(&["--config", &cfg]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = load(&target_cfg, &first.stdout);
    assert_tables_hold_the_truth(&pg, &|stream| truth_of(&fake, stream));

    // Types a warehouse user expects, and values that survived the trip.
    for (table, field, want) in [
        ("messages_outbound", "ReceivedAt", "timestamp"),
        ("messages_inbound", "ReceivedBefore", "timestamp"),
        ("bounces", "BouncedAt", "timestamp"),
        ("message_streams", "CreatedAt", "timestamp"),
        ("bounces", "ID", "int8"),
        ("bounces", "TypeCode", "int8"),
        ("templates", "TemplateId", "int8"),
        ("messages_outbound", "Metadata", "jsonb"),
        ("messages_inbound", "FromFull", "jsonb"),
        (
            "message_streams",
            "SubscriptionManagementConfiguration",
            "jsonb",
        ),
        // Arrays become PostgreSQL arrays: of text, or of jsonb for arrays of objects.
        ("messages_outbound", "Recipients", "_text"),
        ("messages_outbound", "To", "_jsonb"),
        ("bounces", "Inactive", "bool"),
    ] {
        let (_, ty) = column(&pg, table, field);
        assert_eq!(ty, want, "the type of {table}.{field}");
    }
    let records = first.records();
    let bounce = records["bounces"]
        .iter()
        .find(|b| b["TypeCode"].is_i64() && b["BouncedAt"].is_string())
        .expect("a bounce with a type code");
    let (id, at, code) = (
        column(&pg, "bounces", "ID").0,
        column(&pg, "bounces", "BouncedAt").0,
        column(&pg, "bounces", "TypeCode").0,
    );
    let row = pg.one(&format!(
        "SELECT (extract(epoch from \"{at}\") * 1000000)::bigint, \"{code}\" FROM postmark.bounces WHERE \"{id}\" = {}",
        bounce["ID"]
    ));
    assert_eq!(
        row,
        format!(
            "{}|{}",
            epoch_micros(bounce["BouncedAt"].as_str().unwrap()),
            bounce["TypeCode"]
        ),
        "the UTC instant and the count of {bounce}"
    );
    let message = records["messages_outbound"]
        .iter()
        .find(|m| m["Metadata"].as_object().is_some_and(|o| !o.is_empty()))
        .expect("a message with metadata");
    let (key, meta, received) = (
        column(&pg, "messages_outbound", "MessageID").0,
        column(&pg, "messages_outbound", "Metadata").0,
        column(&pg, "messages_outbound", "ReceivedAt").0,
    );
    let row = pg.one(&format!(
        "SELECT \"{meta}\"::text, (extract(epoch from \"{received}\") * 1000000)::bigint \
         FROM postmark.messages_outbound WHERE \"{key}\" = '{}'",
        message["MessageID"].as_str().unwrap()
    ));
    let (meta_text, micros) = row.rsplit_once('|').expect("two columns");
    assert_eq!(
        serde_json::from_str::<Value>(meta_text).unwrap(),
        message["Metadata"]
    );
    assert_eq!(
        micros.parse::<i64>().unwrap(),
        epoch_micros(message["ReceivedAt"].as_str().unwrap())
    );

    // 2. Between the syncs: new rows arrive and a template is deleted in Postmark.
    let deleted = fake.truth("templates", None)[3].clone();
    let url = format!("{}/__fake/delete-template?id={deleted}", fake.url);
    ureq::post(&url).send_empty().expect("delete a template");
    fake.arrive("messages_outbound", 40, "2026-11-20T12:30:00Z");
    fake.arrive("messages_inbound", 3, "2026-11-20T12:40:00Z");
    fake.arrive("bounces", 4, "2026-11-20T12:50:00Z");

    // 3. The incremental sync two hours later, from the state the target echoed.
    let now2 = "2026-11-20T14:00:00Z";
    let state_file = s.write_json("state.json", &state);
    let second = run_at(&["--config", &cfg, "--state", &state_file], now2, None);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let before: std::collections::HashSet<String> =
        first.keys("messages_outbound").into_iter().collect();
    let repeats = second
        .keys("messages_outbound")
        .iter()
        .filter(|k| before.contains(*k))
        .count();
    let last_day = fake.truth(
        "messages_outbound",
        Some(("2026-11-19T11:55:00Z", "2026-11-20T11:55:00Z")),
    );
    assert!(
        repeats == last_day.len() && repeats > 0,
        "the lookback re-reads the last day: {repeats} repeats of {}",
        last_day.len()
    );
    load(&target_cfg, &second.stdout);

    let range = ("2026-10-06T12:00:00Z", "2026-11-20T13:55:00Z");
    assert_tables_hold_the_truth(&pg, &|stream| {
        use source_postmark::streams::{find, Cursor};
        match find(stream).map(|s| s.cursor) {
            Some(Cursor::None) => fake.truth(stream, None),
            Some(Cursor::Day(_)) => fake.truth(stream, Some((STATS_START, range.1))),
            _ => fake.truth(stream, Some(range)),
        }
    });
    let (tid, _) = column(&pg, "templates", "TemplateId");
    assert_eq!(
        pg.one(&format!(
            "SELECT _sdc_deleted_at IS NOT NULL FROM postmark.templates WHERE \"{tid}\" = {deleted}"
        )),
        "t",
        "the deleted template is marked deleted by ACTIVATE_VERSION"
    );
    assert_eq!(
        pg.one("SELECT count(*) FROM postmark.templates WHERE _sdc_deleted_at IS NOT NULL"),
        "1",
        "only the deleted template"
    );
}
