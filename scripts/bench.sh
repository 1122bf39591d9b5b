#!/usr/bin/env bash
# Speed harness (not a test): SmolLM2 and Whisper tiny.en natively and through WasmEdge
# (guest interpreted and AOT-compiled), medians over runs, ratios wasm/native. Writes
# speed.json, speed.md and speed.png into bench-results/ (or BENCH_OUT).
#   BENCH_RUNS=5 BENCH_TOKENS=128 BENCH_THREADS=2 scripts/bench.sh
# Run it on a quiet machine: ggml's threads spin, so anything else running skews it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT"
build_whisper "$(whisper_level_here)" -p whisper-native
export BENCH_OUT=${BENCH_OUT:-$ROOT/bench-results}
drop_dangling_lib_links
cargo bench --locked -p e2e --bench speed
