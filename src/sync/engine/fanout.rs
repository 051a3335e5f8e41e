//! Fan-out: streams whose records come from one request per listed record (template bodies,
//! message events). The listing is read like any stream (windows, splits, pages); each
//! listed record inside its window becomes a per-record request counted as one more page of
//! the listing's task, so a window completes (and the state moves) only when every record of
//! it has been read. Per-record requests share the worker pool and the rate limiter, and are
//! queued just ahead of the listing's next pages, so memory stays bounded by a few pages.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::{Engine, InFlight, Pending};
use crate::client::Request;
use crate::error::Error;
use crate::protocol::Level;
use crate::record::{normalise_datetime, parse_page, RawObject};
use crate::streams::FanOut;

use super::worker::encode_segment;

/// One per-record request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Detail {
    /// The filled path template, e.g. `/templates/123`.
    pub path: String,
    /// `(offset, count)` of a paged per-record endpoint (the events of one message).
    pub page: Option<(u32, u32)>,
}

impl Detail {
    pub fn request(&self) -> Request {
        // Fan-out streams are server streams (template bodies, message details).
        Request {
            path: self.path.clone(),
            query: Vec::new(),
            token: crate::client::Token::Server,
            server: None,
        }
    }
}

/// Individual skip warnings per stream before they are only counted.
const SKIP_WARNINGS: u64 = 10;

/// `template` with each `{Field}` replaced by the listed record's value (strings unquoted,
/// percent-encoded). `None` if the record lacks a field.
pub(super) fn fill_path(template: &str, record: &RawObject) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 40);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let field = &rest[open + 1..close];
        let raw = record.0.iter().find(|(k, _)| k == field)?.1.get();
        let value = match serde_json::from_str::<String>(raw) {
            Ok(s) => s,
            Err(_) if raw != "null" && !raw.starts_with(['{', '[']) => raw.to_string(),
            Err(_) => return None,
        };
        if value.is_empty() {
            return None;
        }
        out.push_str(&encode_segment(&value));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Is the listed record inside `[start, end)` by `field`? Records without a readable value
/// are kept (as the shaper keeps records without a cursor).
pub(super) fn in_window(
    record: &RawObject,
    field: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> bool {
    let t = record
        .0
        .iter()
        .find(|(k, _)| k == field)
        .and_then(|(_, v)| normalise_datetime(v.get()));
    match t {
        Some(t) => t >= window.0 && t < window.1,
        None => true,
    }
}

impl<W: Write> Engine<'_, '_, W> {
    /// A page of a fan-out stream's listing: queue one request per listed record.
    pub(super) fn fan_out(
        &mut self,
        job: &InFlight,
        page: &crate::record::Page,
    ) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some(fan) = spec.fan_out else {
            return Ok(());
        };
        let Some(task) = self.tasks.get(&job.task) else {
            return Ok(());
        };
        let (window, start, generation) = (
            task.window,
            task.window.map(|w| w.0.timestamp()).unwrap_or(0),
            task.generation,
        );
        let mut paths = Vec::new();
        let mut unusable = 0u64;
        for raw in page.all() {
            let Some(record) = raw.object() else {
                unusable += 1;
                continue;
            };
            if let (Some(field), Some(w)) = (fan.list_cursor, window) {
                if !in_window(record, field, w) {
                    continue;
                }
            }
            match fill_path(fan.path, record) {
                Some(p) => paths.push(p),
                None => unusable += 1,
            }
        }
        self.runs[job.stream].pages += 1;
        if unusable > 0 {
            let name = spec.name;
            self.runs[job.stream].skipped += unusable;
            self.out.log(
                Level::Warn,
                &format!(
                    "{name}: skipped {unusable} listed records without the field '{}' needs",
                    fan.path
                ),
            )?;
        }
        if let Some(task) = self.tasks.get_mut(&job.task) {
            task.pages_pending += paths.len();
        }
        for path in paths {
            self.queue.push(std::cmp::Reverse(Pending {
                key: (job.stream, start, job.task, job.offset),
                count: None,
                generation,
                probe: None,
                detail: Some(Detail { path, page: None }),
            }));
        }
        Ok(())
    }

    /// The answer to one per-record request.
    pub(super) fn on_detail(
        &mut self,
        job: InFlight,
        result: Result<String, Error>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some(FanOut {
            envelope,
            skip_error_code,
            ..
        }) = spec.fan_out
        else {
            return self.page_done(job.task);
        };
        let path = job
            .detail
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        let body = match result {
            Ok(body) => body,
            Err(Error::Rejected {
                status: 422,
                code: Some(code),
                message,
                ..
            }) if Some(code) == skip_error_code => {
                let run = &mut self.runs[job.stream];
                run.skipped += 1;
                if run.skipped <= SKIP_WARNINGS {
                    let msg = format!(
                        "{}: skipped GET {path}: Postmark answered ErrorCode {code} ({message}); \
                         the record is gone or not yet readable",
                        spec.name
                    );
                    self.out.log(Level::Warn, &msg)?;
                }
                return self.page_done(job.task);
            }
            Err(e) => return self.fail_stream(job.stream, e),
        };
        let page = match parse_page(&body, envelope) {
            Ok(p) => p,
            Err(detail) => {
                let context = format!("reading '{}' (GET {path})", spec.name);
                return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
            }
        };
        self.emit_page(&job, &page, at)?;
        self.page_done(job.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_template_takes_numbers_and_encoded_strings_from_the_listed_record() {
        let rec: RawObject =
            serde_json::from_str(r#"{"TemplateId": 31204567, "MessageID": "a b/c"}"#).unwrap();
        assert_eq!(
            fill_path("/templates/{TemplateId}", &rec).as_deref(),
            Some("/templates/31204567")
        );
        assert_eq!(
            fill_path("/messages/outbound/{MessageID}/details", &rec).as_deref(),
            Some("/messages/outbound/a%20b%2Fc/details")
        );
        assert_eq!(fill_path("/x/{Missing}", &rec), None);
    }
}
