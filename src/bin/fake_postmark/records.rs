//! Renders outbound, inbound and bounce records as JSON from their compact form.
//!
//! Every field is a pure function of (stream, record); variety comes from a hash of the id,
//! so identical flags always give byte-identical pages. Field names, order and shapes follow
//! examples/outbound-messages.json, inbound-messages.json and bounces.json, and the values
//! deliberately exercise the awkward shapes clients must accept (null vs "" names, absent
//! tags, escapes, non-ASCII, an unknown extra field).

use crate::catalog::{INBOUND_HASH, SERVER_ID, STREAMS, S_BROADCAST, S_PROMO};
use crate::eastern::{push_eastern_7, push_rfc2822, TICKS_PER_SEC};
use crate::gen::mix;
use crate::json::{self, boolean, key, string, uint};
use crate::store::Rec;

pub const OUTBOUND_STATUS: [&str; 3] = ["Sent", "Queued", "Processed"];
pub const INBOUND_STATUS: [&str; 5] = ["Processed", "Blocked", "Queued", "Failed", "Scheduled"];

/// (Type, TypeCode, Name, Description, SMTP details) per api.md §4.5.
pub const BOUNCE_TYPES: [(&str, u32, &str, &str); 22] = [
    ("HardBounce", 1, "Hard bounce", "The server was unable to deliver your message (ex: unknown user, mailbox not found)."),
    ("Transient", 2, "Message delayed", "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles)."),
    ("Unsubscribe", 16, "Unsubscribe request", "Unsubscribe or Remove request."),
    ("Subscribe", 32, "Subscribe request", "Subscribe request from someone wanting to get added to the mailing list."),
    ("AutoResponder", 64, "Auto responder", "Automatic email responder (ex: \"Out of Office\" or \"On Vacation\")."),
    ("AddressChange", 128, "Address change", "The recipient has requested an address change."),
    ("DnsError", 256, "DNS error", "A temporary DNS error."),
    ("SpamNotification", 512, "Spam notification", "The message was delivered, but was either blocked by the user, or classified as spam, bulk mail, or had rejected content."),
    ("OpenRelayTest", 1024, "Open relay test", "The NDR is actually a test email message to see if the mail server is an open relay."),
    ("Unknown", 2048, "Unknown", "Unable to classify the NDR."),
    ("SoftBounce", 4096, "Soft bounce", "Unable to temporarily deliver message (i.e. mailbox full, account disabled, exceeds quota, out of disk space)."),
    ("VirusNotification", 8192, "Virus notification", "The bounce is actually a virus notification warning about a virus/code infected message."),
    ("ChallengeVerification", 16384, "Spam challenge verification", "The bounce is a challenge asking for verification you actually sent the email."),
    ("BadEmailAddress", 100000, "Invalid email address", "The address is not a valid email address."),
    ("SpamComplaint", 100001, "Spam complaint", "The subscriber explicitly marked this message as spam."),
    ("ManuallyDeactivated", 100002, "Manually deactivated", "The email was manually deactivated."),
    ("Unconfirmed", 100003, "Registration not confirmed", "Registration not confirmed \u{2014} The subscriber has not clicked on the confirmation link."),
    ("Blocked", 100006, "ISP block", "Blocked from this ISP due to content or blacklisting."),
    ("SMTPApiError", 100007, "SMTP API error", "An error occurred while accepting an email through the SMTP API."),
    ("InboundError", 100008, "Inbound error", "Unable to deliver inbound message to destination inbound hook."),
    ("DMARCPolicy", 100009, "DMARC Policy", "Email rejected due DMARC Policy."),
    ("TemplateRenderingFailed", 100010, "Template rendering failed", "An error occurred while attempting to render your template."),
];
pub const INBOUND_ERROR: u8 = 19;

/// Picks a bounce type index for a non-inbound stream: mostly hard/soft/transient.
pub fn pick_bounce_type(h: u64) -> u8 {
    match h % 100 {
        0..=39 => 0,
        40..=64 => 10,
        65..=74 => 1,
        75..=79 => 14,
        80..=83 => 17,
        84..=86 => 13,
        87..=88 => 4,
        89..=90 => 6,
        x => [2, 3, 5, 7, 8, 9, 11, 12, 15][(x - 91) as usize],
    }
}

const SALT_OUT: u64 = 0x6f75_7462;
const SALT_IN: u64 = 0x696e_626e;
const SALT_BOUNCE: u64 = 0x626f_756e;
const BOUNCE_ID_BASE: u64 = 4_100_000_000;

const PEOPLE: [(&str, &str); 8] = [
    ("Dana Reyes", "dana.reyes"),
    ("Kofi Mensah", "kofi.mensah"),
    ("Zoë Ångström", "zoe.angstrom"),
    ("Li Wei", "li.wei"),
    ("José Álvarez", "jose.alvarez"),
    ("Priya Nair", "priya.nair"),
    ("O'Brien, Pat", "pat.obrien"),
    ("田中 花子", "hanako.tanaka"),
];
const DOMAINS: [&str; 4] = [
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

/// Bounce `ID` (an integer above 2^31) for a bounce record.
pub fn bounce_id(r: &Rec) -> u64 {
    BOUNCE_ID_BASE + r.id
}

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

/// A quoted address like `"dana.reyes42@example.net"`. Written directly: the parts are
/// plain ASCII that never needs escaping, and this runs several times per record.
fn email(out: &mut Vec<u8>, h: u64) {
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

fn subject(out: &mut Vec<u8>, h: u64, ascii: bool) {
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

/// One `/messages/outbound` record.
pub fn outbound(out: &mut Vec<u8>, stream: usize, r: &Rec) {
    let h = mix(r.id ^ SALT_OUT ^ 0xa5a5);
    let h2 = mix(h);
    let ascii = h2 % 4 == 0;
    let broadcast = stream == S_BROADCAST || stream == S_PROMO;
    out.push(b'{');
    match h % 16 {
        0 => {}
        1 => out.extend_from_slice(b"\"Tag\":\"\","),
        x => {
            let tags: &[&str] = if broadcast {
                &["weekly-digest", "newsletter", "spring-sale"]
            } else {
                &[
                    "password-reset",
                    "receipt",
                    "invoice",
                    "welcome",
                    "account-notice",
                ]
            };
            key(out, "Tag");
            string(out, tags[(x as usize) % tags.len()], false);
            out.push(b',');
        }
    }
    key(out, "MessageID");
    message_id(out, r.id, false);
    out.extend_from_slice(b",\"MessageStream\":");
    string(out, STREAMS[stream].id, false);
    // Recipients: one or two To, sometimes a Cc and a Bcc.
    let to2 = (h >> 24) % 20 == 0;
    let cc = (h >> 28) % 8 == 0;
    let bcc = (h >> 31) % 25 == 0;
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
    if (h >> 42) % 10 == 0 {
        out.extend_from_slice(b"\"invoice.pdf\"");
    }
    out.extend_from_slice(b"],\"Status\":");
    string(out, OUTBOUND_STATUS[usize::from(r.kind) % 3], false);
    out.extend_from_slice(b",\"TrackOpens\":");
    boolean(out, (h >> 45) & 1 == 1);
    out.extend_from_slice(b",\"TrackLinks\":");
    let links = ["HtmlAndText", "None", "HtmlOnly", "TextOnly"];
    string(out, links[((h >> 46) % 4) as usize], false);
    out.extend_from_slice(b",\"Metadata\":");
    if (h >> 48) % 3 == 0 {
        out.extend_from_slice(b"{}");
    } else {
        out.extend_from_slice(b"{\"user-id\":\"");
        uint(out, (h >> 50) % 100_000);
        out.extend_from_slice(b"\",\"env\":\"prod\"}");
    }
    out.extend_from_slice(b",\"Sandboxed\":");
    boolean(out, (h >> 53) % 50 == 0);
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
    let ascii = h2 % 4 == 0;
    let (name, _) = PEOPLE[(h2 % 8) as usize];
    let named = (h >> 3) % 4 != 0;
    let mailbox = if (h >> 5) % 3 == 0 {
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
    if (h >> 24) % 10 == 0 {
        out.extend_from_slice(b"\"Cc\":\"\\\"Lee Park\\\" <lee.park@example.org>\",\"CcFull\":[{\"Email\":\"lee.park@example.org\",\"Name\":\"Lee Park\",\"MailboxHash\":\"\"}],");
    } else {
        out.extend_from_slice(b"\"Cc\":\"\",\"CcFull\":[],");
    }
    out.extend_from_slice(b"\"ReplyTo\":");
    if (h >> 28) % 5 == 0 {
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
    if (h >> 44) % 6 == 0 {
        out.extend_from_slice(
            b"{\"Name\":\"screenshot.png\",\"ContentType\":\"image/png\",\"ContentLength\":",
        );
        uint(out, 1_000 + (h >> 47) % 90_000);
        out.extend_from_slice(b",\"ContentID\":\"\"}");
    }
    out.extend_from_slice(b"]}");
}

/// One `/bounces` record.
pub fn bounce(out: &mut Vec<u8>, stream: usize, r: &Rec) {
    let h = mix(r.id ^ SALT_BOUNCE);
    let (ty, code, name, desc) = BOUNCE_TYPES[usize::from(r.kind) % BOUNCE_TYPES.len()];
    out.extend_from_slice(b"{\"ID\":");
    uint(out, bounce_id(r));
    out.extend_from_slice(b",\"Type\":");
    string(out, ty, false);
    out.extend_from_slice(b",\"TypeCode\":");
    uint(out, u64::from(code));
    out.extend_from_slice(b",\"Name\":");
    string(out, name, false);
    match h % 10 {
        0 => {}
        1..=3 => out.extend_from_slice(b",\"Tag\":\"\""),
        _ => out.extend_from_slice(b",\"Tag\":\"weekly-digest\""),
    }
    out.extend_from_slice(b",\"MessageID\":");
    json::uuid(out, mix(h ^ 0xb0), mix(h ^ 0xb1));
    out.extend_from_slice(b",\"ServerID\":");
    uint(out, SERVER_ID);
    out.extend_from_slice(b",\"MessageStream\":");
    string(out, STREAMS[stream].id, false);
    out.extend_from_slice(b",\"Description\":");
    string(out, desc, false);
    out.extend_from_slice(b",\"Details\":\"smtp;");
    let em = {
        let mut v = Vec::new();
        email(&mut v, mix(h));
        v
    };
    if code == 1 || code == 100_000 {
        out.extend_from_slice(b"550 5.1.1 <");
        out.extend_from_slice(&em[1..em.len() - 1]);
        out.extend_from_slice(b">: Recipient address rejected: User unknown\"");
    } else {
        out.extend_from_slice(
            b"452 4.2.2 The email account that you tried to reach is over quota\"",
        );
    }
    out.extend_from_slice(b",\"Email\":");
    out.extend_from_slice(&em);
    out.extend_from_slice(b",\"From\":");
    string(
        out,
        if stream == S_BROADCAST {
            "news@acme.example"
        } else {
            "support@acme.example"
        },
        false,
    );
    out.extend_from_slice(b",\"BouncedAt\":\"");
    push_eastern_7(out, r.t);
    out.extend_from_slice(b"\",\"DumpAvailable\":");
    boolean(out, (h >> 8) % 3 != 0);
    let hard = matches!(code, 1 | 100_000 | 100_001 | 100_002 | 100_006);
    out.extend_from_slice(b",\"Inactive\":");
    boolean(out, hard && (h >> 12) % 8 != 0);
    out.extend_from_slice(b",\"CanActivate\":");
    boolean(out, code != 100_001);
    out.extend_from_slice(b",\"Subject\":");
    subject(out, h >> 20, (h >> 16) % 4 == 0);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

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
            bounce(&mut o, (id % 5) as usize, &br);
            let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
            assert!(v["ID"].as_u64().unwrap() > 1 << 31);
        }
        assert!((20..70).contains(&future), "{future}");
    }

    #[test]
    fn bounce_type_picks_are_in_range() {
        for h in 0..100 {
            assert!(usize::from(pick_bounce_type(h)) < BOUNCE_TYPES.len());
            assert_ne!(pick_bounce_type(h), INBOUND_ERROR);
        }
    }
}
