//! The sole owner of stdout: Airbyte and Singer messages, one JSON object per line.
//!
//! Nothing else in the crate writes to stdout (`clippy::print_stdout` is denied in lib.rs).
//! Output is block-buffered and flushed once per page, never per record. In Airbyte mode
//! logs are `LOG` messages on stdout; in Singer mode they go to stderr, because Singer
//! targets crash on any stdout line that is not SCHEMA/RECORD/STATE.
//!
//! Units are part of the contract: Airbyte `emitted_at` is epoch **milliseconds** (an
//! integer on RECORD, a number on TRACE); `sourceStats.recordCount` is a float.
//!
//! Singer extras: `METRIC` log lines on stderr in singer-python's format (`record_count`
//! counters, `http_request_duration` timers), and table versions for full-table streams
//! (records carry `version`, the stream ends with `ACTIVATE_VERSION`, so a target drops rows
//! the source no longer has).

use std::io::{self, BufWriter, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::error::{redact, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Airbyte,
    Singer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn airbyte(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
    fn singer(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Started,
    Running,
    Complete,
    Incomplete,
}

impl StreamStatus {
    fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Started => "STARTED",
            StreamStatus::Running => "RUNNING",
            StreamStatus::Complete => "COMPLETE",
            StreamStatus::Incomplete => "INCOMPLETE",
        }
    }
}

pub struct Emitter<W: Write> {
    out: BufWriter<W>,
    protocol: Protocol,
    /// Per-page record prefix/suffix pieces, computed once per page.
    emitted_at_ms: i64,
    time_extracted: String,
    /// Singer: per full-table stream, its version and the `,"version":N` its records carry.
    versions: Vec<(String, i64, String)>,
    /// WARN lines per stream (attributed by the stream name they mention), and in total.
    warnings: Vec<(&'static str, u64)>,
    warnings_total: u64,
}

fn stdout_err(e: io::Error) -> Error {
    Error::Stdout(std::sync::Arc::new(e))
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl<W: Write> Emitter<W> {
    pub fn new(out: W, protocol: Protocol) -> Self {
        Emitter {
            out: BufWriter::with_capacity(256 * 1024, out),
            protocol,
            emitted_at_ms: now_ms(),
            time_extracted: String::new(),
            versions: Vec::new(),
            warnings: Vec::new(),
            warnings_total: 0,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Writes one complete message line.
    pub fn message(&mut self, value: &Value) -> Result<(), Error> {
        serde_json::to_writer(&mut self.out, value).map_err(|e| stdout_err(e.into()))?;
        self.out.write_all(b"\n").map_err(stdout_err)
    }

    /// Plain text (only `--about` in its human format).
    pub fn write_text(&mut self, text: &str) -> Result<(), Error> {
        self.out.write_all(text.as_bytes()).map_err(stdout_err)
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(stdout_err)
    }

    /// Flushes and hands back the writer (tests read it).
    pub fn finish(mut self) -> Result<W, Error> {
        self.flush()?;
        self.out
            .into_inner()
            .map_err(|e| stdout_err(io::Error::new(e.error().kind(), e.error().to_string())))
    }

    /// A log line. Secrets are blanked; warnings and errors are flushed at once, so a
    /// wait they announce is visible before it starts.
    pub fn log(&mut self, level: Level, message: &str) -> Result<(), Error> {
        if level == Level::Warn {
            self.count_warning(message);
        }
        let message = redact(message);
        match self.protocol {
            Protocol::Airbyte => {
                self.message(&json!({
                    "type": "LOG",
                    "log": {"level": level.airbyte(), "message": message}
                }))?;
                if level != Level::Info {
                    self.flush()?;
                }
                Ok(())
            }
            Protocol::Singer => {
                eprintln!("{} {message}", level.singer());
                Ok(())
            }
        }
    }

    fn count_warning(&mut self, message: &str) {
        self.warnings_total += 1;
        let mentioned = crate::streams::STREAMS.iter().map(|s| s.name).find(|name| {
            message
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':'))
                || message.contains(&format!("'{name}'"))
        });
        if let Some(name) = mentioned {
            match self.warnings.iter_mut().find(|(n, _)| *n == name) {
                Some((_, n)) => *n += 1,
                None => self.warnings.push((name, 1)),
            }
        }
    }

    /// WARN lines logged so far that name `stream` (`None`: all of them).
    pub fn warnings(&self, stream: Option<&str>) -> u64 {
        match stream {
            None => self.warnings_total,
            Some(s) => self
                .warnings
                .iter()
                .find(|(n, _)| *n == s)
                .map_or(0, |(_, n)| *n),
        }
    }

    /// Singer `record_count` counter: records of `stream` since its previous counter.
    pub fn metric_counter(&mut self, stream: &str, records: u64) {
        if self.protocol == Protocol::Singer {
            eprintln!(
                "INFO METRIC: {{\"type\": \"counter\", \"metric\": \"record_count\", \"value\": {records}, \"tags\": {{\"stream\": {}}}}}",
                Value::from(stream)
            );
        }
    }

    /// Singer `http_request_duration` timer of one page request (retries included).
    pub fn metric_timer(&mut self, endpoint: &str, stream: &str, seconds: f64, ok: bool) {
        if self.protocol == Protocol::Singer {
            let status = if ok { "succeeded" } else { "failed" };
            let code = if ok {
                ", \"http_status_code\": 200"
            } else {
                ""
            };
            eprintln!(
                "INFO METRIC: {{\"type\": \"timer\", \"metric\": \"http_request_duration\", \"value\": {seconds:.6}, \"tags\": {{\"endpoint\": {}, \"stream\": {}{code}, \"status\": \"{status}\"}}}}",
                Value::from(endpoint),
                Value::from(stream)
            );
        }
    }

    /// Singer: the records of `stream` carry table version `version` from now on (a
    /// full-table sync; [`Emitter::activate_version`] ends it).
    pub fn set_version(&mut self, stream: &str, version: i64) {
        if self.protocol == Protocol::Singer {
            self.versions.retain(|(s, _, _)| s != stream);
            let suffix = format!(",\"version\":{version}");
            self.versions.push((stream.to_string(), version, suffix));
        }
    }

    /// Singer ACTIVATE_VERSION after the last record of a complete full-table sync: the
    /// target may now drop (or mark deleted) rows of older versions.
    pub fn activate_version(&mut self, stream: &str) -> Result<(), Error> {
        let Some(pos) = self.versions.iter().position(|(s, _, _)| s == stream) else {
            return Ok(());
        };
        let (_, version, _) = self.versions.remove(pos);
        self.message(&json!({"type": "ACTIVATE_VERSION", "stream": stream, "version": version}))
    }

    /// Airbyte TRACE ERROR (Singer: a CRITICAL line on stderr).
    pub fn trace_error(&mut self, error: &Error, stream: Option<&str>) -> Result<(), Error> {
        let message = redact(&error.to_string()).into_owned();
        match self.protocol {
            Protocol::Airbyte => {
                let internal = redact(&format!("{error:?}")).into_owned();
                let mut err = json!({
                    "message": message,
                    "internal_message": internal.chars().take(500).collect::<String>(),
                    "failure_type": error.failure_type().as_str(),
                });
                if let Some(s) = stream {
                    err["stream_descriptor"] = json!({ "name": s });
                }
                self.message(&json!({
                    "type": "TRACE",
                    "trace": {"type": "ERROR", "emitted_at": now_ms() as f64, "error": err}
                }))
            }
            Protocol::Singer => {
                // Named by stream, as the Airbyte error is (several may fail with one cause).
                match stream {
                    Some(s) => eprintln!("CRITICAL stream '{s}': {message}"),
                    None => eprintln!("CRITICAL {message}"),
                }
                Ok(())
            }
        }
    }

    /// A non-fatal warning that also reaches Airbyte's trace channel (for unreachable rows).
    pub fn trace_analytics(&mut self, kind: &str, value: &str) -> Result<(), Error> {
        if self.protocol == Protocol::Airbyte {
            self.message(&json!({
                "type": "TRACE",
                "trace": {"type": "ANALYTICS", "emitted_at": now_ms() as f64,
                          "analytics": {"type": kind, "value": value}}
            }))?;
        }
        Ok(())
    }

    /// Airbyte TRACE ESTIMATE: how many rows a stream will emit, for progress bars.
    pub fn trace_estimate(&mut self, stream: &str, rows: u64) -> Result<(), Error> {
        if self.protocol == Protocol::Airbyte {
            self.message(&json!({
                "type": "TRACE",
                "trace": {"type": "ESTIMATE", "emitted_at": now_ms() as f64,
                          "estimate": {"name": stream, "type": "STREAM", "row_estimate": rows}}
            }))?;
        }
        Ok(())
    }

    pub fn stream_status(&mut self, stream: &str, status: StreamStatus) -> Result<(), Error> {
        if self.protocol == Protocol::Airbyte {
            self.message(&json!({
                "type": "TRACE",
                "trace": {"type": "STREAM_STATUS", "emitted_at": now_ms() as f64,
                          "stream_status": {"stream_descriptor": {"name": stream},
                                            "status": status.as_str()}}
            }))?;
        }
        Ok(())
    }

    pub fn connection_status(&mut self, result: Result<(), String>) -> Result<(), Error> {
        let status = match result {
            Ok(()) => json!({"status": "SUCCEEDED"}),
            Err(m) => json!({"status": "FAILED", "message": redact(&m)}),
        };
        self.message(&json!({"type": "CONNECTION_STATUS", "connectionStatus": status}))
    }

    /// Singer SCHEMA (Airbyte has no per-stream schema message during read).
    pub fn schema(
        &mut self,
        stream: &str,
        schema: &Value,
        key: &[&str],
        bookmark: Option<&str>,
    ) -> Result<(), Error> {
        if self.protocol == Protocol::Singer {
            let mut msg = json!({"type": "SCHEMA", "stream": stream, "schema": schema,
                                 "key_properties": key});
            if let Some(b) = bookmark {
                msg["bookmark_properties"] = json!([b]);
            }
            self.message(&msg)?;
        }
        Ok(())
    }

    /// Sets the extraction time used by the records of the page about to be written.
    pub fn begin_page(&mut self, extracted: DateTime<Utc>) {
        self.emitted_at_ms = extracted.timestamp_millis();
        if self.protocol == Protocol::Singer {
            self.time_extracted = extracted.to_rfc3339_opts(SecondsFormat::Micros, true);
        }
    }

    /// Writes one RECORD line whose object gets one more member, `field` (`"key":value`).
    pub fn record_stamped(&mut self, stream: &str, data: &[u8], field: &[u8]) -> Result<(), Error> {
        match data.strip_suffix(b"}") {
            Some(open) => {
                let sep: &[u8] = if open.len() > 1 { b"," } else { b"" };
                self.record_parts(stream, &[open, sep, field, b"}"])
            }
            None => self.record(stream, data),
        }
    }

    /// Writes one RECORD line; `data` is the record object's JSON, already serialized.
    pub fn record(&mut self, stream: &str, data: &[u8]) -> Result<(), Error> {
        self.record_parts(stream, &[data])
    }

    /// A RECORD whose data is the concatenation of `parts`.
    fn record_parts(&mut self, stream: &str, parts: &[&[u8]]) -> Result<(), Error> {
        let out = &mut self.out;
        let data = |out: &mut BufWriter<W>| parts.iter().try_for_each(|p| out.write_all(p));
        let res = match self.protocol {
            Protocol::Airbyte => out
                .write_all(b"{\"type\":\"RECORD\",\"record\":{\"stream\":\"")
                .and_then(|_| out.write_all(stream.as_bytes()))
                .and_then(|_| out.write_all(b"\",\"data\":"))
                .and_then(|_| data(out))
                .and_then(|_| writeln!(out, ",\"emitted_at\":{}}}}}", self.emitted_at_ms)),
            Protocol::Singer => out
                .write_all(b"{\"type\":\"RECORD\",\"stream\":\"")
                .and_then(|_| out.write_all(stream.as_bytes()))
                .and_then(|_| out.write_all(b"\",\"record\":"))
                .and_then(|_| data(out))
                .and_then(|_| out.write_all(b",\"time_extracted\":\""))
                .and_then(|_| out.write_all(self.time_extracted.as_bytes()))
                .and_then(|_| out.write_all(b"\""))
                .and_then(
                    |_| match self.versions.iter().find(|(s, _, _)| s == stream) {
                        Some((_, _, v)) => out.write_all(v.as_bytes()),
                        None => Ok(()),
                    },
                )
                .and_then(|_| out.write_all(b"}\n")),
        };
        res.map_err(stdout_err)
    }

    /// Airbyte per-stream STATE with the records emitted since the previous one.
    pub fn airbyte_state(
        &mut self,
        stream: &str,
        stream_state: &Value,
        records_since_last: u64,
    ) -> Result<(), Error> {
        self.message(&json!({
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": stream}, "stream_state": stream_state},
                "sourceStats": {"recordCount": records_since_last as f64}
            }
        }))
    }

    /// Singer STATE: always the complete `{"bookmarks": {...}}` value.
    pub fn singer_state(&mut self, value: &Value) -> Result<(), Error> {
        self.message(&json!({"type": "STATE", "value": value}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn airbyte_records_carry_integer_milliseconds() {
        let mut e = Emitter::new(Vec::new(), Protocol::Airbyte);
        let t = DateTime::parse_from_rfc3339("2026-11-20T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        e.begin_page(t);
        e.record("bounces", br#"{"ID":1}"#).unwrap();
        let out = lines(&e.finish().unwrap());
        assert_eq!(out[0]["record"]["emitted_at"], 1_795_176_000_123_i64);
        assert_eq!(out[0]["record"]["data"]["ID"], 1);
    }

    #[test]
    fn singer_records_carry_time_extracted_and_logs_stay_off_stdout() {
        let mut e = Emitter::new(Vec::new(), Protocol::Singer);
        e.begin_page(Utc::now());
        e.log(Level::Info, "hello").unwrap();
        e.stream_status("x", StreamStatus::Started).unwrap();
        e.record("templates", br#"{"TemplateId":1}"#).unwrap();
        let out = lines(&e.finish().unwrap());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["type"], "RECORD");
        assert!(out[0]["time_extracted"].as_str().unwrap().ends_with('Z'));
        assert!(out[0].get("version").is_none());
    }

    #[test]
    fn a_stamped_record_gets_one_more_member() {
        let mut e = Emitter::new(Vec::new(), Protocol::Airbyte);
        e.record_stamped(
            "messages_inbound",
            br#"{"MessageID":"a"}"#,
            br#""ReceivedBefore":"2026-11-20T11:55:00Z""#,
        )
        .unwrap();
        e.record_stamped("messages_inbound", b"{}", br#""X":1"#)
            .unwrap();
        let out = lines(&e.finish().unwrap());
        assert_eq!(
            out[0]["record"]["data"],
            json!({"MessageID": "a", "ReceivedBefore": "2026-11-20T11:55:00Z"})
        );
        assert_eq!(out[1]["record"]["data"], json!({"X": 1}));
    }

    #[test]
    fn full_table_records_carry_their_version_and_end_with_activate_version() {
        let mut e = Emitter::new(Vec::new(), Protocol::Singer);
        e.begin_page(Utc::now());
        e.set_version("templates", 1_795_176_000_123);
        e.record("templates", br#"{"TemplateId":1}"#).unwrap();
        e.record("bounces", br#"{"ID":2}"#).unwrap();
        e.activate_version("templates").unwrap();
        e.activate_version("templates").unwrap();
        let out = lines(&e.finish().unwrap());
        assert_eq!(out[0]["version"], 1_795_176_000_123_i64);
        assert!(
            out[1].get("version").is_none(),
            "incremental records carry none"
        );
        assert_eq!(
            out[2],
            json!({"type": "ACTIVATE_VERSION", "stream": "templates", "version": 1_795_176_000_123_i64})
        );
        assert_eq!(out.len(), 3, "a version is activated once");
    }

    #[test]
    fn warnings_are_counted_per_stream_they_name() {
        let mut e = Emitter::new(Vec::new(), Protocol::Airbyte);
        e.log(Level::Warn, "bounces: 3 rows unreachable").unwrap();
        e.log(Level::Warn, "retrying reading 'bounces' (messagestream x)")
            .unwrap();
        e.log(Level::Warn, "something else").unwrap();
        e.log(Level::Info, "templates: fine").unwrap();
        assert_eq!(e.warnings(Some("bounces")), 2);
        assert_eq!(e.warnings(Some("templates")), 0);
        assert_eq!(e.warnings(None), 3);
    }
}
