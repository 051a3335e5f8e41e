#!/usr/bin/env bash
# CI: build the Docker image from the unchanged Dockerfile with podman and run it as Airbyte
# would, against the bundled fake Postmark server:
#   - the image follows Airbyte's conventions (uid 1000, AIRBYTE_ENTRYPOINT == ENTRYPOINT,
#     labels, /airbyte writable) and holds what Airbyte's launchers run (/bin/sh, sleep, touch);
#   - the README's Docker commands run exactly as documented (docs/notes/docker.md, or the
#     README once it carries them): build, spec, check, discover, read, with the config and
#     catalog mounted read-only and the fake reached over the host network;
#   - the records read equal the fake's ground truth for every stream; a wrong token is a
#     FAILED check; the platform's shell wrapper (eval "$AIRBYTE_ENTRYPOINT ...") works;
#   - a closed pipe (`| head`) and SIGTERM end a read promptly and cleanly (no panic).
# Reports the image size and its layers.
#
# No Docker engine or Docker Hub here: ../shared/container/stand-in-base-images.sh (beside
# the repository; SHARED_DIR overrides) makes local stand-ins of the Dockerfile's base image
# and installs podman. Runs as root (podman rootful), as CI does.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t0=$(date +%s)
step_t=$t0
say() {
  local now
  now=$(date +%s)
  echo "docker: [$((now - t0))s, +$((now - step_t))s] $*"
  step_t=$now
}
die() {
  echo "docker: FAIL: $*" >&2
  exit 1
}

SHARED_DIR=${SHARED_DIR:-../shared}
standin="$SHARED_DIR/container/stand-in-base-images.sh"
[ -f "$standin" ] || die "$standin is missing: it makes the base-image stand-ins (set SHARED_DIR to the directory holding container/stand-in-base-images.sh)"

# The image's two base images as the stand-in script wants them: the build stage's, and a
# runtime one. The runtime stage is `FROM scratch` (nothing to pull), so the script's own
# default (the last FROM) does not apply; debian:bookworm-slim is what it would otherwise make.
mapfile -t bases < <(awk 'toupper($1)=="FROM" && $2!="scratch" {print $2}' Dockerfile)
[ ${#bases[@]} -ge 1 ] || die "no base image in Dockerfile"
runtime_base=debian:bookworm-slim
[ ${#bases[@]} -lt 2 ] || runtime_base=${bases[${#bases[@]} - 1]}
bash "$standin" "${bases[0]}" "$runtime_base"
say "stand-ins ready"

P="podman --runtime /usr/sbin/runc"
IMAGE=source-postmark:0.1.0
version=$(awk -F'"' '/^version *=/ {print $2; exit}' Cargo.toml)
run_id="spci-$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/docker-ci.XXXXXX")
fake_pids=()
cleanup() {
  local pid
  for pid in "${fake_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Every container this run started carries the run id in its name.
  $P ps -a --filter "name=$run_id" --format '{{.Names}}' 2>/dev/null | while read -r c; do
    $P rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The documented commands: docs/notes/docker.md until the README carries them. Each command
# below must appear verbatim in it, in its podman form and its docker form (same flags).
doc=docs/notes/docker.md
grep -qF -- "$P build" README.md && doc=README.md
documented() {
  local cmd=$1
  grep -qF -- "$cmd" "$doc" || die "not in $doc as written: $cmd"
  grep -qF -- "docker ${cmd#"$P "}" "$doc" || die "no docker form in $doc of: $cmd"
}
# Runs a documented command as written (from $2's directory), stdout to $3, bounded by $4 s.
run_documented() {
  local cmd=$1 dir=$2 out=$3 secs=$4 rc=0
  documented "$cmd"
  (cd "$dir" && timeout --kill-after=10 "$secs" bash -c "$cmd") >"$out" 2>"$out.err" || rc=$?
  if grep -q 'panicked' "$out.err"; then cat "$out.err" >&2; die "panic in: $cmd"; fi
  [ "$rc" -eq 0 ] || { tail -n 20 "$out.err" >&2; die "exit $rc: $cmd"; }
}

# -- build ------------------------------------------------------------------------------------
build_cmd="$P build --network=host -t $IMAGE ."
documented "$build_cmd"
timeout 3000 bash -c "$build_cmd" >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "image build failed: $build_cmd"; }
say "built $IMAGE: $build_cmd"

# -- the image's configuration and contents ---------------------------------------------------
$P image inspect "$IMAGE" >"$work/inspect.json"
python3 scripts/ci/docker_check.py image "$work/inspect.json" "$version"
ids=$(timeout 60 $P run --rm --entrypoint id "$IMAGE")
[ "$ids" = "uid=1000(airbyte) gid=1000(airbyte) groups=1000(airbyte)" ] || die "runs as '$ids', expected uid 1000 (airbyte)"
echo "docker: runs as: $ids"
# What Airbyte's launchers run around the connector in its container (airbyte-platform
# ContainerCommandFactory: sh, sleep, kill, echo; older main.sh: touch), and a writable /airbyte.
timeout 60 $P run --rm --entrypoint /bin/sh "$IMAGE" -c \
  'set -e; for t in sleep touch kill cat mkdir; do command -v "$t" >/dev/null; done; sleep 0; touch /airbyte/.w; rm /airbyte/.w; echo "$AIRBYTE_ENTRYPOINT"' \
  >"$work/shell.out" || die "the image lacks /bin/sh, a utility Airbyte's wrapper runs, or a writable /airbyte"
[ "$(cat "$work/shell.out")" = /airbyte/bin/source-postmark ] || die "AIRBYTE_ENTRYPOINT in a shell: $(cat "$work/shell.out")"
say "image: /bin/sh, sleep, touch, kill present; /airbyte writable by uid 1000"

# -- the fake Postmark server on 127.0.0.1 ----------------------------------------------------
# The dev-profile fake reuses what `cargo test` just built (dependencies are optimized in dev).
cargo build --locked --quiet --bin fake-postmark
start_fake() { # $1 = name, rest = fake arguments; sets fake_url
  local log="$work/fake-$1.addr"
  shift
  target/debug/fake-postmark --port 0 "$@" >"$log" 2>"$log.err" &
  fake_pids+=($!)
  for _ in $(seq 100); do
    grep -q 'http://' "$log" 2>/dev/null && break
    sleep 0.1
  done
  fake_url=$(grep -o 'http://[^ ]*' "$log") || die "the fake did not start: $(cat "$log.err")"
  fake_url=${fake_url%/}
}
# Real time (the connector in the container has no --now); its data spans the last 30 days,
# well inside a first sync's default 45 days.
start_fake main --days 30
main_url=$fake_url
say "fake Postmark on $main_url"

# The documented layout: config.json and catalog.json in ./airbyte, mounted at /data (ro).
mkdir -p "$work/airbyte"
printf '{"server_token": "fake-server-token", "base_url": "%s"}\n' "$main_url" >"$work/airbyte/config.json"
# The five streams with single-field keys, taken from the ready-made configured catalog: the
# container's records are compared key by key with the fake's truth (the other streams are
# compared with the truth by the integration tests through the same binary).
core='messages_outbound messages_inbound bounces templates message_streams'
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["streams"]=[s for s in c["streams"] if s["stream"]["name"] in sys.argv[3].split()]; json.dump(c, open(sys.argv[2], "w"))' \
  catalogs/configured_catalog.json "$work/airbyte/catalog.json" "$core"
chmod -R a+rX "$work"
mapfile -t streams < <(python3 -c 'import json,sys; [print(s["stream"]["name"]) for s in json.load(open(sys.argv[1]))["streams"]]' "$work/airbyte/catalog.json")
[ ${#streams[@]} -eq 5 ] || die "the catalog for the container selects ${#streams[@]} streams, expected 5"

# -- the documented commands, as written ------------------------------------------------------
run_args="--rm --init --network=host -v \"\$PWD/airbyte:/data:ro\" $IMAGE"
run_documented "$P run --rm $IMAGE spec" "$work" "$work/spec.jsonl" 60
python3 scripts/ci/docker_check.py spec "$work/spec.jsonl"
run_documented "$P run $run_args check --config /data/config.json" "$work" "$work/check.jsonl" 120
python3 scripts/ci/docker_check.py check "$work/check.jsonl" SUCCEEDED
run_documented "$P run $run_args discover --config /data/config.json" "$work" "$work/discover.jsonl" 120
python3 scripts/ci/docker_check.py discover "$work/discover.jsonl" "${streams[@]}"
run_documented "$P run $run_args read --config /data/config.json --catalog /data/catalog.json" "$work" "$work/read.jsonl" 600
python3 scripts/ci/docker_check.py read "$work/read.jsonl" "$main_url" "${streams[@]}"
say "documented commands (from $doc): spec, check, discover, read; records equal the fake's truth"

# -- a wrong token: check says FAILED (exit 0) and never prints the token ---------------------
mkdir -p "$work/bad"
printf '{"server_token": "wrong-token-b7f3", "base_url": "%s"}\n' "$main_url" >"$work/bad/config.json"
chmod -R a+rX "$work/bad"
timeout 120 $P run --rm --init --network=host -v "$work/bad:/data:ro" "$IMAGE" check --config /data/config.json >"$work/bad.jsonl" 2>&1 ||
  die "check with a wrong token exited non-zero"
python3 scripts/ci/docker_check.py check "$work/bad.jsonl" FAILED
! grep -q 'wrong-token-b7f3' "$work/bad.jsonl" || die "the token appeared in the output"

# -- as Airbyte on Kubernetes runs it: sh -c 'eval "$AIRBYTE_ENTRYPOINT ..."', localhost ------
# (the launcher's wrapper: background child, a sleep loop watching for a marker, wait, exit
# code to a file; `localhost` also exercises name resolution in the scratch-based image)
local_url=${main_url/127.0.0.1/localhost}
printf '{"server_token": "fake-server-token", "base_url": "%s"}\n' "$local_url" >"$work/airbyte/local.json"
chmod a+r "$work/airbyte/local.json"
timeout 300 $P run --rm --network=host -v "$work/airbyte:/source:ro" --entrypoint /bin/sh "$IMAGE" -c '
  cd /tmp
  (eval "$AIRBYTE_ENTRYPOINT read --config /source/local.json --catalog /source/catalog.json" 2>/tmp/stderr >/tmp/stdout) &
  CHILD_PID=$!
  (while true; do if [ -f /tmp/TERMINATED ]; then kill $CHILD_PID; exit 0; fi; sleep 1; done) &
  wait $CHILD_PID
  EXIT_CODE=$?
  echo $EXIT_CODE >/tmp/exitCode.txt
  touch /tmp/TERMINATED
  cat /tmp/stdout
  cat /tmp/stderr >&2
  exit $EXIT_CODE' >"$work/wrapped.jsonl" 2>"$work/wrapped.err" || { tail -n 20 "$work/wrapped.err" >&2; die "read under the platform's shell wrapper failed"; }
! grep -q panicked "$work/wrapped.err" || die "panic under the shell wrapper"
python3 scripts/ci/docker_check.py read "$work/wrapped.jsonl" "$main_url" "${streams[@]}"
say "shell wrapper (eval \"\$AIRBYTE_ENTRYPOINT read ...\") via localhost: records equal the truth"

# -- a closed pipe ----------------------------------------------------------------------------
# Inside the container (the connector's own stdout is the pipe; `head` leaves after 5 lines):
# the connector must end at once with status 0 and no panic.
timeout 120 $P run --rm --network=host -v "$work/airbyte:/data:ro" --entrypoint /bin/sh "$IMAGE" -c '
  { /airbyte/bin/source-postmark read --config /data/config.json --catalog /data/catalog.json 2>/tmp/err; echo $? >/tmp/rc; } | head -n 5 >/dev/null
  echo "rc=$(cat /tmp/rc)"; cat /tmp/err' >"$work/pipe-in.out" 2>&1 || die "closed pipe inside the container: $(cat "$work/pipe-in.out")"
grep -q '^rc=0$' "$work/pipe-in.out" || die "closed pipe inside the container: $(head -c 2000 "$work/pipe-in.out")"
! grep -q panicked "$work/pipe-in.out" || die "panic on a closed pipe: $(cat "$work/pipe-in.out")"
# Outside (`podman run ... | head`): podman stops, and the container does not linger.
set +e
timeout 120 $P run --rm --init --name "$run_id-pipe" --network=host -v "$work/airbyte:/data:ro" "$IMAGE" \
  read --config /data/config.json --catalog /data/catalog.json 2>"$work/pipe-out.err" | head -n 5 >"$work/pipe-out.jsonl"
statuses=("${PIPESTATUS[@]}")
set -e
[ "${statuses[0]}" -ne 124 ] || die "podman run | head -n 5 hung until the timeout"
python3 scripts/ci/docker_check.py prefix "$work/pipe-out.jsonl"
! grep -q panicked "$work/pipe-out.err" || die "panic on a closed pipe: $(cat "$work/pipe-out.err")"
for _ in $(seq 60); do
  [ -z "$($P ps -a --filter "name=$run_id-pipe" --format '{{.Names}}')" ] && break
  sleep 1
done
[ -z "$($P ps -a --filter "name=$run_id-pipe" --format '{{.Names}}')" ] || die "the container of 'podman run | head' still exists after 60 s"
say "closed pipe: status 0 inside the container, podman exits ${statuses[0]} outside, container gone, no panic"

# -- SIGTERM mid-read -------------------------------------------------------------------------
# A slow fake (1 s a request, 20,000 messages) keeps the read busy; once records flow,
# `podman kill -s TERM` (what `docker stop` sends first). With --init (as Airbyte runs containers) the signal reaches
# the connector, which must stop at once: no panic, every line it wrote whole.
start_fake slow --days 30 --outbound 20000 --latency-ms 1000
mkdir -p "$work/slow"
printf '{"server_token": "fake-server-token", "base_url": "%s"}\n' "$fake_url" >"$work/slow/config.json"
cp catalogs/configured_catalog.json "$work/slow/catalog.json"
chmod -R a+rX "$work/slow"
timeout 300 $P run --rm --init --name "$run_id-term" --network=host -v "$work/slow:/data:ro" "$IMAGE" \
  read --config /data/config.json --catalog /data/catalog.json >"$work/term.jsonl" 2>"$work/term.err" &
term_pid=$!
for _ in $(seq 600); do
  grep -q '"type":"RECORD"' "$work/term.jsonl" 2>/dev/null && break
  sleep 0.1
done
grep -q '"type":"RECORD"' "$work/term.jsonl" || die "the slow read sent no record within 60 s"
$P kill --signal TERM "$run_id-term" >/dev/null
killed_at=$(date +%s%N)
set +e
wait "$term_pid"
term_rc=$?
set -e
stop_ms=$((($(date +%s%N) - killed_at) / 1000000))
[ "$term_rc" -ne 124 ] || die "the read ignored SIGTERM until the timeout"
[ "$term_rc" -ne 0 ] || die "the read finished before SIGTERM arrived (nothing was tested)"
[ "$stop_ms" -lt 5000 ] || die "the read took ${stop_ms} ms to stop after SIGTERM"
! grep -q panicked "$work/term.err" || die "panic on SIGTERM: $(cat "$work/term.err")"
python3 scripts/ci/docker_check.py prefix "$work/term.jsonl"
say "SIGTERM mid-read: stopped in ${stop_ms} ms (exit $term_rc), no panic"

# -- size -------------------------------------------------------------------------------------
size=$($P image inspect --format '{{.Size}}' "$IMAGE")
binary=$($P run --rm --entrypoint /bin/sh "$IMAGE" -c 'wc -c </airbyte/bin/source-postmark')
echo "docker: image $IMAGE: $size bytes ($((size / 1000)) kB), of which the binary $binary bytes; layers:"
$P history --format '  {{.Size}}	{{.CreatedBy}}' "$IMAGE" | cut -c1-150 | grep -v '^  0 B' || true
[ "$size" -lt 30000000 ] || die "the runtime image grew to $size bytes (expected under 30 MB)"
say "done: every check passed"
