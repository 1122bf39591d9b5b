#!/usr/bin/env bash
# RPC benchmark: tokens/s of SmolLM2 and Gemma-270M on this machine alone and with their
# layers on two rpc-server workers over loopback (the protocol's own cost). Writes
# bench-results/rpc.{md,json}. Not a test.   BENCH_RUNS=5 BENCH_TOKENS=128 scripts/bench-rpc.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT" && drop_dangling_lib_links && cargo bench --locked -p e2e --bench rpc
