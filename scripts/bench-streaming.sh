#!/usr/bin/env bash
# Streaming benchmark: per-token cost against native llama-cpp-2, run-ahead, time to first
# token per chat turn with and without prefix reuse, fini_single latency. Not a test.
#   BENCH_TOKENS=128 BENCH_THREADS=2 BENCH_RUNS=3 scripts/bench-streaming.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT" && drop_dangling_lib_links && cargo bench --locked -p e2e --bench streaming
