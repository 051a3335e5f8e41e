//! `GET /messages/outbound/{MessageID}/details`: the search record plus bodies and
//! `MessageEvents` (api.md §4.3, examples/outbound-message-details.json).
//!
//! Events are derived per recipient from the message id: `Delivered` a second or two after
//! the message (zero fraction, as Postmark shows), sometimes a `Transient` first, rarely a
//! `Bounced` instead, a `SubscriptionChanged` for some broadcast recipients, and exactly the
//! message's opens (`Opened`) and clicks (`LinkClicked`) from the events store.

use crate::catalog::{S_BROADCAST, S_PROMO};
use crate::eastern::TICKS_PER_SEC;
use crate::events::{profile, recipient_raw, Ev, LINKS, LOCATIONS};
use crate::gen::mix;
use crate::json::{string, uint};
use crate::records::{self, out_hashes, out_two_to, subject};
use crate::store::Rec;
use crate::timefmt::push_eastern_7;
use crate::App;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Delivered,
    Transient,
    Bounced,
    SubscriptionChanged,
    Opened,
    LinkClicked,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Delivered => "Delivered",
            Kind::Transient => "Transient",
            Kind::Bounced => "Bounced",
            Kind::SubscriptionChanged => "SubscriptionChanged",
            Kind::Opened => "Opened",
            Kind::LinkClicked => "LinkClicked",
        }
    }
}

pub struct MEvent {
    pub t: i64,
    pub rcpt: u8,
    pub kind: Kind,
    /// The open or click behind `Opened` / `LinkClicked`.
    pub ev: Option<Ev>,
}

/// Every event of an outbound message, oldest first.
pub fn events_of(app: &App, stream: usize, r: &Rec) -> Vec<MEvent> {
    let (h, _) = out_hashes(r.id);
    let opens = app.opens.of_message(r.id);
    let clicks = app.clicks.of_message(r.id);
    let mut v = Vec::new();
    let sec = r.t.div_euclid(TICKS_PER_SEC) * TICKS_PER_SEC;
    let rcpts = 1 + u8::from(out_two_to(h));
    for rcpt in 0..rcpts {
        if r.kind == 1 {
            break; // Queued: nothing happened yet.
        }
        let hr = mix(r.id ^ u64::from(rcpt) ^ 0xde1);
        let engaged = opens.iter().chain(&clicks).any(|e| e.rcpt == rcpt);
        let at = |s: i64| MEvent {
            t: sec + s * TICKS_PER_SEC,
            rcpt,
            kind: Kind::Delivered,
            ev: None,
        };
        if !engaged && hr.is_multiple_of(40) {
            v.push(MEvent {
                kind: Kind::Bounced,
                ..at(2 + (hr >> 8) as i64 % 30)
            });
            continue;
        }
        if !engaged && hr % 25 == 1 {
            v.push(MEvent {
                kind: Kind::Transient,
                ..at(1)
            });
            v.push(at(300 + (hr >> 8) as i64 % 600));
        } else {
            v.push(at(1 + (hr >> 8) as i64 % 2));
        }
        if (stream == S_BROADCAST || stream == S_PROMO) && hr % 30 == 2 {
            v.push(MEvent {
                kind: Kind::SubscriptionChanged,
                ..at(3600 + (hr >> 16) as i64 % 86_400)
            });
        }
    }
    for (list, kind) in [(&opens, Kind::Opened), (&clicks, Kind::LinkClicked)] {
        v.extend(list.iter().map(|e| MEvent {
            t: e.t,
            rcpt: e.rcpt,
            kind,
            ev: Some(*e),
        }));
    }
    v.sort_by_key(|e| (e.t, e.rcpt, e.kind));
    v
}

pub fn event(out: &mut Vec<u8>, id: u64, e: &MEvent) {
    let (_, h2) = out_hashes(id);
    out.extend_from_slice(b"{\"Recipient\":\"");
    let probe = Ev {
        t: 0,
        msg: id,
        rcpt: e.rcpt,
        aux: 0,
        prof: 0,
        geo: 0,
        stream: 0,
        first: false,
    };
    recipient_raw(out, &probe);
    out.extend_from_slice(b"\",\"Type\":");
    string(out, e.kind.name(), false);
    out.extend_from_slice(b",\"ReceivedAt\":\"");
    push_eastern_7(out, e.t);
    out.extend_from_slice(b"\",\"Details\":{");
    let hr = mix(id ^ u64::from(e.rcpt) ^ 0xde1);
    match (e.kind, e.ev) {
        (Kind::Delivered | Kind::Transient, _) => {
            let ip = format!("203.0.113.{}", 1 + h2 % 250);
            let msg = if e.kind == Kind::Delivered {
                format!(
                    "smtp;250 2.0.0 OK {} x{}si{}.{} - gsmtp",
                    e.t / TICKS_PER_SEC,
                    hr % 100,
                    hr % 10_000,
                    hr % 1000
                )
            } else {
                "smtp;421 4.7.0 Try again later, closing connection.".to_string()
            };
            out.extend_from_slice(b"\"DeliveryMessage\":");
            string(out, &msg, false);
            out.extend_from_slice(b",\"DestinationServer\":");
            string(out, &format!("mx.example.net ({ip})"), false);
            out.extend_from_slice(b",\"DestinationIP\":");
            string(out, &ip, false);
        }
        (Kind::Bounced, _) => {
            out.extend_from_slice(b"\"Summary\":\"The server was unable to deliver your message (ex: unknown user, mailbox not found).\",\"BounceID\":\"");
            uint(out, 3_900_000_000 + (hr >> 20) % 100_000_000);
            out.push(b'"');
        }
        (Kind::SubscriptionChanged, _) => {
            out.extend_from_slice(b"\"Origin\":\"Recipient\",\"SuppressSending\":\"True\"");
        }
        (Kind::Opened, Some(ev)) => {
            out.extend_from_slice(b"\"Summary\":");
            string(
                out,
                &format!("Email opened with {}", profile(ev.prof, false).ua),
                false,
            );
        }
        (Kind::LinkClicked, Some(ev)) => {
            let link = LINKS[ev.link()];
            out.extend_from_slice(b"\"Summary\":");
            string(out, &format!("Clicked link {link}"), false);
            out.extend_from_slice(b",\"Link\":");
            string(out, link, false);
            out.extend_from_slice(b",\"ClickLocation\":");
            string(out, LOCATIONS[ev.location()], false);
        }
        _ => {}
    }
    out.extend_from_slice(b"}}");
}

/// The details body of message `r` in `stream`.
pub fn render(app: &App, out: &mut Vec<u8>, stream: usize, r: &Rec) {
    let (h, _) = out_hashes(r.id);
    records::outbound(out, stream, r);
    out.pop();
    out.extend_from_slice(b",\"TextBody\":");
    let mut subj = Vec::new();
    subject(&mut subj, h >> 37, false);
    let subj: String = serde_json::from_slice(&subj).unwrap_or_default();
    string(
        out,
        &format!("Hello,\n\n{subj}\n\nhttps://acme.example/account\n"),
        false,
    );
    out.extend_from_slice(b",\"HtmlBody\":");
    if h % 7 == 0 {
        out.extend_from_slice(b"null");
    } else {
        string(out, &format!("<p>Hello,</p><p>{subj}</p><p><a href=\"https://acme.example/account\">Your account</a></p>"), false);
    }
    out.extend_from_slice(b",\"Body\":");
    let mut id = Vec::new();
    records::message_id_raw(&mut id, r.id, false);
    let raw = format!(
        "Return-Path: <pm_bounces@pm-bounces.acme.example>\r\nFrom: support@acme.example\r\nSubject: {subj}\r\nX-PM-Message-Id: {}\r\nMIME-Version: 1.0\r\n\r\n...",
        String::from_utf8_lossy(&id)
    );
    string(out, &raw, false);
    out.extend_from_slice(b",\"MessageEvents\":[");
    for (i, e) in events_of(app, stream, r).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        event(out, r.id, e);
    }
    out.extend_from_slice(b"]}");
}
