#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets) for a bounded time with cargo fuzz (libFuzzer and
# AddressSanitizer). Fails on the first crash, leaving the input under fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# The corpus each run grows is kept under the cache (not in the clone), so CI's runs build on
# each other; a target's seed inputs in fuzz/seeds/TARGET/, where there are any, are read too.
# Needs cargo-fuzz (scripts/setup-tests.sh installs it) and a nightly toolchain; without one,
# the stable toolchain is told to accept the nightly flags (RUSTC_BOOTSTRAP=1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
seconds=${1:-60}
shift || true
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$NN_CACHE/fuzz-target}
FUZZ_CORPUS=${FUZZ_CORPUS:-$NN_CACHE/fuzz-corpus}

if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  echo "[fuzz] no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list)
fi
build_log=$(mktemp)
if ! "${fuzz[@]}" build --target-dir "$FUZZ_TARGET_DIR" >"$build_log" 2>&1; then
  cat "$build_log"
  exit 1
fi
rm -f "$build_log"

failed=0
for t in "${targets[@]}"; do
  corpus=$FUZZ_CORPUS/$t
  mkdir -p "$corpus"
  # libFuzzer reads every folder given and writes new inputs to the first.
  corpora=("$corpus")
  [ ! -d "$ROOT/fuzz/seeds/$t" ] || corpora+=("$ROOT/fuzz/seeds/$t")
  log=$(mktemp)
  started=$(date +%s)
  # -rss_limit_mb: a target that allocates without bound fails instead of swapping.
  if "${fuzz[@]}" run --target-dir "$FUZZ_TARGET_DIR" "$t" "${corpora[@]}" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$log")
    echo "fuzz $t: ${runs:-?} runs in $(( $(date +%s) - started )) s, no crash (corpus: $(ls "$corpus" | wc -l) inputs)"
  else
    failed=$((failed + 1))
    grep -E "panicked|ERROR|SUMMARY|artifact" "$log" | head -20 || true
    echo "fuzz $t: CRASH (input under fuzz/artifacts/$t; replay: ${fuzz[*]} run $t fuzz/artifacts/$t/<file>)"
  fi
  rm -f "$log"
done
echo "fuzz result: ${#targets[@]} targets, $failed crashed"
[ "$failed" -eq 0 ]
