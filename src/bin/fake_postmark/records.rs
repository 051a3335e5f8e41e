//! Renders outbound and inbound records as JSON from their compact form.
//!
//! Every field is a pure function of (stream, record); variety comes from a hash of the id,
//! so identical flags always give byte-identical pages. Field names, order and shapes follow
//! examples/outbound-messages.json and inbound-messages.json, and the values
//! deliberately exercise the awkward shapes clients must accept (null vs "" names, absent
//! tags, escapes, non-ASCII, an unknown extra field).

use crate::catalog::{INBOUND_HASH, STREAMS, S_BROADCAST, S_PROMO};
use crate::eastern::TICKS_PER_SEC;
use crate::gen::mix;
use crate::json::{self, boolean, key, string, uint};
use crate::store::Rec;
use crate::timefmt::{push_eastern_7, push_rfc2822};

pub const OUTBOUND_STATUS: [&str; 3] = ["Sent", "Queued", "Processed"];
pub const INBOUND_STATUS: [&str; 5] = ["Processed", "Blocked", "Queued", "Failed", "Scheduled"];

const SALT_OUT: u64 = 0x6f75_7462;
const SALT_IN: u64 = 0x696e_626e;

pub const PEOPLE: [(&str, &str); 8] = [
    ("Dana Reyes", "dana.reyes"),
    ("Kofi Mensah", "kofi.mensah"),
    ("Zoë Ångström", "zoe.angstrom"),
    ("Li Wei", "li.wei"),
    ("José Álvarez", "jose.alvarez"),
    ("Priya Nair", "priya.nair"),
    ("O'Brien, Pat", "pat.obrien"),
    ("田中 花子", "hanako.tanaka"),
];
pub const DOMAINS: [&str; 4] = [
    "example.net",
    "example.org",
    "globex.example",
    "initech.example",
];
const SUBJECTS: [&str; 10] = [
    "Reset your Acme password",
    "Invoice #",
    "Your \"weekly\" digest",
    "Backup ready at C:\\Users\\dana\\export.csv",
    "Café résumé for Zoë",
    "日本からのお知らせ",
    "Party time 🎉 20% off",
    "Welcome to Acme",
    "Your Acme receipt",
    "Tab\there, slash / there",
];

/// Writes a quoted outbound/inbound MessageID for a record id (unique per dataset).
pub fn message_id(out: &mut Vec<u8>, id: u64, inbound: bool) {
    out.push(b'"');
    message_id_raw(out, id, inbound);
    out.push(b'"');
}

pub fn message_id_raw(out: &mut Vec<u8>, id: u64, inbound: bool) {
    let salt = if inbound { SALT_IN } else { SALT_OUT };
    json::uuid_raw(out, mix(id ^ salt), mix(id ^ salt ^ 0x5eed));
}

/// Record id of an outbound MessageID, if it is one this fake could have issued (the
/// caller still checks that the record exists).
pub fn parse_message_id(s: &str) -> Option<u64> {
    let hex: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'-')
        .map(|c| (c as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<Vec<u8>>>()?;
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    // Nibble i of the rendered id is hex[i] (see json::uuid_raw).
    let mut bits = 0u64;
    let mut k = 0;
    for (i, n) in hex.iter().enumerate() {
        if i < 12 || (13..=15).contains(&i) || i == 17 {
            bits |= u64::from(*n) << (4 * k);
            k += 1;
        }
    }
    let id = crate::gen::unmix(bits) ^ SALT_OUT;
    let mut again = Vec::with_capacity(36);
    message_id_raw(&mut again, id, false);
    again.eq_ignore_ascii_case(s.as_bytes()).then_some(id)
}

/// A quoted address like `"dana.reyes42@example.net"`. Written directly: the parts are
/// plain ASCII that never needs escaping, and this runs several times per record.
pub fn email(out: &mut Vec<u8>, h: u64) {
    let (_, slug) = PEOPLE[(h % 8) as usize];
    out.push(b'"');
    out.extend_from_slice(slug.as_bytes());
    if h & 0x100 != 0 {
        uint(out, (h >> 9) % 100);
    }
    out.push(b'@');
    out.extend_from_slice(DOMAINS[((h >> 16) % 4) as usize].as_bytes());
    out.push(b'"');
}

fn address(out: &mut Vec<u8>, h: u64, ascii: bool) {
    out.extend_from_slice(b"{\"Email\":");
    email(out, h);
    out.extend_from_slice(b",\"Name\":");
    match (h >> 20) % 10 {
        0 => out.extend_from_slice(b"null"),
        1 => out.extend_from_slice(b"\"\""),
        _ => string(out, PEOPLE[(h % 8) as usize].0, ascii),
    }
    out.push(b'}');
}

pub fn subject(out: &mut Vec<u8>, h: u64, ascii: bool) {
    let i = (h % SUBJECTS.len() as u64) as usize;
    match i {
        1 => string(
            out,
            &format!("Invoice #{:04} from Acme", (h >> 8) % 10_000),
            ascii,
        ),
        _ => string(out, SUBJECTS[i], ascii),
    }
}

/// Tags of transactional and broadcast messages (index 0 of [`TAG_NAMES`] = no tag).
pub const TAG_NAMES: [&str; 9] = [
    "",
    "password-reset",
    "receipt",
    "invoice",
    "welcome",
    "account-notice",
    "weekly-digest",
    "newsletter",
    "spring-sale",
];

/// The two hashes every outbound field derives from.
pub fn out_hashes(id: u64) -> (u64, u64) {
    let h = mix(id ^ SALT_OUT ^ 0xa5a5);
    (h, mix(h))
}

fn is_broadcast(stream: usize) -> bool {
    stream == S_BROADCAST || stream == S_PROMO
}

/// Tag of an outbound message: `None` = field absent, `Some(0)` = `""`, else a
/// [`TAG_NAMES`] index.
pub fn out_tag(h: u64, stream: usize) -> Option<usize> {
    match h % 16 {
        0 => None,
        1 => Some(0),
        x => Some(if is_broadcast(stream) {
            6 + (x as usize) % 3
        } else {
            1 + (x as usize) % 5
        }),
    }
}

/// Whether the message has a second `To` recipient.
pub fn out_two_to(h: u64) -> bool {
    (h >> 24).is_multiple_of(20)
}

pub fn out_track_opens(h: u64) -> bool {
    (h >> 45) & 1 == 1
}

pub const TRACK_LINKS: [&str; 4] = ["HtmlAndText", "None", "HtmlOnly", "TextOnly"];

/// Index into [`TRACK_LINKS`].
pub fn out_track_links(h: u64) -> usize {
    ((h >> 46) % 4) as usize
}

/// Hash of the `To` recipient `i` (0 or 1) of a message, for [`email`].
pub fn out_recipient(h2: u64, i: u8) -> u64 {
    if i == 0 {
        h2
    } else {
        mix(h2)
    }
}

/// One `/messages/outbound` record.
pub fn outbound(out: &mut Vec<u8>, stream: usize, r: &Rec) {
    let (h, h2) = out_hashes(r.id);
    let ascii = h2.is_multiple_of(4);
    let broadcast = is_broadcast(stream);
    out.push(b'{');
    match out_tag(h, stream) {
        None => {}
        Some(t) => {
            key(out, "Tag");
            string(out, TAG_NAMES[t], false);
            out.push(b',');
        }
    }
    key(out, "MessageID");
    message_id(out, r.id, false);
    out.extend_from_slice(b",\"MessageStream\":");
    string(out, STREAMS[stream].id, false);
    // Recipients: one or two To, sometimes a Cc and a Bcc.
    let to2 = out_two_to(h);
    let cc = (h >> 28).is_multiple_of(8);
    let bcc = (h >> 31).is_multiple_of(25);
    out.extend_from_slice(b",\"To\":[");
    address(out, h2, ascii);
    if to2 {
        out.push(b',');
        address(out, mix(h2), ascii);
    }
    out.extend_from_slice(b"],\"Cc\":[");
    if cc {
        out.extend_from_slice(b"{\"Email\":\"finance@globex.example\",\"Name\":\"\"}");
    }
    out.extend_from_slice(b"],\"Bcc\":[");
    if bcc {
        out.extend_from_slice(b"{\"Email\":\"audit@acme.example\",\"Name\":null}");
    }
    out.extend_from_slice(b"],\"Recipients\":[");
    email(out, h2);
    if to2 {
        out.push(b',');
        email(out, mix(h2));
    }
    if cc {
        out.extend_from_slice(b",\"finance@globex.example\"");
    }
    if bcc {
        out.extend_from_slice(b",\"audit@acme.example\"");
    }
    out.extend_from_slice(b"],\"ReceivedAt\":\"");
    push_eastern_7(out, r.t);
    out.extend_from_slice(b"\",\"From\":");
    let froms: &[&str] = if broadcast {
        &[
            "Acme News <news@acme.example>",
            "\"Acme Marketing\" <marketing@acme.example>",
        ]
    } else {
        &[
            "\"Acme Support\" <support@acme.example>",
            "invoices@acme.example",
            "Acme Billing <billing@acme.example>",
        ]
    };
    string(out, froms[((h >> 34) % froms.len() as u64) as usize], false);
    out.extend_from_slice(b",\"Subject\":");
    subject(out, h >> 37, ascii);
    out.extend_from_slice(b",\"Attachments\":[");
    if (h >> 42).is_multiple_of(10) {
        out.extend_from_slice(b"\"invoice.pdf\"");
    }
    out.extend_from_slice(b"],\"Status\":");
    string(out, OUTBOUND_STATUS[usize::from(r.kind) % 3], false);
    out.extend_from_slice(b",\"TrackOpens\":");
    boolean(out, out_track_opens(h));
    out.extend_from_slice(b",\"TrackLinks\":");
    string(out, TRACK_LINKS[out_track_links(h)], false);
    out.extend_from_slice(b",\"Metadata\":");
    if (h >> 48).is_multiple_of(3) {
        out.extend_from_slice(b"{}");
    } else {
        out.extend_from_slice(b"{\"user-id\":\"");
        uint(out, (h >> 50) % 100_000);
        out.extend_from_slice(b"\",\"env\":\"prod\"}");
    }
    out.extend_from_slice(b",\"Sandboxed\":");
    boolean(out, (h >> 53).is_multiple_of(50));
    if h2 % 50 == 7 {
        out.extend_from_slice(b",\"FutureField\":{\"Nested\":[1,\"two\",null]}");
    }
    out.push(b'}');
}

/// One `/messages/inbound` record. There is no ReceivedAt: `r.t` is only used for
/// filtering and to derive the sender's `Date` header.
pub fn inbound(out: &mut Vec<u8>, r: &Rec) {
    const ZONES: [i64; 7] = [3600, 0, -8 * 3600, 19_800, 9 * 3600, -3 * 3600, 7200];
    let h = mix(r.id ^ SALT_IN ^ 0x1b1b);
    let h2 = mix(h);
    let ascii = h2.is_multiple_of(4);
    let (name, _) = PEOPLE[(h2 % 8) as usize];
    let named = !(h >> 3).is_multiple_of(4);
    let mailbox = if (h >> 5).is_multiple_of(3) {
        String::new()
    } else {
        format!("ticket-{}", (h >> 8) % 10_000)
    };
    let plus = if mailbox.is_empty() {
        String::new()
    } else {
        format!("+{mailbox}")
    };
    let inbox = format!("{INBOUND_HASH}{plus}@inbound.postmarkapp.com");
    out.extend_from_slice(b"{\"From\":");
    email(out, h2);
    out.extend_from_slice(b",\"FromName\":");
    string(out, if named { name } else { "" }, ascii);
    out.extend_from_slice(b",\"FromFull\":{\"Email\":");
    email(out, h2);
    out.extend_from_slice(b",\"Name\":");
    string(out, if named { name } else { "" }, ascii);
    out.extend_from_slice(b",\"MailboxHash\":\"\"},\"To\":");
    let support = (h >> 22) & 1 == 1;
    let to = if support {
        format!("\"Acme Support\" <{inbox}>")
    } else {
        inbox.clone()
    };
    string(out, &to, false);
    out.extend_from_slice(b",\"ToFull\":[{\"Email\":");
    string(out, &inbox, false);
    out.extend_from_slice(b",\"Name\":");
    string(out, if support { "Acme Support" } else { "" }, false);
    out.extend_from_slice(b",\"MailboxHash\":");
    string(out, &mailbox, false);
    out.extend_from_slice(b"}],");
    if (h >> 24).is_multiple_of(10) {
        out.extend_from_slice(b"\"Cc\":\"\\\"Lee Park\\\" <lee.park@example.org>\",\"CcFull\":[{\"Email\":\"lee.park@example.org\",\"Name\":\"Lee Park\",\"MailboxHash\":\"\"}],");
    } else {
        out.extend_from_slice(b"\"Cc\":\"\",\"CcFull\":[],");
    }
    out.extend_from_slice(b"\"ReplyTo\":");
    if (h >> 28).is_multiple_of(5) {
        email(out, mix(h2));
    } else {
        out.extend_from_slice(b"\"\"");
    }
    out.extend_from_slice(b",\"OriginalRecipient\":");
    string(out, &inbox, false);
    out.extend_from_slice(b",\"Subject\":");
    subject(out, h >> 30, ascii);
    out.extend_from_slice(b",\"Date\":\"");
    // The sender's clock runs a little behind Postmark's receive time.
    let sent = r.t.div_euclid(TICKS_PER_SEC) - ((h >> 36) % 90) as i64;
    push_rfc2822(out, sent, ZONES[((h >> 40) % 7) as usize]);
    out.extend_from_slice(b"\",\"MailboxHash\":");
    string(out, &mailbox, false);
    out.extend_from_slice(b",\"Tag\":\"\",\"MessageID\":");
    message_id(out, r.id, true);
    out.extend_from_slice(b",\"Status\":");
    string(out, INBOUND_STATUS[usize::from(r.kind) % 5], false);
    out.extend_from_slice(b",\"MessageStream\":\"inbound\",\"Attachments\":[");
    if (h >> 44).is_multiple_of(6) {
        out.extend_from_slice(
            b"{\"Name\":\"screenshot.png\",\"ContentType\":\"image/png\",\"ContentLength\":",
        );
        uint(out, 1_000 + (h >> 47) % 90_000);
        out.extend_from_slice(b",\"ContentID\":\"\"}");
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_parse_back() {
        for id in [0u64, 7, 123_456, 1 << 33] {
            let mut v = Vec::new();
            message_id_raw(&mut v, id, false);
            let s = String::from_utf8(v).unwrap();
            assert_eq!(parse_message_id(&s), Some(id));
            assert_eq!(parse_message_id(&s.to_uppercase()), Some(id));
        }
        assert_eq!(parse_message_id("not-an-id"), None);
        assert_eq!(
            parse_message_id("00000000-0000-4000-8000-000000000000"),
            None
        );
    }

    #[test]
    fn records_are_valid_json_with_expected_fields() {
        let mut future = 0;
        for id in 0..2_000u64 {
            let r = Rec {
                t: 17_700_000_000_000_000 + id as i64 * 77_777_777,
                id,
                kind: (id % 3) as u8,
            };
            let mut o = Vec::new();
            outbound(&mut o, (id % 5) as usize, &r);
            let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
            assert!(v["MessageID"].is_string() && v["ReceivedAt"].is_string());
            assert_eq!(v["ReceivedAt"].as_str().map(str::len), Some(33));
            future += usize::from(v.get("FutureField").is_some());
            let mut o = Vec::new();
            inbound(&mut o, &r);
            let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
            assert!(v.get("ReceivedAt").is_none() && v["Date"].is_string());
            let br = Rec {
                kind: (id % 22) as u8,
                ..r
            };
            let mut o = Vec::new();
            crate::bounces::bounce(&mut o, (id % 5) as usize, &br);
            let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
            assert!(v["ID"].as_u64().unwrap() > 1 << 31);
        }
        assert!((20..70).contains(&future), "{future}");
    }
}
