//! The secret scan: every command of both protocols, run against every fault the fake can
//! produce (scripted `/__fake/faults` statuses, periodic failures and drops, and each
//! hostile flag, most of them with error bodies that echo the token back), never prints the
//! token: not on stdout, not on stderr, not in a LOG, TRACE or CONNECTION_STATUS.

use serde_json::json;

use crate::support::*;

/// A configured token that is not the fake's: answers then carry it back in 401 bodies.
const WRONG: &str = "wrong-token-7f3e9a1c";

struct Setup {
    name: &'static str,
    fake_args: &'static [&'static str],
    /// Scripted faults queued before every command: (path, status, extra query).
    scripted: &'static [(&'static str, u16, &'static str)],
    token: &'static str,
    extra: serde_json::Value,
}

fn setups() -> Vec<Setup> {
    let quick = json!({"max_retries": 1, "request_timeout_seconds": 1});
    let s = |name, fake_args, scripted, token| Setup {
        name,
        fake_args,
        scripted,
        token,
        extra: quick.clone(),
    };
    vec![
        s("wrong token, echoed", &["--echo-token"], &[], WRONG),
        s(
            "scripted statuses, echoed",
            &["--echo-token"],
            &[
                ("/server", 429, "&retry_after=0"),
                ("/server", 500, ""),
                ("/message-streams", 502, ""),
                ("/message-streams", 503, ""),
                ("/bounces", 422, ""),
                ("/bounces", 404, ""),
                ("/bounces", 0, ""),
            ],
            TOKEN,
        ),
        s(
            "slow scripted answers",
            &["--echo-token"],
            &[
                ("/server", 500, "&delay_ms=1500"),
                ("/bounces", 200, "&delay_ms=1500"),
            ],
            TOKEN,
        ),
        s(
            "every other request fails",
            &[
                "--echo-token",
                "--fail-every",
                "2",
                "--fail-status",
                "503",
                "--retry-after",
                "1",
            ],
            &[],
            TOKEN,
        ),
        s(
            "every other request dropped",
            &["--echo-token", "--drop-every", "2"],
            &[],
            TOKEN,
        ),
        s(
            "huge Retry-After",
            &[
                "--echo-token",
                "--fail-every",
                "1",
                "--fail-status",
                "429",
                "--retry-after",
                "3600",
            ],
            &[],
            TOKEN,
        ),
        s(
            "redirect elsewhere",
            &["--redirect-to", "http://127.0.0.1:9"],
            &[],
            TOKEN,
        ),
        s(
            "landing page on /server",
            &["--server-body", "html"],
            &[],
            TOKEN,
        ),
        s(
            "empty object on /server",
            &["--server-body", "empty-object"],
            &[],
            TOKEN,
        ),
        s("bad gzip", &["--bad-gzip"], &[], TOKEN),
        s("invalid UTF-8", &["--invalid-utf8"], &[], TOKEN),
        s("stalled bodies", &["--stall-body-secs", "5"], &[], TOKEN),
        s(
            "lying TotalCount",
            &["--cap-total-count", "--echo-token"],
            &[],
            TOKEN,
        ),
        s(
            "rows arriving",
            &["--arrivals-per-request", "3", "--echo-token"],
            &[],
            TOKEN,
        ),
    ]
}

#[test]
fn no_command_in_either_protocol_prints_the_token_under_any_fault() {
    let mut runs = 0;
    for setup in setups() {
        let fake = Fake::start(setup.fake_args);
        let s = Scratch::new("secrets");
        let mut extra = setup.extra.clone();
        extra["server_token"] = json!(setup.token);
        let cfg = s.config(&fake, extra);
        let cat = s.write_json(
            "catalog.json",
            &airbyte_catalog(&["bounces"], "incremental"),
        );
        let singer_cat = s.write_json(
            "singer.json",
            &json!({"streams": [{"tap_stream_id": "bounces", "stream": "bounces", "schema": {}}]}),
        );
        let commands: [&[&str]; 8] = [
            &["spec"],
            &["check", "--config", &cfg],
            &["discover", "--config", &cfg],
            &["read", "--config", &cfg, "--catalog", &cat],
            &["--about", "--format", "json"],
            &["--config", &cfg, "--discover"],
            &["--config", &cfg, "--catalog", &singer_cat],
            &["--config", &cfg],
        ];
        for args in commands {
            for (path, status, extra) in setup.scripted {
                fake.fault(path, *status, 1, extra);
            }
            let run = run(args);
            runs += 1;
            for secret in [setup.token, TOKEN] {
                assert!(
                    !run.stdout.contains(secret) && !run.stderr.contains(secret),
                    "{}: `{}` printed the token:\nstdout: {}\nstderr: {}",
                    setup.name,
                    args.join(" "),
                    run.stdout,
                    run.stderr
                );
            }
        }
    }
    assert_eq!(runs, 14 * 8);
}
