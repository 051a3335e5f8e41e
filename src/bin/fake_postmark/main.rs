//! `fake-postmark`: a deterministic fake of the Postmark Server API for integration tests,
//! benchmarks and the README quickstart.
//!
//! It serves `/server`, `/messages/outbound`, `/messages/inbound`, `/bounces`, `/templates`
//! and `/message-streams` with Postmark's envelopes, paging limits, newest-first order and
//! Eastern-time date filters, plus `/__fake/*` control endpoints (ground truth, stats,
//! scripted faults, arrivals). Records are generated from indices and stored compactly;
//! JSON is rendered per page. Plain std threads and sockets: no async runtime.

mod api;
mod bounces;
mod catalog;
mod control;
#[cfg(test)]
mod e2e_tests;
mod eastern;
mod gen;
mod hostile_http;
mod hostile_paging;
mod http;
mod json;
mod records;
mod server;
mod stats;
mod store;
mod timefmt;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;

use catalog::S_OUTBOUND;
use eastern::{Zone, TICKS_PER_SEC};
use gen::{GenConfig, Scenario};
use stats::{Control, Periodic};
use store::Dataset;

#[derive(Parser, Debug)]
#[command(
    name = "fake-postmark",
    version,
    about = "Deterministic fake Postmark Server API"
)]
pub struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0 = any free port; the real one is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Anchor "now" as RFC 3339 (default: current time truncated to the second).
    #[arg(long)]
    now: Option<String>,
    /// Spread base data over [now - N days, now - 10 minutes).
    #[arg(long, default_value_t = 45, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Base outbound message count.
    #[arg(long, default_value_t = 2000)]
    outbound: usize,
    /// Base inbound message count.
    #[arg(long, default_value_t = 300)]
    inbound: usize,
    /// Base bounce count.
    #[arg(long, default_value_t = 200)]
    bounces: usize,
    /// Template count.
    #[arg(long, default_value_t = 25)]
    templates: usize,
    /// Extra data set; may be repeated.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// The valid server token.
    #[arg(long, default_value = "fake-server-token")]
    token: String,
    /// Sleep this long before answering each API request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Every Nth API request answers --fail-status (0 = off).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Status for --fail-every (429, 500, 502 = HTML body, 503, ...).
    #[arg(long, default_value_t = 500)]
    fail_status: u16,
    /// Retry-After header value (seconds) on --fail-every responses.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Every Nth API request is read and then the socket is closed unanswered (0 = off).
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Report TotalCount as min(true count, 10000).
    #[arg(long)]
    cap_total_count: bool,
    /// How fromdate/todate wall times are interpreted.
    #[arg(long, value_enum, default_value_t = Zone::Eastern)]
    zone: Zone,
    /// Each /messages/outbound request first appends N outbound records at the live clock.
    #[arg(long, default_value_t = 0)]
    arrivals_per_request: usize,
    /// Gzip API bodies when the request's Accept-Encoding mentions gzip.
    #[arg(long)]
    gzip: bool,
    /// Log each request to stderr.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    pub hostile: hostile_paging::HostileFlags,
    #[command(flatten)]
    pub hostile_http: hostile_http::Hostile,
}

/// Shared state of the running fake.
pub struct App {
    pub cfg: Cli,
    /// Anchor instant in ticks.
    pub now: i64,
    started: Instant,
    pub outbound: Dataset,
    pub inbound: Dataset,
    pub bounces: Dataset,
    pub ctl: Control,
    pub periodic: Periodic,
    pub server_body: Vec<u8>,
    pub hostile: hostile_paging::Hostile,
}

impl App {
    /// `now` plus real time elapsed since start: always after every base record.
    pub fn live_ticks(&self) -> i64 {
        self.now + (self.started.elapsed().as_nanos() / 100) as i64
    }

    /// Generates the data for `cli` around the anchor `now` (ticks).
    pub fn new(cli: Cli, now: i64) -> App {
        let gcfg = GenConfig {
            now,
            days: cli.days,
            outbound: cli.outbound,
            inbound: cli.inbound,
            bounces: cli.bounces,
            scenarios: cli.scenarios.clone(),
        };
        // The datasets are independent; build them side by side to shorten startup.
        let (outbound, inbound, bounces) = std::thread::scope(|s| {
            let o = s.spawn(|| gen::outbound(&gcfg));
            let b = s.spawn(|| gen::bounces(&gcfg));
            let i = gen::inbound(&gcfg);
            let join = |h: std::thread::ScopedJoinHandle<'_, store::Inner>,
                        f: fn(&GenConfig) -> store::Inner| {
                // A panic in a generator thread is a bug; regenerate inline to surface it.
                h.join().unwrap_or_else(|_| f(&gcfg))
            };
            (join(o, gen::outbound), i, join(b, gen::bounces))
        });
        App {
            periodic: Periodic {
                fail_every: cli.fail_every,
                fail_status: cli.fail_status,
                retry_after: cli.retry_after,
                drop_every: cli.drop_every,
            },
            server_body: catalog::server(&cli.token),
            cfg: cli,
            now,
            started: Instant::now(),
            outbound: Dataset::new(outbound),
            inbound: Dataset::new(inbound),
            bounces: Dataset::new(bounces),
            ctl: Control::default(),
            hostile: hostile_paging::Hostile::default(),
        }
    }

    /// Appends `n` outbound records at the live clock, 100 ns apart.
    pub fn arrive_live(&self, n: usize) {
        let t0 = self.live_ticks();
        let times = (0..n).map(|i| t0 + i as i64);
        control::arrive_into(&self.outbound, S_OUTBOUND, times, gen::pick_status);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = match &cli.now {
        Some(s) => match eastern::parse_rfc3339_ticks(s) {
            Some(t) => t,
            None => {
                eprintln!("fake-postmark: --now must be RFC 3339, got '{s}'");
                return ExitCode::from(2);
            }
        },
        None => chrono::Utc::now().timestamp() * TICKS_PER_SEC,
    };
    let listener = match TcpListener::bind((cli.host.as_str(), cli.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-postmark: cannot bind {}:{}: {e}", cli.host, cli.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake-postmark: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Arc::new(App::new(cli, now));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fake-postmark listening on http://{addr}");
    let _ = out.flush();
    drop(out);
    server::serve(app, listener);
    ExitCode::SUCCESS
}
