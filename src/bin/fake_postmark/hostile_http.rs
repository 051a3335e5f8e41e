//! Hostile HTTP behaviours, each behind a flag, for testing what the connector does when
//! the server (or a proxy in front of it) misbehaves: redirects elsewhere, error bodies
//! that echo the token, a landing page on `/server`, corrupt gzip, non-UTF-8 bodies and
//! bodies that stall half-way. A huge `Retry-After` needs no flag of its own:
//! `--fail-every 1 --fail-status 503 --retry-after 3600`.
//!
//! Two hooks: [`before`] may answer an API request instead of the endpoint handler, and
//! [`after`] may rewrite the answer the handler (or a scripted fault) produced.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::control::Outcome;
use crate::http::{Head, Request};

#[derive(Args, Debug, Clone, Default)]
pub struct Hostile {
    /// Answer every API request with `302 Found` and `Location: <URL><path>?<query>`.
    #[arg(long, value_name = "URL")]
    pub redirect_to: Option<String>,
    /// Every non-200 API answer quotes the request's token header in its `Message`.
    #[arg(long)]
    pub echo_token: bool,
    /// `/server` answers 200 with this instead of the server object.
    #[arg(long, value_enum)]
    pub server_body: Option<ServerBody>,
    /// Every 200 API answer claims `Content-Encoding: gzip` but is not gzip.
    #[arg(long)]
    pub bad_gzip: bool,
    /// Every 200 API answer carries a byte that is not UTF-8.
    #[arg(long)]
    pub invalid_utf8: bool,
    /// Every API answer sends its head and half its body, then stalls this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub stall_body_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServerBody {
    /// A 200 text/html landing page.
    Html,
    /// A 200 `{}`.
    EmptyObject,
}

const LANDING_PAGE: &str = "<!doctype html><html><head><title>Welcome</title></head>\
<body><h1>It works!</h1><p>This is a landing page, not an API.</p></body></html>\n";

/// Answers an API request itself when a flag says so.
pub fn before(h: &Hostile, req: &Request, out: &mut Vec<u8>) -> Option<Outcome<'static>> {
    if let Some(to) = &h.redirect_to {
        out.clear();
        let mut head = Head::new(302, crate::http::TEXT);
        head.extra.push(("Location", format!("{to}{}", req.target)));
        out.extend_from_slice(b"moved\n");
        return Some(Outcome::Respond(head));
    }
    match (h.server_body, req.route().as_str()) {
        (Some(ServerBody::Html), "/server") => {
            out.clear();
            out.extend_from_slice(LANDING_PAGE.as_bytes());
            Some(Outcome::Respond(Head::new(200, "text/html; charset=utf-8")))
        }
        (Some(ServerBody::EmptyObject), "/server") => {
            out.clear();
            out.extend_from_slice(b"{}");
            Some(Outcome::Respond(Head::json(200)))
        }
        _ => None,
    }
}

/// Rewrites an answer about to be sent. `Some` replaces it with a stalled stream.
pub fn after(
    h: &Hostile,
    req: &Request,
    head: &mut Head,
    out: &mut Vec<u8>,
) -> Option<Outcome<'static>> {
    if h.echo_token && head.status != 200 {
        let token = req.header("x-postmark-server-token").unwrap_or("(none)");
        let msg = format!(
            "Upstream proxy error for request with X-Postmark-Server-Token: {token} ({} {})",
            req.method, req.target
        );
        let code = head.status;
        *head = crate::api::error(out, code, u32::from(code), &msg);
    }
    if head.status == 200 && h.invalid_utf8 {
        // Inside the first string value, so only a strict UTF-8 check notices.
        match out.windows(2).position(|w| w == b":\"") {
            Some(i) => out.insert(i + 2, 0xff),
            None => out.push(0xff),
        }
    }
    if head.status == 200 && h.bad_gzip {
        out.clear();
        out.extend_from_slice(b"\x1f\x8b\x08\x00this is not a deflate stream at all");
        head.extra.push(("Content-Encoding", "gzip".into()));
    }
    let secs = h.stall_body_secs?;
    let body = std::mem::take(out);
    let len = body.len() as u64;
    let head = Head {
        status: head.status,
        ctype: head.ctype,
        extra: head.extra.clone(),
    };
    let writer = move |w: &mut dyn Write| -> std::io::Result<()> {
        w.write_all(&body[..body.len() / 2])?;
        w.flush()?;
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        w.write_all(&body[body.len() / 2..])
    };
    Some(Outcome::Stream(head, len, Box::new(writer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Request {
        match crate::http::read_request(&mut std::io::BufReader::new(raw.as_bytes())) {
            Ok(Some(r)) => r,
            _ => panic!("no request"),
        }
    }

    #[test]
    fn echoed_errors_quote_the_token_and_bad_bodies_are_bad() {
        let r = req("GET /bounces?count=1 HTTP/1.1\r\nX-Postmark-Server-Token: sekrit\r\n\r\n");
        let h = Hostile {
            echo_token: true,
            invalid_utf8: true,
            ..Hostile::default()
        };
        let mut out = Vec::new();
        let mut head = crate::api::error(&mut out, 500, 0, "x");
        assert!(after(&h, &r, &mut head, &mut out).is_none());
        assert!(String::from_utf8_lossy(&out).contains("sekrit"));
        let mut ok = Head::json(200);
        let mut body = br#"{"TotalCount":1,"Bounces":[{"Name":"a"}]}"#.to_vec();
        after(&h, &r, &mut ok, &mut body);
        assert!(std::str::from_utf8(&body).is_err());
    }

    #[test]
    fn redirects_point_at_the_target_with_the_request_path() {
        let r = req("GET /server HTTP/1.1\r\n\r\n");
        let h = Hostile {
            redirect_to: Some("http://127.0.0.2:9".into()),
            ..Hostile::default()
        };
        let mut out = Vec::new();
        match before(&h, &r, &mut out) {
            Some(Outcome::Respond(head)) => {
                assert_eq!(head.status, 302);
                assert_eq!(head.extra[0].1, "http://127.0.0.2:9/server");
            }
            _ => panic!("expected a redirect"),
        }
    }
}
