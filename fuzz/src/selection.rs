//! Targets `catalog` and `state`: `catalog::parse_airbyte`, `catalog::parse_singer` and
//! `state::parse`, on the bytes as JSON or on a value grown from them.
//!
//! Catalog properties:
//! - never panics; errors are non-empty;
//! - Airbyte: every entry becomes a selected stream or an unknown name; a selected stream is
//!   one the connector has, named by its entry, incremental only when the entry asked for it
//!   and the stream supports it;
//! - Singer: a selected stream is one the connector has, incremental only when it supports
//!   it; deselected fields never include the primary key or the cursor, and the announced
//!   schema keeps the key and drops every deselected field.
//!
//! State properties:
//! - never panics; errors are non-empty;
//! - cursors are kept only for incremental streams the connector has; bookmarks of other
//!   names are carried over untouched;
//! - every cursor read survives the connector's own round trip: written back as it writes
//!   STATE (Singer bookmarks and Airbyte STREAM messages), it is read again as the same
//!   instant (to the second) and the same `in_progress`.

use serde_json::{json, Value};

use source_postmark::catalog;
use source_postmark::state;
use source_postmark::streams;

pub fn check_catalog(data: &[u8]) {
    let Some(value) = crate::jsonish::value(data) else {
        return;
    };
    match catalog::parse_airbyte(&value) {
        Ok(sel) => {
            let entries = value["streams"].as_array().expect("accepted, so an array");
            assert_eq!(
                sel.streams.len() + sel.unknown.len(),
                entries.len(),
                "every Airbyte entry is selected or unknown"
            );
            for s in &sel.streams {
                assert!(streams::find(s.spec.name).is_some());
                let entry = entries
                    .iter()
                    .find(|e| {
                        e.pointer("/stream/name").and_then(Value::as_str) == Some(s.spec.name)
                    })
                    .expect("a selected stream has an entry");
                if s.incremental {
                    assert!(s.spec.is_incremental(), "{} incremental", s.spec.name);
                    assert!(
                        entries.iter().any(|e| e.pointer("/stream/name")
                            == entry.pointer("/stream/name")
                            && e["sync_mode"] == "incremental"),
                        "{} incremental without asking",
                        s.spec.name
                    );
                }
                assert!(s.excluded_fields.is_empty());
            }
            for u in &sel.unknown {
                assert!(
                    streams::find(u).is_none(),
                    "known stream {u} listed as unknown"
                );
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
    match catalog::parse_singer(&value) {
        Ok(sel) => {
            for s in &sel.streams {
                let spec = s.spec;
                assert!(
                    !s.incremental || spec.is_incremental(),
                    "{} incremental",
                    spec.name
                );
                assert!(
                    !s.excluded_fields.iter().any(|f| spec.is_key(f)),
                    "{}: the primary key is deselected",
                    spec.name
                );
                if let Some(c) = spec.cursor_field() {
                    assert!(
                        !s.excluded_fields.iter().any(|f| f == c),
                        "{}: the cursor is deselected",
                        spec.name
                    );
                }
                let schema = s.schema();
                let props = schema["properties"]
                    .as_object()
                    .expect("a schema with properties");
                assert!(spec.primary_key.iter().all(|k| props.contains_key(*k)));
                for f in &s.excluded_fields {
                    assert!(
                        !props.contains_key(f),
                        "{}: deselected {f} announced",
                        spec.name
                    );
                }
            }
            for u in &sel.unknown {
                assert!(
                    streams::find(u).is_none(),
                    "known stream {u} listed as unknown"
                );
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

pub fn check_state(data: &[u8]) {
    let Some(value) = crate::jsonish::value(data) else {
        return;
    };
    let parsed = match state::parse(&value) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    for name in parsed.cursors.keys() {
        let spec = streams::find(name).expect("a cursor for a known stream");
        assert!(spec.is_incremental(), "a cursor for full-refresh {name}");
    }
    for name in parsed.other_bookmarks.keys() {
        assert!(
            streams::find(name).is_none(),
            "known stream {name} kept as a foreign bookmark"
        );
    }
    for (name, cursor) in &parsed.cursors {
        let written = cursor.to_value();
        let forms = [
            json!({"bookmarks": {name.as_str(): written.clone()}}),
            json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": name},
                "stream_state": written.clone()}}]),
        ];
        for form in forms {
            match state::parse(&form) {
                Ok(again) => {
                    let c = again.cursors.get(name).expect("the stream's cursor");
                    // Compared as written (whole seconds; a leap second stays `:60`).
                    assert_eq!(
                        c.to_value(),
                        written,
                        "{name}: state {written} does not read back as it was written"
                    );
                    assert_eq!(c.in_progress, cursor.in_progress);
                }
                Err(e) => panic!("{name}: the connector's own state {written} is rejected: {e}"),
            }
        }
    }
}
