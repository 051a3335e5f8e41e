//! Account-token endpoints (api.md §13.6): `/servers`, `/servers/{id}`, `/domains`,
//! `/senders`. Shapes follow examples/servers.json, domains.json and senders.json.
//!
//! Called on the first server of the account, which knows the others (`App::peers`).

use std::sync::PoisonError;

use crate::api::{error, paging_of, param, Invalid};
use crate::http::{Head, Request};
use crate::json::{boolean, string, uint};
use crate::App;

const CODE_SERVERS: u32 = 600;

pub fn is_account_route(route: &str) -> bool {
    matches!(route, "/servers" | "/domains" | "/senders")
        || route.starts_with("/servers/")
        || route.starts_with("/domains/")
        || route.starts_with("/senders/")
}

/// (Name, SPFVerified, DKIMVerified, WeakDKIM, ReturnPathDomainVerified, ID).
pub const DOMAINS: [(&str, bool, bool, bool, bool, u64); 3] = [
    ("acme.example", true, true, false, true, 4_012_345),
    ("mail.acme.example", false, false, false, false, 4_012_398),
    ("globex.example", true, true, true, false, 4_013_002),
];

/// (Domain, EmailAddress, ReplyToEmailAddress, Name, Confirmed, ID).
pub const SENDERS: [(&str, &str, &str, &str, bool, u64); 4] = [
    (
        "acme.example",
        "support@acme.example",
        "",
        "Acme Support",
        true,
        128_462,
    ),
    (
        "acme.example",
        "news@acme.example",
        "replies@acme.example",
        "Acme News",
        true,
        128_519,
    ),
    (
        "mail.acme.example",
        "promo@mail.acme.example",
        "",
        "Acme Promotions",
        false,
        140_233,
    ),
    (
        "globex.example",
        "billing@globex.example",
        "",
        "Globex Billing \u{2014} AP",
        true,
        141_870,
    ),
];

pub fn handle(app: &App, req: &Request, out: &mut Vec<u8>) -> Head {
    if req.method != "GET" {
        return error(out, 405, 405, "Method not allowed");
    }
    if req.header("x-postmark-account-token") != Some(app.cfg.account_token.as_str()) {
        return error(
            out,
            401,
            10,
            "Request does not contain a valid Account token.",
        );
    }
    if req.header("x-postmark-server-token").is_some() {
        return error(
            out,
            401,
            10,
            "Please do not include Server API Token for Account API Token calls.",
        );
    }
    let route = req.route();
    let r = match route.as_str() {
        "/servers" => list_servers(app, req, out),
        "/domains" => domains(req, out),
        "/senders" => senders(req, out),
        _ if route.starts_with("/servers/") => {
            let id = route.trim_start_matches("/servers/").parse::<u64>().ok();
            one_server(app, id, out)
        }
        _ if route.starts_with("/domains/") => {
            let id = route.trim_start_matches("/domains/").parse::<u64>().ok();
            match DOMAINS.iter().find(|d| Some(d.5) == id) {
                Some(d) => {
                    detail(out, d.0, d.2, d.4, |o| domain(o, d));
                    Ok(())
                }
                None => Err(crate::api::invalid(510, "Domain not found.")),
            }
        }
        _ if route.starts_with("/senders/") => {
            let id = route.trim_start_matches("/senders/").parse::<u64>().ok();
            match SENDERS.iter().find(|s| Some(s.5) == id) {
                Some(s) => {
                    let d = DOMAINS
                        .iter()
                        .find(|d| d.0 == s.0)
                        .copied()
                        .unwrap_or(DOMAINS[0]);
                    detail(out, d.0, d.2, d.4, |o| sender(o, s));
                    out.pop();
                    out.extend_from_slice(b",\"ConfirmationPersonalNote\":null}");
                    Ok(())
                }
                None => Err(crate::api::invalid(501, "Sender signature not found.")),
            }
        }
        _ => Err(crate::api::invalid(CODE_SERVERS, "Not found.")),
    };
    match r {
        Ok(()) => Head::json(200),
        Err(e) => error(out, 422, e.code, &e.msg),
    }
}

fn with_servers<T>(app: &App, f: impl FnOnce(&[&App]) -> T) -> T {
    let peers = app.peers.read().unwrap_or_else(PoisonError::into_inner);
    let mut all: Vec<&App> = vec![app];
    all.extend(peers.iter().map(|p| p.as_ref()));
    f(&all)
}

fn list_servers(app: &App, req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let (offset, count) = paging_of(req, CODE_SERVERS)?;
    let name = param(req, "name").map(str::to_lowercase);
    with_servers(app, |all| {
        let matching: Vec<&&App> = all
            .iter()
            .filter(|s| {
                name.as_deref()
                    .is_none_or(|n| server_name_matches(&s.server_body, n))
            })
            .collect();
        out.extend_from_slice(b"{\"TotalCount\":");
        uint(out, matching.len() as u64);
        out.extend_from_slice(b",\"Servers\":[");
        for (i, s) in matching.iter().skip(offset).take(count).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&s.server_body);
        }
        out.extend_from_slice(b"]}");
    });
    Ok(())
}

/// Whether a server body's `Name` contains `needle` (lowercase), ignoring case.
fn server_name_matches(body: &[u8], needle: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v["Name"]
                .as_str()
                .map(|n| n.to_lowercase().contains(needle))
        })
        .unwrap_or(false)
}

fn one_server(app: &App, id: Option<u64>, out: &mut Vec<u8>) -> Result<(), Invalid> {
    with_servers(app, |all| {
        match all.iter().find(|s| Some(s.server_id) == id) {
            Some(s) => {
                out.extend_from_slice(&s.server_body);
                Ok(())
            }
            None => Err(crate::api::invalid(CODE_SERVERS, "Server not found.")),
        }
    })
}

fn domains(req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let (offset, count) = paging_of(req, CODE_SERVERS)?;
    out.extend_from_slice(b"{\"TotalCount\":");
    uint(out, DOMAINS.len() as u64);
    out.extend_from_slice(b",\"Domains\":[");
    for (i, d) in DOMAINS.iter().skip(offset).take(count).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        domain(out, d);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

pub fn domain(out: &mut Vec<u8>, d: &(&str, bool, bool, bool, bool, u64)) {
    out.extend_from_slice(b"{\"Name\":");
    string(out, d.0, false);
    out.extend_from_slice(b",\"SPFVerified\":");
    boolean(out, d.1);
    out.extend_from_slice(b",\"DKIMVerified\":");
    boolean(out, d.2);
    out.extend_from_slice(b",\"WeakDKIM\":");
    boolean(out, d.3);
    out.extend_from_slice(b",\"ReturnPathDomainVerified\":");
    boolean(out, d.4);
    out.extend_from_slice(b",\"ID\":");
    uint(out, d.5);
    out.push(b'}');
}

/// A list object (written by `list`) extended with the DNS fields of `domain`
/// (examples/domain-detail.json, sender-detail.json; empty strings when unset).
fn detail(
    out: &mut Vec<u8>,
    domain: &str,
    dkim: bool,
    return_path: bool,
    list: impl FnOnce(&mut Vec<u8>),
) {
    list(out);
    out.pop();
    let host = format!("20260301101500pm._domainkey.{domain}");
    let fields: [(&str, String); 11] = [
        ("SPFHost", domain.to_string()),
        (
            "SPFTextValue",
            "v=spf1 a mx include:spf.mtasv.net ~all".into(),
        ),
        ("DKIMHost", if dkim { host.clone() } else { String::new() }),
        (
            "DKIMTextValue",
            if dkim {
                "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC...fake...IDAQAB".into()
            } else {
                String::new()
            },
        ),
        ("DKIMPendingHost", if dkim { String::new() } else { host }),
        (
            "DKIMPendingTextValue",
            if dkim {
                String::new()
            } else {
                "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQD...fake...IDAQAB".into()
            },
        ),
        ("DKIMRevokedHost", String::new()),
        ("DKIMRevokedTextValue", String::new()),
        (
            "DKIMUpdateStatus",
            if dkim {
                "Verified".into()
            } else {
                "Pending".into()
            },
        ),
        (
            "ReturnPathDomain",
            if return_path {
                format!("pm-bounces.{domain}")
            } else {
                String::new()
            },
        ),
        ("ReturnPathDomainCNAMEValue", "pm.mtasv.net".into()),
    ];
    for (k, v) in &fields {
        out.push(b',');
        string(out, k, false);
        out.push(b':');
        string(out, v, false);
    }
    out.extend_from_slice(b",\"SafeToRemoveRevokedKeyFromDNS\":false}");
}

fn senders(req: &Request, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let (offset, count) = paging_of(req, CODE_SERVERS)?;
    out.extend_from_slice(b"{\"TotalCount\":");
    uint(out, SENDERS.len() as u64);
    out.extend_from_slice(b",\"SenderSignatures\":[");
    for (i, s) in SENDERS.iter().skip(offset).take(count).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        sender(out, s);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

pub fn sender(out: &mut Vec<u8>, s: &(&str, &str, &str, &str, bool, u64)) {
    out.extend_from_slice(b"{\"Domain\":");
    string(out, s.0, false);
    out.extend_from_slice(b",\"EmailAddress\":");
    string(out, s.1, false);
    out.extend_from_slice(b",\"ReplyToEmailAddress\":");
    string(out, s.2, false);
    out.extend_from_slice(b",\"Name\":");
    string(out, s.3, false);
    out.extend_from_slice(b",\"Confirmed\":");
    boolean(out, s.4);
    out.extend_from_slice(b",\"ID\":");
    uint(out, s.5);
    out.push(b'}');
}

/// Truth of the account streams; `None` for other names.
pub fn truth(app: &App, stream: &str, records: bool, out: &mut Vec<u8>) -> Option<()> {
    match stream {
        "servers" => with_servers(app, |all| {
            for s in all {
                if records {
                    out.extend_from_slice(&s.server_body);
                } else {
                    uint(out, s.server_id);
                }
                out.push(b'\n');
            }
        }),
        "domains" => {
            for d in &DOMAINS {
                if records {
                    domain(out, d);
                } else {
                    uint(out, d.5);
                }
                out.push(b'\n');
            }
        }
        "sender_signatures" => {
            for s in &SENDERS {
                if records {
                    sender(out, s);
                } else {
                    uint(out, s.5);
                }
                out.push(b'\n');
            }
        }
        _ => return None,
    }
    Some(())
}
