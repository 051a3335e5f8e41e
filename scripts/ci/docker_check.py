#!/usr/bin/env python3
"""Oracles for scripts/ci/docker.sh: checks what the connector image printed.

    docker_check.py spec     OUT                 exactly one SPEC with a connectionSpecification
    docker_check.py check    OUT STATUS          exactly one CONNECTION_STATUS, with STATUS
    docker_check.py discover OUT STREAM...       one CATALOG holding exactly these streams
    docker_check.py read     OUT FAKE_URL STREAM...
        every stream's record keys equal the fake's ground truth (GET /__fake/truth), each
        stream ends COMPLETE and has a final STATE
    docker_check.py prefix   OUT                 a cut-short output: the complete lines are
                                                 valid (the last may be cut mid-line)
    docker_check.py image    INSPECT_JSON VERSION  `podman image inspect` output: the Airbyte
        conventions (user 1000, AIRBYTE_ENTRYPOINT == ENTRYPOINT, labels, /airbyte)

Every mode first checks that each stdout line is one JSON object with a known Airbyte `type`
(the protocol's one-message-per-line rule). Standard library only. Exits 1 with the reason.
"""

import json
import sys
import urllib.request
from collections import Counter

TYPES = {"RECORD", "STATE", "LOG", "SPEC", "CONNECTION_STATUS", "CATALOG", "TRACE", "CONTROL"}
# Primary key of each stream (as in tests/it/support.rs `key_of`).
KEYS = {
    "messages_outbound": "MessageID",
    "messages_inbound": "MessageID",
    "bounces": "ID",
    "templates": "TemplateId",
    "message_streams": "ID",
}


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def messages(path, allow_cut_last=False):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    cut = lines.pop()  # "" when the output ends with a newline
    if cut and not allow_cut_last:
        fail(f"{path}: last line has no newline: {cut[:200]!r}")
    out = []
    for n, line in enumerate(lines, 1):
        try:
            msg = json.loads(line)
        except ValueError as e:
            fail(f"{path}:{n}: not JSON ({e}): {line[:200]!r}")
        if not isinstance(msg, dict) or msg.get("type") not in TYPES:
            fail(f"{path}:{n}: not an Airbyte message with a known type: {line[:200]!r}")
        out.append(msg)
    if not out:
        fail(f"{path}: no Airbyte messages")
    return out


def of_type(msgs, t):
    return [m for m in msgs if m["type"] == t]


def one(msgs, t):
    found = of_type(msgs, t)
    if len(found) != 1:
        fail(f"expected exactly one {t}, got {len(found)}")
    return found[0]


def summary(msgs):
    return ", ".join(f"{n} {t}" for t, n in sorted(Counter(m["type"] for m in msgs).items()))


def key_string(v):
    return v if isinstance(v, str) else json.dumps(v)


def check_spec(out):
    msgs = messages(out)
    spec = one(msgs, "SPEC")["spec"]
    if "server_token" not in spec.get("connectionSpecification", {}).get("properties", {}):
        fail("SPEC has no server_token property")
    print(f"spec: {summary(msgs)}")


def check_check(out, status):
    msgs = messages(out)
    got = one(msgs, "CONNECTION_STATUS")["connectionStatus"]["status"]
    if got != status:
        fail(f"CONNECTION_STATUS {got}, expected {status}")
    print(f"check: {got} ({summary(msgs)})")


def check_discover(out, streams):
    msgs = messages(out)
    names = sorted(s["name"] for s in one(msgs, "CATALOG")["catalog"]["streams"])
    if not set(streams) <= set(names):
        fail(f"catalog streams {names}, expected at least {sorted(streams)}")
    print(f"discover: {len(names)} streams ({summary(msgs)})")


def truth(fake_url, stream):
    url = f"{fake_url}/__fake/truth?stream={stream}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        return [line for line in resp.read().decode("utf-8").split("\n") if line]


def check_read(out, fake_url, streams):
    msgs = messages(out)
    got = {s: [] for s in streams}
    for m in of_type(msgs, "RECORD"):
        rec = m["record"]
        if rec["stream"] not in got:
            fail(f"RECORD of an unselected stream {rec['stream']!r}")
        got[rec["stream"]].append(key_string(rec["data"][KEYS[rec["stream"]]]))
    statuses = {}
    for m in of_type(msgs, "TRACE"):
        t = m["trace"]
        if t.get("type") == "ERROR":
            fail(f"TRACE ERROR: {t['error'].get('message')}")
        if t.get("type") == "STREAM_STATUS":
            statuses[t["stream_status"]["stream_descriptor"]["name"]] = t["stream_status"]["status"]
    states = {m["state"]["stream"]["stream_descriptor"]["name"] for m in of_type(msgs, "STATE")}
    for s in streams:
        want = sorted(truth(fake_url, s))
        have = sorted(got[s])
        if have != want:
            missing = sorted(set(want) - set(have))[:5]
            extra = sorted(set(have) - set(want))[:5]
            dups = [k for k, n in Counter(have).items() if n > 1][:5]
            fail(
                f"{s}: {len(have)} records, truth {len(want)} "
                f"(missing e.g. {missing}, extra e.g. {extra}, duplicated e.g. {dups})"
            )
        if not want:
            fail(f"{s}: the fake holds no records, the comparison would prove nothing")
        if statuses.get(s) != "COMPLETE":
            fail(f"{s}: last STREAM_STATUS {statuses.get(s)}, expected COMPLETE")
        if s not in states:
            fail(f"{s}: no STATE")
        print(f"read: {s}: {len(have)} records = truth")
    print(f"read: {summary(msgs)}")


def check_prefix(out):
    msgs = messages(out, allow_cut_last=True)
    print(f"cut-short output: {len(msgs)} complete lines, all valid ({summary(msgs)})")


def check_image(inspect_json, version):
    with open(inspect_json, encoding="utf-8") as f:
        img = json.load(f)[0]
    cfg = img.get("Config", {})
    user = cfg.get("User", "")
    if user.split(":")[0] not in ("1000", "airbyte"):
        fail(f"image user {user!r}, expected uid 1000 (airbyte)")
    entry = cfg.get("Entrypoint") or []
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    if env.get("AIRBYTE_ENTRYPOINT") != " ".join(entry):
        fail(f"AIRBYTE_ENTRYPOINT {env.get('AIRBYTE_ENTRYPOINT')!r} != ENTRYPOINT {entry!r}")
    if not entry or not entry[0].startswith("/"):
        fail(f"ENTRYPOINT {entry!r} is not an absolute path")
    labels = cfg.get("Labels") or {}
    if not labels.get("io.airbyte.name"):
        fail("no io.airbyte.name label")
    if labels.get("io.airbyte.version") != version:
        fail(f"io.airbyte.version {labels.get('io.airbyte.version')!r}, Cargo.toml says {version}")
    if cfg.get("WorkingDir") != "/airbyte":
        fail(f"working directory {cfg.get('WorkingDir')!r}, expected /airbyte")
    print(
        f"image: user {user}, ENTRYPOINT {entry} == AIRBYTE_ENTRYPOINT, "
        f"labels {labels.get('io.airbyte.name')}:{labels.get('io.airbyte.version')}"
    )


def main(argv):
    if len(argv) < 3:
        fail(__doc__)
    mode, path, rest = argv[1], argv[2], argv[3:]
    if mode == "spec":
        check_spec(path)
    elif mode == "check" and len(rest) == 1:
        check_check(path, rest[0])
    elif mode == "discover" and rest:
        check_discover(path, rest)
    elif mode == "read" and len(rest) >= 2:
        check_read(path, rest[0], rest[1:])
    elif mode == "prefix":
        check_prefix(path)
    elif mode == "image" and len(rest) == 1:
        check_image(path, rest[0])
    else:
        fail(f"bad arguments: {argv[1:]}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
