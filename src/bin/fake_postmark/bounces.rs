//! Bounce types and rendering of `/bounces` records (shapes as examples/bounces.json).
//!
//! The stored `kind` byte indexes [`BOUNCE_TYPES`]; everything else is derived from a hash
//! of the record id, like the message records.

#[cfg(test)]
use crate::catalog::SERVER_ID;
use crate::catalog::{STREAMS, S_BROADCAST};
use crate::gen::mix;
use crate::json::{self, boolean, string, uint};
use crate::records::{email, subject};
use crate::store::Rec;
use crate::timefmt::push_eastern_7;

const SALT_BOUNCE: u64 = 0x626f_756e;
/// Real ids passed 2^31 long ago; clients must use 64-bit integers.
const BOUNCE_ID_BASE: u64 = 4_100_000_000;

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

/// Bounce `ID` (an integer above 2^31) for a bounce record.
pub fn bounce_id(r: &Rec) -> u64 {
    BOUNCE_ID_BASE + r.id
}

/// Tag of a bounce as a [`crate::records::TAG_NAMES`] index (`None` = field absent).
pub fn bounce_tag(r: &Rec) -> Option<usize> {
    match mix(r.id ^ SALT_BOUNCE) % 10 {
        0 => None,
        1..=3 => Some(0),
        _ => Some(6),
    }
}

/// Whether the bounce's address is inactive (as rendered in `Inactive`).
pub fn bounce_inactive(r: &Rec) -> bool {
    let h = mix(r.id ^ SALT_BOUNCE);
    let code = BOUNCE_TYPES[usize::from(r.kind) % BOUNCE_TYPES.len()].1;
    let hard = matches!(code, 1 | 100_000 | 100_001 | 100_002 | 100_006);
    hard && !(h >> 12).is_multiple_of(8)
}

/// One `/bounces` record.
#[cfg(test)]
pub fn bounce(out: &mut Vec<u8>, stream: usize, r: &Rec) {
    bounce_for(out, stream, r, SERVER_ID);
}

/// [`bounce`] of the server with ID `server_id`.
pub fn bounce_for(out: &mut Vec<u8>, stream: usize, r: &Rec, server_id: u64) {
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
    uint(out, server_id);
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
    boolean(out, !(h >> 8).is_multiple_of(3));
    out.extend_from_slice(b",\"Inactive\":");
    boolean(out, bounce_inactive(r));
    out.extend_from_slice(b",\"CanActivate\":");
    boolean(out, code != 100_001);
    out.extend_from_slice(b",\"Subject\":");
    subject(out, h >> 20, (h >> 16).is_multiple_of(4));
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_type_picks_are_in_range() {
        for h in 0..100 {
            assert!(usize::from(pick_bounce_type(h)) < BOUNCE_TYPES.len());
            assert_ne!(pick_bounce_type(h), INBOUND_ERROR);
        }
    }
}
