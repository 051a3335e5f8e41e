//! Which parts of a stream's time range are done, so that STATE never runs ahead of the
//! records it covers.
//!
//! Windows complete in any order (pages are fetched concurrently); each partition (message
//! stream) keeps a merged list of completed intervals. The stream's frontier is the earliest
//! point, over all partitions, up to which everything from the range start is complete.
//! Memory is bounded by the number of windows, never by the number of records.

use chrono::{DateTime, Utc};

#[derive(Debug)]
pub struct Progress {
    start: DateTime<Utc>,
    /// Per partition: disjoint, sorted, merged completed intervals.
    done: Vec<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
}

impl Progress {
    pub fn new(start: DateTime<Utc>, partitions: usize) -> Progress {
        Progress {
            start,
            done: vec![Vec::new(); partitions.max(1)],
        }
    }

    /// Records that `[from, to)` of `partition` is complete.
    pub fn mark(&mut self, partition: usize, from: DateTime<Utc>, to: DateTime<Utc>) {
        let Some(list) = self.done.get_mut(partition) else {
            return;
        };
        list.push((from, to));
        list.sort();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// The share of `[start, end)` × partitions completed so far, from 0 to 1.
    pub fn fraction_done(&self, end: DateTime<Utc>) -> f64 {
        let span = (end - self.start).num_milliseconds();
        if span <= 0 {
            return 1.0;
        }
        let done: i64 = self
            .done
            .iter()
            .flatten()
            .map(|&(s, e)| (e.min(end) - s.max(self.start)).num_milliseconds().max(0))
            .sum();
        (done as f64 / (span as f64 * self.done.len() as f64)).clamp(0.0, 1.0)
    }

    /// Everything in `[start, frontier)` is complete in every partition.
    pub fn frontier(&self) -> DateTime<Utc> {
        self.done
            .iter()
            .map(|list| match list.first() {
                Some(&(s, e)) if s <= self.start => e,
                _ => self.start,
            })
            .min()
            .unwrap_or(self.start)
    }
}

/// "ETA 42 s", "ETA 3m05s", "ETA 2h10m": the time left if the rest goes at the pace so far.
pub fn eta(share_done: f64, elapsed_secs: f64) -> String {
    if share_done.is_nan() || share_done <= 0.0 || !elapsed_secs.is_finite() {
        return "ETA unknown".into();
    }
    let left = (elapsed_secs * (1.0 - share_done.min(1.0)) / share_done).round() as u64;
    match left {
        0..=59 => format!("ETA {left} s"),
        60..=3599 => format!("ETA {}m{:02}s", left / 60, left % 60),
        _ => format!("ETA {}h{:02}m", left / 3600, left % 3600 / 60),
    }
}

/// One summary table of every stream: the last thing a sync logs.
pub fn summary_table(rows: &[(String, u64, u64, f64, u64, &str)], warnings: u64) -> String {
    // As wide as the longest name (`opens of server 1234567 "Acme Production"`).
    let w = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let mut text = format!(
        "sync summary:\n{:<w$} {:>10} {:>9} {:>9} {:>8}  {}",
        "stream", "records", "requests", "time s", "warnings", "result"
    );
    let (mut records, mut requests) = (0, 0);
    for (name, r, q, t, wn, result) in rows {
        text.push_str(&format!(
            "\n{name:<w$} {r:>10} {q:>9} {t:>9.1} {wn:>8}  {result}"
        ));
        records += r;
        requests += q;
    }
    text.push_str(&format!(
        "\n{:<w$} {records:>10} {requests:>9} {:>9} {warnings:>8}",
        "total", ""
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn the_frontier_waits_for_the_slowest_partition_and_for_gaps() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let h = |n| t0 + Duration::hours(n);
        let mut p = Progress::new(t0, 2);
        p.mark(0, h(1), h(2));
        assert_eq!(p.frontier(), t0, "a gap at the start holds the frontier");
        p.mark(0, h(0), h(1));
        assert_eq!(p.frontier(), t0, "partition 1 has nothing yet");
        p.mark(1, h(0), h(3));
        assert_eq!(p.frontier(), h(2));
        p.mark(0, h(2), h(5));
        assert_eq!(p.frontier(), h(3));
    }

    #[test]
    fn the_share_done_counts_completed_time_of_every_partition() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let h = |n| t0 + Duration::hours(n);
        let mut p = Progress::new(t0, 2);
        assert_eq!(p.fraction_done(h(10)), 0.0);
        p.mark(0, h(5), h(10));
        assert_eq!(
            p.fraction_done(h(10)),
            0.25,
            "a gap does not hide later work"
        );
        p.mark(1, h(0), h(10));
        assert_eq!(p.fraction_done(h(10)), 0.75);
        p.mark(0, h(0), h(5));
        assert_eq!(p.fraction_done(h(10)), 1.0);
    }

    #[test]
    fn an_eta_is_the_remaining_share_at_the_pace_so_far() {
        assert_eq!(eta(0.0, 10.0), "ETA unknown");
        assert_eq!(eta(0.5, 10.0), "ETA 10 s");
        assert_eq!(eta(0.25, 60.0), "ETA 3m00s");
        assert_eq!(eta(0.01, 3600.0), "ETA 99h00m");
        assert_eq!(eta(1.0, 5.0), "ETA 0 s");
    }
}
