//! Configuration: the one place where the user's config file becomes typed values.
//!
//! [`ConfigSpec`] is both the serde shape and, through schemars, the Airbyte
//! `connectionSpecification` (`spec.json`): its doc comments are the field descriptions.
//! [`load`] reads the file, accepts the key names of Airbyte's own Postmark connector,
//! validates against the generated spec with `jsonschema` (reporting every problem with the
//! field and the expected value), then checks what a schema cannot (loopback-only `http`,
//! the retention limit of `start_date`). Inner code only ever sees [`Config`].

use std::fmt;
use std::path::Path;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;

mod spec;
mod validate;

pub use spec::connection_specification;
#[cfg(test)]
use validate::check_start_date;
use validate::{check_base_url, finish, schema_problems};

/// A token. Its `Debug` and `Display` print `***`; only the HTTP client reads it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The token itself. Called only where the request header is set.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";
/// Postmark keeps messages 45 days by default, up to 365 with its Retention Add-on.
pub const DEFAULT_RETENTION_DAYS: i64 = 45;
pub const MAX_RETENTION_DAYS: i64 = 365;

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}
fn default_lookback_hours() -> u32 {
    24
}
fn default_window_lag_seconds() -> u32 {
    300
}
fn default_max_concurrency() -> u32 {
    4
}
fn default_request_timeout_seconds() -> u32 {
    60
}
fn default_max_retries() -> u32 {
    5
}
/// A week: opens and clicks mostly arrive within days of sending, and bounces within hours.
fn default_stats_lookback_days() -> u32 {
    7
}

/// Postmark Source Spec
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = true))]
pub struct ConfigSpec {
    /// Server API token (Postmark: Servers → your server → API Tokens): reads that server's
    /// data. Optional when `account_token` is set.
    #[serde(default)]
    #[schemars(
        title = "Server API token",
        with = "Option<String>",
        extend("airbyte_secret" = true, "order" = 0)
    )]
    pub server_token: Option<Secret>,

    /// Account API token (Postmark: Account → API Tokens; only the account owner sees it):
    /// reads the account streams `servers`, `domains` and `sender_signatures`, and every
    /// server stream of every selected server, each with the server's own token from the
    /// account's server list (records then carry `ServerID`). Sent only to the account
    /// endpoints, never with a server request.
    #[serde(default)]
    #[schemars(
        title = "Account API token",
        with = "Option<String>",
        extend("airbyte_secret" = true, "order" = 12)
    )]
    pub account_token: Option<Secret>,

    /// With `account_token`: the servers of the account to sync, by ID or by name (exact).
    /// Unset: every server. A listed server that does not exist fails `check` and the sync,
    /// naming the servers that do.
    #[serde(default)]
    #[schemars(
        title = "Servers (IDs or names)",
        example = ["1234567", "Acme Production"],
        extend("order" = 13)
    )]
    pub servers: Option<Vec<String>>,

    /// Read records from this moment on (RFC 3339, UTC). Default: 45 days before the sync
    /// starts (Postmark's default retention). Messages and events reach back at most 365 days
    /// (the longest retention, Retention Add-on); statistics, which Postmark keeps forever,
    /// reach back to this date however old (default: 365 days).
    #[serde(default)]
    #[schemars(
        title = "Start date",
        with = "String",
        example = "2026-10-01T00:00:00Z",
        extend(
            "format" = "date-time",
            "pattern" = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
            "pattern_descriptor" = "YYYY-MM-DDTHH:mm:ssZ",
            "order" = 1
        )
    )]
    pub start_date: Option<String>,

    /// Incremental syncs re-read this many hours before the saved cursor, so that records
    /// that changed after they were first read (an outbound message's `Status`, a bounce's
    /// `Inactive`/`CanActivate`) are emitted again with current values. 0 turns it off.
    #[serde(default = "default_lookback_hours")]
    #[schemars(title = "Lookback (hours)", range(max = 720), extend("order" = 2))]
    pub lookback_hours: u32,

    /// How many requests may be in flight at once. Postmark publishes no rate limit; 4 keeps
    /// a sync polite while cutting the round-trip-bound time about fourfold.
    #[serde(default = "default_max_concurrency")]
    #[schemars(title = "Max concurrency", range(min = 1, max = 16), extend("order" = 3))]
    pub max_concurrency: u32,

    /// Upper bound on requests per second across all workers. Unset: no fixed limit (a 429
    /// still slows every worker down).
    #[serde(default)]
    #[schemars(
        title = "Max requests per second",
        range(min = 0.1, max = 1000.0),
        extend("order" = 4)
    )]
    pub max_requests_per_second: Option<f64>,

    /// The newest window ends this many seconds before the sync starts, so every window is
    /// closed and rows still being indexed by Postmark are picked up by the next sync.
    #[serde(default = "default_window_lag_seconds")]
    #[schemars(title = "Window lag (seconds)", range(max = 86400), extend("order" = 5))]
    pub window_lag_seconds: u32,

    /// When one second of one message stream holds more than 10,000 rows that no filter can
    /// split, fail the sync instead of syncing the reachable rows with a warning.
    #[serde(default)]
    #[schemars(title = "Fail on unreachable rows", extend("order" = 6))]
    pub fail_on_unreachable_rows: bool,

    /// Seconds before a request (connect, send, receive) is abandoned and retried.
    #[serde(default = "default_request_timeout_seconds")]
    #[schemars(
        title = "Request timeout (seconds)",
        range(min = 1, max = 600),
        extend("order" = 7)
    )]
    pub request_timeout_seconds: u32,

    /// Retries of a request after a 429, a 5xx, a timeout or a dropped connection.
    #[serde(default = "default_max_retries")]
    #[schemars(title = "Max retries", range(max = 20), extend("order" = 8))]
    pub max_retries: u32,

    /// Daily statistics of recent days still grow as opens, clicks and bounces arrive:
    /// incremental syncs read the statistics streams again from this many days before the
    /// last sync.
    #[serde(default = "default_stats_lookback_days")]
    #[schemars(
        title = "Statistics lookback (days)",
        range(max = 365),
        extend("order" = 10)
    )]
    pub stats_lookback_days: u32,

    /// Read the `message_events` stream (delivery, open, click, bounce events of each
    /// outbound message). It costs one extra request per outbound message synced
    /// (`GET /messages/outbound/{id}/details`), run at `max_concurrency` under the shared
    /// rate limit: 100,000 messages are 100,000 requests.
    #[serde(default)]
    #[schemars(title = "Message events (one request per message)", extend("order" = 11))]
    pub message_events: bool,

    /// Postmark API base URL. Change it only to point at a proxy or the bundled fake server
    /// (plain http is allowed only for loopback hosts).
    #[serde(default = "default_base_url")]
    #[schemars(title = "API base URL", extend("format" = "uri", "order" = 9))]
    pub base_url: String,
}

/// The validated configuration inner code works with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` with an account token only.
    pub server_token: Option<Secret>,
    /// The account token: only the account endpoints (`/servers`, `/domains`, `/senders`).
    pub account_token: Option<Secret>,
    /// Servers selected by ID or name (`servers`); empty: all.
    pub servers: Vec<String>,
    /// `None`: 45 days before the sync's start.
    pub start_date: Option<DateTime<Utc>>,
    pub lookback: Duration,
    pub max_concurrency: usize,
    pub max_requests_per_second: Option<f64>,
    pub window_lag: Duration,
    pub fail_on_unreachable_rows: bool,
    /// Days of statistics read again by an incremental sync.
    pub stats_lookback_days: i64,
    /// Read `message_events` (one request per outbound message).
    pub message_events: bool,
    pub request_timeout: StdDuration,
    pub max_retries: u32,
    pub base_url: String,
}

impl Config {
    /// A config for tests and embedding: defaults everywhere. `base_url` goes through the
    /// same checks as a config file's (no way around the https/loopback rule).
    pub fn with_token(token: &str, base_url: &str) -> Result<Config, String> {
        let mut warnings = Vec::new();
        let token = validate::check_token(token, "server_token", &mut warnings)?;
        Ok(Config {
            server_token: Some(Secret::new(token)),
            account_token: None,
            servers: Vec::new(),
            start_date: None,
            lookback: Duration::hours(i64::from(default_lookback_hours())),
            max_concurrency: default_max_concurrency() as usize,
            max_requests_per_second: None,
            window_lag: Duration::seconds(i64::from(default_window_lag_seconds())),
            fail_on_unreachable_rows: false,
            stats_lookback_days: i64::from(default_stats_lookback_days()),
            message_events: false,
            request_timeout: StdDuration::from_secs(u64::from(default_request_timeout_seconds())),
            max_retries: default_max_retries(),
            base_url: check_base_url(base_url)?,
        })
    }
}

/// Key names of Airbyte's own Postmark connector, accepted so its users can switch.
const AIRBYTE_SERVER_TOKEN_KEY: &str = "X-Postmark-Server-Token";
const AIRBYTE_ACCOUNT_TOKEN_KEY: &str = "X-Postmark-Account-Token";

/// Fields whose values must never be echoed in an error.
const SECRET_FIELDS: &[&str] = &["server_token", "account_token"];

/// Reads, normalises and validates the config file. Returns the config and the warnings
/// the caller should log (unknown keys, ignored account token).
pub fn load(path: &Path, now: DateTime<Utc>) -> Result<(Config, Vec<String>), Error> {
    let shown = path.display().to_string();
    let what = format!("config '{shown}'");
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::input(
            &what,
            format!("cannot read the file ({e}); pass the path of a JSON file with at least {{\"server_token\": \"...\"}}"),
        )
    })?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(&what, format!("not valid JSON: {e}")))?;
    from_value(value, now).map_err(|m| Error::input(&what, m))
}

/// Validates an already-parsed config value. Errors are plain messages (no file name).
pub fn from_value(value: Value, now: DateTime<Utc>) -> Result<(Config, Vec<String>), String> {
    let Value::Object(mut map) = value else {
        return Err("must be a JSON object such as {\"server_token\": \"...\"}".into());
    };
    let mut warnings = Vec::new();
    // An explicit null means "not set", as UIs and generated configs write it.
    map.retain(|_, v| !v.is_null());
    normalise_aliases(&mut map);

    let spec = connection_specification();
    coerce_strings(&spec, &mut map);
    let known: Vec<String> = spec["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let unknown: Vec<&String> = map.keys().filter(|k| !known.contains(k)).collect();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|k| format!("'{k}'")).collect();
        warnings.push(format!(
            "ignoring unknown config keys {}; known keys: {}",
            list.join(", "),
            known.join(", ")
        ));
    }

    // Server IDs may be written as numbers; the schema lists strings.
    if let Some(Value::Array(list)) = map.get_mut("servers") {
        for v in list.iter_mut() {
            if let Value::Number(n) = v {
                *v = Value::String(n.to_string());
            }
        }
    }
    let has_token = |k: &str| map.get(k).is_some_and(|v| !v.is_null());
    let no_token = !has_token("server_token") && !has_token("account_token");
    let instance = Value::Object(map);
    let mut problems = schema_problems(&spec, &instance);
    if no_token {
        problems.insert(
            0,
            "'server_token' is missing; add it: a string (Server API token), or set \
             'account_token' (Account API token) to read the account's servers, domains and \
             sender signatures"
                .to_string(),
        );
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let raw: ConfigSpec = serde_json::from_value(instance).map_err(|e| e.to_string())?;
    let config = finish(raw, now, &mut warnings)?;
    for token in [&config.server_token, &config.account_token]
        .into_iter()
        .flatten()
    {
        crate::error::register_secret(token.expose());
    }
    Ok((config, warnings))
}

/// Numbers and booleans given as strings (Meltano's `config set` and environment variables,
/// UIs that only know text) are converted where the spec expects a number or a boolean:
/// `"10"` → `10`, `"0.5"` → `0.5`, `"true"` → `true`. A string that is not a number is left
/// alone, so the schema check still reports it with the field and the expected value.
fn coerce_strings(spec: &Value, map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        let Value::String(s) = value else { continue };
        let text = s.trim();
        let coerced = match spec["properties"][key.as_str()]["type"].as_str() {
            Some("integer") => text.parse::<i64>().ok().map(Value::from),
            Some("number") => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            Some("boolean") => match text.to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        };
        if let Some(v) = coerced {
            *value = v;
        }
    }
}

fn normalise_aliases(map: &mut Map<String, Value>) {
    for key in [
        AIRBYTE_SERVER_TOKEN_KEY,
        AIRBYTE_ACCOUNT_TOKEN_KEY,
        "server_token",
        "account_token",
    ] {
        if let Some(secret) = map.get(key).and_then(|v| v.as_str()) {
            crate::error::register_secret(secret.trim());
        }
    }
    if let Some(token) = map.remove(AIRBYTE_SERVER_TOKEN_KEY) {
        if !map.contains_key("server_token") {
            map.insert("server_token".into(), token);
        }
    }
    if let Some(token) = map.remove(AIRBYTE_ACCOUNT_TOKEN_KEY) {
        if !map.contains_key("account_token") {
            map.insert("account_token".into(), token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn debug_of_a_config_never_shows_the_token() {
        let (c, _) = from_value(json!({"server_token": "very-secret-token"}), now()).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret-token"));
        assert!(dbg.contains("***"));
        assert_eq!(format!("{}", c.server_token.unwrap()), "***");
    }

    #[test]
    fn airbytes_key_names_are_accepted() {
        let (c, warnings) = from_value(
            json!({"X-Postmark-Server-Token": "tok", "X-Postmark-Account-Token": "acct"}),
            now(),
        )
        .unwrap();
        assert_eq!(c.server_token.unwrap().expose(), "tok");
        assert_eq!(c.account_token.unwrap().expose(), "acct");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn unknown_keys_give_one_warning() {
        let (_, warnings) =
            from_value(json!({"server_token": "t", "colour": 1, "size": 2}), now()).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("'colour'") && warnings[0].contains("'size'"));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let err = from_value(
            json!({"max_concurrency": "four", "lookback_hours": -1}),
            now(),
        )
        .unwrap_err();
        assert!(err.contains("'server_token' is missing"), "{err}");
        assert!(err.contains("'max_concurrency' is \"four\""), "{err}");
        assert!(err.contains("'lookback_hours'"), "{err}");
    }

    #[test]
    fn numbers_and_booleans_given_as_strings_are_converted() {
        let (c, warnings) = from_value(
            json!({"server_token": "t", "max_requests_per_second": "10", "max_concurrency": " 8 ",
                   "lookback_hours": "0", "fail_on_unreachable_rows": "true",
                   "request_timeout_seconds": 30}),
            now(),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.max_requests_per_second, Some(10.0));
        assert_eq!(c.max_concurrency, 8);
        assert_eq!(c.lookback, Duration::hours(0));
        assert!(c.fail_on_unreachable_rows);
        assert_eq!(c.request_timeout, StdDuration::from_secs(30));
        let (c, _) = from_value(
            json!({"server_token": "t", "max_requests_per_second": "0.5"}),
            now(),
        )
        .unwrap();
        assert_eq!(c.max_requests_per_second, Some(0.5));
    }

    #[test]
    fn a_string_that_is_not_a_number_still_gets_the_clear_error() {
        let err = from_value(
            json!({"server_token": "t", "max_requests_per_second": "ten", "max_retries": "2.5",
                   "max_concurrency": "99"}),
            now(),
        )
        .unwrap_err();
        assert!(
            err.contains("'max_requests_per_second' is \"ten\"; expected a number"),
            "{err}"
        );
        assert!(
            err.contains("'max_retries' is \"2.5\"; expected a whole number"),
            "{err}"
        );
        // A numeric string is converted, then range-checked like a number.
        assert!(
            err.contains("'max_concurrency' is 99; expected a whole number from 1 to 16"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_typed_token_is_not_echoed() {
        let err = from_value(json!({"server_token": 123456789}), now()).unwrap_err();
        assert!(!err.contains("123456789"), "{err}");
        assert!(err.contains("'server_token'"), "{err}");
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/",
            "http://[::1]:9",
        ] {
            assert!(check_base_url(ok).is_ok(), "{ok}");
        }
        assert!(check_base_url("http://api.postmarkapp.com").is_err());
        assert!(check_base_url("ftp://x").is_err());
        assert_eq!(
            check_base_url("https://api.postmarkapp.com/").unwrap(),
            "https://api.postmarkapp.com"
        );
    }

    #[test]
    fn an_embedded_config_cannot_skip_the_base_url_checks() {
        assert!(Config::with_token("t0ken", "http://evil.example").is_err());
        assert!(Config::with_token("t0ken", "http://evil.example?@127.0.0.1").is_err());
        let c = Config::with_token("t0ken\n", "http://127.0.0.1:9/").unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:9");
        assert_eq!(c.server_token.unwrap().expose(), "t0ken");
    }

    #[test]
    fn base_url_tricks_that_hide_another_host_are_rejected_by_the_parser_itself() {
        for (url, why) in [
            ("http://evil.example?@127.0.0.1", "has a query"),
            ("http://evil.example#@127.0.0.1", "has a fragment"),
            ("http://127.0.0.1@evil.example", "has user information"),
            ("http://user:pw@127.0.0.1:8", "has user information"),
            ("http://[::1]evil.example", "malformed host"),
            ("http://[::1]:8evil", "invalid port"),
            ("http://127.0.0.1:99999", "invalid port"),
            ("http://evil.example\\@127.0.0.1", "has user information"),
            (
                "http://localhost.evil.example",
                "plain http for a non-loopback host",
            ),
            (
                "http://[::ffff:127.0.0.1]",
                "plain http for a non-loopback host",
            ),
            ("HTTP://evil.example", "plain http for a non-loopback host"),
            ("http:// 127.0.0.1", "whitespace"),
            ("javascript:alert(1)", "base_url"),
        ] {
            let err = check_base_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
        assert_eq!(
            check_base_url("http://127.0.0.2:8080/proxy/").unwrap(),
            "http://127.0.0.2:8080/proxy"
        );
        assert_eq!(
            check_base_url("HTTPS://API.postmarkapp.com").unwrap(),
            "https://api.postmarkapp.com"
        );
    }

    #[test]
    fn start_date_may_reach_back_for_statistics_but_not_into_the_future() {
        assert!(check_start_date("2026-10-01T00:00:00Z", now()).is_ok());
        assert!(check_start_date("2015-01-01T00:00:00Z", now()).is_ok());
        assert!(check_start_date("2009-12-31T00:00:00Z", now()).is_err());
        assert!(check_start_date("2027-01-01T00:00:00Z", now()).is_err());
        assert!(check_start_date("yesterday", now()).is_err());
    }

    #[test]
    fn the_spec_marks_the_token_secret_and_is_draft7() {
        let spec = connection_specification();
        assert_eq!(spec["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(spec["properties"]["server_token"]["airbyte_secret"], true);
        assert_eq!(spec["properties"]["account_token"]["airbyte_secret"], true);
        assert!(spec.get("required").is_none(), "either token will do");
        assert!(spec.get("$defs").is_none() && spec.get("definitions").is_none());
    }
}
