//! Connection handling: one thread per connection, keep-alive request loop, and the API
//! request pipeline (count, live arrivals, faults, latency, handler, gzip, log).

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::control::{self, Outcome};
use crate::hostile_http;
use crate::http::{self, ReadError, Request};
use crate::stats::fault_reply;
use crate::App;

/// Idle keep-alive connections are closed after this long, so abandoned pools do not pin
/// threads forever; clients are expected to reconnect (as with any real server).
const IDLE: Duration = Duration::from_secs(300);

pub fn serve(app: Arc<App>, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let app = Arc::clone(&app);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(256 * 1024)
            .spawn(move || connection(&app, stream));
        if let Err(e) = spawned {
            eprintln!("fake-postmark: cannot spawn connection thread: {e}");
        }
    }
}

fn connection(account: &Arc<App>, stream: TcpStream) {
    // Nagle would delay the body segment behind the header segment.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(16 * 1024, read_half);
    let mut w = stream;
    // Reused across requests on this connection: pages are ~300 KB.
    let mut body = Vec::new();
    let mut gz = Vec::new();
    loop {
        let req = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) | Err(ReadError::Io) => return,
            Err(ReadError::Bad(status, msg)) => {
                let head = crate::api::error(&mut body, status, 400, msg);
                let _ = http::write_response(&mut w, &head, &body, false);
                return;
            }
        };
        let started = Instant::now();
        body.clear();
        let is_api = !req.route().starts_with("/__fake/");
        // The server of the account this request is for (by token or `server=ID`).
        let target = account.target(&req);
        let app: &App = &target;
        let outcome = if is_api {
            api_request(app, &req, &mut body)
        } else if req.route() == "/__fake/add-server" {
            control::add_server(account, &req, &mut body)
        } else {
            control::handle(app, &req, &mut body)
        };
        let (mut head, exit) = match outcome {
            Outcome::Respond(h) => (h, false),
            Outcome::Exit(h) => (h, true),
            Outcome::Stream(head, len, writer) => {
                let keep = req.keep_alive;
                let written =
                    http::write_head(&mut w, &head, len, keep).and_then(|_| writer(&mut w));
                log(app, &req, head.status, started);
                if written.is_err() || !keep {
                    return;
                }
                continue;
            }
            Outcome::Drop => {
                app.ctl.end_on(&req, 0, app.server_id);
                log(app, &req, 0, started);
                return;
            }
        };
        let gzip = is_api
            && app.cfg.gzip
            && req
                .header("accept-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("gzip"));
        let payload: &[u8] = if gzip {
            gz.clear();
            let mut enc = GzEncoder::new(&mut gz, Compression::fast());
            let ok = enc.write_all(&body).and_then(|_| enc.finish().map(|_| ()));
            if ok.is_ok() {
                head.extra.push(("Content-Encoding", "gzip".into()));
                &gz
            } else {
                &body
            }
        } else {
            &body
        };
        let keep = req.keep_alive && !exit;
        // Logged before the answer is sent: a client that has its answer finds the request
        // in `/__fake/requests` (logging after writing raced with tests under load).
        if is_api {
            app.ctl.end_on(&req, head.status, app.server_id);
        }
        let written = http::write_response(&mut w, &head, payload, keep);
        log(app, &req, head.status, started);
        if exit {
            std::process::exit(0);
        }
        if written.is_err() || !keep {
            return;
        }
        // Give back memory after an unusually large body (e.g. a truth listing).
        if body.capacity() > 4 << 20 {
            body = Vec::new();
            gz = Vec::new();
        }
    }
}

fn log(app: &App, req: &Request, status: u16, started: Instant) {
    if app.cfg.verbose {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!("{} {} -> {} ({ms:.1} ms)", req.method, req.target, status);
    }
}

/// The API pipeline before the endpoint handler. The caller records the outcome.
fn api_request(app: &App, req: &Request, out: &mut Vec<u8>) -> Outcome<'static> {
    let route = req.route();
    let n = app.ctl.begin(&req.path);
    if app.cfg.arrivals_per_request > 0 && route == "/messages/outbound" {
        app.arrive_live(app.cfg.arrivals_per_request);
    }
    let fault = app
        .ctl
        .take_fault(&route, req.param("offset"), n, &app.periodic);
    if fault.as_ref().is_some_and(|f| f.status == 0) {
        return Outcome::Drop;
    }
    let delay = app
        .cfg
        .latency_ms
        .saturating_add(fault.as_ref().map_or(0, |f| f.delay_ms));
    if delay > 0 {
        thread::sleep(Duration::from_millis(delay));
    }
    if let Some(o) = hostile_http::before(&app.cfg.hostile_http, req, out) {
        return o;
    }
    let mut head = match fault {
        Some(f) if f.status != 200 => fault_reply(&f, out),
        _ => crate::api::handle(app, req, out),
    };
    match hostile_http::after(&app.cfg.hostile_http, req, &mut head, out) {
        Some(stalled) => stalled,
        None => Outcome::Respond(head),
    }
}
