//! `fake-postmark`: a deterministic fake of the Postmark Server API for integration tests,
//! benchmarks and the README quickstart.
//!
//! It serves `/server`, `/messages/outbound`, `/messages/inbound`, `/bounces`, `/templates`
//! and `/message-streams` with Postmark's envelopes, paging limits, newest-first order and
//! Eastern-time date filters; opens, clicks, message details, template bodies, webhooks,
//! inbound rules, delivery stats, suppressions and daily stats (`endpoints.rs`); an account
//! of `--servers` servers behind the account token (`account.rs`); plus `/__fake/*` control
//! endpoints (ground truth, stats, scripted faults, arrivals, revoke, add-server). Records are generated from indices and stored compactly;
//! JSON is rendered per page. Plain std threads and sockets: no async runtime.

mod account;
mod api;
mod bounces;
mod catalog;
mod control;
mod daily;
mod details;
#[cfg(test)]
mod e2e_tests;
mod eastern;
mod endpoints;
mod events;
mod extras;
mod gen;
mod ground;
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use clap::Parser;

use catalog::S_OUTBOUND;
use eastern::{Zone, TICKS_PER_SEC};
use gen::{GenConfig, Scenario};
use stats::{Control, Periodic};
use store::Dataset;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "fake-postmark",
    version,
    about = "Deterministic fake Postmark Server and Account API"
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
    /// Open events over tracked `Sent` outbound messages (default: 1.5 x --outbound).
    #[arg(long)]
    opens: Option<usize>,
    /// Click events over link-tracked `Sent` outbound messages (default: --outbound / 2).
    #[arg(long)]
    clicks: Option<usize>,
    /// One tracked `outbound` message (the first sent at least an hour after the data start
    /// that tracks opens and links) gets N more opens and N / 3 more clicks, spread over the
    /// day after it was sent: its per-message endpoints page past 500 (to the 10,000 cap).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    hot_message_events: u64,
    /// Whether /messages/outbound/opens and /clicks apply fromdate/todate (honoured, like
    /// the message search) or accept and ignore them (ignored). Real behaviour is unconfirmed.
    #[arg(long, value_enum, default_value_t = DateFilterMode::Honoured)]
    events_date_filter: DateFilterMode,
    /// Daily stats reach back this many days (beyond --days, from their own generator).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=3650))]
    stats_days: u32,
    /// Suppression candidates across the outbound-type message streams.
    #[arg(long, default_value_t = 150)]
    suppressions: usize,
    /// Extra data set; may be repeated.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// The valid server token (of the first server; with --servers N the others get
    /// `<token>-<server ID>`).
    #[arg(long, default_value = "fake-server-token")]
    token: String,
    /// Servers in the account, each with its own token and data (1 = a single server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
    servers: u64,
    /// The valid account token (X-Postmark-Account-Token) for /servers, /domains, /senders.
    #[arg(long, default_value = "fake-account-token")]
    account_token: String,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DateFilterMode {
    Honoured,
    Ignored,
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
    pub opens: events::Events,
    pub clicks: events::Events,
    pub daily: daily::Daily,
    pub suppressions: Vec<extras::Supp>,
    pub ctl: Arc<Control>,
    pub periodic: Periodic,
    pub server_body: Vec<u8>,
    pub hostile: hostile_paging::Hostile,
    /// Position in the account (0 = the first server, whose data is as without --servers).
    pub index: u64,
    pub server_id: u64,
    /// Set by `/__fake/revoke`: the token then answers 401.
    pub revoked: AtomicBool,
    /// The other servers of the account (only on the first server).
    pub peers: RwLock<Vec<Arc<App>>>,
}

/// ID of server number `index` of the account.
pub fn server_id_of(index: u64) -> u64 {
    catalog::SERVER_ID + index * 1_111
}

impl App {
    /// `now` plus real time elapsed since start: always after every base record.
    pub fn live_ticks(&self) -> i64 {
        self.now + (self.started.elapsed().as_nanos() / 100) as i64
    }

    /// Generates the data for `cli` around the anchor `now` (ticks): the first server.
    pub fn new(cli: Cli, now: i64) -> App {
        App::server(cli, now, Instant::now(), 0, Arc::default())
    }

    /// The first server plus the other `--servers`, sharing one request bookkeeping.
    pub fn account(cli: Cli, now: i64) -> Arc<App> {
        let n = cli.servers;
        let first = Arc::new(App::new(cli, now));
        // Servers are independent: generate them side by side.
        let others: Vec<App> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..n)
                .map(|i| {
                    let (cfg, ctl) = (first.cfg.clone(), Arc::clone(&first.ctl));
                    let started = first.started;
                    (i, s.spawn(move || App::server(cfg, now, started, i, ctl)))
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    // A panic in a generator thread is a bug; regenerate inline to surface it.
                    h.join().unwrap_or_else(|_| {
                        App::server(
                            first.cfg.clone(),
                            now,
                            first.started,
                            i,
                            Arc::clone(&first.ctl),
                        )
                    })
                })
                .collect()
        });
        first
            .peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(others.into_iter().map(Arc::new));
        first
    }

    fn add_server_at(&self, index: u64) -> Arc<App> {
        let s = Arc::new(App::server(
            self.cfg.clone(),
            self.now,
            self.started,
            index,
            Arc::clone(&self.ctl),
        ));
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&s));
        s
    }

    /// Adds one more server to the account (`/__fake/add-server`).
    pub fn add_server(&self) -> Arc<App> {
        let index = 1 + self
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64;
        self.add_server_at(index)
    }

    /// Every server of the account, first one first (call on the first server).
    pub fn all_servers(self: &Arc<App>) -> Vec<Arc<App>> {
        let mut v = vec![Arc::clone(self)];
        v.extend(
            self.peers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        v
    }

    /// The server a request is for: by `server=ID` on control endpoints (account-level
    /// truth streams always on the first server), by server token on API endpoints;
    /// otherwise the first server, which then answers (401, 400) as appropriate.
    pub fn target(self: &Arc<App>, req: &http::Request) -> Arc<App> {
        let route = req.route();
        let all = self.all_servers();
        let found = if route.starts_with("/__fake/") {
            let account_level = matches!(
                req.param("stream"),
                Some("servers" | "domains" | "sender_signatures")
            );
            req.param("server")
                .filter(|_| !account_level)
                .and_then(|v| v.parse::<u64>().ok())
                .and_then(|id| all.iter().find(|s| s.server_id == id).cloned())
        } else if account::is_account_route(&route) {
            None
        } else {
            req.header("x-postmark-server-token")
                .and_then(|t| all.iter().find(|s| s.cfg.token == t).cloned())
        };
        found.unwrap_or_else(|| Arc::clone(self))
    }

    /// Whether this server has message stream `s` (odd-numbered servers of an account
    /// have no `legacy-tx`, so stream lists differ between servers).
    pub fn has_stream(&self, s: usize) -> bool {
        !(s == catalog::S_LEGACY && self.index % 2 == 1)
    }

    /// [`catalog::stream_index`] among this server's streams.
    pub fn stream_index(&self, name: &str) -> Option<usize> {
        catalog::stream_index(name).filter(|&s| self.has_stream(s))
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }

    /// Server number `index` of the account: its own token, IDs and data.
    fn server(mut cli: Cli, now: i64, started: Instant, index: u64, ctl: Arc<Control>) -> App {
        let server_id = server_id_of(index);
        let seed = if index == 0 {
            0
        } else {
            gen::mix(index ^ 0x5e5e)
        };
        if index > 0 {
            cli.token = format!("{}-{server_id}", cli.token);
            cli.templates += 3 * index as usize;
        }
        let gcfg = GenConfig {
            now,
            days: cli.days,
            outbound: cli.outbound,
            inbound: cli.inbound,
            bounces: cli.bounces,
            scenarios: cli.scenarios.clone(),
            seed,
            id_base: index << 32,
            no_legacy: index % 2 == 1,
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
        let one = cli.scenarios.contains(&Scenario::ManyEventsOnePlatform);
        let many = one || cli.scenarios.contains(&Scenario::ManyEvents);
        let limit = now - 60 * TICKS_PER_SEC;
        let n_opens = cli.opens.unwrap_or(cli.outbound * 3 / 2);
        let n_clicks = cli.clicks.unwrap_or(cli.outbound / 2);
        let data_start = now - i64::from(cli.days) * eastern::DAY * TICKS_PER_SEC;
        let hot = cli.hot_message_events as usize;
        let hot_from = data_start + 3600 * TICKS_PER_SEC;
        let opens = events::generate(
            &outbound,
            n_opens,
            (if many { 12_000 } else { 0 }, one),
            (hot, hot_from),
            false,
            limit,
            seed,
        );
        let clicks = events::generate(
            &outbound,
            n_clicks,
            (if many { 11_000 } else { 0 }, one),
            (hot / 3, hot_from),
            true,
            limit,
            seed,
        );
        let daily = {
            let (o, c) = (opens.read(), clicks.read());
            let all = |g: &events::EvData| -> Vec<events::Ev> {
                g.by_time.iter().flatten().copied().collect()
            };
            daily::Daily::build(
                &outbound,
                &bounces,
                &all(&o),
                &all(&c),
                now,
                data_start,
                cli.stats_days,
                seed,
                index % 2 == 1,
            )
        };
        let suppressions =
            extras::suppressions(cli.suppressions, now / TICKS_PER_SEC, seed, index % 2 == 1);
        App {
            periodic: Periodic {
                fail_every: cli.fail_every,
                fail_status: cli.fail_status,
                retry_after: cli.retry_after,
                drop_every: cli.drop_every,
            },
            server_body: {
                let (name, color) = catalog::server_name(index);
                catalog::server_for(&cli.token, server_id, &name, color)
            },
            cfg: cli,
            now,
            started,
            outbound: Dataset::new(outbound),
            inbound: Dataset::new(inbound),
            bounces: Dataset::new(bounces),
            opens,
            clicks,
            daily,
            suppressions,
            ctl,
            hostile: hostile_paging::Hostile::default(),
            index,
            server_id,
            revoked: AtomicBool::new(false),
            peers: RwLock::default(),
        }
    }

    /// Appends `n` outbound records at the live clock, 100 ns apart.
    pub fn arrive_live(&self, n: usize) {
        let t0 = self.live_ticks();
        let times = (0..n).map(|i| t0 + i as i64);
        let recs = control::arrive_into(&self.outbound, S_OUTBOUND, times, gen::pick_status);
        for r in &recs {
            self.daily.add_message(S_OUTBOUND, r.t, r.id);
        }
    }

    /// The outbound message with this MessageID: (stream, record).
    pub fn find_outbound(&self, message_id: &str) -> Option<(usize, store::Rec)> {
        let id = records::parse_message_id(message_id)?;
        let g = self.outbound.read();
        for (s, v) in g.streams.iter().enumerate() {
            // Ids grow with time except after back-dated arrivals: try the fast way first.
            let i = v.partition_point(|r| r.id < id);
            if v.get(i).is_some_and(|r| r.id == id) {
                return Some((s, v[i]));
            }
        }
        g.streams
            .iter()
            .enumerate()
            .find_map(|(s, v)| v.iter().find(|r| r.id == id).map(|r| (s, *r)))
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
    let app = App::account(cli, now);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fake-postmark listening on http://{addr}");
    let _ = out.flush();
    drop(out);
    server::serve(app, listener);
    ExitCode::SUCCESS
}
