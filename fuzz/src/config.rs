//! Target `config`: `config::from_value`, everything `load` does after reading the file.
//!
//! Properties:
//! - never panics; an error is one non-empty line;
//! - the token is never echoed: run again with the token replaced by a marker, no error or
//!   warning contains the marker;
//! - an accepted config is within the spec: non-empty token, `start_date` within 365 days
//!   before now and not after it, numbers in their documented ranges;
//! - an accepted `base_url`, read by an independent WHATWG URL parser, is `https`, or `http`
//!   to a loopback host, with no user info, query or fragment.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use source_postmark::config::{self, Config};

const MARKER: &str = "Fz-SeCrEt-MaRkEr-7";

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_176_000, 0).unwrap_or_default() // 2026-11-20T12:00:00Z
}

pub fn check(data: &[u8]) {
    let Some(value) = crate::jsonish::value(data) else {
        return;
    };
    let result = config::from_value(value.clone(), now());
    let debug = result.as_ref().ok().map(|(c, _)| format!("{c:?}"));
    let tokens: Vec<String> = result
        .as_ref()
        .ok()
        .map(|(c, _)| {
            [&c.server_token, &c.account_token]
                .into_iter()
                .flatten()
                .map(|t| t.expose().to_string())
                .collect()
        })
        .unwrap_or_default();
    match &result {
        Ok((c, warnings)) => {
            assert_valid(c, &value);
            for w in warnings {
                assert!(!w.is_empty());
            }
        }
        Err(e) => {
            assert!(!e.trim().is_empty(), "an empty error");
            assert!(!e.contains('\n'), "a multi-line error: {e:?}");
        }
    }
    // The marker run: same input, token replaced.
    if let Value::Object(mut map) = value {
        let mut replaced = false;
        for key in [
            "server_token",
            "X-Postmark-Server-Token",
            "account_token",
            "X-Postmark-Account-Token",
        ] {
            if let Some(Value::String(t)) = map.get(key) {
                if !t.trim().is_empty() {
                    map.insert(key.into(), Value::String(MARKER.into()));
                    replaced = true;
                }
            }
        }
        if replaced {
            let marked = config::from_value(Value::Object(map), now());
            // Debug never shows a token: the accepted config's Debug text holds each token
            // exactly as often as the same config's with the tokens replaced (a short token
            // such as "Some" may well occur in the rest of the text, so mere containment
            // proves nothing: a false alarm the CI smoke run once hit).
            if let (Some(debug), Ok((c2, _))) = (&debug, &marked) {
                let debug2 = format!("{c2:?}");
                for t in &tokens {
                    assert_eq!(
                        debug.matches(t.as_str()).count(),
                        debug2.matches(t.as_str()).count(),
                        "Debug shows the token"
                    );
                }
            }
            let text = match marked {
                Ok((_, warnings)) => warnings.join("\n"),
                Err(e) => e,
            };
            assert!(
                !text.contains(MARKER) && !text.contains("SeCrEt"),
                "the token is echoed: {text}"
            );
        }
    }
}

fn assert_valid(c: &Config, input: &Value) {
    assert!(
        c.server_token.is_some() || c.account_token.is_some(),
        "no token"
    );
    for t in [&c.server_token, &c.account_token].into_iter().flatten() {
        assert!(!t.expose().trim().is_empty(), "empty token");
        assert_eq!(
            format!("{t:?}").trim_matches('"'),
            "***",
            "a secret's Debug"
        );
    }
    if let Some(t) = c.start_date {
        assert!(t <= now(), "start_date {t} after now");
        // Statistics reach back to any date from 2010 on (issue 7); messages and events are
        // clamped to retention at read time, not here.
        assert!(
            t >= DateTime::from_timestamp(1_262_304_000, 0).unwrap_or_default(),
            "start_date {t} before 2010"
        );
    }
    assert!((1..=16).contains(&c.max_concurrency), "max_concurrency");
    assert!(c.lookback <= Duration::hours(720), "lookback");
    assert!(c.window_lag <= Duration::seconds(86_400), "window_lag");
    let timeout = c.request_timeout.as_secs();
    assert!((1..=600).contains(&timeout), "request_timeout {timeout}");
    assert!(c.max_retries <= 20, "max_retries");
    if let Some(r) = c.max_requests_per_second {
        assert!((0.1..=1000.0).contains(&r), "max_requests_per_second {r}");
    }
    check_base_url(&c.base_url, input);
}

fn check_base_url(base: &str, input: &Value) {
    let url = url::Url::parse(base)
        .unwrap_or_else(|e| panic!("accepted base_url {base:?} is not a URL ({e}); input {input}"));
    let host = url.host_str().unwrap_or("");
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" => assert!(
            loopback,
            "accepted plain http to the non-loopback host {host:?}: {base:?}"
        ),
        other => panic!("accepted scheme {other}: {base:?}"),
    }
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "accepted user info in {base:?}"
    );
    assert!(url.query().is_none(), "accepted a query in {base:?}");
    assert!(url.fragment().is_none(), "accepted a fragment in {base:?}");
}
