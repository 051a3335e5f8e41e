//! The small, fixed datasets: message streams, templates and the `/server` body.
//!
//! These have no time index. Streams and templates are derived from `--now` and
//! `--templates` alone so that identical flags give identical bodies.

use crate::eastern::DAY;
use crate::gen::mix;
use crate::json;
use crate::timefmt::push_eastern_secs;

pub const NSTREAMS: usize = 5;
pub const S_OUTBOUND: usize = 0;
pub const S_BROADCAST: usize = 1;
pub const S_INBOUND: usize = 2;
pub const S_LEGACY: usize = 3;
pub const S_PROMO: usize = 4;
pub const SERVER_ID: u64 = 1_234_567;
pub const INBOUND_HASH: &str = "7d3e1b0c9a8f4e2d6b5c4a3f2e1d0c9b";

pub struct StreamInfo {
    pub id: &'static str,
    pub kind: &'static str,
    name: &'static str,
    description: Option<&'static str>,
    unsubscribe: &'static str,
    /// Days before `now` (negative = never set).
    created_days: i64,
    updated_days: i64,
    pub archived_days: i64,
}

/// Indexed by the `S_*` constants.
pub const STREAMS: [StreamInfo; NSTREAMS] = [
    StreamInfo {
        id: "outbound",
        kind: "Transactional",
        name: "Default Transactional Stream",
        description: Some("Receipts, password resets and account notices"),
        unsubscribe: "None",
        created_days: 700,
        updated_days: 120,
        archived_days: -1,
    },
    StreamInfo {
        id: "broadcast",
        kind: "Broadcasts",
        name: "Default Broadcast Stream",
        description: Some("Newsletters and product announcements"),
        unsubscribe: "Postmark",
        created_days: 700,
        updated_days: -1,
        archived_days: -1,
    },
    StreamInfo {
        id: "inbound",
        kind: "Inbound",
        name: "Default Inbound Stream",
        description: Some("Replies to support tickets"),
        unsubscribe: "None",
        created_days: 700,
        updated_days: -1,
        archived_days: -1,
    },
    StreamInfo {
        id: "legacy-tx",
        kind: "Transactional",
        name: "Legacy transactional",
        description: None,
        unsubscribe: "None",
        created_days: 600,
        updated_days: 30,
        archived_days: 3,
    },
    StreamInfo {
        id: "spring-promo",
        kind: "Broadcasts",
        name: "Spring promo",
        description: Some("Spring sale campaign \u{2014} 20% off"),
        unsubscribe: "Custom",
        created_days: 200,
        updated_days: 60,
        archived_days: 1,
    },
];

/// Stream index for a `messagestream` value (stream IDs compare case-insensitively).
pub fn stream_index(name: &str) -> Option<usize> {
    STREAMS.iter().position(|s| s.id.eq_ignore_ascii_case(name))
}

/// UTC second at which an archived stream was archived, relative to `now`.
pub fn archived_at(stream: usize, now_secs: i64) -> Option<i64> {
    let s = &STREAMS[stream];
    (s.archived_days >= 0).then(|| now_secs - s.archived_days * DAY - 4321)
}

fn push_opt_time(out: &mut Vec<u8>, secs: Option<i64>) {
    match secs {
        Some(s) => {
            out.push(b'"');
            push_eastern_secs(out, s);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// `/message-streams` body. `type_filter` is `None` for All; archived streams are left
/// out unless `include_archived`. Streams come in ID order, as in a real recording.
#[cfg(test)]
pub fn message_streams(
    out: &mut Vec<u8>,
    now_secs: i64,
    type_filter: Option<&str>,
    include_archived: bool,
) {
    message_streams_for(
        out,
        now_secs,
        type_filter,
        include_archived,
        SERVER_ID,
        &|_| true,
    );
}

/// [`message_streams`] of the server with ID `server_id`.
pub fn message_streams_for(
    out: &mut Vec<u8>,
    now_secs: i64,
    type_filter: Option<&str>,
    include_archived: bool,
    server_id: u64,
    has: &dyn Fn(usize) -> bool,
) {
    let mut order: Vec<usize> = (0..NSTREAMS).collect();
    order.sort_by_key(|&i| STREAMS[i].id);
    let mut n = 0;
    out.extend_from_slice(b"{\"MessageStreams\":[");
    for i in order {
        let s = &STREAMS[i];
        let archived = archived_at(i, now_secs);
        if !has(i)
            || type_filter.is_some_and(|t| t != s.kind)
            || (archived.is_some() && !include_archived)
        {
            continue;
        }
        if n > 0 {
            out.push(b',');
        }
        n += 1;
        let days = |d: i64| (d >= 0).then(|| now_secs - d * DAY - 3 * 3600 - 17 * 60 - 5);
        out.extend_from_slice(b"{\"ID\":");
        json::string(out, s.id, false);
        out.extend_from_slice(b",\"ServerID\":");
        json::uint(out, server_id);
        out.extend_from_slice(b",\"Name\":");
        json::string(out, s.name, false);
        out.extend_from_slice(b",\"Description\":");
        match s.description {
            Some(d) => json::string(out, d, false),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"MessageStreamType\":");
        json::string(out, s.kind, false);
        out.extend_from_slice(b",\"CreatedAt\":");
        push_opt_time(out, days(s.created_days));
        out.extend_from_slice(b",\"UpdatedAt\":");
        push_opt_time(out, days(s.updated_days));
        out.extend_from_slice(b",\"ArchivedAt\":");
        push_opt_time(out, archived);
        out.extend_from_slice(b",\"ExpectedPurgeDate\":");
        push_opt_time(out, archived.map(|a| a + 45 * DAY));
        out.extend_from_slice(
            b",\"SubscriptionManagementConfiguration\":{\"UnsubscribeHandlingType\":",
        );
        json::string(out, s.unsubscribe, false);
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"],\"TotalCount\":");
    json::uint(out, n);
    out.push(b'}');
}

/// Template number `i` (0-based, ascending id). Every sixth is a layout.
pub fn template_id(i: usize) -> u64 {
    31_200_000 + i as u64 * 10 + mix(i as u64 ^ 0x7e3) % 7
}

pub fn template_is_layout(i: usize) -> bool {
    i.is_multiple_of(6)
}

/// Alias of template `i` (layouts always have one; every fifth standard one has none).
pub fn template_alias(i: usize) -> Option<String> {
    if template_is_layout(i) {
        Some(format!("layout-{i}"))
    } else if i % 5 == 4 {
        None
    } else {
        Some(format!("template-{i}"))
    }
}

/// Appends one template summary object.
#[cfg(test)]
pub fn template(out: &mut Vec<u8>, i: usize) {
    template_at(out, i, template_id(i));
}

/// [`template`] with an explicit `TemplateId` (servers other than the first offset them).
pub fn template_at(out: &mut Vec<u8>, i: usize, id: u64) {
    const NAMES: [&str; 8] = [
        "Password reset",
        "Welcome aboard",
        "Receipt \"Pro\" plan",
        "Invoice reminder",
        "Weekly digest",
        "Bienvenue à bord",
        "Path C:\\templates\\legacy",
        "注文確認",
    ];
    let layout = template_is_layout(i);
    out.extend_from_slice(b"{\"Active\":");
    json::boolean(out, i % 9 != 8);
    out.extend_from_slice(b",\"TemplateId\":");
    json::uint(out, id);
    out.extend_from_slice(b",\"Name\":");
    let name = if layout {
        format!("Layout {i}")
    } else {
        format!("{} {i}", NAMES[i % NAMES.len()])
    };
    json::string(out, &name, false);
    out.extend_from_slice(b",\"Alias\":");
    match template_alias(i) {
        Some(a) => json::string(out, &a, false),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"TemplateType\":");
    json::string(out, if layout { "Layout" } else { "Standard" }, false);
    out.extend_from_slice(b",\"LayoutTemplate\":");
    if layout || i.is_multiple_of(3) {
        out.extend_from_slice(b"null");
    } else {
        json::string(out, &format!("layout-{}", i / 6 * 6), false);
    }
    out.push(b'}');
}

/// `/server` body, shaped like examples/server.json (same field order).
#[cfg(test)]
pub fn server(token: &str) -> Vec<u8> {
    server_for(token, SERVER_ID, "Acme Production", "Blue")
}

/// Name and color of server number `index` of the account.
pub fn server_name(index: u64) -> (String, &'static str) {
    const NAMES: [(&str, &str); 4] = [
        ("Acme Production", "Blue"),
        ("Acme Staging", "Green"),
        ("Acme Client: Globex", "Purple"),
        ("Acme Client: Initech \u{2014} EU", "Orange"),
    ];
    match NAMES.get(index as usize) {
        Some((n, c)) => (n.to_string(), c),
        None => (format!("Acme Server {index}"), "Grey"),
    }
}

/// [`server`] with an explicit ID, name and color.
pub fn server_for(token: &str, server_id: u64, name: &str, color: &str) -> Vec<u8> {
    let mut o = Vec::with_capacity(1024);
    let text = |o: &mut Vec<u8>, k: &str, v: &str| {
        json::key(o, k);
        json::string(o, v, false);
        o.push(b',');
    };
    let flag = |o: &mut Vec<u8>, k: &str, v: bool| {
        json::key(o, k);
        json::boolean(o, v);
        o.push(b',');
    };
    o.extend_from_slice(b"{\"ID\":");
    json::uint(&mut o, server_id);
    o.extend_from_slice(b",\"Name\":");
    json::string(&mut o, name, false);
    o.extend_from_slice(b",\"ApiTokens\":[");
    json::string(&mut o, token, false);
    o.extend_from_slice(b"],");
    text(&mut o, "Color", color);
    flag(&mut o, "SmtpApiActivated", true);
    flag(&mut o, "RawEmailEnabled", false);
    text(&mut o, "DeliveryType", "Live");
    let link = format!("https://account.postmarkapp.com/servers/{server_id}/streams");
    text(&mut o, "ServerLink", &link);
    text(
        &mut o,
        "InboundAddress",
        &format!("{INBOUND_HASH}@inbound.postmarkapp.com"),
    );
    text(
        &mut o,
        "InboundHookUrl",
        "https://hooks.acme.example/postmark/inbound",
    );
    for k in ["BounceHookUrl", "OpenHookUrl", "DeliveryHookUrl"] {
        text(&mut o, k, "");
    }
    flag(&mut o, "PostFirstOpenOnly", false);
    text(&mut o, "InboundDomain", "");
    text(&mut o, "InboundHash", INBOUND_HASH);
    o.extend_from_slice(b"\"InboundSpamThreshold\":5,");
    flag(&mut o, "TrackOpens", true);
    text(&mut o, "TrackLinks", "HtmlAndText");
    flag(&mut o, "IncludeBounceContentInHook", false);
    text(&mut o, "ClickHookUrl", "");
    json::key(&mut o, "EnableSmtpApiErrorHooks");
    json::boolean(&mut o, false);
    o.push(b'}');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_filtering() {
        let parse = |t: Option<&str>, a: bool| {
            let mut o = Vec::new();
            message_streams(&mut o, 1_770_000_000, t, a);
            serde_json::from_slice::<serde_json::Value>(&o).unwrap()
        };
        assert_eq!(parse(None, false)["TotalCount"], 3);
        assert_eq!(parse(None, true)["TotalCount"], 5);
        let b = parse(Some("Broadcasts"), true);
        assert_eq!(b["TotalCount"], 2);
        assert_eq!(b["MessageStreams"][1]["ID"], "spring-promo");
        assert!(b["MessageStreams"][1]["ArchivedAt"].is_string());
        assert!(b["MessageStreams"][0]["UpdatedAt"].is_null());
    }

    #[test]
    fn server_matches_example_keys() {
        let v: serde_json::Value = serde_json::from_slice(&server("tok\"en")).unwrap();
        // Key set of examples/server.json.
        let want = [
            "ID",
            "Name",
            "ApiTokens",
            "Color",
            "SmtpApiActivated",
            "RawEmailEnabled",
            "DeliveryType",
            "ServerLink",
            "InboundAddress",
            "InboundHookUrl",
            "BounceHookUrl",
            "OpenHookUrl",
            "DeliveryHookUrl",
            "PostFirstOpenOnly",
            "InboundDomain",
            "InboundHash",
            "InboundSpamThreshold",
            "TrackOpens",
            "TrackLinks",
            "IncludeBounceContentInHook",
            "ClickHookUrl",
            "EnableSmtpApiErrorHooks",
        ];
        let mut got: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = want.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(v["ApiTokens"][0], "tok\"en");
    }

    #[test]
    fn templates_are_valid_and_unique() {
        let mut ids = std::collections::HashSet::new();
        for i in 0..200 {
            let mut o = Vec::new();
            template(&mut o, i);
            let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
            assert!(ids.insert(v["TemplateId"].as_u64().unwrap()));
            assert!(template_id(i + 1) > template_id(i));
        }
    }
}
