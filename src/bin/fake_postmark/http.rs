//! A small blocking HTTP/1.1 server layer: request parsing, query decoding, responses.
//!
//! Only what the fake needs: keep-alive with `Content-Length` bodies, case-insensitive
//! header and query-parameter names, percent/`+` decoding, and hard limits so malformed or
//! oversized requests get a 4xx instead of a panic or unbounded memory use.

use std::io::{self, BufRead, Read, Write};

const MAX_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 1 << 20;

pub struct Request {
    pub method: String,
    /// Request target as sent (for verbose logging).
    pub target: String,
    /// Path without the query string, as sent.
    pub path: String,
    /// Decoded query parameters, names lowercased, in order.
    pub params: Vec<(String, String)>,
    /// Headers with lowercased names.
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First value of a query parameter (name given in lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Lowercased path without a trailing slash, for routing.
    pub fn route(&self) -> String {
        route_of(&self.path)
    }
}

/// Routing key of a path: lowercased, without a trailing slash.
pub fn route_of(path: &str) -> String {
    let p = path.to_ascii_lowercase();
    match p.strip_suffix('/') {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => p,
    }
}

/// Why a request could not be read; the connection is answered (if possible) and closed.
pub enum ReadError {
    Io,
    Bad(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

/// Reads one line (without CRLF) into `buf`; `Ok(false)` at a clean EOF before any byte.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, ReadError> {
    buf.clear();
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(ReadError::Io)
            };
        }
        let (used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&avail[..i]);
                (i + 1, true)
            }
            None => {
                buf.extend_from_slice(avail);
                (avail.len(), false)
            }
        };
        r.consume(used);
        if buf.len() > MAX_LINE {
            return Err(ReadError::Bad(431, "header line too long"));
        }
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

/// Reads the next request from a keep-alive connection; `Ok(None)` when the peer closed.
pub fn read_request(r: &mut impl BufRead) -> Result<Option<Request>, ReadError> {
    let mut line = Vec::with_capacity(256);
    // Tolerate stray blank lines between requests (RFC 9112 §2.2).
    loop {
        if !read_line(r, &mut line)? {
            return Ok(None);
        }
        if !line.is_empty() {
            break;
        }
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    let mut parts = text.split(' ').filter(|s| !s.is_empty());
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(505, "only HTTP/1.x is supported"));
    }
    let http10 = version == "HTTP/1.0";
    let mut headers = Vec::new();
    loop {
        if !read_line(r, &mut line)? {
            return Err(ReadError::Io);
        }
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad(431, "too many headers"));
        }
        let l = String::from_utf8_lossy(&line);
        let Some((k, v)) = l.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header"));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if find("transfer-encoding").is_some_and(|v| v != "identity") {
        return Err(ReadError::Bad(
            501,
            "chunked request bodies are not supported",
        ));
    }
    if let Some(cl) = find("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| ReadError::Bad(400, "bad Content-Length"))?;
        if n > MAX_BODY {
            return Err(ReadError::Bad(413, "request body too large"));
        }
        // Bodies are never used; read and discard so the next request starts cleanly.
        io::copy(&mut r.take(n as u64), &mut io::sink())?;
    }
    let conn = find("connection").unwrap_or_default();
    let keep_alive = if http10 {
        conn.contains("keep-alive")
    } else {
        !conn.contains("close")
    };
    // Absolute-form targets (`http://host/path`) are reduced to the path.
    let target = match target.find("://") {
        Some(i) => target[i + 3..]
            .find('/')
            .map_or("/", |j| &target[i + 3 + j..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        path: decode(path, false),
        params: parse_query(query),
        headers,
        keep_alive,
    }))
}

/// Splits and decodes a query string; names are lowercased.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true).to_lowercase(), decode(v, true))
        })
        .collect()
}

/// Percent-decoding; `+` means space in query components. Invalid escapes stay literal.
pub fn decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus => out.push(b' '),
            b'%' => {
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Status line, content type and extra headers of a response (the body is separate so
/// connections can reuse one body buffer).
pub struct Head {
    pub status: u16,
    pub ctype: &'static str,
    pub extra: Vec<(&'static str, String)>,
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Head {
    pub fn new(status: u16, ctype: &'static str) -> Head {
        Head {
            status,
            ctype,
            extra: Vec::new(),
        }
    }

    pub fn json(status: u16) -> Head {
        Head::new(status, JSON)
    }
}

/// Writes status line and headers for a body of `len` bytes.
pub fn write_head(w: &mut impl Write, head: &Head, len: u64, keep_alive: bool) -> io::Result<()> {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        head.status,
        reason(head.status),
        head.ctype,
        len,
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in &head.extra {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    w.write_all(h.as_bytes())
}

pub fn write_response(
    w: &mut impl Write,
    head: &Head,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    write_head(w, head, body.len() as u64, keep_alive)?;
    w.write_all(body)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Request {
        match read_request(&mut io::BufReader::new(raw.as_bytes())) {
            Ok(Some(r)) => r,
            _ => panic!("no request"),
        }
    }

    #[test]
    fn parses_query_case_insensitively() {
        let r = req("GET /messages/outbound?Count=5&fromDate=2026-01-01T10%3A00%3A00&subject=a+b%20c HTTP/1.1\r\nX-Postmark-Server-Token: t\r\n\r\n");
        assert_eq!(r.param("count"), Some("5"));
        assert_eq!(r.param("fromdate"), Some("2026-01-01T10:00:00"));
        assert_eq!(r.param("subject"), Some("a b c"));
        assert_eq!(r.header("x-postmark-server-token"), Some("t"));
        assert!(r.keep_alive);
    }

    #[test]
    fn connection_close_and_http10() {
        assert!(!req("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n").keep_alive);
        assert!(!req("GET / HTTP/1.0\r\n\r\n").keep_alive);
    }

    #[test]
    fn two_requests_on_one_connection_with_body() {
        let raw = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b?x HTTP/1.1\r\n\r\n";
        let mut r = io::BufReader::new(raw.as_bytes());
        let a = read_request(&mut r).ok().flatten().map(|r| r.path);
        let b = read_request(&mut r).ok().flatten().map(|r| r.path);
        assert_eq!((a.as_deref(), b.as_deref()), (Some("/a"), Some("/b")));
        assert!(matches!(read_request(&mut r), Ok(None)));
    }

    #[test]
    fn malformed_inputs_do_not_panic() {
        for raw in [
            "GARBAGE\r\n\r\n",
            "GET / HTTP/1.1\r\nnocolon\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET / HTTP/1.1\r\n",
        ] {
            assert!(
                read_request(&mut io::BufReader::new(raw.as_bytes())).is_err(),
                "{raw}"
            );
        }
        assert_eq!(decode("%zz%4", true), "%zz%4");
        assert_eq!(decode("%C3%A9%e6%97%a5", true), "é日");
        assert_eq!(decode("%ff", true), "\u{fffd}");
    }
}
