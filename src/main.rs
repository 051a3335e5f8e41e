//! Parses the command line, runs it, maps the outcome to an exit code. Nothing else.

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = source_postmark::cli::Cli::parse();
    match source_postmark::run(cli, io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // Rust ignores SIGPIPE, so `| head` arrives as an error: a normal way to end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            // A server may echo the token inside an error body: blank it.
            eprintln!("error: {}", source_postmark::error::redact(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
