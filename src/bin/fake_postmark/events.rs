//! Open and click events of outbound messages (`/messages/outbound/opens`, `/clicks`, the
//! per-message variants and the `Opened`/`LinkClicked` entries of message details).
//!
//! An event is 24 bytes: time, message id, recipient index, profile, geo, an auxiliary byte
//! (opens: `ReadSeconds`; clicks: link index plus `ClickLocation` in the top bit), its
//! message stream and whether it is the first of its kind. Everything else is derived from
//! the message id and these bytes when a page is rendered. Events are kept twice: per
//! message stream sorted by time (listing, date filter by binary search) and all together
//! sorted by message (per-message endpoints, details). Event times are whole microseconds
//! so that the connector's six-digit normalisation is exact.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::catalog::{NSTREAMS, STREAMS, S_OUTBOUND};
use crate::eastern::{DAY, TICKS_PER_SEC};
use crate::gen::mix;
use crate::json::{boolean, key, string, uint};
use crate::records::{
    email, message_id, out_hashes, out_recipient, out_tag, out_track_links, out_track_opens,
    out_two_to, TAG_NAMES,
};
use crate::store::Inner;
use crate::timefmt::push_eastern_7;

/// Ticks per microsecond.
pub const MICRO: i64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ev {
    pub t: i64,
    pub msg: u64,
    pub rcpt: u8,
    /// Opens: ReadSeconds. Clicks: link index | location (0 HTML, 1 Text) << 7.
    pub aux: u8,
    pub prof: u8,
    pub geo: u8,
    pub stream: u8,
    /// Opens: first open of (message, recipient). Clicks: first click of (message,
    /// recipient, link). Unique counts of the stats endpoints count these.
    pub first: bool,
}

impl Ev {
    pub fn link(&self) -> usize {
        usize::from(self.aux & 0x7f) % LINKS.len()
    }
    pub fn location(&self) -> usize {
        usize::from(self.aux >> 7)
    }
}

/// Platform names in the alphabetical order the stats endpoints use.
pub const PLATFORMS: [&str; 4] = ["Desktop", "Mobile", "Unknown", "WebMail"];
pub const P_DESKTOP: u8 = 0;
pub const P_MOBILE: u8 = 1;
pub const P_UNKNOWN: u8 = 2;
pub const P_WEBMAIL: u8 = 3;

pub struct Profile {
    pub client: [&'static str; 3],
    pub os: [&'static str; 3],
    pub platform: u8,
    pub ua: &'static str,
}

const UNKNOWN3: [&str; 3] = ["Unknown", "Unknown", "Unknown"];
const IOS: [&str; 3] = ["iOS 17", "Apple Inc.", "iOS"];
const ANDROID: [&str; 3] = ["Android 14", "Google", "Android"];
const WIN10: [&str; 3] = ["Windows 10", "Microsoft Corporation", "Windows 10"];
const MACOS: [&str; 3] = ["macOS 14", "Apple Inc.", "OS X"];

pub const OPEN_PROFILES: [Profile; 9] = [
    Profile { client: ["Gmail", "Google", "Gmail"], os: UNKNOWN3, platform: P_WEBMAIL, ua: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)" },
    Profile { client: ["Apple Mail", "Apple Inc.", "Apple Mail"], os: IOS, platform: P_MOBILE, ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148" },
    Profile { client: ["Apple Mail", "Apple Inc.", "Apple Mail"], os: MACOS, platform: P_DESKTOP, ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)" },
    Profile { client: ["Outlook 2019", "Microsoft Corporation", "Outlook"], os: WIN10, platform: P_DESKTOP, ua: "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.10730; Pro)" },
    Profile { client: ["Yahoo! Mail", "Yahoo", "Yahoo! Mail"], os: UNKNOWN3, platform: P_WEBMAIL, ua: "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html" },
    Profile { client: ["Gmail App", "Google", "Gmail"], os: ANDROID, platform: P_MOBILE, ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0 Mobile Safari/537.36" },
    Profile { client: ["Thunderbird 115.8", "Mozilla", "Thunderbird"], os: ["Ubuntu", "Canonical Ltd.", "Linux"], platform: P_DESKTOP, ua: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.8.0" },
    Profile { client: ["unknown", "unknown", "Unknown"], os: UNKNOWN3, platform: P_UNKNOWN, ua: "" },
    Profile { client: ["Samsung Email 6.1", "Samsung", "Samsung Email"], os: ANDROID, platform: P_MOBILE, ua: "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0 Mobile Safari/537.36" },
];

pub const CLICK_PROFILES: [Profile; 7] = [
    Profile { client: ["Chrome 122.0.6261.112", "Google", "Chrome"], os: MACOS, platform: P_DESKTOP, ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36" },
    Profile { client: ["Mobile Safari 17.3", "Apple Inc.", "Mobile Safari"], os: IOS, platform: P_MOBILE, ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1" },
    Profile { client: ["Firefox 123.0", "Mozilla", "Firefox"], os: WIN10, platform: P_DESKTOP, ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0" },
    Profile { client: ["Edge 122.0", "Microsoft Corporation", "Edge"], os: ["Windows 11", "Microsoft Corporation", "Windows 11"], platform: P_DESKTOP, ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0" },
    Profile { client: ["Chrome Mobile 122.0", "Google", "Chrome Mobile"], os: ANDROID, platform: P_MOBILE, ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36" },
    Profile { client: ["Samsung Internet 23.0", "Samsung", "Samsung Internet"], os: ANDROID, platform: P_MOBILE, ua: "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36" },
    Profile { client: ["unknown", "unknown", "Unknown"], os: UNKNOWN3, platform: P_UNKNOWN, ua: "Go-http-client/1.1" },
];

/// Client families counted by `opens/emailclients` (the `Family` of each open profile,
/// `Unknown` excluded), alphabetical.
pub const EMAIL_CLIENTS: [&str; 6] = [
    "Apple Mail",
    "Gmail",
    "Outlook",
    "Samsung Email",
    "Thunderbird",
    "Yahoo! Mail",
];
/// Browser families counted by `clicks/browserfamilies`, alphabetical.
pub const BROWSERS: [&str; 5] = [
    "Chrome",
    "Chrome Mobile",
    "Edge",
    "Firefox",
    "Mobile Safari",
];

/// Index of a profile's family in [`EMAIL_CLIENTS`] / [`BROWSERS`]; `None` for Unknown.
pub fn family_index(prof: u8, click: bool) -> Option<usize> {
    let p = profile(prof, click);
    let list: &[&str] = if click { &BROWSERS } else { &EMAIL_CLIENTS };
    list.iter().position(|f| *f == p.client[2])
}

pub fn profile(prof: u8, click: bool) -> &'static Profile {
    if click {
        &CLICK_PROFILES[usize::from(prof) % CLICK_PROFILES.len()]
    } else {
        &OPEN_PROFILES[usize::from(prof) % OPEN_PROFILES.len()]
    }
}

/// (CountryISOCode, Country, RegionISOCode, Region, City, Zip, Coords, IP); index 0 is `{}`.
type Geo = [&'static str; 8];
pub const GEOS: [Option<Geo>; 8] = [
    None,
    Some([
        "US",
        "United States",
        "NY",
        "New York",
        "Brooklyn",
        "11201",
        "40.6943,-73.9903",
        "198.51.100.44",
    ]),
    Some([
        "CA",
        "Canada",
        "ON",
        "Ontario",
        "Toronto",
        "M5V",
        "43.6426,-79.3871",
        "203.0.113.77",
    ]),
    Some([
        "DE",
        "Germany",
        "BE",
        "Berlin",
        "Berlin",
        "10115",
        "52.5200,13.4050",
        "192.0.2.18",
    ]),
    Some([
        "JP",
        "Japan",
        "13",
        "Tōkyō",
        "Tokyo",
        "100-0001",
        "35.6895,139.6917",
        "198.51.100.201",
    ]),
    Some([
        "GB",
        "United Kingdom",
        "ENG",
        "England",
        "London",
        "EC1A",
        "51.5072,-0.1276",
        "203.0.113.5",
    ]),
    Some([
        "BR",
        "Brazil",
        "SP",
        "São Paulo",
        "São Paulo",
        "01000-000",
        "-23.5505,-46.6333",
        "192.0.2.240",
    ]),
    Some([
        "US",
        "United States",
        "CA",
        "California",
        "San Francisco",
        "94103",
        "37.7749,-122.4194",
        "198.51.100.9",
    ]),
];

pub const LINKS: [&str; 6] = [
    "https://acme.example/reset/abc123",
    "https://acme.example/account",
    "https://acme.example/pricing?utm_source=newsletter&utm_medium=email",
    "https://acme.example/unsubscribe",
    "https://docs.acme.example/guide#getting-started",
    "https://acme.example/caf%C3%A9/men\u{fc}",
];
pub const LOCATIONS: [&str; 2] = ["HTML", "Text"];

fn pick_open(h: u64) -> u8 {
    match h % 100 {
        0..=29 => 0,
        30..=49 => 1,
        50..=59 => 2,
        60..=71 => 3,
        72..=77 => 4,
        78..=85 => 5,
        86..=87 => 6,
        88..=93 => 7,
        _ => 8,
    }
}

fn pick_click(h: u64) -> u8 {
    match h % 100 {
        0..=34 => 0,
        35..=54 => 1,
        55..=64 => 2,
        65..=74 => 3,
        75..=86 => 4,
        87..=92 => 5,
        _ => 6,
    }
}

/// Whether a message can have opens (`TrackOpens`) or clicks (`TrackLinks` not `None`).
/// Only `Sent` messages (status 0) are opened or clicked.
pub fn eligible(id: u64, kind: u8, click: bool) -> bool {
    let (h, _) = out_hashes(id);
    kind == 0
        && if click {
            out_track_links(h) != 1
        } else {
            out_track_opens(h)
        }
}

/// Builds one event of message (`t0`, `id`, `stream`) at time `at` (or a delay after the
/// message drawn from `hc` when `at` is `None`), never at or after `limit`.
fn make_ev(m: (i64, u64, u8), hc: u64, at: Option<i64>, limit: i64, click: bool) -> Ev {
    let (t0, id, stream) = m;
    let (h, _) = out_hashes(id);
    let rcpt = if out_two_to(h) {
        ((hc >> 5) & 1) as u8
    } else {
        0
    };
    let t = match at {
        Some(a) => a,
        None => {
            let span = (limit - t0 - 3 * TICKS_PER_SEC).clamp(0, 10 * DAY * TICKS_PER_SEC);
            let u = ((hc >> 11) & 0xffff_ffff) as f64 / 4_294_967_296.0;
            let d = 3 * TICKS_PER_SEC + (span as f64 * u * u * u) as i64;
            (t0 + d).min(limit - MICRO)
        }
    };
    let t = t.div_euclid(MICRO) * MICRO;
    let prof = if click {
        pick_click(hc >> 40)
    } else {
        pick_open(hc >> 40)
    };
    let aux = if click {
        let link = ((hc >> 52) % LINKS.len() as u64) as u8;
        let loc = match out_track_links(h) {
            2 => 0,
            3 => 1,
            _ => u8::from((hc >> 58).is_multiple_of(7)),
        };
        link | loc << 7
    } else if profile(prof, false).platform == P_UNKNOWN {
        0
    } else {
        ((hc >> 52) % 45) as u8
    };
    Ev {
        t,
        msg: id,
        rcpt,
        aux,
        prof,
        geo: ((hc >> 48) % GEOS.len() as u64) as u8,
        stream,
        first: false,
    }
}

pub struct EvData {
    pub by_time: [Vec<Ev>; NSTREAMS],
    /// Generated events sorted by (message, recipient, time).
    by_msg: Vec<Ev>,
    /// Events added by `/__fake/arrive` (scanned for per-message lookups).
    arrived: HashMap<u64, Vec<Ev>>,
}

/// Opens or clicks of one server.
pub struct Events {
    inner: RwLock<EvData>,
    pub click: bool,
}

/// Eligible messages (time, id, stream) of a dataset.
fn candidates(out: &Inner, click: bool, only: Option<usize>, before: i64) -> Vec<(i64, u64, u8)> {
    let mut c = Vec::new();
    for (s, v) in out.streams.iter().enumerate() {
        if only.is_some_and(|o| o != s) {
            continue;
        }
        let hi = v.partition_point(|r| r.t < before);
        c.extend(
            v[..hi]
                .iter()
                .filter(|r| eligible(r.id, r.kind, click))
                .map(|r| (r.t, r.id, s as u8)),
        );
    }
    c
}

/// The message `--hot-message-events` piles its events on: the first `outbound` message
/// sent at or after `from` that can have both opens and clicks.
pub fn hot_message(out: &Inner, from: i64) -> Option<(i64, u64, u8)> {
    out.streams[S_OUTBOUND]
        .iter()
        .find(|r| r.t >= from && eligible(r.id, r.kind, false) && eligible(r.id, r.kind, true))
        .map(|r| (r.t, r.id, S_OUTBOUND as u8))
}

/// The longest time the events of the hot message are spread over after it was sent.
const HOT_SPREAD: i64 = DAY * TICKS_PER_SEC;

/// `n` events of message `m`, evenly spread over the day after it was sent (at most half
/// the time left before `limit`), newest before `limit`, profiles drawn as usual.
fn hot_events(m: (i64, u64, u8), n: usize, click: bool, limit: i64, seed: u64) -> Vec<Ev> {
    let start = m.0 + 3 * TICKS_PER_SEC;
    let span = ((limit - start) / 2).clamp(0, HOT_SPREAD);
    let salt = if click { 0x407c_0000 } else { 0x4070_0000 };
    (0..n as u64)
        .map(|i| {
            let t = start + (i128::from(span) * i128::from(i) / n as i128) as i64;
            make_ev(m, mix(seed ^ salt ^ (3 << 40) ^ i), Some(t), limit, click)
        })
        .collect()
}

/// Generates `n` events over all eligible messages plus `extra` on messages of the
/// `outbound` stream only, each after its message and before `limit`, plus `hot.0` events
/// on the hot message (see [`hot_message`]) sent at or after `hot.1`.
pub fn generate(
    out: &Inner,
    n: usize,
    extra: (usize, bool),
    hot: (usize, i64),
    click: bool,
    limit: i64,
    seed: u64,
) -> Events {
    let (extra, one_platform) = extra;
    let salt = if click { 0xc11c_0000 } else { 0x0be0_0000 };
    let mut evs = Vec::with_capacity(n + extra + hot.0);
    if hot.0 > 0 {
        if let Some(m) = hot_message(out, hot.1) {
            evs.extend(hot_events(m, hot.0, click, limit, seed));
        }
    }
    for (count, only, tag) in [(n, None, 0u64), (extra, Some(S_OUTBOUND), 1 << 40)] {
        let cands = candidates(out, click, only, limit);
        if cands.is_empty() {
            continue;
        }
        for i in 0..count as u64 {
            let hc = mix(seed ^ salt ^ tag ^ i);
            let m = cands[(hc % cands.len() as u64) as usize];
            let mut e = make_ev(m, mix(hc), None, limit, click);
            if one_platform && tag != 0 {
                // Profile 0 of clicks is Desktop Chrome; profile 1 of opens is Mobile.
                e.prof = u8::from(!click);
                if !click && e.aux == 0 {
                    e.aux = 3;
                }
            }
            evs.push(e);
        }
    }
    Events::from_events(evs, click)
}

/// Sets `first` over events sorted by (message, recipient, time).
fn mark_first(evs: &mut [Ev], click: bool) {
    let mut seen_links = 0u64;
    for i in 0..evs.len() {
        let new_group = i == 0 || (evs[i - 1].msg, evs[i - 1].rcpt) != (evs[i].msg, evs[i].rcpt);
        if new_group {
            seen_links = 0;
        }
        evs[i].first = if click {
            let bit = 1u64 << evs[i].link();
            let first = seen_links & bit == 0;
            seen_links |= bit;
            first
        } else {
            new_group
        };
    }
}

impl Events {
    pub fn from_events(mut evs: Vec<Ev>, click: bool) -> Events {
        evs.sort_unstable_by_key(|e| (e.msg, e.rcpt, e.t));
        // Keys must be distinct: no two events of one (message, recipient) share a time.
        for i in 1..evs.len() {
            if (evs[i - 1].msg, evs[i - 1].rcpt) == (evs[i].msg, evs[i].rcpt)
                && evs[i].t <= evs[i - 1].t
            {
                evs[i].t = evs[i - 1].t + MICRO;
            }
        }
        mark_first(&mut evs, click);
        let mut by_time: [Vec<Ev>; NSTREAMS] = Default::default();
        for e in &evs {
            by_time[usize::from(e.stream) % NSTREAMS].push(*e);
        }
        for v in &mut by_time {
            v.sort_unstable();
        }
        Events {
            inner: RwLock::new(EvData {
                by_time,
                by_msg: evs,
                arrived: HashMap::new(),
            }),
            click,
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, EvData> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, EvData> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every event of one message, newest first.
    pub fn of_message(&self, id: u64) -> Vec<Ev> {
        let g = self.read();
        let lo = g.by_msg.partition_point(|e| e.msg < id);
        let mut v: Vec<Ev> = g.by_msg[lo..]
            .iter()
            .take_while(|e| e.msg == id)
            .chain(g.arrived.get(&id).into_iter().flatten())
            .copied()
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    /// Adds `count` events 1 ms apart from `at` on eligible messages received before `at`
    /// (of stream `only`, if given); returns the new events (for the stats).
    pub fn arrive(&self, out: &Inner, only: Option<usize>, at: i64, count: usize) -> Vec<Ev> {
        let cands = candidates(out, self.click, only, at);
        if cands.is_empty() {
            return Vec::new();
        }
        let mut new = Vec::with_capacity(count);
        for i in 0..count as u64 {
            let t = at + i as i64 * 10_000;
            let hc = mix(t as u64 ^ 0xa77e ^ u64::from(self.click));
            let m = cands[(hc % cands.len() as u64) as usize];
            new.push(make_ev(m, mix(hc), Some(t), i64::MAX, self.click));
        }
        // First-ness against what the message already has.
        let mut batch: HashMap<u64, Vec<Ev>> = HashMap::new();
        for slot in new.iter_mut() {
            let prior = self.of_message(slot.msg);
            let e = *slot;
            let same = |p: &&Ev| p.rcpt == e.rcpt && (!self.click || p.link() == e.link());
            let mine = batch.entry(e.msg).or_default();
            let (first, clash) = {
                let mut earlier = prior.iter().chain(mine.iter()).filter(same);
                let first = earlier.clone().next().is_none();
                (first, earlier.any(|p| p.t == e.t))
            };
            slot.first = first;
            if clash {
                slot.t += MICRO;
            }
            mine.push(*slot);
        }
        let mut g = self.write();
        let mut touched = [false; NSTREAMS];
        for e in &new {
            let s = usize::from(e.stream) % NSTREAMS;
            let v = &mut g.by_time[s];
            // Live arrivals append; back-dated ones re-sort the stream once below.
            touched[s] |= v.last().is_some_and(|l| l > e);
            v.push(*e);
            g.arrived.entry(e.msg).or_default().push(*e);
        }
        for (s, t) in touched.iter().enumerate() {
            if *t {
                g.by_time[s].sort_unstable();
            }
        }
        new
    }
}

/// Filters of the opens/clicks search (api.md §13.1); `None` = not given.
#[derive(Default)]
pub struct EvFilter {
    pub recipient: Option<String>,
    pub tag: Option<String>,
    pub platform: Option<u8>,
    /// client_name, client_company, client_family, os_name, os_company, os_family.
    pub device: [Option<String>; 6],
    /// country, region, city.
    pub geo: [Option<String>; 3],
}

impl EvFilter {
    pub fn is_empty(&self) -> bool {
        self.recipient.is_none()
            && self.tag.is_none()
            && self.platform.is_none()
            && self.device.iter().all(Option::is_none)
            && self.geo.iter().all(Option::is_none)
    }

    pub fn matches(&self, e: &Ev, click: bool) -> bool {
        let p = profile(e.prof, click);
        if self.platform.is_some_and(|x| x != p.platform) {
            return false;
        }
        for (i, want) in self.device.iter().enumerate() {
            if let Some(w) = want {
                let have = if i < 3 { p.client[i] } else { p.os[i - 3] };
                if !have.eq_ignore_ascii_case(w) {
                    return false;
                }
            }
        }
        if self.geo.iter().any(Option::is_some) {
            let g = GEOS[usize::from(e.geo) % GEOS.len()];
            for (i, want) in self.geo.iter().enumerate() {
                if let Some(w) = want {
                    // country matches the name or the ISO code; region likewise.
                    let ok = g.is_some_and(|g| match i {
                        0 => g[0].eq_ignore_ascii_case(w) || g[1].eq_ignore_ascii_case(w),
                        1 => g[2].eq_ignore_ascii_case(w) || g[3].eq_ignore_ascii_case(w),
                        _ => g[4].eq_ignore_ascii_case(w),
                    });
                    if !ok {
                        return false;
                    }
                }
            }
        }
        let (h, h2) = out_hashes(e.msg);
        if let Some(w) = &self.tag {
            let tag = out_tag(h, usize::from(e.stream)).map_or("", |t| TAG_NAMES[t]);
            if !tag.eq_ignore_ascii_case(w) {
                return false;
            }
        }
        if let Some(w) = &self.recipient {
            let mut v = Vec::with_capacity(48);
            email(&mut v, out_recipient(h2, e.rcpt));
            let have = &v[1..v.len() - 1];
            if !have.eq_ignore_ascii_case(w.as_bytes()) {
                return false;
            }
        }
        true
    }
}

/// Writes the recipient address of an event without quotes.
pub fn recipient_raw(out: &mut Vec<u8>, e: &Ev) {
    let (_, h2) = out_hashes(e.msg);
    let start = out.len();
    email(out, out_recipient(h2, e.rcpt));
    out.remove(start);
    out.pop();
}

fn triple(out: &mut Vec<u8>, name: &str, v: &[&str; 3]) {
    key(out, name);
    out.extend_from_slice(b"{\"Name\":");
    string(out, v[0], false);
    out.extend_from_slice(b",\"Company\":");
    string(out, v[1], false);
    out.extend_from_slice(b",\"Family\":");
    string(out, v[2], false);
    out.extend_from_slice(b"},");
}

/// One open or click record, fields as examples/outbound-opens.json / -clicks.json.
pub fn render(out: &mut Vec<u8>, e: &Ev, click: bool) {
    let p = profile(e.prof, click);
    let (h, _) = out_hashes(e.msg);
    let stream = usize::from(e.stream) % NSTREAMS;
    if click {
        out.extend_from_slice(b"{\"RecordType\":\"Click\",\"ClickLocation\":");
        string(out, LOCATIONS[e.location()], false);
        out.push(b',');
    } else {
        out.extend_from_slice(b"{\"RecordType\":\"Open\",\"FirstOpen\":");
        boolean(out, e.first);
        out.push(b',');
    }
    triple(out, "Client", &p.client);
    triple(out, "OS", &p.os);
    key(out, "Platform");
    let platform = PLATFORMS[usize::from(p.platform)];
    string(out, platform, false);
    out.extend_from_slice(b",\"UserAgent\":");
    string(out, p.ua, false);
    if click {
        out.extend_from_slice(b",\"OriginalLink\":");
        string(out, LINKS[e.link()], false);
    } else {
        out.extend_from_slice(b",\"ReadSeconds\":");
        uint(out, u64::from(e.aux));
    }
    out.extend_from_slice(b",\"Geo\":");
    match GEOS[usize::from(e.geo) % GEOS.len()] {
        None => out.extend_from_slice(b"{}"),
        Some(g) => {
            let names = [
                "CountryISOCode",
                "Country",
                "RegionISOCode",
                "Region",
                "City",
                "Zip",
                "Coords",
                "IP",
            ];
            out.push(b'{');
            for (i, (k, v)) in names.iter().zip(g).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                key(out, k);
                string(out, v, false);
            }
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"MessageID\":");
    message_id(out, e.msg, false);
    out.extend_from_slice(b",\"MessageStream\":");
    string(out, STREAMS[stream].id, false);
    out.extend_from_slice(b",\"ReceivedAt\":\"");
    push_eastern_7(out, e.t);
    out.extend_from_slice(b"\",\"Tag\":");
    string(out, out_tag(h, stream).map_or("", |t| TAG_NAMES[t]), false);
    out.extend_from_slice(b",\"Recipient\":\"");
    recipient_raw(out, e);
    out.extend_from_slice(b"\"}");
}

/// One page newest first from `v[lo..hi]` (time-sorted), with optional filter.
pub fn page(
    v: &[Ev],
    from: Option<i64>,
    to: Option<i64>,
    filter: &EvFilter,
    click: bool,
    offset: usize,
    count: usize,
) -> (usize, Vec<Ev>) {
    let lo = from.map_or(0, |f| v.partition_point(|r| r.t < f));
    let hi = to.map_or(v.len(), |t| v.partition_point(|r| r.t < t));
    if hi <= lo {
        return (0, Vec::new());
    }
    let range = &v[lo..hi];
    if filter.is_empty() {
        let total = range.len();
        let end = total.saturating_sub(offset);
        let start = end.saturating_sub(count);
        return (total, range[start..end].iter().rev().copied().collect());
    }
    let mut total = 0;
    let mut out = Vec::with_capacity(count.min(512));
    for e in range.iter().rev().filter(|e| filter.matches(e, click)) {
        if total >= offset && out.len() < count {
            out.push(*e);
        }
        total += 1;
    }
    (total, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, msg: u64, rcpt: u8, link: u8) -> Ev {
        Ev {
            t,
            msg,
            rcpt,
            aux: link,
            prof: 0,
            geo: 0,
            stream: 0,
            first: false,
        }
    }

    #[test]
    fn duplicate_times_are_separated_and_firsts_marked() {
        let e = Events::from_events(
            vec![
                ev(50, 1, 0, 1),
                ev(50, 1, 0, 1),
                ev(40, 1, 0, 2),
                ev(10, 2, 0, 0),
            ],
            true,
        );
        let g = e.read();
        let v = &g.by_time[0];
        assert_eq!(v.len(), 4);
        let mut keys: Vec<(u64, i64)> = v.iter().map(|e| (e.msg, e.t)).collect();
        keys.dedup();
        assert_eq!(keys.len(), 4);
        assert_eq!(v.iter().filter(|e| e.first).count(), 3);
        drop(g);
        let m = e.of_message(1);
        assert_eq!(m.len(), 3);
        assert!(m.windows(2).all(|w| w[0].t > w[1].t));
    }

    #[test]
    fn records_are_valid_json() {
        for i in 0..200u64 {
            let e = make_ev(
                (1_000 * TICKS_PER_SEC, i, 0),
                mix(i),
                None,
                9_000_000 * TICKS_PER_SEC,
                i % 2 == 0,
            );
            assert_eq!(e.t % MICRO, 0);
            assert!(e.t > 1_000 * TICKS_PER_SEC);
            let mut o = Vec::new();
            render(&mut o, &e, i % 2 == 0);
            let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
            assert!(v["MessageID"].is_string() && v["Recipient"].is_string());
        }
    }
}
