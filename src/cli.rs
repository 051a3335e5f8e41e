//! The command line: Airbyte subcommands and Singer flags on one executable.
//!
//! `spec | check | discover | read` select the Airbyte protocol; anything else is Singer
//! (`--config X --discover`, `--config X [--catalog C] [--state S]`, `--about`), which is how
//! Meltano invokes an extractor. Test-only knobs are hidden flags, not config fields.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "source-postmark",
    version,
    about = "Copy a Postmark server's email data (messages, bounces, templates, message streams) \
             into any warehouse, as an Airbyte source or a Singer tap.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<AirbyteCommand>,

    /// Singer: the config JSON file.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Singer: print the catalog of streams and exit.
    #[arg(short = 'd', long)]
    pub discover: bool,

    /// Singer: the catalog selecting streams and fields (`--properties` is the old name).
    #[arg(short = 'p', long, alias = "properties", value_name = "FILE")]
    pub catalog: Option<PathBuf>,

    /// Singer: the state JSON file to resume from.
    #[arg(short = 's', long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Print what this connector is and can do.
    #[arg(long)]
    pub about: bool,

    /// Format of `--about`.
    #[arg(long, value_enum, requires = "about")]
    pub format: Option<AboutFormat>,

    #[command(flatten)]
    pub hidden: Hidden,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AboutFormat {
    Json,
    Markdown,
}

/// Knobs for tests and benchmarks; not part of the documented interface.
#[derive(Debug, Args)]
pub struct Hidden {
    /// Pretend the sync starts at this RFC 3339 instant.
    #[arg(long, global = true, hide = true)]
    pub now: Option<String>,
    /// Base delay of retry backoff in milliseconds (default 1000).
    #[arg(long, global = true, hide = true)]
    pub retry_base_ms: Option<u64>,
    /// Interval of periodic progress logs in milliseconds (default 10000).
    #[arg(long, global = true, hide = true)]
    pub progress_every_ms: Option<u64>,
    /// Accepted and ignored, as the Airbyte CDK does.
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum AirbyteCommand {
    /// Airbyte: print the connector specification.
    Spec,
    /// Airbyte: check that the config works (GET /server).
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Airbyte: print the catalog of streams.
    Discover {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Airbyte: read the configured streams.
    Read {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
}
