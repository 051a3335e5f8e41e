//! Small per-server datasets: webhooks, inbound rules, suppressions, delivery stats and
//! template bodies. Shapes follow examples/webhooks.json, inbound-rules.json,
//! suppressions-dump.json, deliverystats.json and template-detail.json.

use crate::bounces::{bounce_inactive, BOUNCE_TYPES};
use crate::catalog::{
    template_id, template_is_layout, STREAMS, S_BROADCAST, S_LEGACY, S_OUTBOUND, S_PROMO,
};
use crate::eastern::DAY;
use crate::gen::mix;
use crate::json::{boolean, string, uint};
use crate::records::email;
use crate::store::Inner;
use crate::timefmt::push_eastern_secs;

/// Every secret a webhook carries starts with this, so tests can scan output for it.
#[cfg(test)]
pub const SECRET_PREFIX: &str = "fake-webhook-secret-";

pub struct Hook {
    pub id: u64,
    pub url: &'static str,
    pub stream: usize,
    pub auth: Option<(&'static str, &'static str)>,
    pub headers: &'static [(&'static str, &'static str)],
    /// Open, PostFirstOpenOnly, Click, Delivery, Bounce, Bounce IncludeContent,
    /// SpamComplaint, SpamComplaint IncludeContent, SubscriptionChange.
    pub triggers: [bool; 9],
}

pub const HOOKS: [Hook; 4] = [
    Hook {
        id: 1_804_417,
        url: "https://hooks.acme.example/postmark/tracking",
        stream: S_OUTBOUND,
        auth: Some(("acme-hooks", "fake-webhook-secret-basic-1")),
        headers: &[
            ("X-Acme-Source", "postmark"),
            ("Authorization", "Bearer fake-webhook-secret-header-1"),
        ],
        triggers: [true, false, true, true, false, false, false, false, false],
    },
    Hook {
        id: 1_804_452,
        url: "https://hooks.acme.example/postmark/broadcast",
        stream: S_BROADCAST,
        auth: None,
        headers: &[],
        triggers: [false, false, false, false, true, true, true, false, true],
    },
    Hook {
        id: 1_804_490,
        url: "https://hooks.acme.example/postmark/bounces?src=pm&v=2",
        stream: S_OUTBOUND,
        auth: None,
        headers: &[("X-Api-Key", "fake-webhook-secret-header-2")],
        triggers: [false, false, false, false, true, false, true, true, false],
    },
    Hook {
        id: 1_804_533,
        url: "https://ops.acme.example/hooks/promo",
        stream: S_PROMO,
        auth: Some(("ops", "fake-webhook-secret-basic-2")),
        headers: &[],
        triggers: [true, true, true, false, false, false, false, false, true],
    },
];

/// Webhook IDs of server number `server` (0-based) are offset so they differ per server.
pub fn hook_id(h: &Hook, server: u64) -> u64 {
    h.id + server * 100_000
}

/// `{"Webhooks":[...]}` for the hooks of `stream` (`None` = all).
pub fn webhooks(out: &mut Vec<u8>, stream: Option<usize>, server: u64) {
    out.extend_from_slice(b"{\"Webhooks\":[");
    let hooks = HOOKS
        .iter()
        .filter(|h| stream.is_none_or(|s| s == h.stream));
    for (n, h) in hooks.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        webhook(out, h, server);
    }
    out.extend_from_slice(b"]}");
}

pub fn webhook(out: &mut Vec<u8>, h: &Hook, server: u64) {
    out.extend_from_slice(b"{\"ID\":");
    uint(out, hook_id(h, server));
    out.extend_from_slice(b",\"Url\":");
    string(out, h.url, false);
    out.extend_from_slice(b",\"MessageStream\":");
    string(out, STREAMS[h.stream].id, false);
    out.extend_from_slice(b",\"HttpAuth\":");
    match h.auth {
        None => out.extend_from_slice(b"null"),
        Some((u, p)) => {
            out.extend_from_slice(b"{\"Username\":");
            string(out, u, false);
            out.extend_from_slice(b",\"Password\":");
            string(out, p, false);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"HttpHeaders\":[");
    for (i, (k, v)) in h.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Name\":");
        string(out, k, false);
        out.extend_from_slice(b",\"Value\":");
        string(out, v, false);
        out.push(b'}');
    }
    let t = h.triggers;
    out.extend_from_slice(b"],\"Triggers\":{\"Open\":{\"Enabled\":");
    boolean(out, t[0]);
    out.extend_from_slice(b",\"PostFirstOpenOnly\":");
    boolean(out, t[1]);
    out.extend_from_slice(b"},\"Click\":{\"Enabled\":");
    boolean(out, t[2]);
    out.extend_from_slice(b"},\"Delivery\":{\"Enabled\":");
    boolean(out, t[3]);
    out.extend_from_slice(b"},\"Bounce\":{\"Enabled\":");
    boolean(out, t[4]);
    out.extend_from_slice(b",\"IncludeContent\":");
    boolean(out, t[5]);
    out.extend_from_slice(b"},\"SpamComplaint\":{\"Enabled\":");
    boolean(out, t[6]);
    out.extend_from_slice(b",\"IncludeContent\":");
    boolean(out, t[7]);
    out.extend_from_slice(b"},\"SubscriptionChange\":{\"Enabled\":");
    boolean(out, t[8]);
    out.extend_from_slice(b"}}}");
}

pub const RULES: [&str; 7] = [
    "spammer@spammy.example",
    "spammy.example",
    "promo@deals.example",
    "noreply@marketing.example",
    "phish.example",
    "bounce-loop@globex.example",
    "*.bulk-mail.example",
];

/// Inbound rule `i` of a server: (ID, Rule), ascending IDs.
pub fn rule(i: usize, server: u64) -> (u64, &'static str) {
    (
        962_286 + server * 100_000 + i as u64 * 427 + mix(i as u64 ^ 0x1e) % 300,
        RULES[i],
    )
}

pub fn inbound_rules(out: &mut Vec<u8>, offset: usize, count: usize, server: u64) {
    out.extend_from_slice(b"{\"TotalCount\":");
    uint(out, RULES.len() as u64);
    out.extend_from_slice(b",\"InboundRules\":[");
    for (n, i) in (0..RULES.len()).skip(offset).take(count).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let (id, r) = rule(i, server);
        out.extend_from_slice(b"{\"Rule\":");
        string(out, r, false);
        out.extend_from_slice(b",\"ID\":");
        uint(out, id);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

pub const REASONS: [&str; 3] = ["HardBounce", "SpamComplaint", "ManualSuppression"];
pub const ORIGINS: [&str; 3] = ["Recipient", "Customer", "Admin"];

#[derive(Clone, Debug)]
pub struct Supp {
    pub stream: usize,
    /// UTC seconds.
    pub created: i64,
    pub addr: String,
    pub reason: u8,
    pub origin: u8,
}

/// About `n` suppressions over the outbound-type streams, newest first per stream. Some
/// addresses repeat across streams; some have upper-case letters. Within a stream, no two
/// addresses are equal ignoring case.
pub fn suppressions(n: usize, now_secs: i64, seed: u64, no_legacy: bool) -> Vec<Supp> {
    let mut v: Vec<Supp> = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    for i in 0..n as u64 {
        let h = mix(seed ^ 0x5b9_0000 ^ i);
        let stream = match h % 100 {
            0..=49 => S_OUTBOUND,
            50..=84 => S_BROADCAST,
            85..=92 if !no_legacy => S_LEGACY,
            85..=92 => S_OUTBOUND,
            _ => S_PROMO,
        };
        // A small pool so that addresses repeat across streams.
        let mut e = Vec::new();
        email(&mut e, mix(seed ^ ((h >> 8) % (n as u64 / 2 + 5))));
        let mut addr = String::from_utf8_lossy(&e[1..e.len() - 1]).into_owned();
        if (h >> 20).is_multiple_of(7) {
            addr = shout(&addr);
        }
        if !seen.insert((stream, addr.to_ascii_lowercase())) {
            continue;
        }
        let reason = match (h >> 24) % 100 {
            0..=54 => 0,
            55..=69 => 1,
            _ => 2,
        };
        let origin = match (reason, (h >> 32) % 10) {
            (0 | 1, _) => 0,
            (_, 0..=3) => 0,
            (_, 4..=7) => 1,
            _ => 2,
        };
        let span = 400 * DAY;
        let created = now_secs - 600 - ((h >> 36) % span as u64) as i64;
        v.push(Supp {
            stream,
            created,
            addr,
            reason,
            origin,
        });
    }
    v.sort_by(|a, b| (a.stream, b.created, &a.addr).cmp(&(b.stream, a.created, &b.addr)));
    v
}

/// `Dana.Reyes42@Example.NET`: capitalised words and an upper-case top-level domain.
fn shout(addr: &str) -> String {
    let mut out = String::with_capacity(addr.len());
    let mut up = true;
    let at = addr.find('@').unwrap_or(addr.len());
    let tld = addr.rfind('.').filter(|&d| d > at).unwrap_or(addr.len());
    for (i, c) in addr.char_indices() {
        if i > tld || up {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
        up = matches!(c, '.' | '@') && i < tld;
    }
    out
}

pub fn suppression(out: &mut Vec<u8>, s: &Supp) {
    out.extend_from_slice(b"{\"EmailAddress\":");
    string(out, &s.addr, false);
    out.extend_from_slice(b",\"SuppressionReason\":");
    string(out, REASONS[usize::from(s.reason) % 3], false);
    out.extend_from_slice(b",\"Origin\":");
    string(out, ORIGINS[usize::from(s.origin) % 3], false);
    out.extend_from_slice(b",\"CreatedAt\":\"");
    push_eastern_secs(out, s.created);
    out.extend_from_slice(b"\"}");
}

/// (type index counts, total, inactive) over every bounce of the server.
pub fn bounce_counts(b: &Inner) -> ([u64; BOUNCE_TYPES.len()], u64, u64) {
    let mut counts = [0u64; BOUNCE_TYPES.len()];
    let mut inactive = 0;
    let mut total = 0;
    for v in &b.streams {
        for r in v {
            counts[usize::from(r.kind) % BOUNCE_TYPES.len()] += 1;
            inactive += u64::from(bounce_inactive(r));
            total += 1;
        }
    }
    (counts, total, inactive)
}

pub fn delivery_stats(out: &mut Vec<u8>, b: &Inner) {
    let (counts, total, inactive) = bounce_counts(b);
    out.extend_from_slice(b"{\"InactiveMails\":");
    uint(out, inactive);
    out.extend_from_slice(b",\"Bounces\":[{\"Name\":\"All\",\"Count\":");
    uint(out, total);
    out.push(b'}');
    for (i, (ty, code, name, _)) in BOUNCE_TYPES.iter().enumerate() {
        if counts[i] == 0 {
            continue;
        }
        out.extend_from_slice(b",{\"Type\":");
        string(out, ty, false);
        out.extend_from_slice(b",\"TypeCode\":");
        uint(out, u64::from(*code));
        out.extend_from_slice(b",\"Name\":");
        string(out, name, false);
        out.extend_from_slice(b",\"Count\":");
        uint(out, counts[i]);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Template number for an id or alias among `n` templates of server `server`.
pub fn template_lookup(key: &str, n: usize, server: u64) -> Option<usize> {
    if let Ok(id) = key.parse::<u64>() {
        return (0..n).find(|&i| template_id(i) + server * 1_000_000 == id);
    }
    (0..n).find(|&i| crate::catalog::template_alias(i).as_deref() == Some(key))
}

/// `GET /templates/{id}` body.
pub fn template_detail(out: &mut Vec<u8>, i: usize, server: u64, server_id: u64) {
    let layout = template_is_layout(i);
    // The summary fields, then the bodies.
    let mut summary = Vec::new();
    crate::catalog::template_at(&mut summary, i, template_id(i) + server * 1_000_000);
    summary.pop();
    out.extend_from_slice(&summary);
    out.extend_from_slice(b",\"Subject\":");
    if layout {
        out.extend_from_slice(b"null");
    } else {
        string(
            out,
            &format!("Your {{{{product_name}}}} update #{i}"),
            false,
        );
    }
    out.extend_from_slice(b",\"HtmlBody\":");
    if layout {
        string(
            out,
            "<html><body><header>Acme</header>{{{@content}}}<footer>Acme Inc.</footer></body></html>",
            false,
        );
    } else {
        string(
            out,
            &format!("<p>Hi {{{{name}}}},</p><p><a href=\"{{{{action_url}}}}\">Continue</a> — template {i}</p>"),
            false,
        );
    }
    out.extend_from_slice(b",\"TextBody\":");
    if i % 4 == 1 {
        out.extend_from_slice(b"null");
    } else {
        string(
            out,
            &format!("Hi {{{{name}}}},\n\nTemplate {i}: {{{{action_url}}}}\n"),
            false,
        );
    }
    out.extend_from_slice(b",\"AssociatedServerId\":");
    uint(out, server_id);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppressions_are_unique_per_stream_and_some_repeat_or_shout() {
        let v = suppressions(300, 1_790_000_000, 0, false);
        let mut keys = std::collections::HashSet::new();
        for s in &v {
            assert!(keys.insert((s.stream, s.addr.to_ascii_lowercase())));
        }
        let upper = v
            .iter()
            .filter(|s| s.addr.bytes().any(|c| c.is_ascii_uppercase()));
        assert!(upper.count() > 5);
        let mut by_addr = std::collections::HashMap::<String, usize>::new();
        for s in &v {
            *by_addr.entry(s.addr.to_ascii_lowercase()).or_default() += 1;
        }
        assert!(by_addr.values().any(|&n| n > 1));
        assert_eq!(
            shout("dana.reyes42@example.net"),
            "Dana.Reyes42@Example.NET"
        );
    }

    #[test]
    fn webhook_bodies_parse_and_carry_secrets() {
        let mut o = Vec::new();
        webhooks(&mut o, None, 0);
        let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
        assert_eq!(v["Webhooks"].as_array().map(Vec::len), Some(4));
        assert!(v["Webhooks"][1]["HttpAuth"].is_null());
        assert!(String::from_utf8_lossy(&o).matches(SECRET_PREFIX).count() >= 4);
    }
}
