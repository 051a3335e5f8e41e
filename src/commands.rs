//! The entry points, one function each: spec, check, discover, read (both protocols) and
//! about. Each validates its inputs at the edge and hands typed values inward.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::catalog::{self, SelectedStream, Selection};
use crate::client::{Client, Request};
use crate::config::{self, Config};
use crate::error::Error;
use crate::protocol::{Emitter, Level, StreamStatus};
use crate::state::{self, InputState};
use crate::streams::OptIn;
use crate::sync::{self, ReadPlan};

pub const DOCUMENTATION_URL: &str = "https://postmarkapp.com/developer/api/overview";

/// Runtime settings that do not come from the config file.
#[derive(Debug, Clone, Copy)]
pub struct Runtime {
    pub now: DateTime<Utc>,
    pub retry_base: Duration,
    pub progress_every: Duration,
}

/// The `spec` payload, identical to `spec.json`.
pub fn spec_payload() -> Value {
    json!({
        "documentationUrl": DOCUMENTATION_URL,
        "connectionSpecification": config::connection_specification(),
    })
}

pub fn spec<W: Write>(out: &mut Emitter<W>) -> Result<(), Error> {
    out.message(&json!({"type": "SPEC", "spec": spec_payload()}))
}

fn load_config<W: Write>(path: &Path, rt: Runtime, out: &mut Emitter<W>) -> Result<Config, Error> {
    let (config, warnings) = config::load(path, rt.now)?;
    for w in warnings {
        out.log(Level::Warn, &w)?;
    }
    Ok(config)
}

/// Airbyte `check`: a user-fixable problem is `FAILED` with exit 0; anything else fails.
pub fn check<W: Write>(path: &Path, rt: Runtime, out: &mut Emitter<W>) -> Result<(), Error> {
    let config = match load_config(path, rt, out) {
        Ok(c) => c,
        Err(e) if e.is_user_fixable() => return out.connection_status(Err(e.to_string())),
        Err(e) => return Err(e),
    };
    let client = Client::new(&config, rt.retry_base);
    // Each configured token is checked; a failure names the token it is about.
    let mut problems = Vec::new();
    if config.server_token.is_some() {
        match check_server_token(&client, out) {
            Ok(()) => {}
            Err(e) if e.is_user_fixable() => problems.push(format!("'server_token': {e}")),
            Err(e) => return Err(e),
        }
    }
    if config.account_token.is_some() {
        // A wrong token and a `servers` entry that names no server are separate problems.
        match crate::account::list_servers(&client, out) {
            Ok(servers) => match crate::account::select(&servers, &config.servers) {
                Ok(_) => {}
                Err(e) if e.is_user_fixable() => problems.push(e.to_string()),
                Err(e) => return Err(e),
            },
            Err(e) if e.is_user_fixable() => problems.push(format!("'account_token': {e}")),
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        out.connection_status(Ok(()))
    } else {
        out.connection_status(Err(problems.join("; ")))
    }
}

/// `GET /server` with the server token answers a Postmark server object.
fn check_server_token<W: Write>(client: &Client, out: &mut Emitter<W>) -> Result<(), Error> {
    let request = Request {
        path: "/server".into(),
        query: Vec::new(),
        token: crate::client::Token::Server,
        server: None,
    };
    let context = "checking the connection (GET /server)";
    // Each retry is logged as it happens, before its wait starts.
    let mut log_error = None;
    let result = client.get(&request, context, &mut |m| {
        if let Err(e) = out.log(Level::Warn, &m) {
            log_error.get_or_insert(e);
        }
    });
    if let Some(e) = log_error {
        return Err(e);
    }
    result.and_then(|body| server_object(&body, context))
}

/// `check` passes only if `/server` answered with a Postmark server object (`ID` and
/// `Name`), not any 200: a landing page or a proxy's `{}` means `base_url` is wrong. The
/// body itself is never quoted: it lists the server's API tokens.
fn server_object(body: &str, context: &str) -> Result<(), Error> {
    let not_postmark = |what: &str| {
        Error::input(
            "config 'base_url'",
            format!(
                "{context} answered HTTP 200 with {what} instead of a Postmark server object \
                 (with \"ID\" and \"Name\"); set 'base_url' to the Postmark API \
                 (default https://api.postmarkapp.com)"
            ),
        )
    };
    let value: Value = serde_json::from_str(body).map_err(|_| {
        let start = body.trim_start();
        if start.starts_with('<') {
            not_postmark("an HTML or XML page")
        } else if start.is_empty() {
            not_postmark("an empty body")
        } else {
            not_postmark("a body that is not JSON")
        }
    })?;
    let ok = value.get("ID").is_some_and(Value::is_u64)
        && value.get("Name").is_some_and(Value::is_string);
    if ok {
        Ok(())
    } else if value.is_object() {
        Err(not_postmark(
            "a JSON object without a numeric \"ID\" and a \"Name\"",
        ))
    } else {
        Err(not_postmark("JSON that is not an object"))
    }
}

pub fn discover_airbyte<W: Write>(
    path: &Path,
    rt: Runtime,
    out: &mut Emitter<W>,
) -> Result<(), Error> {
    let config = load_config(path, rt, out)?;
    let offer = catalog::Offer::of(&config);
    out.message(&json!({"type": "CATALOG", "catalog": catalog::airbyte_catalog(offer)}))
}

pub fn discover_singer<W: Write>(
    path: &Path,
    rt: Runtime,
    out: &mut Emitter<W>,
) -> Result<(), Error> {
    let config = load_config(path, rt, out)?;
    out.message(&catalog::singer_catalog(catalog::Offer::of(&config)))
}

pub struct ReadInputs<'a> {
    pub config: &'a Path,
    /// `None`: every stream, as selected by default (Singer without `--catalog`).
    pub catalog: Option<&'a Path>,
    pub state: Option<&'a Path>,
    pub singer: bool,
}

/// Both protocols' read/sync. Returns the stream failure already reported on the protocol.
pub fn read<W: Write>(
    inputs: ReadInputs,
    rt: Runtime,
    out: &mut Emitter<W>,
) -> Result<Option<Error>, Error> {
    let config = load_config(inputs.config, rt, out)?;
    // Whole-account mode: the account's servers (with their own tokens), and the ones
    // `servers` selects, checked against the account's list.
    let servers = if config.account_token.is_some() {
        let client = Client::new(&config, rt.retry_base);
        let all = crate::account::list_servers(&client, out)?;
        let chosen: Vec<crate::account::Server> = crate::account::select(&all, &config.servers)?
            .into_iter()
            .cloned()
            .collect();
        let names: Vec<String> = chosen.iter().map(crate::account::Server::label).collect();
        out.log(
            Level::Info,
            &format!(
                "whole account: {} of the account's {} servers are read: {}",
                chosen.len(),
                all.len(),
                names.join(", ")
            ),
        )?;
        chosen
    } else {
        Vec::new()
    };
    let whole_account = config.account_token.is_some();
    let mut skipped_opt_in = Vec::new();
    let selection = match (inputs.catalog, inputs.singer) {
        (Some(p), true) => catalog::load_singer(p)?,
        (Some(p), false) => catalog::load_airbyte(p)?,
        (None, _) => Selection {
            streams: SelectedStream::all_default(catalog::Offer::of(&config)),
            unknown: Vec::new(),
        },
    };
    let mut selection = selection;
    selection.streams = selection
        .streams
        .into_iter()
        .map(|s| s.in_mode(whole_account))
        .collect();
    selection.streams.retain(|s| match s.spec.opt_in {
        Some(OptIn::MessageEvents) if !config.message_events => {
            skipped_opt_in.push(s.spec.name);
            false
        }
        _ => true,
    });
    // A stream whose token is not configured is reported, not read.
    let offer = catalog::Offer::of(&config);
    let mut no_token = Vec::new();
    selection.streams.retain(|s| {
        let ok = offer.offers(s.spec);
        if !ok {
            no_token.push(s.spec);
        }
        ok
    });
    for spec in &no_token {
        let field = match spec.token {
            crate::streams::Token::Server => "server_token",
            crate::streams::Token::Account => "account_token",
        };
        out.log(
            Level::Warn,
            &format!(
                "stream '{}' is selected but not read: it needs '{field}', which is not set",
                spec.name
            ),
        )?;
        out.stream_status(spec.name, StreamStatus::Started)?;
        out.stream_status(spec.name, StreamStatus::Incomplete)?;
    }
    for name in &skipped_opt_in {
        out.log(
            Level::Warn,
            &format!(
                "stream '{name}' is selected but not read: it costs one request per outbound \
                 message; set \"message_events\": true in the config to read it"
            ),
        )?;
        out.stream_status(name, StreamStatus::Started)?;
        out.stream_status(name, StreamStatus::Incomplete)?;
    }
    let state: InputState = match inputs.state {
        Some(p) => state::load(p)?,
        None => InputState::default(),
    };
    if inputs.singer {
        for name in &selection.unknown {
            out.log(
                Level::Warn,
                &format!("the catalog selects unknown stream '{name}'; skipping it"),
            )?;
        }
    }
    let mut plan = ReadPlan {
        config,
        streams: selection.streams,
        unknown_streams: if inputs.singer {
            Vec::new()
        } else {
            selection.unknown
        },
        state,
        now: rt.now,
        retry_base: rt.retry_base,
        progress_every: rt.progress_every,
        servers,
    };
    check_state(&mut plan, inputs.state, out)?;
    let outcome = sync::run(&plan, out)?;
    Ok(outcome.failed)
}

/// Singer capabilities (`--about`); `activate-version`: full-table streams end with
/// ACTIVATE_VERSION, so targets drop rows Postmark no longer has.
pub const CAPABILITIES: [&str; 5] = ["catalog", "discover", "state", "about", "activate-version"];

/// State sanity (see [`state::sanitize`]): future cursors are a config error, late ones
/// are reset and ancient ones start at the retention edge, each with a warning.
fn check_state<W: Write>(
    plan: &mut ReadPlan,
    path: Option<&Path>,
    out: &mut Emitter<W>,
) -> Result<(), Error> {
    let floor = plan
        .config
        .start_date
        .unwrap_or(plan.now - chrono::Duration::days(config::MAX_RETENTION_DAYS));
    let end = plan.range_end();
    let read: Vec<&str> = plan
        .streams
        .iter()
        .filter(|s| s.incremental)
        .map(|s| s.spec.name)
        .collect();
    let warnings = state::sanitize(&mut plan.state, &read, plan.now, end, floor).map_err(|m| {
        let what = path.map_or("state".to_string(), |p| format!("state '{}'", p.display()));
        Error::input(what, m)
    })?;
    for w in warnings {
        out.log(Level::Warn, &w)?;
    }
    Ok(())
}

pub fn about<W: Write>(json_format: bool, out: &mut Emitter<W>) -> Result<(), Error> {
    let mut settings = config::connection_specification();
    if let Some(props) = settings["properties"].as_object_mut() {
        for p in props.values_mut() {
            if p.get("airbyte_secret") == Some(&json!(true)) {
                p["secret"] = json!(true);
                p["writeOnly"] = json!(true);
            }
        }
    }
    let about = json!({
        "name": "source-postmark",
        "description": "Postmark source: messages, bounces, templates, message streams, opens, clicks, message events, suppressions, delivery and daily statistics, webhooks and inbound rules of a server; servers, domains and sender signatures of an account.",
        "version": env!("CARGO_PKG_VERSION"),
        "sdk_version": null,
        "capabilities": CAPABILITIES,
        "streams": crate::streams::STREAMS.iter().map(|s| s.name).collect::<Vec<_>>(),
        "settings": settings,
    });
    if json_format {
        return out.message(&about);
    }
    let mut text = format!(
        "# source-postmark {}\n\n{}\n\nCapabilities: {}\n\nStreams: {}\n\n## Settings\n\n",
        env!("CARGO_PKG_VERSION"),
        about["description"].as_str().unwrap_or_default(),
        CAPABILITIES.join(", "),
        crate::streams::names()
    );
    if let Some(props) = about["settings"]["properties"].as_object() {
        for (name, p) in props {
            let desc = p["description"].as_str().unwrap_or("").replace('\n', " ");
            text.push_str(&format!("- `{name}`: {desc}\n"));
        }
    }
    out.write_text(&text)
}
