#!/usr/bin/env bash
# Long fuzz runs: every cargo-fuzz target (or those named) for SECONDS each (default 600),
# one after another, or all at once with FUZZ_PARALLEL=1. A run goes on after a crash
# (libFuzzer fork mode) so that one finding does not end it; every finding is saved under
# fuzz/artifacts/<target>/ and listed at the end. Logs: fuzz/logs/<target>.log. Runs at
# nice 19 so that builds on the same machine win.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_PARALLEL=1 scripts/fuzz.sh 3600
#
# Replay one saved input:  (cd fuzz && cargo +nightly fuzz run -s none -a TARGET FILE)
set -euo pipefail
cd "$(dirname "$0")/.."

per_target="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(page config catalog state windows); fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
(cd fuzz && nice -n 19 cargo +nightly fuzz build -s none -a)
mkdir -p fuzz/logs

run_one() {
  local target=$1 dict=()
  if [ "$target" != windows ]; then dict=(-dict=json.dict); fi
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  local dirs=("corpus/$target" "seeds/$target")
  if [ -d "fuzz/regressions/$target" ]; then dirs+=("regressions/$target"); fi
  local start=$SECONDS
  (cd fuzz && nice -n 19 cargo +nightly fuzz run -s none -a "$target" "${dirs[@]}" -- \
    -max_total_time="$per_target" -timeout=30 -print_final_stats=1 \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 "${dict[@]}") \
    >"fuzz/logs/$target.log" 2>&1 || true
  echo "fuzz: $target ran $((SECONDS - start)) s; $(grep -Eo 'stat::number_of_executed_units: *[0-9]+|#[0-9]+: cov' "fuzz/logs/$target.log" | tail -1)"
}

stamp=$(mktemp)
if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
  for t in "${targets[@]}"; do run_one "$t" & done
  wait
else
  for t in "${targets[@]}"; do run_one "$t"; done
fi

echo "== findings (new files in fuzz/artifacts/)"
found=0
for t in "${targets[@]}"; do
  while IFS= read -r f; do
    found=1
    echo "$t: $f"
    (cd fuzz && cargo +nightly fuzz run -s none -a "$t" "${f#fuzz/}" 2>&1 | grep -A1 -m1 'panicked at' || true)
  done < <(find "fuzz/artifacts/$t" -type f -newer "$stamp" 2>/dev/null)
done
rm -f "$stamp"
[ "$found" = 0 ] && echo "none"
