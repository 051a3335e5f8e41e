//! Parses the command line, runs it, maps the outcome to an exit code. Nothing else.

use std::io;
use std::process::ExitCode;

use clap::Parser;

/// SIGTERM and SIGINT end the process at once with the shell's conventional status (128 +
/// signal), as their default action would. Needed because a process running as PID 1 (a
/// container started without `--init`) gets no default action: the kernel drops the signal,
/// and `docker stop` would wait its full grace period and then SIGKILL. Only `_exit`, which
/// is async-signal-safe, runs in the handler; an interrupted line on stdout is what the
/// default action would leave too.
fn end_on_termination_signals() {
    extern "C" fn on_signal(signal: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe and takes any status.
        unsafe { libc::_exit(128 + signal) }
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only calls an async-signal-safe function.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn main() -> ExitCode {
    end_on_termination_signals();
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
