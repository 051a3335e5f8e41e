//! Incoming and outgoing state.
//!
//! One stream-state shape serves both protocols:
//!
//! ```json
//! {"synced_until": "2026-11-20T11:55:00Z"}
//! {"synced_until": "2026-11-19T00:00:00Z", "in_progress": true}
//! ```
//!
//! `synced_until` means: every record whose time (ReceivedAt, BouncedAt, or for inbound the
//! receive time Postmark filters on) is before this instant has been emitted. It is always the
//! end of a completed window, never a record's value, so it is the same for all three
//! time-based streams. `in_progress` marks a checkpoint taken during a sync: a run resumed
//! from it continues where the last one stopped without re-reading the lookback window.
//!
//! Accepted input: an Airbyte array of STATE messages (STREAM or GLOBAL), `[]`, an Airbyte
//! legacy object `{stream: state}`, or a Singer `{"bookmarks": {stream: state}}` value. Inside a
//! stream state `replication_key_value` or the cursor field name (`ReceivedAt`, `BouncedAt`)
//! are accepted in place of `synced_until`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::streams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCursor {
    pub synced_until: DateTime<Utc>,
    pub in_progress: bool,
}

impl StreamCursor {
    pub fn to_value(self) -> Value {
        let mut v = json!({
            "synced_until": self.synced_until.to_rfc3339_opts(SecondsFormat::Secs, true)
        });
        if self.in_progress {
            v["in_progress"] = json!(true);
        }
        v
    }
}

/// The state a read starts from.
#[derive(Debug, Default, Clone)]
pub struct InputState {
    pub cursors: BTreeMap<String, StreamCursor>,
    /// Whole-account mode: per stream, each server's cursor (`{"servers": {"<ID>": {...}}}`).
    pub server_cursors: BTreeMap<String, BTreeMap<u64, StreamCursor>>,
    /// Singer bookmarks of streams this run does not touch, carried into every STATE so
    /// the stored state never loses them.
    pub other_bookmarks: Map<String, Value>,
}

pub fn load(path: &Path) -> Result<InputState, Error> {
    let label = format!("state '{}'", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(&label, format!("cannot read the file ({e})")))?;
    if text.trim().is_empty() {
        return Ok(InputState::default());
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(&label, format!("not valid JSON: {e}")))?;
    parse(&value).map_err(|m| Error::input(&label, m))
}

pub fn parse(value: &Value) -> Result<InputState, String> {
    let mut per_stream: Vec<(String, Value)> = Vec::new();
    match value {
        Value::Null => {}
        Value::Array(messages) => {
            for (i, msg) in messages.iter().enumerate() {
                collect_airbyte_message(msg, i, &mut per_stream)?;
            }
        }
        Value::Object(obj) => {
            if let Some(b) = obj.get("bookmarks") {
                let b = b
                    .as_object()
                    .ok_or("\"bookmarks\" must be an object of stream name → state")?;
                per_stream.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
            } else if obj.get("type").and_then(|t| t.as_str()).is_some() {
                collect_airbyte_message(value, 0, &mut per_stream)?;
            } else if let Some(data) = obj.get("data").and_then(|d| d.as_object()) {
                per_stream.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
            } else {
                // Airbyte legacy blob: {stream: state}.
                per_stream.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        _ => return Err("expected a JSON array of Airbyte STATE messages or a JSON object".into()),
    }

    let mut state = InputState::default();
    for (name, stream_state) in per_stream {
        match streams::find(&name) {
            Some(spec) if spec.is_incremental() => {
                let servers = parse_server_cursors(&name, spec.cursor_field(), &stream_state)?;
                if !servers.is_empty() {
                    state.server_cursors.insert(name.clone(), servers);
                }
                let label = format!("stream '{name}'");
                if let Some(c) = parse_stream_state(&label, spec.cursor_field(), &stream_state)? {
                    state.cursors.insert(name, c);
                }
            }
            Some(_) => {}
            None => {
                state.other_bookmarks.insert(name, stream_state);
            }
        }
    }
    Ok(state)
}

fn collect_airbyte_message(
    msg: &Value,
    i: usize,
    out: &mut Vec<(String, Value)>,
) -> Result<(), String> {
    let kind = msg.get("type").and_then(|t| t.as_str()).unwrap_or("STREAM");
    match kind {
        "STREAM" => {
            let Some(stream) = msg.get("stream").filter(|s| !s.is_null()) else {
                return Err(format!("state[{i}]: a STREAM state needs \"stream\": {{\"stream_descriptor\": {{\"name\": ...}}, \"stream_state\": {{...}}}}"));
            };
            let name = stream
                .pointer("/stream_descriptor/name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| format!("state[{i}]: stream.stream_descriptor.name is missing"))?;
            out.push((
                name.to_string(),
                stream.get("stream_state").cloned().unwrap_or(Value::Null),
            ));
        }
        "GLOBAL" => {
            let states = msg
                .pointer("/global/stream_states")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default();
            for s in states {
                if let Some(name) = s.pointer("/stream_descriptor/name").and_then(|n| n.as_str()) {
                    out.push((name.to_string(), s.get("stream_state").cloned().unwrap_or(Value::Null)));
                }
            }
        }
        "LEGACY" => {
            if let Some(data) = msg.get("data").and_then(|d| d.as_object()) {
                out.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        other => {
            return Err(format!(
                "state[{i}]: type \"{other}\" is not an Airbyte state type; use STREAM, GLOBAL or LEGACY"
            ))
        }
    }
    Ok(())
}

/// `None` means "no state for this stream" (absent, null or `{}`: a reset).
/// Whole-account state: `"servers": {"1234567": {"synced_until": ...}, ...}`, keys server IDs.
fn parse_server_cursors(
    name: &str,
    cursor_field: Option<&str>,
    v: &Value,
) -> Result<BTreeMap<u64, StreamCursor>, String> {
    let mut out = BTreeMap::new();
    let Some(servers) = v.get("servers") else {
        return Ok(out);
    };
    let Some(servers) = servers.as_object() else {
        return Err(format!(
            "stream '{name}': \"servers\" must be an object of server ID → state, such as \
             {{\"1234567\": {{\"synced_until\": \"2026-11-20T00:00:00Z\"}}}}"
        ));
    };
    for (id, entry) in servers {
        let Ok(n) = id.parse::<u64>() else {
            return Err(format!(
                "stream '{name}': \"servers\" has the key \"{id}\", which is not a server ID \
                 (a whole number such as \"1234567\"); remove the entry"
            ));
        };
        let label = format!("stream '{name}' (server {n})");
        if let Some(c) = parse_stream_state(&label, cursor_field, entry)? {
            out.insert(n, c);
        }
    }
    Ok(out)
}

fn parse_stream_state(
    label: &str,
    cursor_field: Option<&str>,
    v: &Value,
) -> Result<Option<StreamCursor>, String> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => {
            return Err(format!(
                "{label}: state must be an object such as {{\"synced_until\": \"2026-11-20T00:00:00Z\"}}"
            ))
        }
    };
    let mut keys = vec!["synced_until", "replication_key_value"];
    keys.extend(cursor_field);
    let Some((field, raw)) = keys.iter().find_map(|k| obj.get(*k).map(|v| (*k, v))) else {
        return Ok(None);
    };
    let text = raw.as_str().ok_or_else(|| {
        format!(
            "{label}: field '{field}' must be an RFC 3339 string such as \"2026-11-20T00:00:00Z\""
        )
    })?;
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| {
            format!("{label}: field '{field}' is \"{text}\" ({e}); expected an RFC 3339 date-time such as \"2026-11-20T00:00:00Z\"")
        })?
        .with_timezone(&Utc);
    // The STATE written back must parse again: RFC 3339 years are 0000–9999 (found by fuzzing).
    if !(0..=9999).contains(&t.year()) {
        return Err(format!(
            "{label}: field '{field}' is \"{text}\", outside the years 0000 to 9999 in UTC; expected an RFC 3339 date-time such as \"2026-11-20T00:00:00Z\""
        ));
    }
    let in_progress = obj
        .get("in_progress")
        .and_then(|b| b.as_bool())
        .unwrap_or(false);
    Ok(Some(StreamCursor {
        synced_until: t,
        in_progress,
    }))
}

/// Cursors a sync cannot take as they are. A cursor after the sync's start (`now`) was
/// written by a wrong clock or edited by hand: trusting it would read nothing and hand it
/// back for good, so it is rejected. One between the sync's end and its start (a larger
/// `window_lag_seconds`, a small clock step) is reset to the sync's end with a warning:
/// nothing before it is lost. One older than `floor` (the start date, or the longest
/// Postmark retention) is kept, but the read starts at `floor`: that is warned about.
/// Only the streams in `read` (read incrementally) are checked. Returns the warnings.
pub fn sanitize(
    state: &mut InputState,
    read: &[&str],
    now: DateTime<Utc>,
    end: DateTime<Utc>,
    floor: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut warnings = Vec::new();
    let mut all: Vec<(String, &mut StreamCursor)> = Vec::new();
    for (name, cursor) in state.cursors.iter_mut() {
        if read.contains(&name.as_str()) {
            all.push((format!("stream '{name}'"), cursor));
        }
    }
    for (name, servers) in state.server_cursors.iter_mut() {
        if read.contains(&name.as_str()) {
            for (id, cursor) in servers.iter_mut() {
                all.push((format!("stream '{name}' (server {id})"), cursor));
            }
        }
    }
    for (label, cursor) in all {
        let at = cursor.synced_until;
        if at > now {
            return Err(format!(
                "{label}: 'synced_until' {} is in the future (this sync starts at {}); \
                 the state was written with a wrong clock or edited; reset the stream or fix the state",
                fmt(at),
                fmt(now)
            ));
        }
        if at > end {
            warnings.push(format!(
                "{label}: 'synced_until' {} is after this sync's end {} \
                 (window_lag_seconds before its start); continuing from {}",
                fmt(at),
                fmt(end),
                fmt(end)
            ));
            cursor.synced_until = end;
        } else if at < floor {
            warnings.push(format!(
                "{label}: 'synced_until' {} is older than {} (the start date or the \
                 longest Postmark retention); reading from {}: Postmark holds nothing older",
                fmt(at),
                fmt(floor),
                fmt(floor)
            ));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn airbyte_per_stream_state_is_read_with_pyairbyte_noise() {
        let v = json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "bounces", "namespace": null},
            "stream_state": {"synced_until": "2026-11-01T00:00:00Z"}}, "global_": null, "data": null,
            "sourceStats": {"recordCount": 1.0, "rejectedRecordCount": null}}]);
        let s = parse(&v).unwrap();
        assert_eq!(
            s.cursors["bounces"].synced_until,
            at("2026-11-01T00:00:00Z")
        );
        assert!(!s.cursors["bounces"].in_progress);
    }

    #[test]
    fn legacy_and_singer_forms_are_read() {
        let legacy = json!({"messages_outbound": {"ReceivedAt": "2026-11-02T00:00:00Z"}});
        assert_eq!(
            parse(&legacy).unwrap().cursors["messages_outbound"].synced_until,
            at("2026-11-02T00:00:00Z")
        );
        let singer = json!({"bookmarks": {"messages_inbound": {"synced_until": "2026-11-03T00:00:00Z", "in_progress": true},
                                          "some_future_stream": {"x": 1}}});
        let s = parse(&singer).unwrap();
        assert!(s.cursors["messages_inbound"].in_progress);
        assert!(s.other_bookmarks.contains_key("some_future_stream"));
        assert!(parse(&json!([])).unwrap().cursors.is_empty());
    }

    #[test]
    fn malformed_state_names_the_stream_and_field() {
        let err = parse(&json!({"bookmarks": {"bounces": {"synced_until": "last tuesday"}}}))
            .unwrap_err();
        assert!(
            err.contains("'bounces'") && err.contains("'synced_until'"),
            "{err}"
        );
        let err = parse(&json!([{"type": "PER_STREAM"}])).unwrap_err();
        assert!(err.contains("PER_STREAM"), "{err}");
        let err = parse(&json!({"bookmarks": {"bounces": 5}})).unwrap_err();
        assert!(err.contains("'bounces'"), "{err}");
    }

    #[test]
    fn future_cursors_are_rejected_late_ones_reset_and_ancient_ones_warned() {
        let now = at("2026-11-20T12:00:00Z");
        let end = at("2026-11-20T11:55:00Z");
        let floor = at("2025-11-20T12:00:00Z");
        let mut s =
            parse(&json!({"bookmarks": {"bounces": {"synced_until": "2027-01-01T00:00:00Z"}}}))
                .unwrap();
        let err = sanitize(&mut s, &["bounces", "messages_inbound"], now, end, floor).unwrap_err();
        assert!(err.contains("'bounces'") && err.contains("future"), "{err}");
        let mut s = parse(&json!({"bookmarks": {
            "bounces": {"synced_until": "2026-11-20T11:58:00Z"},
            "messages_inbound": {"synced_until": "2020-01-01T00:00:00Z"}}}))
        .unwrap();
        let w = sanitize(&mut s, &["bounces", "messages_inbound"], now, end, floor).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(s.cursors["bounces"].synced_until, end);
    }

    #[test]
    fn a_cursor_that_could_not_be_written_back_is_rejected() {
        // Fuzzing finding: accepted, then handed back as "+10000-01-01T04:59:59Z", which
        // the next run rejects.
        for text in ["9999-12-31T23:59:59-05:00", "0000-01-01T00:00:00+01:00"] {
            let err =
                parse(&json!({"bookmarks": {"bounces": {"synced_until": text}}})).unwrap_err();
            assert!(err.contains("'bounces'") && err.contains(text), "{err}");
        }
        assert!(parse(
            &json!({"bookmarks": {"bounces": {"synced_until": "9999-12-31T23:59:59Z"}}})
        )
        .is_ok());
    }

    #[test]
    fn a_cursor_round_trips() {
        let c = StreamCursor {
            synced_until: at("2026-11-20T11:55:00Z"),
            in_progress: true,
        };
        let v = json!({"bookmarks": {"bounces": c.to_value()}});
        assert_eq!(parse(&v).unwrap().cursors["bounces"], c);
    }
}
