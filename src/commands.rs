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
use crate::protocol::{Emitter, Level};
use crate::state::{self, InputState};
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
    let request = Request {
        path: "/server",
        query: Vec::new(),
    };
    let mut retries = Vec::new();
    let result = client.get(
        &request,
        "checking the connection (GET /server)",
        &mut |m| retries.push(m),
    );
    for m in retries {
        out.log(Level::Warn, &m)?;
    }
    match result {
        Ok(_) => out.connection_status(Ok(())),
        Err(e) if e.is_user_fixable() => out.connection_status(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

pub fn discover_airbyte<W: Write>(
    path: &Path,
    rt: Runtime,
    out: &mut Emitter<W>,
) -> Result<(), Error> {
    load_config(path, rt, out)?;
    out.message(&json!({"type": "CATALOG", "catalog": catalog::airbyte_catalog()}))
}

pub fn discover_singer<W: Write>(
    path: &Path,
    rt: Runtime,
    out: &mut Emitter<W>,
) -> Result<(), Error> {
    load_config(path, rt, out)?;
    out.message(&catalog::singer_catalog())
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
    let selection = match (inputs.catalog, inputs.singer) {
        (Some(p), true) => catalog::load_singer(p)?,
        (Some(p), false) => catalog::load_airbyte(p)?,
        (None, _) => Selection {
            streams: SelectedStream::all_default(),
            unknown: Vec::new(),
        },
    };
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
    let plan = ReadPlan {
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
    };
    let outcome = sync::run(&plan, out)?;
    Ok(outcome.failed)
}

/// Singer capabilities (`--about`); `activate-version`: full-table streams end with
/// ACTIVATE_VERSION, so targets drop rows Postmark no longer has.
pub const CAPABILITIES: [&str; 5] = ["catalog", "discover", "state", "about", "activate-version"];

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
        "description": "Postmark source: outbound and inbound messages, bounces, templates and message streams.",
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
