//! Issue 8, the whole account in one sync: with an account token the connector lists the
//! account's servers and reads every server stream once per server with that server's own
//! token. Through the real binary, both protocols, against a 3-server fake, compared with
//! the fake's truth of each server (`&server=ID`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use source_postmark::streams::Cursor;

use crate::support::*;

/// The fake's servers with `--servers 3` (docs/notes/fake.md).
const SERVERS: [u64; 3] = [1234567, 1235678, 1236789];
const NAMES: [&str; 3] = ["Acme Production", "Acme Staging", "Acme Client: Globex"];

/// The end of a read at [`NOW`]: 5 minutes before it.
const END: &str = "2026-11-20T11:55:00Z";
/// A second sync two hours after the first, and its end.
const LATER: &str = "2026-11-20T14:00:00Z";
const END2: &str = "2026-11-20T13:55:00Z";
/// The first sync's end minus the default 24 h lookback: where a second sync re-reads from.
const LOOKBACK: &str = "2026-11-19T11:55:00Z";

/// Streams whose key is unique across the account: it stays as it is in whole-account mode.
/// Every other server stream gets `ServerID` in front of its key.
const GLOBAL_KEY: [&str; 7] = [
    "messages_outbound",
    "messages_inbound",
    "bounces",
    "templates",
    "opens",
    "clicks",
    "message_events",
];

fn server_token(id: u64) -> String {
    if id == SERVERS[0] {
        TOKEN.to_string()
    } else {
        format!("fake-server-token-{id}")
    }
}

/// A small 3-server account, so that a sync of everything takes seconds.
fn small_account() -> Fake {
    Fake::start(&[
        "--servers",
        "3",
        "--outbound",
        "300",
        "--inbound",
        "40",
        "--bounces",
        "40",
        "--templates",
        "5",
        "--stats-days",
        "60",
        "--suppressions",
        "40",
    ])
}

/// A config with the account token and no server token, plus `extra`.
fn account_config(s: &Scratch, fake: &Fake, extra: Value) -> String {
    let mut c = json!({ "base_url": fake.url, "account_token": ACCOUNT_TOKEN });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    s.write_json("config.json", &c)
}

/// No server's token and not the account token, on stdout or stderr.
fn assert_no_token_anywhere(run: &Run, servers: &[u64]) {
    for id in servers {
        assert_no_secret(run, &server_token(*id));
    }
    assert_no_secret(run, ACCOUNT_TOKEN);
}

/// The key a whole-account sync declares for `stream`.
fn whole_key(stream: &str) -> Vec<&'static str> {
    let key = key_of(stream);
    if GLOBAL_KEY.contains(&stream) {
        key.to_vec()
    } else {
        std::iter::once("ServerID")
            .chain(key.iter().copied())
            .collect()
    }
}

fn is_incremental(stream: &str) -> bool {
    source_postmark::streams::find(stream).is_some_and(|s| s.is_incremental())
}

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The truth range of `stream` for a first sync at `now` with the default start: messages
/// and events from 45 days back, statistics from the day 365 days back, to 5 minutes
/// before `now`; none for full-refresh streams.
fn first_sync_range(stream: &str, now: &str) -> Option<(String, String)> {
    let now = at(now);
    let end = rfc(now - Duration::minutes(5));
    match source_postmark::streams::find(stream)?.cursor {
        Cursor::None => None,
        Cursor::Day(_) => Some((
            format!(
                "{}T00:00:00Z",
                (now - Duration::days(365)).format("%Y-%m-%d")
            ),
            end,
        )),
        _ => Some((rfc(now - Duration::days(45)), end)),
    }
}

/// The truth range of `stream` for a second sync ending at [`END2`] after one that ended
/// at [`END`]: the 24 h lookback for messages and events, the 7 stats-lookback days for
/// statistics, everything for full-refresh streams.
fn second_sync_range(stream: &str) -> Option<(String, String)> {
    match source_postmark::streams::find(stream)?.cursor {
        Cursor::None => None,
        Cursor::Day(_) => Some(("2026-11-13T00:00:00Z".into(), END2.into())),
        _ => Some((LOOKBACK.into(), END2.into())),
    }
}

/// Per stream, per `ServerID`, the keys (within a server) of the run's records. Every
/// record of a server stream must carry an integer `ServerID`.
fn keys_by_server(run: &Run) -> BTreeMap<String, BTreeMap<u64, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<u64, Vec<String>>> = BTreeMap::new();
    for (stream, records) in run.records() {
        if account_streams().contains(&stream.as_str()) {
            continue;
        }
        for r in records {
            let id = r["ServerID"]
                .as_u64()
                .unwrap_or_else(|| panic!("{stream}: a record without an integer ServerID: {r}"));
            out.entry(stream.clone())
                .or_default()
                .entry(id)
                .or_default()
                .push(record_key(&stream, &r));
        }
    }
    out
}

/// Every server stream in `streams` holds, for each of `servers`, exactly that server's
/// truth over `range(stream)` (records grouped by `ServerID`, compared by key), and no
/// record of any other server. The truth of each stream is never empty on all servers;
/// with `each_has_data`, on none of them (a first sync; a second sync's short lookback
/// may hold no inbound message or bounce on some server).
fn assert_each_server_matches(
    run: &Run,
    fake: &Fake,
    streams: &[&str],
    servers: &[u64],
    each_has_data: bool,
    range: impl Fn(&str, u64) -> Option<(String, String)>,
) {
    let got = keys_by_server(run);
    for stream in streams {
        let per = got.get(*stream).cloned().unwrap_or_default();
        let strangers: Vec<&u64> = per.keys().filter(|id| !servers.contains(id)).collect();
        assert!(
            strangers.is_empty(),
            "{stream}: records of servers {strangers:?}, expected only {servers:?}"
        );
        let mut total = 0;
        for &id in servers {
            let r = range(stream, id);
            let truth = fake.truth_on(
                id,
                stream,
                r.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            );
            assert!(
                !each_has_data || !truth.is_empty(),
                "{stream} of server {id}: the fake has data"
            );
            total += truth.len();
            let keys = per.get(&id).cloned().unwrap_or_default();
            assert_exactly(&format!("{stream} of server {id}"), &keys, &truth);
        }
        assert!(total > 0, "{stream}: the fake has data on some server");
    }
}

/// The account streams hold exactly the fake's account data.
fn assert_account_streams_complete(run: &Run, fake: &Fake) {
    for stream in account_streams() {
        let truth = fake.truth(stream, None);
        assert!(!truth.is_empty(), "{stream}: the fake has data");
        assert_exactly(stream, &run.keys(stream), &truth);
    }
}

/// The declared (whole-account) key of each server stream identifies each record: no two
/// records of a stream share it, across servers too.
fn assert_whole_keys_unique(run: &Run, streams: &[&str]) {
    let records = run.records();
    for stream in streams {
        let key = whole_key(stream);
        let mut seen = BTreeSet::new();
        for r in records.get(*stream).map(Vec::as_slice).unwrap_or(&[]) {
            let k = Value::Array(key.iter().map(|f| r[*f].clone()).collect()).to_string();
            assert!(seen.insert(k.clone()), "{stream}: key {k} repeats");
        }
    }
}

/// Airbyte stream statuses per stream, in order.
fn statuses(run: &Run) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in run.of_type("TRACE") {
        if t["trace"]["type"] == "STREAM_STATUS" {
            let st = &t["trace"]["stream_status"];
            out.entry(
                st["stream_descriptor"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default()
            .push(st["status"].as_str().unwrap_or("").to_string());
        }
    }
    out
}

fn assert_statuses(run: &Run, streams: &[&str], last: &str) {
    // At most one row estimate per stream, covering every server.
    let mut estimates: BTreeMap<String, u32> = BTreeMap::new();
    for t in run.of_type("TRACE") {
        if t["trace"]["type"] == "ESTIMATE" {
            let name = t["trace"]["estimate"]["name"].as_str().unwrap_or("");
            *estimates.entry(name.to_string()).or_default() += 1;
        }
    }
    assert!(
        estimates.values().all(|n| *n == 1),
        "one ESTIMATE per stream: {estimates:?}"
    );
    let got = statuses(run);
    for stream in streams {
        assert_eq!(
            got.get(*stream).cloned().unwrap_or_default(),
            vec!["STARTED", "RUNNING", last],
            "{stream}: one status sequence for all servers"
        );
    }
}

/// `{"<ID>": {"synced_until": ..}}` of one stream's state (Airbyte stream_state or a
/// Singer bookmark), asserting its whole-account shape.
fn per_server(stream: &str, state: &Value) -> BTreeMap<String, Value> {
    let servers = state["servers"]
        .as_object()
        .unwrap_or_else(|| panic!("{stream}: a whole-account state has 'servers': {state}"));
    servers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn synced_until(stream: &str, entry: &Value) -> String {
    entry["synced_until"]
        .as_str()
        .unwrap_or_else(|| panic!("{stream}: an entry without synced_until: {entry}"))
        .to_string()
}

fn airbyte_discover(cfg: &str) -> Value {
    let discover = run(&["discover", "--config", cfg]);
    assert_eq!(discover.code, 0, "{}", discover.stderr);
    assert_valid_airbyte(&discover);
    assert_no_token_anywhere(&discover, &SERVERS);
    discover.of_type("CATALOG")[0]["catalog"].clone()
}

/// A configured catalog of the discovered `only` streams: incremental where offered, with
/// the keys and cursors discover declared (what the platform sends).
fn configured(discovered: &Value, only: &[&str]) -> Value {
    let streams: Vec<Value> = discovered["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| only.contains(&s["name"].as_str().unwrap_or("")))
        .map(|s| {
            let incremental = s["supported_sync_modes"]
                .as_array()
                .is_some_and(|m| m.contains(&json!("incremental")));
            let mut c = json!({
                "stream": s,
                "sync_mode": if incremental { "incremental" } else { "full_refresh" },
                "destination_sync_mode": if incremental { "append_dedup" } else { "overwrite" },
                "primary_key": s["source_defined_primary_key"],
            });
            if incremental {
                c["cursor_field"] = s["default_cursor_field"].clone();
            }
            c
        })
        .collect();
    assert_eq!(streams.len(), only.len(), "discover offers {only:?}");
    json!({ "streams": streams })
}

fn airbyte_read_at(
    s: &Scratch,
    cfg: &str,
    catalog: &Value,
    state: Option<&Value>,
    now: &str,
) -> Run {
    let cat = s.write_json("catalog.json", catalog);
    let mut args = vec!["read", "--config", cfg, "--catalog", &cat];
    let st;
    if let Some(state) = state {
        st = s.write_json("state.json", state);
        args.extend(["--state", &st]);
    }
    run_at(&args, now, None)
}

/// Every record validates against the schema discover declared for its stream.
fn assert_records_match_discovered(run: &Run, discovered: &Value) {
    let schemas: HashMap<String, Value> = discovered["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["json_schema"].clone(),
            )
        })
        .collect();
    for (stream, records) in run.records() {
        let v = jsonschema::draft7::new(&schemas[&stream]).expect("schema compiles");
        for r in &records {
            let errors: Vec<String> = v.iter_errors(r).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{stream}: {errors:?}\n{r}");
        }
    }
}

fn is_integer_type(t: &Value) -> bool {
    t == "integer" || t.as_array().is_some_and(|a| a.contains(&json!("integer")))
}

fn server_streams_and(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = all_streams();
    v.extend_from_slice(extra);
    v
}

#[test]
fn with_only_an_account_token_an_airbyte_read_returns_every_stream_of_every_server_as_the_fake_has_it(
) {
    let fake = small_account();
    let s = Scratch::new("whole-airbyte");
    let cfg = account_config(
        &s,
        &fake,
        json!({ "message_events": true, "max_concurrency": 3 }),
    );
    let discovered = airbyte_discover(&cfg);
    let everything = server_streams_and(&account_streams());
    let read = airbyte_read_at(&s, &cfg, &configured(&discovered, &everything), None, NOW);
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert_valid_airbyte(&read);
    assert!(trace_errors(&read).is_empty(), "{:?}", trace_errors(&read));

    assert_each_server_matches(&read, &fake, &all_streams(), &SERVERS, true, |st, _| {
        first_sync_range(st, NOW)
    });
    assert_account_streams_complete(&read, &fake);
    assert_whole_keys_unique(&read, &all_streams());
    assert_records_match_discovered(&read, &discovered);
    assert_statuses(&read, &everything, "COMPLETE");

    // The STATE messages' recordCount adds up to the records emitted, per stream (the
    // platform checks it), counted once over all servers.
    let mut counted: BTreeMap<String, f64> = BTreeMap::new();
    for st in read.of_type("STATE") {
        let name = st["state"]["stream"]["stream_descriptor"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        *counted.entry(name).or_default() += st["state"]["sourceStats"]["recordCount"]
            .as_f64()
            .unwrap_or(0.0);
    }
    for (stream, records) in read.records() {
        assert_eq!(
            counted.get(&stream).copied().unwrap_or(0.0) as usize,
            records.len(),
            "{stream}: recordCount"
        );
    }
    assert_state_follows_last_record(&read, &all_streams());
    // State: one entry per server in every incremental stream, at the sync's end.
    let states = read.last_airbyte_states();
    for stream in all_streams().into_iter().filter(|s| is_incremental(s)) {
        let entries = per_server(stream, &states[stream]);
        let ids: Vec<String> = SERVERS.iter().map(u64::to_string).collect();
        assert_eq!(entries.keys().cloned().collect::<Vec<_>>(), ids, "{stream}");
        for (id, e) in &entries {
            assert!(e.get("in_progress").is_none(), "{stream} {id}: {e}");
            if first_sync_range(stream, NOW).is_some_and(|_| !stream.starts_with("stats_")) {
                assert_eq!(synced_until(stream, e), END, "{stream} {id}");
            }
        }
    }

    // Each server's data was asked with that server's own token, account data with the
    // account token; never both.
    let account_paths = ["/servers", "/domains", "/senders"];
    let mut asked: BTreeSet<u64> = BTreeSet::new();
    let requests = fake.requests();
    for r in &requests {
        let account = account_paths.contains(&r["path"].as_str().unwrap_or(""));
        assert_eq!(r["account_token"], account, "{r}");
        assert_eq!(r["server_token"], !account, "{r}");
        assert_ne!(r["status"], 401, "{r}");
        if !account {
            asked.insert(r["server"].as_u64().unwrap_or(0));
        }
    }
    assert_eq!(asked, SERVERS.into_iter().collect());
    // Servers overlap: their requests interleave (one after another would switch servers
    // twice in the request log).
    let order: Vec<&Value> = requests
        .iter()
        .filter(|r| r["server_token"] == true)
        .map(|r| &r["server"])
        .collect();
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches > 10, "{switches} switches between servers");
    // One pool: all servers together never exceed max_concurrency.
    let peak = fake.stats()["max_in_flight"].as_u64().unwrap();
    assert!(
        peak <= 3,
        "{peak} requests in flight with max_concurrency 3"
    );
    assert_no_token_anywhere(&read, &SERVERS);
}

#[test]
fn with_only_an_account_token_a_singer_sync_returns_every_stream_of_every_server_and_no_token() {
    let fake = small_account();
    let s = Scratch::new("whole-singer");
    let cfg = account_config(&s, &fake, json!({}));
    let sync = run(&["--config", &cfg]);
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    assert_each_server_matches(&sync, &fake, &streams(), &SERVERS, true, |st, _| {
        first_sync_range(st, NOW)
    });
    assert_account_streams_complete(&sync, &fake);
    assert_whole_keys_unique(&sync, &streams());

    // SCHEMA announces ServerID (an integer) and the whole-account key.
    for stream in streams() {
        let schema = sync
            .lines()
            .iter()
            .find(|m| m["type"] == "SCHEMA" && m["stream"] == stream)
            .cloned()
            .unwrap_or_else(|| panic!("SCHEMA of {stream}"));
        assert_eq!(
            schema["key_properties"],
            json!(whole_key(stream)),
            "{stream}"
        );
        assert!(
            is_integer_type(&schema["schema"]["properties"]["ServerID"]["type"]),
            "{stream}: {}",
            schema["schema"]["properties"]["ServerID"]
        );
    }
    let last = sync.of_type("STATE").pop().expect("a STATE");
    for stream in streams().into_iter().filter(|s| is_incremental(s)) {
        let entries = per_server(stream, &last["value"]["bookmarks"][stream]);
        assert_eq!(entries.len(), 3, "{stream}: {entries:?}");
    }
    let outbound = per_server(
        "messages_outbound",
        &last["value"]["bookmarks"]["messages_outbound"],
    );
    for id in SERVERS {
        assert_eq!(
            synced_until("messages_outbound", &outbound[&id.to_string()]),
            END
        );
    }
    assert_no_token_anywhere(&sync, &SERVERS);
}

#[test]
fn whole_account_discover_offers_every_server_stream_with_server_id_in_schema_and_key() {
    let fake = Fake::start(&["--servers", "3", "--outbound", "100"]);
    let s = Scratch::new("whole-discover");
    for extra in [json!({}), json!({ "server_token": TOKEN })] {
        let cfg = account_config(&s, &fake, extra.clone());
        let catalog = airbyte_discover(&cfg);
        let offered: BTreeSet<&str> = catalog_names(&catalog, "name").into_iter().collect();
        let expected: BTreeSet<&str> = server_streams_and(&account_streams()).into_iter().collect();
        assert_eq!(offered, expected, "{extra}");
        for st in catalog["streams"].as_array().unwrap() {
            let name = st["name"].as_str().unwrap();
            if account_streams().contains(&name) {
                assert_eq!(st["source_defined_primary_key"], json!([["ID"]]), "{name}");
                continue;
            }
            let key: Vec<Value> = whole_key(name).iter().map(|k| json!([k])).collect();
            assert_eq!(
                st["source_defined_primary_key"],
                json!(key),
                "{name} {extra}"
            );
            assert!(
                is_integer_type(&st["json_schema"]["properties"]["ServerID"]["type"]),
                "{name}: {}",
                st["json_schema"]["properties"]["ServerID"]
            );
        }

        let singer = run(&["--config", &cfg, "--discover"]);
        assert_eq!(singer.code, 0, "{}", singer.stderr);
        assert_no_token_anywhere(&singer, &SERVERS);
        let streams = singer.lines()[0]["streams"].as_array().unwrap().clone();
        assert_eq!(streams.len(), expected.len(), "{extra}");
        for st in streams {
            let name = st["tap_stream_id"].as_str().unwrap();
            if account_streams().contains(&name) {
                continue;
            }
            let key = json!(whole_key(name));
            assert_eq!(st["key_properties"], key, "{name}");
            let md = st["metadata"].as_array().unwrap();
            let top = md.iter().find(|m| m["breadcrumb"] == json!([])).unwrap();
            assert_eq!(top["metadata"]["table-key-properties"], key, "{name}");
            let sid = md
                .iter()
                .find(|m| m["breadcrumb"] == json!(["properties", "ServerID"]))
                .unwrap_or_else(|| panic!("{name}: metadata of ServerID"));
            if !GLOBAL_KEY.contains(&name) {
                assert_eq!(sid["metadata"]["inclusion"], "automatic", "{name}");
            }
            assert!(is_integer_type(
                &st["schema"]["properties"]["ServerID"]["type"]
            ));
        }
    }

    // With only a server token, discover is as before: the table's keys and schemas.
    let cfg = s.config(&fake, json!({}));
    let single = run(&["discover", "--config", &cfg]);
    assert_eq!(single.code, 0, "{}", single.stderr);
    let catalog = &single.of_type("CATALOG")[0]["catalog"];
    let names = catalog_names(catalog, "name");
    assert_eq!(names, all_streams());
    for st in catalog["streams"].as_array().unwrap() {
        let name = st["name"].as_str().unwrap();
        let key: Vec<Value> = key_of(name).iter().map(|k| json!([k])).collect();
        assert_eq!(st["source_defined_primary_key"], json!(key), "{name}");
        let spec = source_postmark::streams::find(name).unwrap();
        assert_eq!(st["json_schema"], spec.schema(), "{name}: schema unchanged");
    }
    let singer = run(&["--config", &cfg, "--discover"]);
    for st in singer.lines()[0]["streams"].as_array().unwrap() {
        let name = st["tap_stream_id"].as_str().unwrap();
        assert_eq!(st["key_properties"], json!(key_of(name)), "{name}");
    }
}

/// The incremental streams of the state tests, plus two full-refresh ones.
const STATE_STREAMS: [&str; 7] = [
    "messages_outbound",
    "messages_inbound",
    "bounces",
    "opens",
    "stats_outbound_daily",
    "templates",
    "suppressions",
];

#[test]
fn an_incremental_second_airbyte_sync_continues_each_server_from_its_own_cursor() {
    let fake = small_account();
    let s = Scratch::new("whole-incremental");
    let cfg = account_config(&s, &fake, json!({}));
    let catalog = configured(&airbyte_discover(&cfg), &STATE_STREAMS);
    let first = airbyte_read_at(&s, &cfg, &catalog, None, NOW);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = first.airbyte_state_file();
    let before = first.last_airbyte_states();

    // Between the syncs each server gets its own number of new rows.
    let mut new_rows: BTreeMap<(u64, &str), u32> = BTreeMap::new();
    for (i, id) in SERVERS.into_iter().enumerate() {
        let i = i as u32;
        for (stream, count, when) in [
            ("messages_outbound", 5 + 2 * i, "2026-11-20T12:30:00Z"),
            ("bounces", 3 + i, "2026-11-20T12:40:00Z"),
            ("opens", 4 + 3 * i, "2026-11-20T12:50:00Z"),
        ] {
            fake.arrive_on(id, stream, count, when);
            new_rows.insert((id, stream), count);
        }
    }
    let second = airbyte_read_at(&s, &cfg, &catalog, Some(&state), LATER);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_valid_airbyte(&second);
    assert_statuses(&second, &STATE_STREAMS, "COMPLETE");

    // Each server: its lookback through the new end, exactly (arrivals included, once).
    assert_each_server_matches(&second, &fake, &STATE_STREAMS, &SERVERS, false, |st, _| {
        second_sync_range(st)
    });
    let first_keys = keys_by_server(&first);
    let second_keys = keys_by_server(&second);
    for ((id, stream), count) in &new_rows {
        let arrived = fake.truth_on(*id, stream, Some((END, END2)));
        assert_eq!(arrived.len() as u32, *count, "{stream} of {id}: arrivals");
        let old: BTreeSet<&String> = first_keys[*stream][id].iter().collect();
        let now: Vec<&String> = second_keys[*stream][id].iter().collect();
        for k in &arrived {
            assert!(!old.contains(k), "{stream} of {id}: {k} before it arrived");
            assert_eq!(
                now.iter().filter(|x| **x == k).count(),
                1,
                "{stream} {id} {k}"
            );
        }
    }

    // State: per server, never behind the first sync; messages and events at the new end.
    let after = second.last_airbyte_states();
    for stream in STATE_STREAMS.into_iter().filter(|s| is_incremental(s)) {
        let b = per_server(stream, &before[stream]);
        let a = per_server(stream, &after[stream]);
        assert_eq!(a.len(), 3, "{stream}: {a:?}");
        for id in SERVERS.map(|i| i.to_string()) {
            let (was, is) = (synced_until(stream, &b[&id]), synced_until(stream, &a[&id]));
            assert!(is >= was, "{stream} {id}: {is} < {was}");
            if !stream.starts_with("stats_") {
                assert_eq!(was, END, "{stream} {id}");
                assert_eq!(is, END2, "{stream} {id}");
            }
        }
    }
    assert_no_token_anywhere(&second, &SERVERS);
}

/// A Singer catalog from `--discover` with only `streams` selected.
fn singer_catalog(cfg: &str, streams: &[&str]) -> Value {
    let discover = run(&["--config", cfg, "--discover"]);
    assert_eq!(discover.code, 0, "{}", discover.stderr);
    let mut catalog = discover.lines()[0].clone();
    for st in catalog["streams"].as_array_mut().unwrap() {
        let selected = streams.contains(&st["tap_stream_id"].as_str().unwrap_or(""));
        for md in st["metadata"].as_array_mut().unwrap() {
            if md["breadcrumb"] == json!([]) {
                md["metadata"]["selected"] = json!(selected);
            }
        }
    }
    catalog
}

fn singer_sync(s: &Scratch, cfg: &str, catalog: &Value, state: Option<&Value>, now: &str) -> Run {
    let cat = s.write_json("catalog.json", catalog);
    let mut args = vec!["--config", cfg, "--catalog", &cat];
    let st;
    if let Some(state) = state {
        st = s.write_json("state.json", state);
        args.extend(["--state", &st]);
    }
    run_at(&args, now, None)
}

#[test]
fn a_server_added_between_singer_syncs_is_read_from_the_start_date_while_the_others_continue() {
    let fake = small_account();
    let s = Scratch::new("whole-added");
    let start = "2026-10-10T12:00:00Z";
    let cfg = account_config(&s, &fake, json!({ "start_date": start }));
    let catalog = singer_catalog(&cfg, &STATE_STREAMS);
    let first = singer_sync(&s, &cfg, &catalog, None, NOW);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = first.of_type("STATE").pop().expect("a STATE")["value"].clone();

    let added = fake.add_server();
    assert!(!SERVERS.contains(&added));
    fake.arrive_on(SERVERS[1], "messages_outbound", 6, "2026-11-20T12:30:00Z");
    let second = singer_sync(&s, &cfg, &catalog, Some(&state), LATER);
    assert_eq!(second.code, 0, "{}", second.stderr);

    let all: Vec<u64> = SERVERS.iter().copied().chain([added]).collect();
    assert_each_server_matches(&second, &fake, &STATE_STREAMS, &all, false, |st, id| {
        if id != added {
            return second_sync_range(st);
        }
        // The new server: everything from the start date (statistics from its day).
        match source_postmark::streams::find(st)?.cursor {
            Cursor::None => None,
            Cursor::Day(_) => Some(("2026-10-10T00:00:00Z".into(), END2.into())),
            _ => Some((start.into(), END2.into())),
        }
    });
    let bookmarks = &second.of_type("STATE").pop().expect("a STATE")["value"]["bookmarks"];
    for stream in STATE_STREAMS.into_iter().filter(|s| is_incremental(s)) {
        let entries = per_server(stream, &bookmarks[stream]);
        let ids: BTreeSet<String> = all.iter().map(u64::to_string).collect();
        assert_eq!(
            entries.keys().cloned().collect::<BTreeSet<_>>(),
            ids,
            "{stream}"
        );
        if !stream.starts_with("stats_") {
            for e in entries.values() {
                assert_eq!(synced_until(stream, e), END2, "{stream}");
            }
        }
    }
    assert_no_token_anywhere(&second, &all);
    assert_no_secret(&second, &server_token(added));
}

/// The TRACE ERRORs (message and internal message) that name `stream`.
fn errors_of_stream(run: &Run, stream: &str) -> Vec<String> {
    trace_errors(run)
        .into_iter()
        .filter(|e| {
            e["stream_descriptor"]["name"] == stream
                || e["message"].as_str().unwrap_or("").contains(stream)
        })
        .map(|e| format!("{} {}", e["message"], e["internal_message"]))
        .collect()
}

#[test]
fn a_revoked_server_token_fails_only_that_server_in_an_airbyte_sync_and_the_others_advance() {
    let fake = small_account();
    let s = Scratch::new("whole-revoked");
    let cfg = account_config(&s, &fake, json!({ "message_events": true }));
    let everything = server_streams_and(&["servers", "domains"]);
    let catalog = configured(&airbyte_discover(&cfg), &everything);
    let first = airbyte_read_at(&s, &cfg, &catalog, None, NOW);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = first.airbyte_state_file();
    let before = first.last_airbyte_states();

    let (revoked, name) = (SERVERS[1], NAMES[1]);
    fake.revoke(revoked);
    for id in SERVERS {
        fake.arrive_on(id, "messages_outbound", 4, "2026-11-20T12:30:00Z");
    }
    let second = airbyte_read_at(&s, &cfg, &catalog, Some(&state), LATER);
    assert_ne!(second.code, 0, "the exit says a server failed");
    assert_valid_airbyte(&second);

    // Every server stream: an error naming the server, INCOMPLETE once; the others' data.
    for stream in all_streams() {
        let errors = errors_of_stream(&second, stream);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&revoked.to_string()) && e.contains(name)),
            "{stream}: an error naming server {revoked} \"{name}\"; got {errors:?}"
        );
    }
    assert_statuses(&second, &all_streams(), "INCOMPLETE");
    assert_statuses(&second, &["servers", "domains"], "COMPLETE");
    let others = [SERVERS[0], SERVERS[2]];
    assert_each_server_matches(&second, &fake, &all_streams(), &others, false, |st, _| {
        second_sync_range(st)
    });
    assert_account_streams_complete_for(&second, &fake, &["servers", "domains"]);

    // State: the others advance, the revoked server's entry stays where it was.
    let after = second.last_airbyte_states();
    for stream in all_streams().into_iter().filter(|s| is_incremental(s)) {
        let b = per_server(stream, &before[stream]);
        let a = per_server(stream, &after[stream]);
        let id = revoked.to_string();
        assert_eq!(
            a.get(&id),
            b.get(&id),
            "{stream}: the failed server's state is kept"
        );
        if !stream.starts_with("stats_") {
            for other in others {
                assert_eq!(
                    synced_until(stream, &a[&other.to_string()]),
                    END2,
                    "{stream}"
                );
            }
        }
    }
    assert_no_token_anywhere(&second, &SERVERS);
}

fn assert_account_streams_complete_for(run: &Run, fake: &Fake, streams: &[&str]) {
    for stream in streams {
        assert_exactly(stream, &run.keys(stream), &fake.truth(stream, None));
    }
}

#[test]
fn a_revoked_server_token_fails_a_singer_sync_naming_the_server_while_the_others_are_complete() {
    let fake = small_account();
    let s = Scratch::new("whole-revoked-singer");
    let (revoked, name) = (SERVERS[2], NAMES[2]);
    fake.revoke(revoked);
    let cfg = account_config(&s, &fake, json!({}));
    let sync = run(&["--config", &cfg]);
    assert_ne!(sync.code, 0, "the exit says a server failed");
    // One error line per stream naming the server (Singer: level CRITICAL or ERROR).
    let id = revoked.to_string();
    let errors = sync
        .stderr
        .lines()
        .filter(|l| l.starts_with("CRITICAL") || l.starts_with("ERROR"))
        .filter(|l| l.contains(&id) && l.contains(name))
        .count();
    assert!(
        errors >= streams().len(),
        "{errors} error lines naming server {revoked} \"{name}\":\n{}",
        sync.stderr
    );
    // And the end-of-sync summary says which streams of that server failed.
    for stream in streams() {
        assert!(
            sync.stderr.lines().any(|l| l.starts_with(stream)
                && l.contains(&id)
                && l.to_lowercase().contains("failed")),
            "{stream} of server {revoked} is reported failed:\n{}",
            sync.stderr
        );
    }
    let others = [SERVERS[0], SERVERS[1]];
    assert_each_server_matches(&sync, &fake, &streams(), &others, true, |st, _| {
        first_sync_range(st, NOW)
    });
    assert_account_streams_complete(&sync, &fake);
    let bookmarks = &sync.of_type("STATE").pop().expect("a STATE")["value"]["bookmarks"];
    for stream in streams().into_iter().filter(|s| is_incremental(s)) {
        let entries = per_server(stream, &bookmarks[stream]);
        for id in others {
            assert!(
                entries.contains_key(&id.to_string()),
                "{stream}: {entries:?}"
            );
        }
        // No entry, or one that did not advance to the end: the next sync retries it.
        if let Some(e) = entries.get(&revoked.to_string()) {
            assert!(
                e.get("in_progress").is_some()
                    || stream.starts_with("stats_")
                    || synced_until(stream, e).as_str() < END,
                "{stream}: {e}"
            );
        }
    }
    assert_no_token_anywhere(&sync, &SERVERS);
}

#[test]
fn old_single_server_state_with_only_a_server_token_keeps_working_as_before() {
    let fake = small_account();
    let s = Scratch::new("whole-old-state");
    let bookmark = "2026-11-19T00:00:00Z";
    // Airbyte: a legacy state object.
    let state = json!({ "messages_outbound": { "synced_until": bookmark } });
    let read = airbyte_read(
        &fake,
        &s,
        &["messages_outbound", "bounces"],
        json!({}),
        Some(&state),
        NOW,
    );
    assert_eq!(read.code, 0, "{}", read.stderr);
    let since = ("2026-11-18T00:00:00Z", END);
    assert_exactly(
        "messages_outbound",
        &read.keys("messages_outbound"),
        &fake.truth_on(SERVERS[0], "messages_outbound", Some(since)),
    );
    assert_exactly(
        "bounces",
        &read.keys("bounces"),
        &fake.truth_on(SERVERS[0], "bounces", Some(default_range())),
    );
    let records = read.records();
    assert!(records["messages_outbound"]
        .iter()
        .all(|r| r.get("ServerID").is_none()));
    let states = read.last_airbyte_states();
    for stream in ["messages_outbound", "bounces"] {
        assert_eq!(states[stream], json!({ "synced_until": END }), "{stream}");
    }
    let req_servers: BTreeSet<u64> = fake
        .requests()
        .iter()
        .map(|r| r["server"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(req_servers, [SERVERS[0]].into_iter().collect());

    // Singer: bookmarks of the same shape.
    let cfg = s.config(&fake, json!({}));
    let mut catalog: Value =
        serde_json::from_str(include_str!("../../catalogs/singer_catalog.json")).unwrap();
    catalog["streams"]
        .as_array_mut()
        .unwrap()
        .retain(|st| st["tap_stream_id"] == "messages_outbound");
    let sync = singer_sync(
        &s,
        &cfg,
        &catalog,
        Some(&json!({ "bookmarks": state })),
        NOW,
    );
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    assert_exactly(
        "messages_outbound",
        &sync.keys("messages_outbound"),
        &fake.truth_on(SERVERS[0], "messages_outbound", Some(since)),
    );
    let last = sync.of_type("STATE").pop().expect("a STATE");
    assert_eq!(
        last["value"]["bookmarks"]["messages_outbound"],
        json!({ "synced_until": END })
    );
}

/// An Airbyte per-stream state whose entries are `entries` for each of `streams`.
fn per_server_state(streams: &[&str], entries: Value) -> Value {
    Value::Array(
        streams
            .iter()
            .map(|s| {
                json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": s},
                       "stream_state": {"servers": entries.clone()}}})
            })
            .collect(),
    )
}

#[test]
fn a_state_entry_of_a_server_the_account_no_longer_has_is_carried_over_without_error() {
    let fake = small_account();
    let s = Scratch::new("whole-removed");
    let cfg = account_config(&s, &fake, json!({}));
    let streams = ["messages_outbound", "bounces"];
    let catalog = configured(&airbyte_discover(&cfg), &streams);
    let gone = json!({ "synced_until": "2026-11-01T00:00:00Z" });
    let state = per_server_state(
        &streams,
        json!({ "7654321": gone, "1234567": { "synced_until": "2026-11-19T00:00:00Z" } }),
    );
    let read = airbyte_read_at(&s, &cfg, &catalog, Some(&state), NOW);
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert!(trace_errors(&read).is_empty(), "{:?}", trace_errors(&read));
    assert_statuses(&read, &streams, "COMPLETE");
    // The server with an entry continues from it; those without start at start_date.
    assert_each_server_matches(&read, &fake, &streams, &SERVERS, false, |st, id| {
        if id == SERVERS[0] {
            Some(("2026-11-18T00:00:00Z".into(), END.into()))
        } else {
            first_sync_range(st, NOW)
        }
    });
    let states = read.last_airbyte_states();
    for stream in streams {
        let entries = per_server(stream, &states[stream]);
        assert_eq!(
            entries.get("7654321"),
            Some(&gone),
            "{stream}: carried over"
        );
        for id in SERVERS {
            assert_eq!(
                synced_until(stream, &entries[&id.to_string()]),
                END,
                "{stream}"
            );
        }
    }
    assert_no_token_anywhere(&read, &SERVERS);
}

#[test]
fn a_sync_of_selected_servers_reads_only_those_and_keeps_the_state_of_the_others() {
    let fake = small_account();
    let s = Scratch::new("whole-selected");
    let cfg = account_config(
        &s,
        &fake,
        json!({ "servers": [SERVERS[0].to_string(), NAMES[2]] }),
    );
    let streams = ["messages_outbound", "webhooks"];
    let catalog = configured(&airbyte_discover(&cfg), &streams);
    let kept = json!({ "synced_until": "2026-11-10T00:00:00Z" });
    let state = per_server_state(&["messages_outbound"], json!({ "1235678": kept }));
    let read = airbyte_read_at(&s, &cfg, &catalog, Some(&state), NOW);
    assert_eq!(read.code, 0, "{}", read.stderr);
    let selected = [SERVERS[0], SERVERS[2]];
    assert_each_server_matches(&read, &fake, &streams, &selected, true, |st, _| {
        first_sync_range(st, NOW)
    });
    let entries = per_server(
        "messages_outbound",
        &read.last_airbyte_states()["messages_outbound"],
    );
    assert_eq!(
        entries.get("1235678"),
        Some(&kept),
        "not selected: carried over"
    );
    for id in selected {
        assert_eq!(
            synced_until("messages_outbound", &entries[&id.to_string()]),
            END
        );
    }
    assert!(fake
        .requests()
        .iter()
        .all(|r| r["server"] != json!(SERVERS[1])));
    assert_no_token_anywhere(&read, &SERVERS);
}

#[test]
fn a_single_server_state_is_applied_to_no_server_in_whole_account_mode() {
    let fake = small_account();
    let s = Scratch::new("whole-old-state-account");
    let cfg = account_config(&s, &fake, json!({}));
    let streams = ["messages_outbound", "bounces"];
    let catalog = configured(&airbyte_discover(&cfg), &streams);
    let old = json!({ "synced_until": "2026-11-19T00:00:00Z" });
    let state = Value::Array(
        streams
            .iter()
            .map(|s| {
                json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": s},
                       "stream_state": old}})
            })
            .collect(),
    );
    let read = airbyte_read_at(&s, &cfg, &catalog, Some(&state), NOW);
    assert_eq!(read.code, 0, "{}", read.stderr);
    // Every server starts at start_date (README: nothing is lost).
    assert_each_server_matches(&read, &fake, &streams, &SERVERS, true, |st, _| {
        first_sync_range(st, NOW)
    });
    let states = read.last_airbyte_states();
    for stream in streams {
        let entries = per_server(stream, &states[stream]);
        assert_eq!(entries.len(), 3, "{stream}: {entries:?}");
        for e in entries.values() {
            assert_eq!(synced_until(stream, e), END, "{stream}");
        }
    }
}

/// `(path, query)` of every API request the fake answered for `server`, sorted.
fn requests_of(fake: &Fake, server: u64) -> Vec<String> {
    let mut out: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r["server"] == json!(server) && r["server_token"] == true)
        .map(|r| format!("{} {}", r["path"], r["query"]))
        .collect();
    out.sort();
    out
}

#[test]
fn each_server_costs_exactly_the_requests_of_a_single_server_read_of_it() {
    let fake = small_account();
    let s = Scratch::new("whole-cost");
    let single = run(&["--config", &s.config(&fake, json!({}))]);
    assert_eq!(single.code, 0, "{}", single.stderr);
    let alone = requests_of(&fake, SERVERS[0]);
    assert!(alone.len() > 20, "{alone:?}");

    let fake = small_account();
    let cfg = account_config(&s, &fake, json!({}));
    let whole = run(&["--config", &cfg]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert_eq!(requests_of(&fake, SERVERS[0]), alone);
    // The account part: one page of the server list (and one of each account stream).
    let listing = fake
        .requests()
        .iter()
        .filter(|r| r["path"] == "/servers")
        .count();
    assert!(listing <= 2, "{listing} requests of /servers");
    for id in &SERVERS[1..] {
        let n = requests_of(&fake, *id).len();
        assert!(n >= alone.len() / 2, "server {id}: {n} requests");
    }
}

#[test]
fn a_killed_whole_account_sync_resumes_each_server_from_its_checkpoint_without_loss() {
    let fake = Fake::start(&["--servers", "3", "--outbound", "30000", "--latency-ms", "5"]);
    let s = Scratch::new("whole-resume");
    // Both tokens: whole-account mode all the same (the reads use the listed tokens).
    let extra = json!({ "account_token": ACCOUNT_TOKEN, "max_concurrency": 2 });
    let stream = ["messages_outbound"];
    let first = airbyte_read_streaming(&fake, &s, &stream, extra.clone(), None, NOW, |line| {
        !(line.starts_with("{\"type\":\"STATE\"") && line.contains("\"in_progress\":true"))
    });
    assert_eq!(first.code, -1, "the sync was killed mid-way");
    let state = first.airbyte_state_file();
    let checkpoint = per_server(
        "messages_outbound",
        &state[0]["stream"]["stream_state"].clone(),
    );
    assert!(
        checkpoint.values().any(|e| e["in_progress"] == true),
        "{checkpoint:?}"
    );

    let second = airbyte_read(&fake, &s, &stream, extra, Some(&state), NOW);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let (a, b) = (keys_by_server(&first), keys_by_server(&second));
    for id in SERVERS {
        let truth = fake.truth_on(id, "messages_outbound", Some(default_range()));
        let got: BTreeSet<&String> = a["messages_outbound"]
            .get(&id)
            .into_iter()
            .chain(b["messages_outbound"].get(&id))
            .flatten()
            .collect();
        let missing: Vec<&String> = truth.iter().filter(|k| !got.contains(k)).take(5).collect();
        assert!(missing.is_empty(), "server {id}: lost {missing:?}");
        assert_eq!(got.len(), truth.len(), "server {id}: nothing extra");
        // A server with a checkpoint re-reads nothing before it.
        if let Some(c) = checkpoint.get(&id.to_string()) {
            let until = synced_until("messages_outbound", c);
            let before = fake.truth_on(id, "messages_outbound", Some((default_range().0, &until)));
            let resumed: BTreeSet<&String> = b["messages_outbound"]
                .get(&id)
                .into_iter()
                .flatten()
                .collect();
            let again: Vec<&String> = before
                .iter()
                .filter(|k| resumed.contains(k))
                .take(5)
                .collect();
            assert!(
                again.is_empty(),
                "server {id}: re-read before {until}: {again:?}"
            );
        }
    }
    let entries = per_server(
        "messages_outbound",
        &second.last_airbyte_states()["messages_outbound"],
    );
    for id in SERVERS {
        assert_eq!(
            entries[&id.to_string()],
            json!({ "synced_until": END }),
            "server {id}"
        );
    }
}

#[test]
fn a_server_token_revoked_during_the_sync_fails_that_server_only_and_keeps_what_it_read() {
    let fake = Fake::start(&["--servers", "3", "--outbound", "6000", "--latency-ms", "3"]);
    let s = Scratch::new("whole-revoked-midway");
    let extra = json!({ "account_token": ACCOUNT_TOKEN, "max_concurrency": 2 });
    let (victim, name) = (SERVERS[1], NAMES[1]);
    let marker = format!("\"ServerID\":{victim}");
    let mut revoked = false;
    let stream = ["messages_outbound"];
    let run = airbyte_read_streaming(&fake, &s, &stream, extra, None, NOW, |line| {
        // The token is rotated once the first of the server's records is out.
        if !revoked && line.contains(&marker) {
            fake.revoke(victim);
            revoked = true;
        }
        true
    });
    assert!(revoked, "the server's records started");
    assert_ne!(run.code, 0, "the exit says a server failed");
    let errors = errors_of_stream(&run, "messages_outbound");
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&victim.to_string()) && e.contains(name)),
        "{errors:?}"
    );
    assert_statuses(&run, &stream, "INCOMPLETE");
    let others = [SERVERS[0], SERVERS[2]];
    let got = keys_by_server(&run);
    let per = &got["messages_outbound"];
    for id in others {
        let truth = fake.truth_on(id, "messages_outbound", Some(default_range()));
        assert_exactly(&format!("server {id}"), &per[&id], &truth);
    }
    // What the failed server emitted before its token was refused is its own, once each.
    let truth: BTreeSet<String> = fake
        .truth_on(victim, "messages_outbound", Some(default_range()))
        .into_iter()
        .collect();
    let partial = &per[&victim];
    assert!(partial.len() < truth.len(), "the server did fail mid-way");
    assert!(partial.iter().all(|k| truth.contains(k)));
    assert_eq!(
        partial.iter().collect::<BTreeSet<_>>().len(),
        partial.len(),
        "no duplicate"
    );
    let entries = per_server(
        "messages_outbound",
        &run.last_airbyte_states()["messages_outbound"],
    );
    for id in others {
        assert_eq!(
            entries[&id.to_string()],
            json!({ "synced_until": END }),
            "{id}"
        );
    }
    // The failed server: no entry, or a checkpoint that a resumed sync continues from.
    if let Some(e) = entries.get(&victim.to_string()) {
        assert_eq!(e["in_progress"], true, "{e}");
        assert!(synced_until("messages_outbound", e).as_str() < END, "{e}");
    }
    assert_no_token_anywhere(&run, &SERVERS);
}
