#!/usr/bin/env bash
# Set up, build, and ask SmolLM2 a question through WasmEdge and the plugin.
#   scripts/demo.sh ['Your question']
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/setup.sh" smollm2
bash "$ROOT/scripts/build.sh"
cd "$ROOT"
question=${1:-What is the capital of France?}
set -x
WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. \
  --nn-preload default:GGML:AUTO:test-models/SmolLM2-135M-Instruct.Q4_1.gguf \
  "$GUEST_DIR/chat.wasm" default "$question"
