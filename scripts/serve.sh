#!/usr/bin/env bash
# Set up, build, and start the server guest on the test models: SmolLM2 answers chats (and
# embeddings), Whisper tiny.en transcribes. Open http://localhost:8080/ for the page, or point
# an OpenAI client at http://localhost:8080/v1.
#   scripts/serve.sh [server flags...]      (e.g. --port 9000; see server.wasm --help)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/setup.sh" smollm2 whisper
bash "$ROOT/scripts/build.sh"
cd "$ROOT"
# Compiled ahead of time (once, cached): the server's own code runs natively, not in
# WasmEdge's interpreter (measured: about 1.4 times the requests per second with 8 clients).
server=$(aot "$GUEST_DIR/server.wasm")
set -x
exec env WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. \
  --nn-preload chat:GGML:AUTO:test-models/SmolLM2-135M-Instruct.Q4_1.gguf \
  --nn-preload asr:Whisper:AUTO:test-models/ggml-tiny.en.bin \
  "$server" --chat chat --embed chat --asr asr "$@"
