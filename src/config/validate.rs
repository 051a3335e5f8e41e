//! Turning a config value into [`Config`]: schema problems worded with the field and the
//! expected value (never echoing a secret), then the checks a schema cannot express.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{Config, ConfigSpec, Secret, DEFAULT_BASE_URL, SECRET_FIELDS};

/// Every schema violation, each naming the field and what it expects.
pub(super) fn schema_problems(spec: &Value, instance: &Value) -> Vec<String> {
    let validator = match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(spec)
    {
        Ok(v) => v,
        Err(e) => {
            return vec![format!(
                "internal error: the spec is not a valid schema: {e}"
            )]
        }
    };
    let mut problems: Vec<String> = validator
        .iter_errors(instance)
        .map(|err| {
            let pointer = err.instance_path().to_string();
            let field = pointer.trim_start_matches('/').to_string();
            if field.is_empty() {
                // A missing required field is reported at the root.
                if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind() {
                    let name = property.as_str().unwrap_or("?").to_string();
                    return format!(
                        "'{name}' is missing; add it: {}",
                        expectation(&spec["properties"][&name])
                    );
                }
                return err.to_string();
            }
            let top = field.split('/').next().unwrap_or("").to_string();
            let got = if SECRET_FIELDS.contains(&top.as_str()) {
                "a value of the wrong type".to_string()
            } else {
                truncate_value(&instance[&top])
            };
            format!(
                "'{field}' is {got}; expected {}",
                expectation(&spec["properties"][&top])
            )
        })
        .collect();
    problems.dedup();
    problems
}

fn truncate_value(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// "an integer from 1 to 16", "a date-time string such as 2026-10-01T00:00:00Z", ...
fn expectation(schema: &Value) -> String {
    let ty = match &schema["type"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|t| t.as_str())
            .find(|t| *t != "null")
            .unwrap_or("value")
            .to_string(),
        _ => "value".into(),
    };
    let mut out = match ty.as_str() {
        "integer" => "a whole number".to_string(),
        "number" => "a number".to_string(),
        "boolean" => "true or false".to_string(),
        "string" => match schema["format"].as_str() {
            Some("date-time") => "an RFC 3339 date-time string".to_string(),
            Some("uri") => "a URL string".to_string(),
            _ => "a string".to_string(),
        },
        other => format!("a {other}"),
    };
    match (schema.get("minimum"), schema.get("maximum")) {
        (Some(lo), Some(hi)) => out.push_str(&format!(" from {lo} to {hi}")),
        (Some(lo), None) => out.push_str(&format!(" of at least {lo}")),
        (None, Some(hi)) => out.push_str(&format!(" of at most {hi}")),
        (None, None) => {}
    }
    if let Some(ex) = schema["examples"].get(0) {
        out.push_str(&format!(" such as {ex}"));
    }
    if let Some(title) = schema["title"].as_str() {
        out.push_str(&format!(" ({title})"));
    }
    out
}

pub(super) fn finish(
    raw: ConfigSpec,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
) -> Result<Config, String> {
    let server_token = match &raw.server_token {
        Some(t) => Some(Secret::new(check_token(
            t.expose(),
            "server_token",
            warnings,
        )?)),
        None => None,
    };
    let account_token = match &raw.account_token {
        Some(t) => Some(Secret::new(check_token(
            t.expose(),
            "account_token",
            warnings,
        )?)),
        None => None,
    };
    let servers = check_servers(raw.servers.as_deref(), account_token.is_some())?;
    let base_url = check_base_url(&raw.base_url)?;
    let start_date = match raw.start_date.as_deref() {
        None => None,
        Some(s) => Some(check_start_date(s, now)?),
    };
    Ok(Config {
        server_token,
        account_token,
        servers,
        start_date,
        lookback: Duration::hours(i64::from(raw.lookback_hours)),
        max_concurrency: raw.max_concurrency.clamp(1, 16) as usize,
        max_requests_per_second: raw.max_requests_per_second,
        window_lag: Duration::seconds(i64::from(raw.window_lag_seconds)),
        fail_on_unreachable_rows: raw.fail_on_unreachable_rows,
        stats_lookback_days: i64::from(raw.stats_lookback_days),
        message_events: raw.message_events,
        request_timeout: StdDuration::from_secs(u64::from(raw.request_timeout_seconds)),
        max_retries: raw.max_retries,
        base_url,
    })
}

pub(super) fn check_start_date(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            format!("'start_date' is \"{s}\" ({e}); expected an RFC 3339 date-time such as 2026-10-01T00:00:00Z")
        })?
        .with_timezone(&Utc);
    if t > now {
        return Err(format!(
            "'start_date' {s} is in the future; use a moment before now ({})",
            now.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    // Statistics are kept forever, so any date since Postmark began is allowed; streams of
    // messages and events start no earlier than the longest retention (365 days).
    if t < earliest_start() {
        return Err(format!(
            "'start_date' {s} is before 2010, when Postmark began; use a later date"
        ));
    }
    Ok(t)
}

fn earliest_start() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_262_304_000, 0).unwrap_or_default()
}

/// Parses `base_url` with `http::Uri`, the parser ureq itself uses for every request, so
/// what is checked here is exactly where the token goes. Its leniencies are closed by
/// rebuilding the authority from the parsed host and port and requiring an exact match.
/// Returns the normalised URL (`scheme://authority[/path]`, no trailing slash).
pub(super) fn check_base_url(url: &str) -> Result<String, String> {
    let shown = shorten(url);
    let bad = |why: &str| format!("'base_url' \"{shown}\" {why}; expected e.g. {DEFAULT_BASE_URL}");
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if url.contains('#') {
        return Err(bad("has a fragment ('#'); remove it"));
    }
    if url.contains('?') {
        return Err(bad("has a query ('?'); remove it"));
    }
    if url.contains('@') {
        return Err(bad(
            "has user information ('@'); the token goes in 'server_token'",
        ));
    }
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let (Some(scheme), Some(authority), Some(host)) =
        (uri.scheme_str(), uri.authority(), uri.host())
    else {
        return Err(bad("is not an absolute URL with a host"));
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let rebuilt = match authority.as_str().rsplit_once(':') {
        Some((h, p)) if h == host => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(&format!("has an invalid port '{p}'")))?;
            format!("{host}:{port}")
        }
        _ => host.to_string(),
    };
    if !rebuilt.eq_ignore_ascii_case(authority.as_str()) {
        return Err(bad("has a malformed host"));
    }
    match scheme {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(format!(
                "'base_url' \"{shown}\" uses plain http for a non-loopback host; use https \
                 (plain http is allowed only for 127.0.0.0/8, localhost and [::1])"
            ))
        }
        _ => return Err(bad("must start with https://")),
    }
    let path = uri.path().trim_end_matches('/');
    Ok(format!(
        "{scheme}://{}{path}",
        authority.as_str().to_ascii_lowercase()
    ))
}

fn shorten(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > 80 {
        format!("{}…", clean.chars().take(80).collect::<String>())
    } else {
        clean
    }
}

fn is_loopback(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    }
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `servers`: IDs or names, trimmed, each once. It selects servers of the account, so it
/// needs `account_token`.
fn check_servers(list: Option<&[String]>, account: bool) -> Result<Vec<String>, String> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if !account {
        return Err(
            "'servers' selects servers of the account and needs 'account_token'; add the \
             Account API token or remove 'servers'"
                .into(),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for s in list {
        let s = s.trim();
        if s.is_empty() {
            return Err("'servers' has an empty entry; list server IDs or names".into());
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

/// A pasted token often carries a trailing newline or spaces: those are trimmed with a
/// warning. Whitespace or control characters inside it, or characters an HTTP header
/// cannot carry, are a config error (the token is never echoed).
pub(super) fn check_token(
    raw: &str,
    field: &str,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let (what, where_) = if field == "account_token" {
        ("Account API token", "Postmark: Account → API Tokens")
    } else {
        (
            "Server API token",
            "Postmark: Servers → your server → API Tokens",
        )
    };
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if trimmed.is_empty() {
        return Err(format!("'{field}' is empty; paste your {what}"));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{field}' contains whitespace or control characters inside it; \
             paste the {what} alone ({where_})"
        ));
    }
    if !trimmed.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "'{field}' contains non-ASCII characters, which no Postmark token has; \
             paste the {what} alone"
        ));
    }
    if trimmed.len() != raw.len() {
        warnings.push(format!(
            "'{field}' had leading or trailing whitespace (a copy-paste newline?); \
             it was trimmed"
        ));
    }
    Ok(trimmed.to_string())
}
