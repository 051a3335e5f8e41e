//! Target `page`: a response body for one stream through `record::parse_page` and the
//! record shaper, as the engine runs them.
//!
//! Input: 4 header bytes (stream, deselected-field mask, window start and length), then the
//! body (invalid UTF-8 is replaced, as no body reaches the parser otherwise).
//!
//! Properties:
//! - the fast path of `parse_page` (a byte scanner) reads the page exactly as its serde path
//!   does (records, keys, raw values, `TotalCount`), or leaves it to serde;
//! - parsing agrees with a full JSON parser (serde_json `Value`): a JSON object whose records
//!   key is an array parses with that many records and its `TotalCount`; an object without
//!   the array, or anything else a full parser reads, is an error;
//! - shaping fails only when a record is not a JSON object;
//! - every shaped line is one line (no CR/LF byte: it becomes a JSON-lines message as is) of
//!   valid JSON, an object with the record's fields in order less the deselected ones;
//! - fields other than date-times are copied unchanged; readable date-times become RFC 3339
//!   UTC (`Z`, none or six fractional digits, four-digit year) for the same instant truncated
//!   to the microsecond; unreadable ones are copied unchanged;
//! - with a window and a cursor field, exactly the records whose cursor is inside the
//!   half-open window or unreadable are emitted, and the tally adds up.

use std::borrow::Cow;

use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{Map, Value};

use source_postmark::record::{self, parse_page, RawObject, ShapeError, Shaper};
use source_postmark::streams::{Envelope, STREAMS};

pub fn check(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (head, body) = data.split_at(4);
    let body = String::from_utf8_lossy(body);
    let spec = &STREAMS[usize::from(head[0]) % STREAMS.len()];
    // Bodies of the `{"TotalCount", "<key>": [...]}` shape (other envelopes have unit tests).
    let Envelope::List(key) = spec.envelope else {
        return;
    };

    let parsed = parse_page(&body, spec.envelope);
    // The byte scanner's fast path reads a page exactly as serde does, or leaves it to serde.
    let slow = record::parse_page_with_serde(&body, spec.envelope);
    match (&parsed, &slow) {
        (Ok(fast), Ok(slow)) => {
            let diff = record::page_difference(fast, slow);
            assert!(
                diff.is_none(),
                "the fast path read the page otherwise: {diff:?}"
            );
        }
        (Ok(_), Err(e)) => panic!("the fast path accepted a page serde rejects: {e}"),
        (Err(e), Ok(_)) => panic!("parse_page rejected a page serde accepts: {e}"),
        (Err(a), Err(b)) => assert_eq!(a, b, "the errors differ"),
    }
    // A body with a repeated top-level key is ambiguous JSON (RFC 8259: names SHOULD be
    // unique; parsers differ on which one wins): no oracle to compare with, only the other
    // properties below apply. (A CI run once hit `{"Messages": 3, "Messages": [...]}`.)
    let repeated_key = serde_json::from_str::<source_postmark::record::RawObject>(&body)
        .map(|o| {
            let mut keys: Vec<&str> = o.0.iter().map(|(k, _)| k.as_ref()).collect();
            let n = keys.len();
            keys.sort_unstable();
            keys.dedup();
            keys.len() != n
        })
        .unwrap_or(false);
    let oracle: Option<Value> = if repeated_key {
        None
    } else {
        serde_json::from_str(&body).ok()
    };
    match (&parsed, &oracle) {
        (Ok(page), Some(Value::Object(map))) => {
            let records = map.get(key).and_then(Value::as_array);
            assert_eq!(
                records.map(Vec::len),
                Some(page.records.len()),
                "record count differs from a full parser's"
            );
            assert_eq!(
                page.total,
                map.get("TotalCount").and_then(Value::as_u64),
                "TotalCount differs"
            );
            // The single scan splits exactly the objects into fields, record by record.
            for (i, (got, want)) in page
                .records
                .iter()
                .zip(records.into_iter().flatten())
                .enumerate()
            {
                assert_eq!(
                    got.object().is_some(),
                    want.is_object(),
                    "record {i}: object or not differs from a full parser's"
                );
                if let (Some(o), Some(w)) = (got.object(), want.as_object()) {
                    let keys: std::collections::HashSet<&str> =
                        o.0.iter().map(|(k, _)| k.as_ref()).collect();
                    assert_eq!(keys.len(), w.len(), "record {i}: distinct keys differ");
                    assert!(
                        w.keys().all(|k| keys.contains(k.as_str())),
                        "record {i}: keys differ"
                    );
                }
            }
        }
        (Ok(_), Some(other)) => panic!("parse_page accepted a non-object: {other}"),
        (Ok(_), None) => {} // Accepted what serde_json's Value rejects: checked line by line.
        (Err(e), Some(Value::Object(map))) => {
            assert!(
                !map.get(key).is_some_and(Value::is_array),
                "parse_page rejected a page with a '{key}' array: {e}"
            );
        }
        (Err(e), _) => assert!(!e.is_empty()),
    }
    let Ok(page) = parsed else { return };

    let props = spec.property_names();
    let cursor = spec.cursor_field();
    let excluded: Vec<String> = props
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            *i < 8 && head[1] & (1 << i) != 0 && !spec.is_key(p) && Some(p.as_str()) != cursor
        })
        .map(|(_, p)| p.clone())
        .collect();
    let dt_fields = spec.datetime_fields();
    let shaper = Shaper::new(dt_fields.clone(), cursor, excluded.clone());

    // A window near the records' own times, so that it cuts through them.
    let window = (head[2] & 0x80 != 0).then(|| {
        let anchor = cursor
            .and_then(|c| record::oldest_cursor(&page.records, c))
            .map(|(t, _)| t)
            .unwrap_or_else(|| DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default());
        let anchor = DateTime::from_timestamp(anchor.timestamp(), 0).unwrap_or(anchor);
        let start = anchor + Duration::seconds(i64::from((head[2] & 0x7f) as i8) - 64);
        (start, start + Duration::seconds(1 + i64::from(head[3]) * 3))
    });

    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    let result = shaper.shape_page::<()>(&page.records, window, &mut buf, &mut |line| {
        lines.push(line.to_vec());
        Ok(())
    });
    let tally = match result {
        Ok(t) => t,
        Err(ShapeError::Malformed(e)) => {
            let non_object = match &oracle {
                Some(Value::Object(map)) => map
                    .get(key)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|r| !r.is_object())),
                _ => page.records.iter().any(|r| r.object().is_none()),
            };
            assert!(
                non_object,
                "shaping failed although every record is a JSON object: {e}"
            );
            return;
        }
        Err(ShapeError::Emit(())) => unreachable!("the emitter never fails"),
    };
    assert_eq!(tally.emitted as usize, lines.len(), "tally.emitted");
    assert_eq!(
        tally.emitted + tally.outside_window,
        page.records.len() as u64,
        "every record is emitted or outside the window"
    );
    assert!(tally.far_outside <= tally.outside_window);

    // Which records must be emitted, in order.
    let mut expected = Vec::new();
    for record in &page.records {
        let obj: &RawObject = record.object().expect("shaped, so an object");
        let keep = match (window, cursor) {
            (Some((start, end)), Some(c)) => {
                // The last readable occurrence of the cursor key decides, as in the record.
                let t = obj
                    .0
                    .iter()
                    .filter(|(k, _)| k == c)
                    .filter_map(|(_, v)| record::normalise_datetime(v.get()))
                    .next_back();
                t.is_none_or(|t| t >= start && t < end)
            }
            _ => true,
        };
        if keep {
            // Valid JSON as a whole when each value is (its keys were read as strings).
            let valid = obj
                .0
                .iter()
                .all(|(_, v)| serde_json::from_str::<Value>(v.get()).is_ok());
            expected.push((valid, obj));
        }
    }
    assert_eq!(lines.len(), expected.len(), "emitted records");

    for (line, (valid, obj)) in lines.iter().zip(&expected) {
        let raw = &obj.0;
        let text = std::str::from_utf8(line).expect("a shaped line is UTF-8");
        assert!(
            !line.iter().any(|b| *b == b'\n' || *b == b'\r'),
            "a shaped record spans several lines: {text:?}"
        );
        let out: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            Ok(other) => panic!("a shaped record is not an object: {other}"),
            Err(e) => {
                // Only what the input already had may fail a strict parser (e.g. a lone
                // surrogate escape): the shaper must not make a valid record invalid.
                assert!(
                    !valid,
                    "shaping made a valid record invalid JSON ({e}): {raw:?} -> {text}"
                );
                continue;
            }
        };
        // Field order and selection: the record's keys (first occurrence) less excluded.
        let mut want_keys: Vec<Cow<str>> = Vec::new();
        for (k, _) in &obj.0 {
            if !excluded.iter().any(|e| e == k) && !want_keys.contains(k) {
                want_keys.push(k.clone());
            }
        }
        let got_keys: Vec<&str> = out.keys().map(String::as_str).collect();
        let want: Vec<&str> = want_keys.iter().map(|k| k.as_ref()).collect();
        assert_eq!(got_keys, want, "fields of {raw:?}");
        // Values: the last occurrence of each key (as a JSON object reader keeps it).
        for (k, got) in &out {
            let Some((_, v)) = obj.0.iter().rev().find(|(key, _)| key == k) else {
                panic!("field {k} appeared from nowhere");
            };
            let Ok(input) = serde_json::from_str::<Value>(v.get()) else {
                continue;
            };
            let is_dt = dt_fields.iter().any(|f| f == k);
            match (is_dt, record::normalise_datetime(v.get())) {
                (true, Some(t)) => {
                    let s = got.as_str().expect("a normalised date-time is a string");
                    assert!(
                        is_utc_rfc3339(s),
                        "date-time {k} = {} became {s}, not RFC 3339 UTC",
                        v.get()
                    );
                    let back = DateTime::parse_from_rfc3339(s)
                        .expect("RFC 3339")
                        .with_timezone(&Utc);
                    let want_t = t
                        .with_nanosecond(t.nanosecond() / 1000 * 1000)
                        .expect("a smaller fraction is valid");
                    assert_eq!(back, want_t, "date-time {k} = {} changed instant", v.get());
                }
                _ => assert_eq!(got, &input, "field {k} changed"),
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn is_utc_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = |n: usize| {
        b.len() == n
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[n - 1] == b'Z'
    };
    (shape(20)) || (shape(27) && b[19] == b'.' && digits(20..26))
}
