//! source-postmark: a Postmark source connector speaking the Airbyte and Singer protocols.
//!
//! ```text
//! main ─► cli::Cli ─► lib::run ─► commands::{spec, check, discover, read, about}
//!                                   │ config::load, catalog::load_*, state::load  (validate once)
//!                                   ▼
//!                        sync::run(ReadPlan, Emitter)
//!                          ├─ client::Client (ureq, retries, limiter)  ── worker threads
//!                          ├─ streams::STREAMS (the stream table)
//!                          ├─ record::Shaper (bytes → record lines)
//!                          └─ protocol::Emitter (sole owner of stdout)
//! ```
//!
//! Every fact about Postmark lives in `streams`, `client`, `eastern` and `sync::windows`;
//! every fact about the wire protocols lives in `protocol`, `catalog` and `state`.
#![deny(clippy::print_stdout)]

pub mod account;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod eastern;
pub mod error;
pub mod protocol;
pub mod record;
pub mod state;
pub mod streams;
pub mod sync;

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};

use cli::{AboutFormat, AirbyteCommand, Cli};
use commands::{ReadInputs, Runtime};
use error::Error;
use protocol::{Emitter, Protocol};

/// Runs one command, writing protocol output to `stdout`. Errors are reported on the
/// protocol (Airbyte TRACE ERROR) before they are returned; the caller prints the one-line
/// summary on stderr and maps the exit code.
pub fn run<W: Write>(cli: Cli, stdout: W) -> Result<(), Error> {
    let protocol = if cli.command.is_some() {
        Protocol::Airbyte
    } else {
        Protocol::Singer
    };
    let mut out = Emitter::new(stdout, protocol);
    let result = runtime(&cli).and_then(|rt| dispatch(&cli, rt, &mut out));
    let result = match result {
        Ok(None) => Ok(()),
        // A stream failure was already reported as a TRACE ERROR with its stream.
        Ok(Some(reported)) => Err(reported),
        Err(e) if e.is_broken_pipe() => Err(e),
        Err(e) => {
            if protocol == Protocol::Airbyte {
                // Reporting may itself fail on a closed stdout; the original error wins.
                let _ = out.trace_error(&e, None);
            }
            Err(e)
        }
    };
    match (result, out.finish()) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(_)) => Ok(()),
    }
}

fn runtime(cli: &Cli) -> Result<Runtime, Error> {
    let now = match &cli.hidden.now {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| Error::Usage(format!("--now {s}: {e}")))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    Ok(Runtime {
        now,
        retry_base: Duration::from_millis(cli.hidden.retry_base_ms.unwrap_or(1000)),
        progress_every: Duration::from_millis(cli.hidden.progress_every_ms.unwrap_or(10_000)),
    })
}

fn dispatch<W: Write>(
    cli: &Cli,
    rt: Runtime,
    out: &mut Emitter<W>,
) -> Result<Option<Error>, Error> {
    match &cli.command {
        Some(AirbyteCommand::Spec) => commands::spec(out).map(|_| None),
        Some(AirbyteCommand::Check { config }) => commands::check(config, rt, out).map(|_| None),
        Some(AirbyteCommand::Discover { config }) => {
            commands::discover_airbyte(config, rt, out).map(|_| None)
        }
        Some(AirbyteCommand::Read {
            config,
            catalog,
            state,
        }) => {
            let inputs = ReadInputs {
                config,
                catalog: Some(catalog),
                state: state.as_deref(),
                singer: false,
            };
            commands::read(inputs, rt, out)
        }
        None if cli.about => {
            commands::about(matches!(cli.format, Some(AboutFormat::Json)), out).map(|_| None)
        }
        None => {
            let Some(config) = cli.config.as_deref() else {
                return Err(Error::Usage(
                    "nothing to do: use an Airbyte command (spec, check, discover, read) or Singer flags \
                     (--config FILE [--discover | --catalog FILE --state FILE], --about); see --help"
                        .into(),
                ));
            };
            if cli.discover {
                return commands::discover_singer(config, rt, out).map(|_| None);
            }
            let inputs = ReadInputs {
                config,
                catalog: cli.catalog.as_deref(),
                state: cli.state.as_deref(),
                singer: true,
            };
            commands::read(inputs, rt, out)
        }
    }
}
