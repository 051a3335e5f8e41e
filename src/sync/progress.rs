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
}
