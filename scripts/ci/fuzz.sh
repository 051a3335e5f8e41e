#!/usr/bin/env bash
# CI: a short fuzz run. Builds every cargo-fuzz target in fuzz/ (nightly toolchain, libFuzzer)
# and runs each for a fixed 60,000 inputs with a fixed seed (FUZZ_CI_RUNS, FUZZ_CI_SEED; at most FUZZ_CI_SECONDS, default 90, each) from its seeds and saved findings; fails on
# any crash, property violation or hang. Installs cargo-fuzz when it is missing and fails
# loudly when it cannot: a fuzz step that silently skips would hide regressions.
set -euo pipefail
cd "$(dirname "$0")/../.."

per_target="${FUZZ_CI_SECONDS:-90}"
# A fixed seed: the same machine explores the same inputs run after run, so a red CI is a
# finding to reproduce, not chance (scripts/fuzz.sh explores with random seeds).
seed="${FUZZ_CI_SEED:-1}"
# A fixed number of inputs per target (with the fixed seed: the same inputs every run, on any
# machine speed); FUZZ_CI_SECONDS only caps the time.
runs="${FUZZ_CI_RUNS:-60000}"
cargo_fuzz_version="0.13.2"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing; trying 'rustup toolchain install nightly'" >&2
  rustup toolchain install nightly --profile minimal >&2 \
    || { echo "fuzz: FAILED: no nightly toolchain, cannot fuzz" >&2; exit 1; }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz ${cargo_fuzz_version}"
  cargo install cargo-fuzz --version "${cargo_fuzz_version}" --locked \
    || { echo "fuzz: FAILED: cannot install cargo-fuzz" >&2; exit 1; }
fi

build_start=$SECONDS
echo "== fuzz: building the targets (cargo +nightly fuzz build)"
(cd fuzz && cargo +nightly fuzz build -s none -a)
echo "fuzz: build took $((SECONDS - build_start)) s"

# A fresh corpus each time: a large local corpus (scripts/fuzz.sh) would take longer to load
# than the run itself.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run_start=$SECONDS
for target in page config catalog state windows; do
  dict=()
  if [ "$target" != windows ]; then dict=(-dict=json.dict); fi
  corpus="$scratch/$target"
  mkdir -p "$corpus"
  dirs=("$corpus" "seeds/$target")
  if [ -d "fuzz/regressions/$target" ]; then dirs+=("regressions/$target"); fi
  echo "== fuzz: $target for ${per_target} s"
  if ! (cd fuzz && cargo +nightly fuzz run -s none -a "$target" "${dirs[@]}" -- \
      -runs="$runs" -max_total_time="$per_target" -seed="$seed" -timeout=30 -print_final_stats=1 "${dict[@]}" \
      2>&1 | grep -E -A1 'panicked at|Test unit written|SUMMARY|ERROR|stat::number_of_executed_units|Done [0-9]+ runs'
      exit "${PIPESTATUS[0]}"); then
    echo "fuzz: FAILED: target '$target' found a crash (input saved under fuzz/artifacts/$target/)" >&2
    exit 1
  fi
done
echo "fuzz: all targets passed; fuzzing took $((SECONDS - run_start)) s (build $((run_start - build_start)) s)"
