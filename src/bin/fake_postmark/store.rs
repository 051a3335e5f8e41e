//! Compact in-memory record store with per-stream time indexes.
//!
//! A record is 24 bytes (time, id, status/type index); everything else is derived from the
//! id when a page is rendered. Each dataset keeps one vector per message stream, sorted by
//! (time, id) ascending, so a (stream, time range) query finds its bounds by binary search
//! and `TotalCount` plus the page slice cost O(log n + page). Newest-first paging walks the
//! range backwards. Only status/type filters need to scan the range.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::catalog::NSTREAMS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    /// 100-ns ticks since the Unix epoch (for inbound: the hidden receive time).
    pub t: i64,
    /// Sequence number, unique within the dataset; rendered keys derive from it.
    pub id: u64,
    /// Status index (messages) or bounce type index (bounces).
    pub kind: u8,
}

pub struct Inner {
    pub streams: [Vec<Rec>; NSTREAMS],
    /// Next sequence number for arrivals.
    pub next_id: u64,
}

pub struct Dataset {
    inner: RwLock<Inner>,
}

/// One search: stream vector, optional tick bounds `[from, to)`, optional kind filter.
pub struct Query {
    pub stream: usize,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub kind: Option<u8>,
    pub offset: usize,
    pub count: usize,
}

impl Dataset {
    pub fn new(inner: Inner) -> Dataset {
        Dataset {
            inner: RwLock::new(inner),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the vectors half-sorted in a way that
        // matters for a test fake, so poisoning is ignored.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a search; returns the full match count and copies of the page records, newest
    /// first (time desc, id desc). Copies let rendering happen outside the lock.
    pub fn search(&self, q: &Query) -> (usize, Vec<Rec>) {
        let g = self.read();
        let Some(v) = g.streams.get(q.stream) else {
            return (0, Vec::new());
        };
        let lo = q.from.map_or(0, |f| v.partition_point(|r| r.t < f));
        let hi = q.to.map_or(v.len(), |t| v.partition_point(|r| r.t < t));
        if hi <= lo {
            return (0, Vec::new());
        }
        let range = &v[lo..hi];
        match q.kind {
            None => {
                let total = range.len();
                let end = total.saturating_sub(q.offset);
                let start = end.saturating_sub(q.count);
                (total, range[start..end].iter().rev().copied().collect())
            }
            Some(k) => {
                let mut total = 0;
                let mut page = Vec::with_capacity(q.count.min(512));
                for r in range.iter().rev().filter(|r| r.kind == k) {
                    if total >= q.offset && page.len() < q.count {
                        page.push(*r);
                    }
                    total += 1;
                }
                (total, page)
            }
        }
    }

    /// Deletes up to `n` of the newest records of `stream` with time in `[from, to)`;
    /// returns how many went.
    pub fn remove_newest(&self, stream: usize, from: i64, to: i64, n: usize) -> usize {
        let mut g = self.write();
        let Some(v) = g.streams.get_mut(stream) else {
            return 0;
        };
        let lo = v.partition_point(|r| r.t < from);
        let hi = v.partition_point(|r| r.t < to).max(lo);
        let start = hi.saturating_sub(n).max(lo);
        v.drain(start..hi);
        hi - start
    }

    /// Inserts new records (ticks, kind) into one stream, keeping the order; ids continue
    /// the dataset's sequence. Returns the number added.
    pub fn insert(&self, stream: usize, items: &[(i64, u8)]) -> usize {
        self.insert_recs(stream, items).len()
    }

    /// [`Dataset::insert`] returning the records added.
    pub fn insert_recs(&self, stream: usize, items: &[(i64, u8)]) -> Vec<Rec> {
        let mut g = self.write();
        let mut recs: Vec<Rec> = items
            .iter()
            .enumerate()
            .map(|(i, &(t, kind))| Rec {
                t,
                id: g.next_id + i as u64,
                kind,
            })
            .collect();
        g.next_id += recs.len() as u64;
        recs.sort_unstable();
        let Some(v) = g.streams.get_mut(stream) else {
            return Vec::new();
        };
        // Arrivals are usually newer than everything stored, so append when possible.
        let first = match recs.first() {
            Some(r) => *r,
            None => return Vec::new(),
        };
        let appendable = match v.last() {
            Some(l) => *l < first,
            None => true,
        };
        v.extend_from_slice(&recs);
        if !appendable {
            v.sort_unstable();
        }
        recs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds() -> Dataset {
        let mut streams: [Vec<Rec>; NSTREAMS] = Default::default();
        // t = 10, 20, ..., 100; kind alternates.
        streams[0] = (0..10)
            .map(|i| Rec {
                t: (i + 1) * 10,
                id: i as u64,
                kind: (i % 2) as u8,
            })
            .collect();
        Dataset::new(Inner {
            streams,
            next_id: 10,
        })
    }

    fn q(
        from: Option<i64>,
        to: Option<i64>,
        kind: Option<u8>,
        offset: usize,
        count: usize,
    ) -> Query {
        Query {
            stream: 0,
            from,
            to,
            kind,
            offset,
            count,
        }
    }

    #[test]
    fn newest_first_with_offsets() {
        let d = ds();
        let (n, p) = d.search(&q(None, None, None, 0, 3));
        assert_eq!(n, 10);
        assert_eq!(p.iter().map(|r| r.t).collect::<Vec<_>>(), vec![100, 90, 80]);
        let (_, p) = d.search(&q(None, None, None, 9, 3));
        assert_eq!(p.iter().map(|r| r.t).collect::<Vec<_>>(), vec![10]);
        let (n, p) = d.search(&q(None, None, None, 50, 3));
        assert_eq!((n, p.len()), (10, 0));
    }

    #[test]
    fn range_bounds_are_half_open() {
        let d = ds();
        let (n, p) = d.search(&q(Some(20), Some(50), None, 0, 10));
        assert_eq!(n, 3);
        assert_eq!(p.iter().map(|r| r.t).collect::<Vec<_>>(), vec![40, 30, 20]);
    }

    #[test]
    fn kind_filter_counts_all_matches() {
        let d = ds();
        let (n, p) = d.search(&q(None, None, Some(1), 1, 2));
        assert_eq!(n, 5);
        assert_eq!(p.iter().map(|r| r.t).collect::<Vec<_>>(), vec![80, 60]);
    }

    #[test]
    fn insert_keeps_order_and_ids() {
        let d = ds();
        assert_eq!(d.insert(0, &[(55, 0), (200, 1)]), 2);
        let g = d.read();
        assert!(g.streams[0].windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.streams[0].last().map(|r| r.id), Some(11));
        assert_eq!(g.next_id, 12);
    }
}
