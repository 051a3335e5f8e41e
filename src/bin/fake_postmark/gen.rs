//! Deterministic data generation: base rows and the `--scenario` data sets.
//!
//! Everything derives from record indices through `mix` (the SplitMix64 finalizer, a
//! bijection on u64, which also keeps derived MessageIDs unique). Rows are generated as
//! (time, stream, kind), sorted, and then numbered, so ids grow with time like real ids
//! and ties in time are broken by id.

use crate::bounces::{pick_bounce_type, INBOUND_ERROR};
use crate::catalog::{
    archived_at, NSTREAMS, S_BROADCAST, S_INBOUND, S_LEGACY, S_OUTBOUND, S_PROMO,
};
use crate::eastern::{
    civil_from_days, dst_end_utc, dst_start_utc, eastern_offset, DAY, TICKS_PER_SEC,
};
use crate::store::{Inner, Rec};

/// Inverse of `x ^ (x >> s)`.
fn unxorshift(z: u64, s: u32) -> u64 {
    let mut x = z;
    for _ in 0..(64 / s + 1) {
        x = z ^ (x >> s);
    }
    x
}

/// Multiplicative inverse of an odd number modulo 2^64 (Newton's iteration).
const fn inverse(m: u64) -> u64 {
    let mut inv = m;
    let mut i = 0;
    while i < 6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
        i += 1;
    }
    inv
}

/// Inverse of [`mix`]: recovers a record id from the bits of its MessageID.
pub fn unmix(y: u64) -> u64 {
    let mut z = unxorshift(y, 31);
    z = z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB));
    z = unxorshift(z, 27);
    z = z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9));
    z = unxorshift(z, 30);
    z.wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

/// SplitMix64 finalizer: cheap, well mixed and bijective.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    BigDay,
    HotSecond,
    StatusSecond,
    UnreachableSecond,
    Dst,
    /// 12,000 extra opens and 11,000 extra clicks on messages of the `outbound` stream, so
    /// that one message stream holds more than 10,000 of each.
    ManyEvents,
    /// Like many-events, but every extra open is on `Mobile` (Apple Mail, iOS) and every
    /// extra click on `Desktop` (Chrome, macOS): more than 10,000 events of one platform
    /// in one stream, so even the platform partition is not enough.
    ManyEventsOnePlatform,
}

pub struct GenConfig {
    pub now: i64,
    pub days: u32,
    pub outbound: usize,
    pub inbound: usize,
    pub bounces: usize,
    pub scenarios: Vec<Scenario>,
    /// 0 for the first server; other servers of an account get other data.
    pub seed: u64,
    /// First record id (servers are numbered apart so their MessageIDs never collide).
    pub id_base: u64,
    /// The server has no `legacy-tx` stream: its share goes to `outbound`.
    pub no_legacy: bool,
}

/// `stream`, or `outbound` where the server lacks `legacy-tx`.
fn present(stream: usize, no_legacy: bool) -> usize {
    if no_legacy && stream == S_LEGACY {
        S_OUTBOUND
    } else {
        stream
    }
}

/// A row before numbering: (ticks, stream, kind).
type Row = (i64, u8, u8);

const SEED_OUT: u64 = 0x0b0b_0001;
const SEED_IN: u64 = 0x1b1b_0002;
const SEED_BOUNCE: u64 = 0x2b2b_0003;

/// Outbound status index: mostly Sent, some Queued/Processed.
pub fn pick_status(h: u64) -> u8 {
    match h % 100 {
        0..=87 => 0,
        88..=93 => 1,
        _ => 2,
    }
}

pub fn pick_inbound_status(h: u64) -> u8 {
    match h % 100 {
        0..=84 => 0,
        85..=91 => 1,
        92..=94 => 2,
        95..=97 => 3,
        _ => 4,
    }
}

/// Bursty, deterministic times in `[start, end)` seconds: hour buckets weighted by a
/// diurnal Eastern pattern and occasional 25x bursts, sampled by inverse CDF.
struct Bursty {
    start: i64,
    end: i64,
    prefix: Vec<u64>,
}

impl Bursty {
    fn new(start: i64, end: i64, seed: u64) -> Bursty {
        let buckets = ((end - start).max(1) + 3599) / 3600;
        let mut prefix = Vec::with_capacity(buckets as usize);
        let mut acc = 0u64;
        for b in 0..buckets {
            let s = start + b * 3600;
            let hour = (s + eastern_offset(s)).rem_euclid(DAY) / 3600;
            let diurnal = match hour {
                8..=17 => 4,
                6..=21 => 2,
                _ => 1,
            };
            let h = mix(seed ^ (b as u64) ^ 0xb0b);
            let burst = if h % 100 < 4 { 25 } else { 1 + h % 5 };
            acc += diurnal * burst;
            prefix.push(acc);
        }
        Bursty { start, end, prefix }
    }

    /// Ticks for sample `h` (a hash).
    fn at(&self, h: u64) -> i64 {
        let total = self.prefix.last().copied().unwrap_or(1).max(1);
        let u = ((u128::from(h) * u128::from(total)) >> 64) as u64;
        let b = self.prefix.partition_point(|&p| p <= u) as i64;
        let lo = (self.start + b * 3600) * TICKS_PER_SEC;
        let hi = (self.start + (b + 1) * 3600).min(self.end) * TICKS_PER_SEC;
        lo + (mix(h) % (hi - lo).max(1) as u64) as i64
    }
}

/// Moves rows of archived streams that fall after the archive date to the matching live
/// stream: an archived stream stops receiving mail.
fn live_stream(stream: usize, ticks: i64, now: i64) -> usize {
    match archived_at(stream, now / TICKS_PER_SEC) {
        Some(a) if ticks >= a * TICKS_PER_SEC => {
            if stream == S_PROMO {
                S_BROADCAST
            } else {
                S_OUTBOUND
            }
        }
        _ => stream,
    }
}

/// Sorts rows and numbers them into per-stream vectors.
fn finish(mut rows: Vec<Row>, id_base: u64) -> Inner {
    rows.sort_unstable();
    let mut sizes = [0usize; NSTREAMS];
    for r in &rows {
        sizes[usize::from(r.1)] += 1;
    }
    let mut streams: [Vec<Rec>; NSTREAMS] = Default::default();
    for (v, n) in streams.iter_mut().zip(sizes) {
        v.reserve_exact(n);
    }
    let next_id = id_base + rows.len() as u64;
    for (id, (t, s, kind)) in rows.into_iter().enumerate() {
        streams[usize::from(s)].push(Rec {
            t,
            id: id_base + id as u64,
            kind,
        });
    }
    Inner { streams, next_id }
}

/// UTC seconds of the DST transitions the `dst` scenario clusters around: both of the
/// year of `now`, plus the previous year's spring/autumn one wherever this year's is
/// still ahead, so that a past instance of each kind always exists.
pub fn dst_transitions(now_secs: i64) -> Vec<i64> {
    let (y, _, _) = civil_from_days(now_secs.div_euclid(DAY));
    let mut v = Vec::new();
    for f in [dst_start_utc, dst_end_utc] {
        v.push(f(y));
        if f(y) > now_secs {
            v.push(f(y - 1));
        }
    }
    v.sort_unstable();
    v
}

/// Records every ~7 s from 3 h before to 3 h after each transition. Like base data they
/// stop 10 minutes before `now`: a record from the future would never be synced.
fn dst_rows(now_secs: i64, seed: u64, mut row: impl FnMut(i64, u64) -> Row) -> Vec<Row> {
    let limit = (now_secs - 600) * TICKS_PER_SEC;
    let mut out = Vec::new();
    for (ti, tr) in dst_transitions(now_secs).into_iter().enumerate() {
        for k in 0..(6 * 3600 / 7 + 1) {
            let h = mix(seed ^ ((ti as u64) << 32) ^ k as u64 ^ 0xd57);
            let t =
                (tr - 3 * 3600 + 7 * k) * TICKS_PER_SEC + (h % (3 * TICKS_PER_SEC as u64)) as i64;
            if t < limit {
                out.push(row(t, mix(h)));
            }
        }
    }
    out
}

fn one_second(
    sec: i64,
    n: usize,
    seed: u64,
    mut f: impl FnMut(usize, u64) -> (u8, u8),
) -> impl Iterator<Item = Row> {
    (0..n).map(move |i| {
        let h = mix(seed ^ i as u64);
        let (s, k) = f(i, mix(h));
        (
            sec * TICKS_PER_SEC + (h % TICKS_PER_SEC as u64) as i64,
            s,
            k,
        )
    })
}

pub fn outbound(cfg: &GenConfig) -> Inner {
    let seed_out = SEED_OUT ^ cfg.seed;
    let now_secs = cfg.now.div_euclid(TICKS_PER_SEC);
    let start = now_secs - i64::from(cfg.days) * DAY;
    let bursty = Bursty::new(start, now_secs - 600, seed_out);
    let mut rows: Vec<Row> = Vec::with_capacity(cfg.outbound);
    rows.extend((0..cfg.outbound as u64).map(|i| {
        let h = mix(seed_out ^ i);
        let t = bursty.at(h);
        let h2 = mix(h ^ 0x5);
        let s = match h2 % 100 {
            0..=69 => S_OUTBOUND,
            70..=89 => S_BROADCAST,
            90..=94 => S_LEGACY,
            _ => S_PROMO,
        };
        let s = present(live_stream(s, t, cfg.now), cfg.no_legacy);
        (t, s as u8, pick_status(h2 >> 8))
    }));
    let (o, b) = (S_OUTBOUND as u8, S_BROADCAST as u8);
    for sc in &cfg.scenarios {
        match sc {
            Scenario::BigDay => {
                let day = (now_secs - 10 * DAY).div_euclid(DAY) * DAY;
                let within = Bursty::new(day, day + DAY, seed_out ^ 0xb16);
                rows.extend((0..15_000u64).map(|i| {
                    let h = mix(seed_out ^ 0xb16_0000 ^ i);
                    (
                        within.at(h),
                        if i % 5 == 0 { b } else { o },
                        pick_status(mix(h)),
                    )
                }));
            }
            Scenario::HotSecond => {
                let sec = (now_secs - 5 * DAY).div_euclid(60) * 60 + 17;
                rows.extend(one_second(sec, 12_000, 0x407, |i, h| {
                    (if i % 2 == 0 { o } else { b }, pick_status(h))
                }));
            }
            Scenario::StatusSecond => {
                let status = |i: usize| match i {
                    0..=4_999 => 0,
                    5_000..=9_999 => 2,
                    _ => 1,
                };
                rows.extend(one_second(now_secs - 6 * DAY, 10_500, 0x5ec, |i, _| {
                    (o, status(i))
                }));
            }
            Scenario::UnreachableSecond => {
                rows.extend(one_second(now_secs - 7 * DAY, 10_200, 0x0e5, |_, _| (o, 0)));
            }
            Scenario::Dst => {
                rows.extend(dst_rows(now_secs, seed_out, |t, h| (t, o, pick_status(h))))
            }
            Scenario::ManyEvents | Scenario::ManyEventsOnePlatform => {}
        }
    }
    finish(rows, cfg.id_base)
}

pub fn inbound(cfg: &GenConfig) -> Inner {
    let seed_in = SEED_IN ^ cfg.seed;
    let now_secs = cfg.now.div_euclid(TICKS_PER_SEC);
    let bursty = Bursty::new(
        now_secs - i64::from(cfg.days) * DAY,
        now_secs - 600,
        seed_in,
    );
    let si = S_INBOUND as u8;
    let mut rows: Vec<Row> = (0..cfg.inbound as u64)
        .map(|i| {
            let h = mix(seed_in ^ i);
            (bursty.at(h), si, pick_inbound_status(mix(h ^ 0x7)))
        })
        .collect();
    if cfg.scenarios.contains(&Scenario::Dst) {
        rows.extend(dst_rows(now_secs, seed_in, |t, h| {
            (t, si, pick_inbound_status(h))
        }));
    }
    finish(rows, cfg.id_base)
}

pub fn bounces(cfg: &GenConfig) -> Inner {
    let seed_bounce = SEED_BOUNCE ^ cfg.seed;
    let now_secs = cfg.now.div_euclid(TICKS_PER_SEC);
    let bursty = Bursty::new(
        now_secs - i64::from(cfg.days) * DAY,
        now_secs - 600,
        seed_bounce,
    );
    let mut rows: Vec<Row> = (0..cfg.bounces as u64)
        .map(|i| {
            let h = mix(seed_bounce ^ i);
            let t = bursty.at(h);
            let h2 = mix(h ^ 0x9);
            let s = match h2 % 100 {
                0..=54 => S_OUTBOUND,
                55..=79 => S_BROADCAST,
                80..=84 => S_LEGACY,
                85..=89 => S_PROMO,
                _ => S_INBOUND,
            };
            let s = present(live_stream(s, t, cfg.now), cfg.no_legacy);
            let kind = if s == S_INBOUND {
                INBOUND_ERROR
            } else {
                pick_bounce_type(h2 >> 8)
            };
            (t, s as u8, kind)
        })
        .collect();
    if cfg.scenarios.contains(&Scenario::Dst) {
        let o = S_OUTBOUND as u8;
        rows.extend(dst_rows(now_secs, seed_bounce, |t, h| {
            (t, o, pick_bounce_type(h))
        }));
    }
    finish(rows, cfg.id_base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eastern::days_from_civil;

    fn cfg(scenarios: Vec<Scenario>) -> GenConfig {
        let now = (days_from_civil(2026, 11, 20) * DAY + 15 * 3600) * TICKS_PER_SEC;
        GenConfig {
            now,
            days: 45,
            outbound: 5_000,
            inbound: 300,
            bounces: 400,
            scenarios,
            seed: 0,
            id_base: 0,
            no_legacy: false,
        }
    }

    fn all(inner: &Inner) -> Vec<(usize, Rec)> {
        let mut v = Vec::new();
        for (s, recs) in inner.streams.iter().enumerate() {
            v.extend(recs.iter().map(|r| (s, *r)));
        }
        v
    }

    #[test]
    fn unmix_inverts_mix() {
        for x in [0u64, 1, 42, u64::MAX, 0x1234_5678_9abc_def0] {
            assert_eq!(unmix(mix(x)), x);
        }
    }

    #[test]
    fn deterministic_and_unique() {
        let a = all(&outbound(&cfg(vec![Scenario::HotSecond, Scenario::Dst])));
        let b = all(&outbound(&cfg(vec![Scenario::HotSecond, Scenario::Dst])));
        assert_eq!(a, b);
        let mut ids: Vec<u64> = a.iter().map(|(_, r)| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), a.len());
    }

    #[test]
    fn base_rows_in_range_and_sorted() {
        let c = cfg(vec![]);
        let inner = bounces(&c);
        let lo = c.now - 45 * DAY * TICKS_PER_SEC;
        let hi = c.now - 600 * TICKS_PER_SEC;
        for (s, v) in inner.streams.iter().enumerate() {
            assert!(v.windows(2).all(|w| (w[0].t, w[0].id) < (w[1].t, w[1].id)));
            assert!(v.iter().all(|r| r.t >= lo && r.t < hi));
            assert!(v
                .iter()
                .all(|r| (s == S_INBOUND) == (r.kind == INBOUND_ERROR)));
        }
        assert_eq!(inner.streams.iter().map(Vec::len).sum::<usize>(), 400);
    }

    #[test]
    fn scenario_seconds() {
        let c = cfg(vec![Scenario::StatusSecond, Scenario::UnreachableSecond]);
        let inner = outbound(&c);
        let sec = c.now / TICKS_PER_SEC - 7 * DAY;
        let v = &inner.streams[S_OUTBOUND];
        let n = v
            .iter()
            .filter(|r| r.t / TICKS_PER_SEC == sec && r.kind == 0)
            .count();
        assert!(n >= 10_200);
        let sec6 = c.now / TICKS_PER_SEC - 6 * DAY;
        let queued = v
            .iter()
            .filter(|r| r.t / TICKS_PER_SEC == sec6 && r.kind == 1)
            .count();
        assert!((500..520).contains(&queued));
    }

    #[test]
    fn dst_cluster_covers_both_occurrences_of_the_repeated_hour() {
        let inner = outbound(&cfg(vec![Scenario::Dst]));
        let at = |h: i64| (days_from_civil(2026, 11, 1) * DAY + h * 3600) * TICKS_PER_SEC;
        let v = &inner.streams[S_OUTBOUND];
        let n = |a: i64, b: i64| v.iter().filter(|r| r.t >= at(a) && r.t < at(b)).count();
        // 05:00-06:00 UTC is 01:xx EDT, 06:00-07:00 UTC is 01:xx EST.
        assert!(n(5, 6) > 500 && n(6, 7) > 500, "{} {}", n(5, 6), n(6, 7));
    }

    #[test]
    fn dst_transitions_cover_previous_year_when_needed() {
        let early = days_from_civil(2026, 1, 10) * DAY;
        assert_eq!(dst_transitions(early).len(), 4);
        let mid = days_from_civil(2026, 7, 1) * DAY;
        assert_eq!(
            dst_transitions(mid),
            vec![dst_end_utc(2025), dst_start_utc(2026), dst_end_utc(2026)]
        );
        assert_eq!(dst_transitions(mid + 180 * DAY).len(), 2);
    }
}
