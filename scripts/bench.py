#!/usr/bin/env python3
"""Benchmark: a full sync of every stream against the bundled fake Postmark server.

Starts `fake-postmark` with ROWS outbound messages (and the fake's default opens and clicks
over them: 1.5 and 0.5 per message) and a per-request latency, runs the
release connector (Singer mode, output to /dev/null), and prints rows, requests, wall and
CPU seconds, rows per CPU-second, peak RSS, the request ratio and the ratio of wall time to
the latency bound ceil(requests / max_concurrency) x latency.

    python3 scripts/bench.py --rows 100000 1000000 --latency-ms 20 --concurrency 4
    python3 scripts/bench.py --rows 100000 --fake-arg=--events-date-filter=ignored

Whole account (issue 8): `--servers N` starts the fake with N servers of ROWS outbound
messages each and syncs them with a config holding only the account token; the truth is
checked per server, and a line per server follows the totals.

    python3 scripts/bench.py --servers 3 --rows 100000 --latency-ms 20 --concurrency 4

Needs `cargo build --release` first (the script runs it unless --no-build).
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = "2026-11-20T12:00:00Z"
TOKEN = "fake-server-token"
ACCOUNT_TOKEN = "fake-account-token"
# Streams whose truth is checked: over the default range, or whole.
RANGED = ("messages_outbound", "messages_inbound", "bounces", "opens", "clicks")
WHOLE = ("templates", "message_streams", "suppressions", "delivery_stats", "webhooks", "inbound_rules")
# Account streams (whole-account mode): one truth for the account.
ACCOUNT = ("servers", "domains", "sender_signatures")
# `messages_outbound: finished: ...`, or in whole-account mode
# `messages_outbound of server 1234567 "Acme Production": finished: ...`.
FINISHED = re.compile(
    r'(\w+)(?: of server (\d+) ".*?")?: finished: (\d+) records, (\d+) pages, (\d+) requests, (\d+) windows'
)


class HighWaterMark:
    """Polls /proc/PID/status for VmHWM until stopped; VmHWM only grows."""

    def __init__(self, pid):
        self.path = f"/proc/{pid}/status"
        self.kib = 0
        self.running = True
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self):
        while self.running:
            try:
                with open(self.path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.kib = max(self.kib, int(line.split()[1]))
            except (OSError, ValueError):
                return
            time.sleep(0.002)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.kib


def start_fake(args):
    fake = subprocess.Popen(
        [os.path.join(ROOT, "target/release/fake-postmark"), "--port", "0", "--now", NOW, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = fake.stdout.readline()
    url = next(w for w in line.split() if w.startswith("http://"))
    return fake, url


def get(url):
    with urllib.request.urlopen(url) as r:
        return r.read().decode()


def run_once(rows, latency_ms, concurrency, servers, extra_fake):
    """One sync; `servers` > 0: a whole account of that many servers, account token only."""
    account = ["--servers", str(servers)] if servers else []
    fake, url = start_fake(
        ["--outbound", str(rows), "--latency-ms", str(latency_ms), *account, *extra_fake]
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "config.json")
            token = {"account_token": ACCOUNT_TOKEN} if servers else {"server_token": TOKEN}
            with open(cfg, "w") as f:
                json.dump({**token, "base_url": url, "max_concurrency": concurrency}, f)
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [os.path.join(ROOT, "target/release/source-postmark"), "--config", cfg, "--now", NOW],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            hwm = HighWaterMark(proc.pid)
            stderr = proc.stderr.read()
            # wait4 gives this process's own CPU time. Its ru_maxrss is useless here: Linux
            # carries the forking Python's RSS into it across exec, so peak RSS is read from
            # /proc/PID/status VmHWM (the connector's own high-water mark) while it runs.
            peak_kib = hwm.stop()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                sys.exit(f"connector failed:\n{stderr}")
        stats = json.loads(get(url + "/__fake/stats"))
        # (stream, server ID or "", records, pages, requests, windows) per finished run.
        finished = FINISHED.findall(stderr)
        # The fake's truth for the synced range, to check nothing was lost or invented:
        # every stream whose range is the default one or the whole dataset (per server in
        # whole-account mode).
        checked, truth = 0, 0
        per_server = {}
        for m in finished:
            stream, server = m[0], m[1]
            on = f"&server={server}" if server else ""
            if server:
                per_server[server] = per_server.get(server, 0) + int(m[2])
            if stream in RANGED:
                q = f"stream={stream}&from=2026-10-06T12:00:00Z&to=2026-11-20T11:55:00Z{on}"
            elif stream in WHOLE or stream in ACCOUNT:
                q = f"stream={stream}{on}"
            else:
                continue
            lines = [l for l in get(f"{url}/__fake/truth?{q}").splitlines() if l]
            checked += int(m[2])
            truth += len(lines)
        if servers and len(per_server) != servers:
            sys.exit(f"{len(per_server)} servers were read of {servers}:\n{stderr}")
        detected = re.findall(r"(\w+) \(messagestream (\w+)\): Postmark (honours|ignores) fromdate/todate", stderr)
    finally:
        fake.kill()
        fake.wait()

    records = sum(int(m[2]) for m in finished)
    pages = sum(int(m[3]) for m in finished)
    requests = stats["requests"]
    cpu = usage.ru_utime + usage.ru_stime
    rss_mb = peak_kib / 1024
    per_stream_min = sum(math.ceil(int(m[2]) / 500) if int(m[2]) else 1 for m in finished)
    bound = math.ceil(requests / concurrency) * latency_ms / 1000
    streams = {}
    for m in finished:
        st = streams.setdefault(m[0], {"records": 0, "requests": 0})
        st["records"] += int(m[2])
        st["requests"] += int(m[4])
    return {
        "rows": records,
        "checked": checked,
        "truth": truth,
        "servers": per_server,
        "streams": streams,
        "detected": sorted(set(f"{s}/{ms}: {v}" for s, ms, v in detected)),
        "requests": requests,
        "min_requests": per_stream_min,
        "pages": pages,
        "wall_s": wall,
        "rows_per_s": records / wall,
        "cpu_s": cpu,
        "rows_per_cpu_s": records / cpu if cpu else float("inf"),
        "peak_rss_mb": rss_mb,
        "latency_bound_s": bound,
        "wall_over_bound": wall / bound if bound else float("nan"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--servers", type=int, default=0,
                    help="whole account: N servers of ROWS outbound messages each, account token only")
    ap.add_argument("--fake-arg", action="append", default=[], help="extra fake-postmark flag (repeatable)")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    servers = f", {a.servers} servers (account token)" if a.servers else ""
    print(f"latency {a.latency_ms} ms, max_concurrency {a.concurrency}, {os.cpu_count()} cores{servers}")
    header = ("rows", "requests", "req/min", "wall s", "rows/s", "CPU s", "rows/CPU-s", "peak RSS MB", "wall/bound")
    print("  ".join(f"{h:>12}" for h in header))
    for rows in a.rows:
        out = subprocess.run(
            [sys.executable, __file__, "--single", str(rows), str(a.latency_ms), str(a.concurrency),
             str(a.servers), *a.fake_arg],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            sys.exit(out.stderr)
        r = json.loads(out.stdout)
        if r["checked"] != r["truth"]:
            sys.exit(f"synced {r['checked']} rows of checked streams but the fake holds {r['truth']}")
        print("  ".join(f"{v:>12}" for v in (
            f"{r['rows']:,}", r["requests"], f"{r['requests'] / r['min_requests']:.3f}", f"{r['wall_s']:.2f}",
            f"{r['rows_per_s']:,.0f}", f"{r['cpu_s']:.2f}", f"{r['rows_per_cpu_s']:,.0f}",
            f"{r['peak_rss_mb']:.1f}", f"{r['wall_over_bound']:.2f}",
        )))
        for name in ("opens", "clicks"):
            st = r["streams"].get(name)
            if st:
                minimum = max(1, math.ceil(st["records"] / 500))
                print(f"    {name}: {st['records']:,} records, {st['requests']} requests "
                      f"(ceil(records / 500) = {minimum}, ratio {st['requests'] / minimum:.3f})")
        for server, n in sorted(r["servers"].items()):
            print(f"    server {server}: {n:,} records")
        if r["detected"]:
            print("    date filter: " + "; ".join(r["detected"]))
    print("req/min: requests / sum over streams of ceil(rows / 500); wall/bound: wall / (ceil(requests / concurrency) x latency)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--single":
        rows, lat, conc, servers = (int(x) for x in sys.argv[2:6])
        print(json.dumps(run_once(rows, lat, conc, servers, sys.argv[6:])))
    else:
        main()
