#!/usr/bin/env bash
# The README's picture of the server's page (docs/page.png): the server on SmolLM2 and Whisper
# tiny.en, and headless Chromium asking it a typed question and a spoken one
# (tests/server/browser.py, the page test's script, here saving what it shows).
#   scripts/page-screenshot.sh [OUT.png]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/setup.sh" smollm2 whisper
bash "$ROOT/scripts/setup-tests.sh"
bash "$ROOT/scripts/build.sh"
cd "$ROOT"
out=$(realpath -m "${1:-docs/page.png}")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. \
  --nn-preload chat:GGML:AUTO:test-models/SmolLM2-135M-Instruct.Q4_1.gguf \
  --nn-preload asr:Whisper:AUTO:test-models/ggml-tiny.en.bin \
  "$GUEST_DIR/server.wasm" --host 127.0.0.1 --port "$port" --chat chat --asr asr &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
mkdir -p "$(dirname "$out")"
"$NN_CACHE/venv-clients/bin/python" tests/server/browser.py "http://127.0.0.1:$port/" \
  test-models/speech/paris.wav test-models/tiny/picture-a.png "$NN_CACHE" "$out"
