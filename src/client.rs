//! The Postmark HTTP client: one ureq agent, the shared rate limiter, classified retries.
//!
//! - 429, 500, 502, 503, 504, timeouts and dropped connections are retried with bounded
//!   exponential backoff and full jitter, honouring `Retry-After` up to [`MAX_WAIT`] (a
//!   longer one fails the request). Every wait is announced before it starts; one request
//!   ends within [`REQUEST_BUDGET`]. A 429 also slows every worker down ([`Limiter`]).
//! - 401 (or ErrorCode 10 under any status) and 422 are never retried; neither are TLS
//!   failures, corrupt (gzip, non-UTF-8) bodies or redirects (never followed: the token
//!   would travel with them).
//! - Errors quote Postmark's `ErrorCode` and `Message`.
//! - The token is read in exactly one place ([`Client::send`]) and only as a header value.

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{truncate_for_message, Error};
pub use crate::streams::Token;

pub const USER_AGENT: &str = concat!(
    "source-postmark/",
    env!("CARGO_PKG_VERSION"),
    " (rust; ureq)"
);
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest single wait before a retry. A `Retry-After` asking for more fails the
/// request at once (transient) rather than stalling the sync.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// One request, every attempt and wait included, ends within this long.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(900);
/// The shortest time an attempt is given; no attempt is started with less budget left.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// One GET request: path and query, without the base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    /// Which token goes with it: the account token only ever goes to account endpoints.
    pub token: Token,
    /// Whole-account mode: a server request carries the token of this server of the
    /// account (an index into [`Client::with_server_tokens`]) instead of `server_token`.
    pub server: Option<usize>,
}

impl Request {
    pub fn describe(&self) -> String {
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if q.is_empty() {
            self.path.to_string()
        } else {
            format!("{}?{}", self.path, q.join("&"))
        }
    }
}

/// Shared pacing for all workers: an optional fixed rate plus an adaptive slow-down that a
/// 429 raises and successes decay.
pub struct Limiter {
    state: Mutex<LimiterState>,
}

struct LimiterState {
    next_slot: Instant,
    base_interval: Duration,
    penalty: Duration,
}

// Additive-increase/multiplicative-decrease on the spacing between requests: a 429 doubles
// the extra spacing (from 50 ms up to 2 s), each success takes a quarter of it away. A
// server that throttles one request in five settles near no extra spacing; one that
// throttles every other request pushes the connector down to one request per 2 s.
const PENALTY_START: Duration = Duration::from_millis(50);
const PENALTY_MAX: Duration = Duration::from_secs(2);

impl Limiter {
    pub fn new(max_requests_per_second: Option<f64>) -> Limiter {
        let base_interval = max_requests_per_second
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r))
            .unwrap_or(Duration::ZERO);
        Limiter {
            state: Mutex::new(LimiterState {
                next_slot: Instant::now(),
                base_interval,
                penalty: Duration::ZERO,
            }),
        }
    }

    /// Waits for this worker's turn.
    pub fn acquire(&self) {
        let wait = {
            let Ok(mut s) = self.state.lock() else { return };
            let interval = s.base_interval + s.penalty;
            if interval.is_zero() && s.next_slot <= Instant::now() {
                return;
            }
            let now = Instant::now();
            let slot = s.next_slot.max(now);
            s.next_slot = slot + interval;
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            thread::sleep(wait);
        }
    }

    /// Postmark said "too many requests": everyone pauses, then goes slower for a while.
    pub fn throttled(&self, pause: Duration) {
        if let Ok(mut s) = self.state.lock() {
            let resume = Instant::now() + pause;
            s.next_slot = s.next_slot.max(resume);
            s.penalty = (s.penalty * 2).clamp(PENALTY_START, PENALTY_MAX);
        }
    }

    /// A success: the slow-down decays by a quarter, so throughput recovers after 429s.
    pub fn succeeded(&self) {
        if let Ok(mut s) = self.state.lock() {
            if !s.penalty.is_zero() {
                s.penalty = s.penalty.mul_f64(0.75);
                if s.penalty < Duration::from_millis(2) {
                    s.penalty = Duration::ZERO;
                }
            }
        }
    }

    pub fn current_penalty(&self) -> Duration {
        self.state.lock().map(|s| s.penalty).unwrap_or_default()
    }
}

pub struct Client {
    agent: ureq::Agent,
    base_url: String,
    server_token: Option<crate::config::Secret>,
    account_token: Option<crate::config::Secret>,
    /// Whole-account mode: each selected server's own token, from the account's server list.
    server_tokens: Vec<Option<crate::config::Secret>>,
    limiter: Limiter,
    max_retries: u32,
    backoff_base: Duration,
    request_timeout: Duration,
    /// [`REQUEST_BUDGET`]; shorter in tests.
    budget: Duration,
}

/// What a failed attempt means for the retry loop.
enum Attempt {
    Done(String),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        /// A server answer (429/5xx) rather than the network: the concurrency hint applies.
        from_server: bool,
    },
    Fail(Error),
}

impl Client {
    pub fn new(config: &Config, backoff_base: Duration) -> Client {
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The Postmark API does not redirect. Following one would send the token header
            // wherever the `Location` points, so a 3xx is returned and reported instead.
            .max_redirects(0)
            // A dead host should fail fast; a slow answer gets the whole request timeout.
            .timeout_connect(Some(config.request_timeout.min(CONNECT_TIMEOUT)))
            .timeout_global(Some(config.request_timeout))
            .user_agent(USER_AGENT)
            .max_idle_connections_per_host(config.max_concurrency.max(1) * 2)
            .build();
        Client {
            agent: agent_config.into(),
            base_url: config.base_url.clone(),
            server_token: config.server_token.clone(),
            account_token: config.account_token.clone(),
            server_tokens: Vec::new(),
            limiter: Limiter::new(config.max_requests_per_second),
            max_retries: config.max_retries,
            backoff_base,
            request_timeout: config.request_timeout,
            budget: REQUEST_BUDGET,
        }
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// GETs a request, retrying what may succeed later. `context` names what is being read
    /// ("reading 'bounces'"); `on_retry` hears about each wait before it starts (for logs).
    /// One request, all attempts and waits included, ends within [`REQUEST_BUDGET`].
    pub fn get(
        &self,
        request: &Request,
        context: &str,
        on_retry: &mut dyn FnMut(String),
    ) -> Result<String, Error> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.limiter.acquire();
            let remaining = self.budget.saturating_sub(started.elapsed());
            let timeout = self.request_timeout.min(remaining).max(MIN_ATTEMPT);
            let (reason, retry_after, from_server) = match self.send(request, context, timeout) {
                Attempt::Done(body) => {
                    self.limiter.succeeded();
                    return Ok(body);
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry {
                    reason,
                    retry_after,
                    from_server,
                } => (reason, retry_after, from_server),
            };
            let give_up = |last: String| Error::Unavailable {
                context: context.to_string(),
                attempts: attempt,
                last,
                server: from_server,
            };
            if attempt > self.max_retries {
                return Err(give_up(reason));
            }
            if let Some(asked) = retry_after.filter(|d| *d > MAX_WAIT) {
                return Err(give_up(format!(
                    "{reason}, and the server asked to wait {} s (Retry-After), longer than the \
                     {} s this connector waits at once",
                    asked.as_secs(),
                    MAX_WAIT.as_secs()
                )));
            }
            let delay = retry_after.unwrap_or_else(|| backoff(self.backoff_base, attempt));
            if started.elapsed() + delay + MIN_ATTEMPT > self.budget {
                return Err(give_up(format!(
                    "{reason}; no time left for another attempt within the {} s one request may take",
                    self.budget.as_secs()
                )));
            }
            if reason.contains("429") {
                self.limiter.throttled(delay);
            }
            on_retry(format!(
                "{context}: {reason}; waiting {:.1} s (at most {} s per wait) before retry {attempt} of {}",
                delay.as_secs_f64(),
                MAX_WAIT.as_secs(),
                self.max_retries,
            ));
            thread::sleep(delay);
        }
    }

    /// Whole-account mode: the tokens of the servers read, in the order requests name them
    /// ([`Request::server`]). They go only to `base_url`, like the configured tokens.
    pub fn with_server_tokens(mut self, tokens: Vec<Option<crate::config::Secret>>) -> Client {
        self.server_tokens = tokens;
        self
    }

    fn send(&self, request: &Request, context: &str, timeout: Duration) -> Attempt {
        let url = format!("{}{}", self.base_url, request.path);
        let (header, token, field) = match (request.token, request.server) {
            (Token::Server, Some(slot)) => (
                "X-Postmark-Server-Token",
                self.server_tokens.get(slot).unwrap_or(&None),
                "ApiTokens (of the account's server list)",
            ),
            (Token::Server, None) => (
                "X-Postmark-Server-Token",
                &self.server_token,
                "server_token",
            ),
            (Token::Account, _) => (
                "X-Postmark-Account-Token",
                &self.account_token,
                "account_token",
            ),
        };
        let Some(token) = token else {
            return Attempt::Fail(Error::input(
                "config",
                format!("{context} needs '{field}', which is not set; add it"),
            ));
        };
        let mut req = self
            .agent
            .get(&url)
            .header("Accept", "application/json")
            .header(header, token.expose());
        for (k, v) in &request.query {
            req = req.query(*k, v);
        }
        let req = req.config().timeout_global(Some(timeout)).build();
        let mut response = match req.call() {
            Ok(r) => r,
            // Before any answer: a TLS handshake failure surfaces here as an I/O error.
            Err(ureq::Error::Io(io))
                if self.base_url.starts_with("https:")
                    && io.kind() == std::io::ErrorKind::InvalidData =>
            {
                return Attempt::Fail(tls_failed(context, &io.to_string()));
            }
            Err(e) => return classify_transport(e, context, timeout),
        };
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "(no Location header)".into());
            return Attempt::Fail(redirected(&request.path, status, &location));
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
        {
            Ok(b) => b,
            Err(e) => return classify_transport(e, context, timeout),
        };
        let body = match String::from_utf8(bytes) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Fail(Error::UnexpectedResponse {
                    context: context.to_string(),
                    detail: format!(
                        "HTTP {status} with a body that is not UTF-8 text (invalid byte at \
                         position {}); Postmark answers JSON, so 'base_url' may point at \
                         something else",
                        e.utf8_error().valid_up_to()
                    ),
                })
            }
        };
        match classify_status(status, body, retry_after, context) {
            Attempt::Fail(Error::Unauthorized { context, message })
                if request.token == Token::Account =>
            {
                Attempt::Fail(account_token_rejected(&context, &message))
            }
            Attempt::Fail(Error::Unauthorized { context, message }) if request.server.is_some() => {
                Attempt::Fail(server_token_rejected(&context, &message))
            }
            other => other,
        }
    }
}

/// A server's own token (from the account's server list) was refused: that server is
/// reported failed; the config has nothing to fix but the server's tokens.
pub fn server_token_rejected(context: &str, message: &str) -> Error {
    Error::ServerRejected {
        context: context.to_string(),
        message: message.to_string(),
    }
}

/// The account token was refused: say so, not the server token's hint.
pub fn account_token_rejected(context: &str, message: &str) -> Error {
    Error::input(
        "config 'account_token'",
        format!(
            "postmark rejected the account token while {context} ({message}); use the Account \
             API token (Postmark: Account → API Tokens, visible to the account owner), not a \
             Server token, in 'account_token'"
        ),
    )
}

/// A redirect is never followed (the token would go along); it is the config's fault.
fn redirected(path: &str, status: u16, location: &str) -> Error {
    let location = truncate_for_message(location);
    Error::input(
        "config 'base_url'",
        format!(
            "GET {path} was redirected (HTTP {status}) to \"{location}\"; the connector never \
             follows redirects, so the token is only ever sent to 'base_url'; set 'base_url' \
             to the API address itself"
        ),
    )
}

/// A TLS failure (certificate, handshake, a plain-http server on an https URL) is not a
/// network hiccup a retry fixes: the user must fix the address or the proxy in between.
fn tls_failed(context: &str, detail: &str) -> Error {
    Error::input(
        "config 'base_url'",
        format!(
            "the TLS connection failed while {context} ({detail}); check that 'base_url' is \
             an https address that really speaks TLS, and any TLS-intercepting proxy between \
             here and Postmark"
        ),
    )
}

/// `Retry-After` as seconds or an HTTP date; a date in the past means "now".
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs.unsigned_abs()))
}

/// Transport failures: what the user must fix (a URL or TLS that cannot work), what no
/// retry fixes (a corrupt body), and the network hiccups a retry may fix.
fn classify_transport(e: ureq::Error, context: &str, timeout: Duration) -> Attempt {
    use ureq::Error as E;
    let fail = |e: Error| Attempt::Fail(e);
    let retry = |reason: String| Attempt::Retry {
        reason,
        retry_after: None,
        from_server: false,
    };
    match e {
        E::BadUri(_) | E::Http(_) => fail(Error::input(
            "config 'base_url'",
            format!("cannot build a request from it ({e}); check 'base_url'"),
        )),
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired | E::RequireHttpsOnly(_) => {
            fail(tls_failed(context, &e.to_string()))
        }
        E::Decompress(kind, inner) => fail(Error::UnexpectedResponse {
            context: context.to_string(),
            detail: format!(
                "the {kind}-compressed body cannot be decompressed ({inner}); a proxy may be \
                 corrupting responses"
            ),
        }),
        E::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => {
            fail(Error::UnexpectedResponse {
                context: context.to_string(),
                detail: format!("the body cannot be read ({e})"),
            })
        }
        E::BodyExceedsLimit(_) | E::LargeResponseHeader(..) => fail(Error::UnexpectedResponse {
            context: context.to_string(),
            detail: format!("the response is too large ({e})"),
        }),
        E::Timeout(_) => retry(format!(
            "no complete answer within {} s (timeout: {e})",
            timeout.as_secs()
        )),
        E::HostNotFound => retry(
            "cannot resolve the host of 'base_url' (DNS); check 'base_url' and the network".into(),
        ),
        other => retry(format!("connection problem: {other}")),
    }
}

fn classify_status(
    status: u16,
    body: String,
    retry_after: Option<Duration>,
    context: &str,
) -> Attempt {
    if status == 200 {
        return Attempt::Done(body);
    }
    let (code, message) = parse_error_body(&body);
    if status == 401 || code == Some(10) {
        return Attempt::Fail(Error::Unauthorized {
            context: context.to_string(),
            message: format!(
                "HTTP {status}{}",
                message.map(|m| format!(", \"{m}\"")).unwrap_or_default()
            ),
        });
    }
    if matches!(status, 429 | 500 | 502 | 503 | 504) {
        return Attempt::Retry {
            reason: format!(
                "HTTP {status}{}",
                message.map(|m| format!(" ({m})")).unwrap_or_default()
            ),
            retry_after,
            from_server: true,
        };
    }
    Attempt::Fail(Error::Rejected {
        context: context.to_string(),
        status,
        code,
        message: message.unwrap_or_else(|| truncate_for_message(&body)),
    })
}

/// Postmark errors are `{"ErrorCode": int, "Message": string}`; be lenient (string codes,
/// non-JSON bodies on 5xx).
fn parse_error_body(body: &str) -> (Option<i64>, Option<String>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return (None, None);
    };
    let code = v.get("ErrorCode").and_then(|c| {
        c.as_i64()
            .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let message = v
        .get("Message")
        .and_then(|m| m.as_str())
        .map(truncate_for_message);
    (code, message)
}

/// Exponential backoff with full jitter: uniform in [base/2, base * 2^(attempt-1)], capped.
fn backoff(base: Duration, attempt: u32) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let floor = base / 2;
    let span = ceiling.saturating_sub(floor);
    floor + span.mul_f64(jitter())
}

/// A cheap uniform number in [0, 1) without a random-number crate.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify_status(429, String::new(), None, "x"),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            classify_status(503, "<html>".into(), None, "x"),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            classify_status(401, r#"{"ErrorCode":10,"Message":"bad"}"#.into(), None, "x"),
            Attempt::Fail(Error::Unauthorized { .. })
        ));
        // ErrorCode 10 is an auth failure whatever the status.
        assert!(matches!(
            classify_status(
                422,
                r#"{"ErrorCode":"10","Message":"No token"}"#.into(),
                None,
                "x"
            ),
            Attempt::Fail(Error::Unauthorized { .. })
        ));
        match classify_status(
            422,
            r#"{"ErrorCode":700,"Message":"Bad date"}"#.into(),
            None,
            "x",
        ) {
            Attempt::Fail(Error::Rejected { code, message, .. }) => {
                assert_eq!(code, Some(700));
                assert_eq!(message, "Bad date");
            }
            _ => panic!("422 must not be retried"),
        }
    }

    #[test]
    fn one_request_with_all_its_retries_ends_within_the_budget() {
        // A server that accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = std::thread::spawn(move || {
            let conns: Vec<_> = listener.incoming().take(5).collect();
            std::thread::sleep(Duration::from_secs(8));
            drop(conns);
        });
        let mut config = Config::with_token("t0ken", &url).unwrap();
        config.max_retries = 20;
        let mut client = Client::new(&config, Duration::from_millis(1));
        client.budget = Duration::from_secs(3);
        let started = Instant::now();
        let mut waits = 0;
        let err = client
            .get(
                &Request {
                    path: "/server".into(),
                    query: Vec::new(),
                    token: Token::Server,
                    server: None,
                },
                "x",
                &mut |_| waits += 1,
            )
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(err, Error::Unavailable { server: false, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("no time left"), "{err}");
        drop(held);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_redirect_is_a_config_error_naming_the_location() {
        let e = redirected("/server", 301, "https://elsewhere.example/server");
        assert_eq!(e.failure_type(), crate::error::FailureType::Config);
        let m = e.to_string();
        assert!(
            m.contains("redirected (HTTP 301) to \"https://elsewhere.example/server\""),
            "{m}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        for attempt in 1..10 {
            let d = backoff(base, attempt);
            assert!(d >= base / 2 && d <= MAX_BACKOFF && d <= MAX_WAIT, "{d:?}");
        }
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn a_throttle_slows_everyone_then_recovers() {
        let l = Limiter::new(None);
        l.throttled(Duration::ZERO);
        assert!(l.current_penalty() >= PENALTY_START);
        for _ in 0..100 {
            l.succeeded();
        }
        assert_eq!(l.current_penalty(), Duration::ZERO);
    }
}
