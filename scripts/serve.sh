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
set -x
exec env WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. \
  --nn-preload chat:GGML:AUTO:test-models/SmolLM2-135M-Instruct.Q4_1.gguf \
  --nn-preload asr:Whisper:AUTO:test-models/ggml-tiny.en.bin \
  "$GUEST_DIR/server.wasm" --chat chat --embed chat --asr asr "$@"
