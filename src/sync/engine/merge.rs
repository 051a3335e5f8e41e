//! Merged endpoints: several daily statistics endpoints read for one message stream and
//! range become one record per day (`stats_outbound_daily`). Each part's `Days` are folded
//! into a per-task buffer (bounded by the days of the range, never by records); when the
//! last part has answered, one record per day is emitted with the counts Postmark returned
//! (a count it left out stays absent: nothing is invented).

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Engine, InFlight};
use crate::error::Error;
use crate::record::{Page, Record};
use crate::streams::Part;

/// The days read so far for one task, and how many parts are still to come.
#[derive(Debug, Default)]
pub struct MergeBuf {
    /// Per day, each part's counts in the slot of its part: the record lists them in the
    /// stream's part order, whatever order the answers arrived in.
    days: BTreeMap<String, Vec<Map<String, Value>>>,
    parts_seen: usize,
}

impl MergeBuf {
    /// Folds one part's days in; `Date` is the key, other fields renamed per the part.
    fn add(&mut self, slot: usize, part: &Part, days: &[Record]) -> Result<(), String> {
        for day in days {
            let obj = day
                .fields()
                .map_err(|why| format!("a day is not a JSON object ({why})"))?;
            let Some(date) = obj
                .0
                .iter()
                .find(|(k, _)| k == "Date")
                .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
            else {
                return Err("a day has no 'Date'".into());
            };
            let slots = self.days.entry(date).or_default();
            if slots.len() <= slot {
                slots.resize_with(slot + 1, Map::new);
            }
            let day = &mut slots[slot];
            for (k, v) in &obj.0 {
                if k == "Date" {
                    continue;
                }
                let name = part
                    .renames
                    .iter()
                    .find(|(from, _)| from == k)
                    .map_or(k.as_ref(), |(_, to)| *to);
                let value: Value = serde_json::from_str(v.get()).unwrap_or(Value::Null);
                day.insert(name.to_string(), value);
            }
        }
        self.parts_seen += 1;
        Ok(())
    }

    /// One record per day, oldest first: `{"Date": ..., <counts>}`.
    fn records(self) -> Vec<Box<RawValue>> {
        self.days
            .into_iter()
            .filter_map(|(date, counts)| {
                let mut rec = Map::with_capacity(counts.iter().map(Map::len).sum::<usize>() + 1);
                rec.insert("Date".into(), Value::from(date));
                for part in counts {
                    rec.extend(part);
                }
                RawValue::from_string(Value::Object(rec).to_string()).ok()
            })
            .collect()
    }
}

impl<W: Write> Engine<'_, '_, W> {
    /// One part of a merged stream answered; emit the days once every part has.
    pub(super) fn merge_part(
        &mut self,
        job: &InFlight,
        page: &Page,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let spec = self.runs[job.stream].selected.spec;
        let Some(part) = spec.parts.get(job.offset as usize) else {
            return Ok(());
        };
        let run = &mut self.runs[job.stream];
        let buf = run.merging.entry(job.task).or_default();
        if let Err(detail) = buf.add(job.offset as usize, part, &page.records) {
            let context = format!("reading '{}' ({})", spec.name, part.path);
            return self.fail_stream(job.stream, Error::UnexpectedResponse { context, detail });
        }
        if buf.parts_seen < spec.parts.len() {
            return Ok(());
        }
        let Some(buf) = run.merging.remove(&job.task) else {
            return Ok(());
        };
        let days = buf.records();
        let merged = Page {
            total: None,
            records: Vec::new(),
            built: days.iter().map(|d| Record::parse(d.get())).collect(),
            carried: Vec::new(),
        };
        self.emit_page(job, &merged, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_page;
    use crate::streams::Envelope;

    const DAYS: Envelope = Envelope::Nested {
        key: "Days",
        carry: &[],
    };

    #[test]
    fn parts_merge_per_day_with_renames_and_no_invented_zeros() {
        let sends =
            r#"{"Days":[{"Date":"2026-11-16","Sent":5},{"Date":"2026-11-17","Sent":3}],"Sent":8}"#;
        let opens = r#"{"Days":[{"Date":"2026-11-17","Opens":4,"Unique":2}],"Opens":4,"Unique":2}"#;
        let mut buf = MergeBuf::default();
        let plain = Part {
            path: "/stats/outbound/sends",
            renames: &[],
        };
        let renamed = Part {
            path: "/stats/outbound/opens",
            renames: &[("Unique", "UniqueOpens")],
        };
        buf.add(0, &plain, &parse_page(sends, DAYS).unwrap().records)
            .unwrap();
        buf.add(1, &renamed, &parse_page(opens, DAYS).unwrap().records)
            .unwrap();
        let out: Vec<Value> = buf
            .records()
            .iter()
            .map(|r| serde_json::from_str(r.get()).unwrap())
            .collect();
        assert_eq!(out[0], serde_json::json!({"Date": "2026-11-16", "Sent": 5}));
        assert_eq!(
            out[1],
            serde_json::json!({"Date": "2026-11-17", "Sent": 3, "Opens": 4, "UniqueOpens": 2})
        );
    }

    #[test]
    fn a_merged_day_lists_its_counts_in_part_order_whatever_order_the_parts_answered_in() {
        let sends = r#"{"Days":[{"Date":"2026-11-17","Sent":3}]}"#;
        let opens = r#"{"Days":[{"Date":"2026-11-17","Opens":4,"Unique":2}]}"#;
        let parts = [
            Part {
                path: "/stats/outbound/sends",
                renames: &[],
            },
            Part {
                path: "/stats/outbound/opens",
                renames: &[("Unique", "UniqueOpens")],
            },
        ];
        let text = |order: [usize; 2]| {
            let mut buf = MergeBuf::default();
            for i in order {
                let body = [sends, opens][i];
                buf.add(i, &parts[i], &parse_page(body, DAYS).unwrap().records)
                    .unwrap();
            }
            buf.records()[0].get().to_string()
        };
        assert_eq!(
            text([0, 1]),
            r#"{"Date":"2026-11-17","Sent":3,"Opens":4,"UniqueOpens":2}"#
        );
        assert_eq!(text([1, 0]), text([0, 1]));
    }
}
