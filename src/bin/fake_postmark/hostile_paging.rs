//! Hostile paging: switches that make the search endpoints misbehave the ways a real server
//! (or a proxy in front of it) might, so that tests can prove the connector neither loses
//! nor duplicates rows, nor runs without end, when answers contradict their queries.
//!
//! - late rows: each search first inserts rows inside the window it was asked for (at its
//!   newest end or in its middle), as if Postmark indexed them late;
//! - vanishing rows: each search first deletes the newest rows of its window;
//! - an ignored `offset` (every page is the first page);
//! - an ignored `messagestream` filter (rows of every message stream);
//! - an ignored date filter on `/messages/*`;
//! - a lying `TotalCount` (a constant);
//! - records without their primary key (every Nth record's key is `null`);
//! - garbage rows in `/message-streams`.
//!
//! Late and vanishing rows happen on the first `--hostile-requests` searches only (0 = on
//! every search), so a test can choose whether the window ever settles.

use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::catalog::NSTREAMS;
use crate::eastern::TICKS_PER_SEC;
use crate::store::{Dataset, Query, Rec};

/// Where late rows land inside the queried window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LateAt {
    #[default]
    /// Just before the window's last second (its newest rows: every offset shifts).
    Newest,
    /// Halfway between `fromdate` and `todate`.
    Middle,
}

/// Extra rows in `/message-streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamRows {
    /// Rows that are not message streams: a number, an object without `ID`.
    Garbage,
    /// A stream of a type Postmark does not document (`Marketing`).
    UnknownType,
}

#[derive(Args, Debug, Clone, Default)]
pub struct HostileFlags {
    /// Each search first inserts N rows inside the window it asks for (late indexing).
    #[arg(long, default_value_t = 0)]
    pub late_rows: usize,
    /// Where --late-rows land in the queried window.
    #[arg(long, value_enum, default_value_t = LateAt::Newest)]
    pub late_rows_at: LateAt,
    /// Each search first deletes the N newest rows of the window it asks for.
    #[arg(long, default_value_t = 0)]
    pub vanish_rows: usize,
    /// --late-rows and --vanish-rows happen on the first N searches only (0 = every search).
    #[arg(long, default_value_t = 0)]
    pub hostile_requests: u64,
    /// Answer every page as if offset were 0.
    #[arg(long)]
    pub ignore_offset: bool,
    /// Ignore the messagestream filter: rows of every message stream.
    #[arg(long)]
    pub ignore_messagestream: bool,
    /// Ignore fromdate/todate on /messages/outbound and /messages/inbound.
    #[arg(long)]
    pub ignore_date_filter: bool,
    /// Report this TotalCount on every search, whatever the rows.
    #[arg(long)]
    pub lying_total_count: Option<u64>,
    /// Every record whose sequence number is a multiple of N has its key set to null.
    #[arg(long, default_value_t = 0)]
    pub keyless_every: u64,
    /// Extra rows in /message-streams.
    #[arg(long, value_enum)]
    pub message_stream_rows: Option<StreamRows>,
}

/// Counters of what the hostile switches did, for `/__fake/stats`.
#[derive(Default)]
pub struct Hostile {
    searches: AtomicU64,
    added: AtomicU64,
    vanished: AtomicU64,
}

impl Hostile {
    pub fn stats(&self) -> Value {
        json!({
            "late_rows_added": self.added.load(Ordering::SeqCst),
            "rows_vanished": self.vanished.load(Ordering::SeqCst),
        })
    }
}

/// Does record `r` lose its key under `--keyless-every`?
pub fn keyless(flags: &HostileFlags, r: &Rec) -> bool {
    flags.keyless_every > 0 && r.id.is_multiple_of(flags.keyless_every)
}

/// Re-renders a record with its primary key set to `null` (slow; hostile mode only).
pub fn null_key(out: &mut Vec<u8>, rendered: &[u8], key: &str) {
    match serde_json::from_slice::<Value>(rendered) {
        Ok(mut v) => {
            if let Some(field) = v.get_mut(key) {
                *field = Value::Null;
            }
            out.extend_from_slice(v.to_string().as_bytes());
        }
        Err(_) => out.extend_from_slice(rendered),
    }
}

/// One search as the switches make it: `(TotalCount, page of (message stream, record))`.
#[allow(clippy::too_many_arguments)]
pub fn search(
    flags: &HostileFlags,
    state: &Hostile,
    data: &Dataset,
    stream: usize,
    bounds: (Option<i64>, Option<i64>),
    kind: Option<u8>,
    page: (usize, usize),
    date_filter_applies: bool,
    new_kind: fn(u64) -> u8,
) -> (usize, Vec<(usize, Rec)>) {
    let n = state.searches.fetch_add(1, Ordering::SeqCst);
    let active = flags.hostile_requests == 0 || n < flags.hostile_requests;
    if let (true, (Some(from), Some(to))) = (active, bounds) {
        // The window's own last second is [to - 1 s, to): rows land before it, so they
        // belong to this window and not to the next one.
        let last = (to - 3 * TICKS_PER_SEC / 2).max(from);
        if flags.late_rows > 0 {
            let at = match flags.late_rows_at {
                LateAt::Newest => last,
                LateAt::Middle => from + (to - from) / 2,
            };
            let items: Vec<(i64, u8)> = (0..flags.late_rows)
                .map(|i| {
                    let t = (at - i as i64 * 1_000).max(from);
                    (t, new_kind(crate::gen::mix(t as u64 ^ 0xa7)))
                })
                .collect();
            let added = data.insert(stream, &items);
            state.added.fetch_add(added as u64, Ordering::SeqCst);
        }
        if flags.vanish_rows > 0 {
            let gone = data.remove_newest(stream, from, last, flags.vanish_rows);
            state.vanished.fetch_add(gone as u64, Ordering::SeqCst);
        }
    }
    let (offset, count) = page;
    let offset = if flags.ignore_offset { 0 } else { offset };
    let (from, to) = if flags.ignore_date_filter && date_filter_applies {
        (None, None)
    } else {
        bounds
    };
    let streams: Vec<usize> = if flags.ignore_messagestream {
        (0..NSTREAMS).collect()
    } else {
        vec![stream]
    };
    let (total, rows) = if streams.len() == 1 {
        let (total, rows) = data.search(&Query {
            stream,
            from,
            to,
            kind,
            offset,
            count,
        });
        (total, rows.into_iter().map(|r| (stream, r)).collect())
    } else {
        // Every stream's matches merged newest first, then paged: small data sets only.
        let mut all: Vec<(usize, Rec)> = Vec::new();
        for s in streams {
            let (_, rows) = data.search(&Query {
                stream: s,
                from,
                to,
                kind,
                offset: 0,
                count: usize::MAX,
            });
            all.extend(rows.into_iter().map(|r| (s, r)));
        }
        all.sort_by_key(|b| std::cmp::Reverse(b.1));
        let total = all.len();
        let page = all.into_iter().skip(offset).take(count).collect();
        (total, page)
    };
    let total = flags.lying_total_count.map_or(total, |t| t as usize);
    (total, rows)
}

/// Adds the `--message-stream-rows` rows to a `/message-streams` body.
pub fn patch_streams(flags: &HostileFlags, out: &mut Vec<u8>) {
    let extra: &[u8] = match flags.message_stream_rows {
        None => return,
        Some(StreamRows::Garbage) => b"17,{\"Name\":\"a stream without an ID\"},",
        Some(StreamRows::UnknownType) => {
            b"{\"ID\":\"newsletters\",\"ServerID\":1234567,\"Name\":\"Newsletters\",\"MessageStreamType\":\"Marketing\"},"
        }
    };
    let head = b"{\"MessageStreams\":[";
    if out.starts_with(head) {
        let mut body = head.to_vec();
        body.extend_from_slice(extra);
        body.extend_from_slice(&out[head.len()..]);
        // An empty list would now end in ",]".
        if body.ends_with(b",],\"TotalCount\":0}") {
            body.truncate(body.len() - b",],\"TotalCount\":0}".len());
            body.extend_from_slice(b"],\"TotalCount\":0}");
        }
        *out = body;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_rows_keep_the_body_json() {
        for rows in [StreamRows::Garbage, StreamRows::UnknownType] {
            let flags = HostileFlags {
                message_stream_rows: Some(rows),
                ..HostileFlags::default()
            };
            let mut out = b"{\"MessageStreams\":[{\"ID\":\"outbound\"}],\"TotalCount\":1}".to_vec();
            patch_streams(&flags, &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert!(v["MessageStreams"].as_array().unwrap().len() >= 2);
        }
    }

    #[test]
    fn a_null_key_keeps_the_other_fields() {
        let mut out = Vec::new();
        null_key(&mut out, br#"{"MessageID":"a","Subject":"x"}"#, "MessageID");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["MessageID"].is_null());
        assert_eq!(v["Subject"], "x");
    }
}
