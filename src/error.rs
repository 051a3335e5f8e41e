//! The one error type of the connector.
//!
//! Every variant knows three things the top level must decide: the Airbyte `failure_type`,
//! the process exit code, and a message a user can act on. Messages are lowercase phrases
//! that name the thing (file, field, stream, HTTP status, Postmark `ErrorCode`) and say what
//! to change after a `;`. No message ever contains a token: tokens travel only in request
//! headers, and config values are never echoed for secret fields.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::RwLock;

/// Airbyte's `failure_type` for TRACE ERROR messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    /// The user must change something (token, config, catalog, state).
    Config,
    /// Postmark or the network kept failing; a later retry may succeed.
    Transient,
    /// A bug or an unexpected answer.
    System,
}

impl FailureType {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::Config => "config_error",
            FailureType::Transient => "transient_error",
            FailureType::System => "system_error",
        }
    }
}

/// `Clone`: one failure can be reported for several streams (a server's message streams
/// could not be listed: every stream read per message stream fails with it).
#[derive(Debug, Clone)]
pub enum Error {
    /// A command line that cannot work (clap handles the rest itself).
    Usage(String),
    /// An input file (config, catalog, state) is missing, unreadable or invalid.
    Input { what: String, message: String },
    /// Postmark rejected the token (HTTP 401 or ErrorCode 10).
    Unauthorized { context: String, message: String },
    /// Whole-account mode: Postmark rejected a server's own token (taken from the
    /// account's server list): only that server fails.
    ServerRejected { context: String, message: String },
    /// Postmark rejected the request (HTTP 4xx other than 401/429).
    Rejected {
        context: String,
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// 429/5xx/timeouts/dropped connections kept happening after every retry.
    Unavailable {
        context: String,
        attempts: u32,
        last: String,
        /// The server itself answered 429/5xx (so pacing hints apply), not the network.
        server: bool,
    },
    /// Postmark answered with something we cannot read.
    UnexpectedResponse { context: String, detail: String },
    /// Rows that no filter can reach, and the user asked to fail in that case.
    UnreachableRows { stream: String, rows: u64 },
    /// A window kept changing on every read (Postmark still indexing it): no consistent
    /// read within the bound; a later sync can succeed.
    Unsettled { stream: String, detail: String },
    /// A bug: a thread panicked, or a stream ended neither complete nor failed.
    Internal { context: String, detail: String },
    /// Writing to stdout failed (a closed pipe is handled as a normal end).
    Stdout(std::sync::Arc<io::Error>),
}

impl Error {
    pub fn input(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            what: what.into(),
            message: message.into(),
        }
    }

    pub fn failure_type(&self) -> FailureType {
        match self {
            Error::Usage(_)
            | Error::Input { .. }
            | Error::Unauthorized { .. }
            | Error::ServerRejected { .. } => FailureType::Config,
            Error::Unavailable { .. } | Error::Unsettled { .. } => FailureType::Transient,
            // Forbidden, not found, proxy authentication: the token's rights or 'base_url'.
            Error::Rejected {
                status: 403 | 404 | 407,
                ..
            } => FailureType::Config,
            Error::Rejected { .. }
            | Error::UnexpectedResponse { .. }
            | Error::UnreachableRows { .. }
            | Error::Internal { .. }
            | Error::Stdout(_) => FailureType::System,
        }
    }

    /// True when the user can fix this by changing config or credentials (so `check`
    /// reports FAILED and exits 0 rather than failing the process).
    pub fn is_user_fixable(&self) -> bool {
        self.failure_type() == FailureType::Config
    }

    /// A closed stdout (`| head`) is a normal way for a run to end.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Postmark said the window holds more rows than `count + offset` may reach.
    /// Postmark's ErrorCode is UNCONFIRMED (700 for messages, 1000 for bounces per Airbyte's
    /// manifest); the message text "Count + Offset cannot exceed 10000" is real.
    pub fn is_window_too_large(&self) -> bool {
        match self {
            Error::Rejected { code, message, .. } => {
                matches!(code, Some(700) | Some(1000))
                    && message.to_ascii_lowercase().contains("offset")
                    || message.to_ascii_lowercase().contains("count + offset")
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Input { what, message } => write!(f, "{what}: {message}"),
            Error::Unauthorized { context, message } => write!(
                f,
                "postmark rejected the server token while {context} ({message}); \
                 use a Server API token (Postmark: Servers → your server → API Tokens), \
                 not an Account token, in 'server_token'"
            ),
            Error::ServerRejected { context, message } => write!(
                f,
                "postmark rejected the server's own token while {context} ({message}); the \
                 connector takes it from the account's server list (the first of the server's \
                 ApiTokens), so it was probably revoked or rotated: give the server a valid API \
                 token in Postmark, or leave the server out with 'servers'"
            ),
            Error::Rejected {
                context,
                status,
                code,
                message,
            } => {
                match code {
                    Some(c) => write!(
                        f,
                        "postmark rejected the request while {context} (HTTP {status}, ErrorCode {c}): {message}"
                    )?,
                    None => write!(
                        f,
                        "postmark rejected the request while {context} (HTTP {status}): {message}"
                    )?,
                }
                match status {
                    403 => f.write_str("; the token lacks the rights for this; use a Server API token of this server"),
                    404 => f.write_str("; check 'base_url' (it must be the Postmark API itself, e.g. https://api.postmarkapp.com)"),
                    407 => f.write_str("; a proxy between here and Postmark wants authentication"),
                    _ => Ok(()),
                }
            }
            Error::Unavailable {
                context,
                attempts,
                last,
                server: true,
            } => write!(
                f,
                "postmark kept failing while {context} after {attempts} attempts; last error: {last}; \
                 try again later, or lower 'max_concurrency'/'max_requests_per_second'"
            ),
            Error::Unavailable {
                context,
                attempts,
                last,
                server: false,
            } => write!(
                f,
                "cannot reach postmark while {context} after {attempts} attempts; last error: {last}; \
                 check the network and 'base_url', raise 'request_timeout_seconds' if answers are slow, \
                 and try again later"
            ),
            Error::UnexpectedResponse { context, detail } => {
                write!(f, "unexpected response while {context}: {detail}")
            }
            Error::UnreachableRows { stream, rows } => write!(
                f,
                "{rows} rows of '{stream}' cannot be reached: Postmark returns at most 10,000 rows \
                 per query and one second of one message stream with one status holds more; \
                 set 'fail_on_unreachable_rows' to false to sync the reachable rows with a warning"
            ),
            Error::Unsettled { stream, detail } => write!(
                f,
                "'{stream}' could not be read consistently: {detail}; nothing after the last \
                 complete window is checkpointed; run the sync again later, or raise \
                 'window_lag_seconds' so windows close before Postmark finishes indexing them"
            ),
            Error::Internal { context, detail } => write!(
                f,
                "internal error while {context}: {detail}; this is a bug in source-postmark, \
                 please report it; nothing after the last complete window is checkpointed"
            ),
            Error::Stdout(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Every configured secret, so that the few places that write text out (protocol LOG and
/// TRACE messages, the CONNECTION_STATUS message, the final stderr line) can blank them
/// even when a server or proxy echoes one back inside an error body.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());
const MAX_SECRETS: usize = 16;

/// Remembers a configured secret for [`redact`]. Very short values are not registered:
/// blanking every "a" would garble messages and protect nothing.
pub fn register_secret(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    if let Ok(mut s) = SECRETS.write() {
        // One run reads one config (a token or two); the bound keeps memory flat when a
        // fuzzer or an embedder validates many configs in one process.
        if s.len() < MAX_SECRETS && !s.iter().any(|x| x == secret) {
            s.push(secret.to_string());
        }
    }
}

/// `text` with every registered secret (matched ASCII-case-insensitively, also in its
/// JSON-escaped form) replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(secrets) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for needle in [secret.as_str(), escaped] {
            if needle.is_empty() {
                continue;
            }
            if let Some(replaced) = replace_ignore_ascii_case(&out, needle) {
                out = Cow::Owned(replaced);
            }
        }
    }
    out
}

fn replace_ignore_ascii_case(hay: &str, needle: &str) -> Option<String> {
    // ASCII lowercasing keeps every byte offset, so matches map back onto `hay`.
    let lower_hay = hay.to_ascii_lowercase();
    let lower_needle = needle.to_ascii_lowercase();
    let mut found = lower_hay.match_indices(&lower_needle).peekable();
    found.peek()?;
    let mut out = String::with_capacity(hay.len());
    let mut last = 0;
    for (i, _) in found {
        if i < last || !hay.is_char_boundary(i) || !hay.is_char_boundary(i + needle.len()) {
            continue;
        }
        out.push_str(&hay[last..i]);
        out.push_str("***");
        last = i + needle.len();
    }
    out.push_str(&hay[last..]);
    Some(out)
}

/// Shortens a response body quoted in an error to something readable.
pub fn truncate_for_message(body: &str) -> String {
    const LIMIT: usize = 300;
    let trimmed = body.trim();
    if trimmed.len() <= LIMIT {
        return trimmed.to_string();
    }
    let mut end = LIMIT;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_errors_are_recognised_as_window_too_large() {
        let e = Error::Rejected {
            context: "reading 'bounces'".into(),
            status: 422,
            code: Some(1000),
            message: "Count + Offset cannot exceed 10000 messages.".into(),
        };
        assert!(e.is_window_too_large());
        let other = Error::Rejected {
            context: "x".into(),
            status: 422,
            code: Some(700),
            message: "Invalid date".into(),
        };
        assert!(!other.is_window_too_large());
    }

    #[test]
    fn registered_secrets_are_blanked_in_any_case_and_escaping() {
        register_secret("Tok\"en-5f2a");
        let text = "echo: Tok\"en-5f2a / tok\\\"EN-5F2A / other";
        let r = redact(text);
        assert!(!r.to_ascii_lowercase().contains("en-5f2a"), "{r}");
        assert!(r.contains("other"));
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn long_bodies_are_truncated_on_a_char_boundary() {
        let body = "é".repeat(400);
        let t = truncate_for_message(&body);
        assert!(t.len() < 320);
        assert!(t.ends_with('…'));
    }
}
