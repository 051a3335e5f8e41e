//! Daily outbound statistics (`/stats/outbound/*`).
//!
//! One [`Day`] of counters per (message stream, Eastern date, tag). Days inside the
//! message window are aggregated from the generated messages, bounces, opens and clicks
//! (and updated by arrivals); older days, back to `--stats-days`, come from their own
//! deterministic generator, because Postmark keeps stats after the events expired. Either
//! way every breakdown is internally consistent: platform, client and read-time buckets sum
//! to unique opens; click breakdowns sum to unique clicks.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::bounces::bounce_tag;
use crate::catalog::{archived_at, S_BROADCAST, S_INBOUND, S_LEGACY, S_PROMO};
use crate::eastern::{eastern_offset, DAY, TICKS_PER_SEC};
use crate::events::{family_index, profile, Ev, BROWSERS, EMAIL_CLIENTS};
use crate::gen::mix;
use crate::records::{out_hashes, out_tag, out_track_links, out_track_opens};
use crate::store::Inner;

pub const READ_BUCKETS: [&str; 8] = ["0s", "12s", "16s", "20s", "20s+", "4s", "8s", "unknown"];

/// Counters of one (stream, date, tag).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Day {
    pub sent: u32,
    pub hard: u32,
    pub smtp: u32,
    pub soft: u32,
    pub transient: u32,
    pub spam: u32,
    pub tracked: u32,
    pub link_tracked: u32,
    pub opens: u32,
    pub uopens: u32,
    pub clicks: u32,
    pub uclicks: u32,
    /// Desktop, Mobile, Unknown, WebMail (unique opens).
    pub oplat: [u32; 4],
    /// Desktop, Mobile, Unknown (unique clicks).
    pub cplat: [u32; 3],
    /// HTML, Text (unique clicks).
    pub cloc: [u32; 2],
    pub clients: [u32; EMAIL_CLIENTS.len()],
    pub browsers: [u32; BROWSERS.len()],
    pub read: [u32; READ_BUCKETS.len()],
}

impl Day {
    pub fn add(&mut self, o: &Day) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            sent,
            hard,
            smtp,
            soft,
            transient,
            spam,
            tracked,
            link_tracked,
            opens,
            uopens,
            clicks,
            uclicks
        );
        let arr = |a: &mut [u32], b: &[u32]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        arr(&mut self.oplat, &o.oplat);
        arr(&mut self.cplat, &o.cplat);
        arr(&mut self.cloc, &o.cloc);
        arr(&mut self.clients, &o.clients);
        arr(&mut self.browsers, &o.browsers);
        arr(&mut self.read, &o.read);
    }
}

/// Eastern calendar day number (days since 1970-01-01) of an instant in ticks.
pub fn eastern_day(ticks: i64) -> i32 {
    let secs = ticks.div_euclid(TICKS_PER_SEC);
    (secs + eastern_offset(secs)).div_euclid(DAY) as i32
}

fn read_bucket(secs: u8, platform: u8) -> usize {
    if platform == crate::events::P_UNKNOWN {
        return 7;
    }
    match secs {
        0 => 0,
        1..=4 => 5,
        5..=8 => 6,
        9..=12 => 1,
        13..=16 => 2,
        17..=20 => 3,
        _ => 4,
    }
}

/// Key: (stream, day, tag index + 1; 0 = no tag).
type Key = (u8, i32, u8);

#[derive(Default)]
pub struct Daily {
    map: Mutex<BTreeMap<Key, Day>>,
}

fn tag_key(t: Option<usize>) -> u8 {
    t.map_or(0, |t| t as u8 + 1)
}

impl Daily {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Day>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(m: &mut BTreeMap<Key, Day>, stream: usize, t: i64, tag: u8) -> &mut Day {
        m.entry((stream as u8, eastern_day(t), tag)).or_default()
    }

    pub fn add_message(&self, stream: usize, t: i64, id: u64) {
        Self::message_into(&mut self.lock(), stream, t, id);
    }

    fn message_into(m: &mut BTreeMap<Key, Day>, stream: usize, t: i64, id: u64) {
        if stream == S_INBOUND {
            return;
        }
        let (h, _) = out_hashes(id);
        let d = Self::entry(m, stream, t, tag_key(out_tag(h, stream)));
        d.sent += 1;
        d.tracked += u32::from(out_track_opens(h));
        d.link_tracked += u32::from(out_track_links(h) != 1);
    }

    pub fn add_bounce(&self, stream: usize, r: &crate::store::Rec) {
        Self::bounce_into(&mut self.lock(), stream, r);
    }

    fn bounce_into(m: &mut BTreeMap<Key, Day>, stream: usize, r: &crate::store::Rec) {
        if stream == S_INBOUND {
            return;
        }
        let d = Self::entry(m, stream, r.t, tag_key(bounce_tag(r)));
        match r.kind {
            0 => d.hard += 1,
            1 => d.transient += 1,
            10 => d.soft += 1,
            14 => d.spam += 1,
            18 => d.smtp += 1,
            _ => {}
        }
    }

    pub fn add_events(&self, evs: &[Ev], click: bool) {
        let mut m = self.lock();
        for e in evs {
            Self::event_into(&mut m, e, click);
        }
    }

    fn event_into(m: &mut BTreeMap<Key, Day>, e: &Ev, click: bool) {
        let stream = usize::from(e.stream);
        let (h, _) = out_hashes(e.msg);
        let d = Self::entry(m, stream, e.t, tag_key(out_tag(h, stream)));
        let p = profile(e.prof, click);
        let fam = family_index(e.prof, click);
        if click {
            d.clicks += 1;
            if e.first {
                d.uclicks += 1;
                // Clicks have no WebMail platform.
                let cp = usize::from(p.platform).min(2);
                d.cplat[cp] += 1;
                d.cloc[e.location()] += 1;
                if let Some(f) = fam {
                    d.browsers[f] += 1;
                }
            }
        } else {
            d.opens += 1;
            if e.first {
                d.uopens += 1;
                d.oplat[usize::from(p.platform)] += 1;
                d.read[read_bucket(e.aux, p.platform)] += 1;
                if let Some(f) = fam {
                    d.clients[f] += 1;
                }
            }
        }
    }

    /// Aggregates base data and generates the older days.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        outbound: &Inner,
        bounces: &Inner,
        opens: &[Ev],
        clicks: &[Ev],
        now: i64,
        data_start: i64,
        stats_days: u32,
        seed: u64,
        no_legacy: bool,
    ) -> Daily {
        let mut m = BTreeMap::new();
        for (s, v) in outbound.streams.iter().enumerate() {
            for r in v {
                Self::message_into(&mut m, s, r.t, r.id);
            }
        }
        for (s, v) in bounces.streams.iter().enumerate() {
            for r in v {
                Self::bounce_into(&mut m, s, r);
            }
        }
        for e in opens {
            Self::event_into(&mut m, e, false);
        }
        for e in clicks {
            Self::event_into(&mut m, e, true);
        }
        let first_data_day = eastern_day(data_start);
        let today = eastern_day(now);
        let oldest = today - stats_days as i32;
        for day in oldest..first_data_day {
            for s in [0, S_BROADCAST, S_LEGACY, S_PROMO] {
                if !(no_legacy && s == S_LEGACY) {
                    historic(&mut m, s, day, now, seed);
                }
            }
        }
        Daily { map: Mutex::new(m) }
    }

    /// Per day (ascending) the sum over the selected streams (`None` = all) and tag.
    pub fn days(
        &self,
        stream: Option<usize>,
        tag: Option<u8>,
        from: Option<i32>,
        to: Option<i32>,
    ) -> BTreeMap<i32, Day> {
        let m = self.lock();
        let mut out: BTreeMap<i32, Day> = BTreeMap::new();
        for (&(s, day, t), d) in m.iter() {
            if stream.is_some_and(|x| x != usize::from(s))
                || tag.is_some_and(|x| x != t)
                || from.is_some_and(|f| day < f)
                || to.is_some_and(|x| day > x)
            {
                continue;
            }
            out.entry(day).or_default().add(d);
        }
        out
    }

    /// Every (stream, day) with the sum over tags, for the truth listing.
    pub fn per_stream_day(&self) -> BTreeMap<(u8, i32), Day> {
        let m = self.lock();
        let mut out: BTreeMap<(u8, i32), Day> = BTreeMap::new();
        for (&(s, day, _), d) in m.iter() {
            out.entry((s, day)).or_default().add(d);
        }
        out
    }
}

/// Splits `n` into `w.len()` parts proportional to jittered weights; the parts sum to `n`.
fn split(n: u32, h: u64, w: &[u32], out: &mut [u32]) {
    let jw: Vec<u64> = w
        .iter()
        .enumerate()
        .map(|(i, &x)| u64::from(x) * (50 + mix(h ^ i as u64) % 100))
        .collect();
    let total: u64 = jw.iter().sum::<u64>().max(1);
    let mut left = n;
    for (i, x) in jw.iter().enumerate() {
        let v = ((u64::from(n) * x) / total) as u32;
        let v = v.min(left);
        out[i] += v;
        left -= v;
    }
    // Remainders go to the heaviest bucket.
    if let Some((i, _)) = jw.iter().enumerate().max_by_key(|(_, x)| **x) {
        out[i] += left;
    }
}

fn pct(n: u32, p: u64, h: u64) -> u32 {
    // Randomised rounding keeps small counts sparse but not always zero.
    let x = u64::from(n) * p;
    (x / 1000 + u64::from(x % 1000 > h % 1000)) as u32
}

/// Synthetic counts for one stream and day before the message window.
fn historic(m: &mut BTreeMap<Key, Day>, s: usize, day: i32, now: i64, seed: u64) {
    let now_secs = now / TICKS_PER_SEC;
    let created = now_secs - 700 * DAY;
    let day_secs = i64::from(day) * DAY;
    if day_secs < created || archived_at(s, now_secs).is_some_and(|a| day_secs >= a) {
        return;
    }
    let tags: &[u8] = if s == S_BROADCAST || s == S_PROMO {
        &[0, 7, 8, 9]
    } else {
        &[0, 1, 2, 3, 4, 5, 6]
    };
    let weekday = (i64::from(day) + 4).rem_euclid(7); // 0 = Sunday
    for &tag in tags {
        let h =
            mix(seed ^ (s as u64) << 48 ^ (u64::from(day as u32) << 8) ^ u64::from(tag) ^ 0x57a7);
        let base: u64 = match s {
            0 => 30,
            S_BROADCAST => {
                if weekday != 2 && weekday != 4 {
                    continue;
                }
                120
            }
            S_LEGACY => 6,
            _ => {
                if weekday != 1 {
                    continue;
                }
                60
            }
        };
        let weekend = weekday == 0 || weekday == 6;
        if h.is_multiple_of(6) || (weekend && h.is_multiple_of(3)) {
            continue;
        }
        let sent = (base * (20 + (h >> 8) % 100) / 100) as u32;
        if sent == 0 {
            continue;
        }
        let mut d = Day {
            sent,
            ..Day::default()
        };
        let h2 = mix(h);
        d.tracked = pct(sent, 600, h2);
        d.link_tracked = pct(sent, 700, h2 >> 10);
        d.hard = pct(sent, 15, h2 >> 20);
        d.soft = pct(sent, 10, h2 >> 30);
        d.transient = pct(sent, 3, h2 >> 40);
        d.smtp = u32::from((h2 >> 50).is_multiple_of(60));
        d.spam = pct(sent, 2, h2 >> 5);
        d.uopens = pct(d.tracked, 400, h2 >> 15);
        d.opens = d.uopens + pct(d.uopens, 600, h2 >> 25);
        split(d.uopens, h2 ^ 1, &[30, 40, 8, 35], &mut d.oplat);
        let unknown = d.oplat[2];
        split(
            d.uopens - unknown,
            h2 ^ 2,
            &[35, 45, 15, 3, 1, 6],
            &mut d.clients,
        );
        let mut r7 = [0u32; 7];
        split(
            d.uopens - unknown,
            h2 ^ 3,
            &[20, 10, 6, 5, 15, 25, 12],
            &mut r7,
        );
        d.read[..7].copy_from_slice(&r7);
        d.read[7] = unknown;
        d.uclicks = pct(d.link_tracked, 80, h2 >> 35);
        d.clicks = d.uclicks + pct(d.uclicks, 300, h2 >> 45);
        split(d.uclicks, h2 ^ 4, &[45, 45, 10], &mut d.cplat);
        split(d.uclicks, h2 ^ 5, &[90, 10], &mut d.cloc);
        let known = d.uclicks - d.cplat[2];
        split(known, h2 ^ 6, &[35, 15, 10, 10, 30], &mut d.browsers);
        m.insert((s as u8, day, tag), d);
    }
}

/// (key, value) pairs of one daily endpoint for a day, non-zero only, in output order.
pub fn keys_of(endpoint: &str, d: &Day) -> Vec<(&'static str, u32)> {
    let mut v: Vec<(&'static str, u32)> = match endpoint {
        "sends" => vec![("Sent", d.sent)],
        "bounces" => vec![
            ("HardBounce", d.hard),
            ("SMTPApiError", d.smtp),
            ("SoftBounce", d.soft),
            ("Transient", d.transient),
        ],
        "spam" => vec![("SpamComplaint", d.spam)],
        "tracked" => vec![("Tracked", d.tracked)],
        "opens" => vec![("Opens", d.opens), ("Unique", d.uopens)],
        "opens/platforms" => crate::events::PLATFORMS
            .iter()
            .copied()
            .zip(d.oplat)
            .collect(),
        "opens/emailclients" => EMAIL_CLIENTS.iter().copied().zip(d.clients).collect(),
        "opens/readtimes" => READ_BUCKETS.iter().copied().zip(d.read).collect(),
        "clicks" => vec![("Clicks", d.clicks), ("Unique", d.uclicks)],
        "clicks/browserfamilies" => BROWSERS.iter().copied().zip(d.browsers).collect(),
        "clicks/platforms" => ["Desktop", "Mobile", "Unknown"]
            .into_iter()
            .zip(d.cplat)
            .collect(),
        "clicks/location" => ["HTML", "Text"].into_iter().zip(d.cloc).collect(),
        _ => Vec::new(),
    };
    v.retain(|(_, n)| *n > 0);
    v
}

pub const DAILY_ENDPOINTS: [&str; 12] = [
    "sends",
    "bounces",
    "spam",
    "tracked",
    "opens",
    "opens/platforms",
    "opens/emailclients",
    "opens/readtimes",
    "clicks",
    "clicks/browserfamilies",
    "clicks/platforms",
    "clicks/location",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn historic_days_are_consistent() {
        let mut m = BTreeMap::new();
        let now = 1_790_000_000 * TICKS_PER_SEC;
        for day in 20_000..20_200 {
            for s in [0, S_BROADCAST, S_LEGACY, S_PROMO] {
                historic(&mut m, s, day, now, 0);
            }
        }
        assert!(m.len() > 500);
        for d in m.values() {
            assert_eq!(d.oplat.iter().sum::<u32>(), d.uopens);
            assert_eq!(d.read.iter().sum::<u32>(), d.uopens);
            assert_eq!(d.clients.iter().sum::<u32>() + d.oplat[2], d.uopens);
            assert_eq!(d.cplat.iter().sum::<u32>(), d.uclicks);
            assert_eq!(d.cloc.iter().sum::<u32>(), d.uclicks);
            assert!(d.opens >= d.uopens && d.clicks >= d.uclicks);
        }
    }
}
