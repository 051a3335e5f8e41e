//! The Postmark HTTP client: one ureq agent, the shared rate limiter, classified retries.
//!
//! - 429, 500, 502, 503, 504, timeouts and dropped connections are retried with bounded
//!   exponential backoff and full jitter, honouring `Retry-After` when present. A 429 also
//!   slows every worker down through the shared [`Limiter`].
//! - 401 (or ErrorCode 10 under any status) and 422 are never retried.
//! - Errors quote Postmark's `ErrorCode` and `Message`.
//! - The token is read in exactly one place ([`Client::send`]) and only as a header value.

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{truncate_for_message, Error};

pub const USER_AGENT: &str = concat!(
    "source-postmark/",
    env!("CARGO_PKG_VERSION"),
    " (rust; ureq)"
);
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// One GET request: path and query, without the base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub query: Vec<(&'static str, String)>,
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
    token: crate::config::Secret,
    limiter: Limiter,
    max_retries: u32,
    backoff_base: Duration,
}

/// What a failed attempt means for the retry loop.
enum Attempt {
    Done(String),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fail(Error),
}

impl Client {
    pub fn new(config: &Config, backoff_base: Duration) -> Client {
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A dead host should fail fast; a slow answer gets the whole request timeout.
            .timeout_connect(Some(config.request_timeout.min(CONNECT_TIMEOUT)))
            .timeout_global(Some(config.request_timeout))
            .user_agent(USER_AGENT)
            .max_idle_connections_per_host(config.max_concurrency.max(1) * 2)
            .build();
        Client {
            agent: agent_config.into(),
            base_url: config.base_url.clone(),
            token: config.server_token.clone(),
            limiter: Limiter::new(config.max_requests_per_second),
            max_retries: config.max_retries,
            backoff_base,
        }
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// GETs a request, retrying what may succeed later. `context` names what is being read
    /// ("reading 'bounces'"); `on_retry` hears about each retry (for logs).
    pub fn get(
        &self,
        request: &Request,
        context: &str,
        on_retry: &mut dyn FnMut(String),
    ) -> Result<String, Error> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.limiter.acquire();
            match self.send(request, context) {
                Attempt::Done(body) => {
                    self.limiter.succeeded();
                    return Ok(body);
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    if attempt > self.max_retries {
                        return Err(Error::Unavailable {
                            context: context.to_string(),
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let delay = retry_after
                        .map(|d| d.min(MAX_RETRY_AFTER))
                        .unwrap_or_else(|| backoff(self.backoff_base, attempt));
                    if reason.contains("429") {
                        self.limiter.throttled(delay);
                    }
                    on_retry(format!(
                        "{context}: {reason}; retry {attempt} of {} in {:.1} s",
                        self.max_retries,
                        delay.as_secs_f64()
                    ));
                    thread::sleep(delay);
                }
            }
        }
    }

    fn send(&self, request: &Request, context: &str) -> Attempt {
        let url = format!("{}{}", self.base_url, request.path);
        let mut req = self
            .agent
            .get(&url)
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", self.token.expose());
        for (k, v) in &request.query {
            req = req.query(*k, v);
        }
        let mut response = match req.call() {
            Ok(r) => r,
            Err(e) => return classify_transport(e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
        {
            Ok(b) => b,
            Err(e) => return classify_transport(e),
        };
        classify_status(status, body, retry_after, context)
    }
}

/// A URL that cannot work is the config's fault; everything else on the wire (DNS hiccups
/// included) may pass and is retried.
fn classify_transport(e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::BadUri(_) => Attempt::Fail(Error::input(
            "config 'base_url'",
            format!("not a usable URL ({e}); check 'base_url'"),
        )),
        other => Attempt::Retry {
            reason: format!("connection problem: {other}"),
            retry_after: None,
        },
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
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        for attempt in 1..10 {
            let d = backoff(base, attempt);
            assert!(d >= base / 2 && d <= MAX_BACKOFF, "{d:?}");
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
