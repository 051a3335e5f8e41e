#!/usr/bin/env bash
# Quickstart: build the connector, start the bundled fake Postmark server, run a real sync
# against it with both protocols, and show what came out. No Postmark account needed.
# Output files land in ./out (config, Airbyte messages, Singer messages).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building (release)"
cargo build --release --locked --quiet

mkdir -p out
rm -f out/fake.addr
target/release/fake-postmark --port 0 --outbound 25000 --inbound 500 --bounces 400 >out/fake.addr 2>out/fake.log &
fake_pid=$!
trap 'kill "$fake_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q 'http://' out/fake.addr 2>/dev/null && break
  sleep 0.1
done
url=$(grep -o 'http://[^ ]*' out/fake.addr)
echo "== fake Postmark listening on $url (25,000 outbound messages over the last 45 days)"

cat >out/config.json <<JSON
{"server_token": "fake-server-token", "base_url": "$url"}
JSON

echo "== Airbyte: check"
target/release/source-postmark check --config out/config.json

echo "== Airbyte: read all five streams -> out/airbyte.jsonl"
time target/release/source-postmark read --config out/config.json \
  --catalog catalogs/configured_catalog.json >out/airbyte.jsonl
echo "records per stream:"
grep '^{"type":"RECORD"' out/airbyte.jsonl | grep -o '"stream":"[a-z_]*"' | sort | uniq -c
echo "progress logs:"
grep '"type":"LOG"' out/airbyte.jsonl | sed 's/.*"message":"\(.*\)"}}$/  \1/' | grep -E 'finished|starting'
echo "one outbound record:"
grep -m1 '"stream":"messages_outbound","data"' out/airbyte.jsonl | cut -c1-400
echo "final states:"
grep '"type":"STATE"' out/airbyte.jsonl | grep -v in_progress | cut -c1-200

echo "== Singer: sync -> out/singer.jsonl (logs on stderr)"
target/release/source-postmark --config out/config.json >out/singer.jsonl 2>out/singer.log
echo "message types:"
grep -o '^{"type":"[A-Z]*"' out/singer.jsonl | sort | uniq -c
echo "last STATE (what Meltano stores):"
grep '^{"type":"STATE"' out/singer.jsonl | tail -1
