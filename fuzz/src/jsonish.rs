//! Input for the JSON parsers: the fuzz bytes themselves when they are JSON, otherwise a JSON
//! value grown from them with a vocabulary of the keys and values the parsers look for, so
//! that most inputs reach the validation logic instead of stopping at "not valid JSON".

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

pub const WORDS: &[&str] = &[
    // configs
    "server_token",
    "X-Postmark-Server-Token",
    "X-Postmark-Account-Token",
    "start_date",
    "lookback_hours",
    "max_concurrency",
    "max_requests_per_second",
    "window_lag_seconds",
    "fail_on_unreachable_rows",
    "request_timeout_seconds",
    "max_retries",
    "base_url",
    "https://api.postmarkapp.com",
    "http://127.0.0.1:8080",
    "http://localhost:1/",
    "http://[::1]:9",
    "https://x@api.postmarkapp.com",
    "http://evil.example#@127.0.0.1",
    "http://127.0.0.1.evil.example",
    "https://api.postmarkapp.com/?a=b",
    "2026-10-01T00:00:00Z",
    "2026-11-20T11:59:59.9999999-05:00",
    "2025-11-21T00:00:00Z",
    "9999-12-31T23:59:59-05:00",
    "0000-01-01T00:00:00+01:00",
    "2026-06-30T23:59:60Z",
    // catalogs
    "streams",
    "stream",
    "name",
    "json_schema",
    "sync_mode",
    "destination_sync_mode",
    "incremental",
    "full_refresh",
    "append",
    "overwrite",
    "append_dedup",
    "cursor_field",
    "primary_key",
    "tap_stream_id",
    "metadata",
    "breadcrumb",
    "properties",
    "selected",
    "selected-by-default",
    "inclusion",
    "automatic",
    "available",
    "unsupported",
    "replication-method",
    "replication_method",
    "forced-replication-method",
    "replication-key",
    "replication_key",
    "INCREMENTAL",
    "FULL_TABLE",
    "schema",
    "true",
    // states
    "type",
    "STREAM",
    "GLOBAL",
    "LEGACY",
    "stream_descriptor",
    "stream_state",
    "synced_until",
    "in_progress",
    "replication_key_value",
    "bookmarks",
    "data",
    "global",
    "stream_states",
    "namespace",
    // streams and fields
    "messages_outbound",
    "messages_inbound",
    "bounces",
    "templates",
    "message_streams",
    "ReceivedAt",
    "BouncedAt",
    "MessageID",
    "ID",
    "TemplateId",
    "Subject",
    "Details",
    "",
    " ",
    "\n",
];

/// The bytes as JSON when they are, else a value grown from them.
pub fn value(data: &[u8]) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice(data) {
        return Some(v);
    }
    let mut u = Unstructured::new(data);
    grow(&mut u, 0).ok()
}

fn word(u: &mut Unstructured) -> Result<String> {
    Ok(if u.ratio(7, 8)? {
        (*u.choose(WORDS)?).to_string()
    } else {
        u.arbitrary::<String>()?
    })
}

fn grow(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let kinds = if depth >= 5 { 5 } else { 7 };
    Ok(match u.int_in_range(0..=kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(Number::from(u.arbitrary::<i64>()?)),
        3 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 | 5 => Value::String(word(u)?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(grow(u, depth + 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let n = u.int_in_range(0..=6)?;
            let mut map = Map::new();
            for _ in 0..n {
                let k = word(u)?;
                map.insert(k, grow(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}
