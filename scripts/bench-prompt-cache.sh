#!/usr/bin/env bash
# Prompt-cache benchmark: first token of a fresh wasmedge process whose prompt is ~1,500
# tokens of fixed instructions and a question, without a prompt cache, with an empty one
# and with a warm one (SmolLM2 and Gemma-270M). Writes bench-results/prompt-cache.{md,json}.
# Not a test.   BENCH_RUNS=5 BENCH_THREADS=2 BENCH_PREFIX=1500 scripts/bench-prompt-cache.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT" && drop_dangling_lib_links && cargo bench --locked -p e2e --bench prompt_cache
