#!/usr/bin/env bash
# The quickest way from a fresh clone to an answer: set up only what the demo runs, build the
# plugin for this machine, and ask SmolLM2 a question through WasmEdge and the plugin.
#   scripts/demo.sh ['Your question']
#
# The plugin built here is the native build: llama.cpp compiled for this CPU only
# (-C target-cpu=native: GGML_NATIVE) and linked into the plugin, without debug information,
# the Whisper runtime or rpc-server; it runs on this machine (and ones with the same CPU
# features). The portable build, every CPU variant with the best picked at run time, is
# scripts/build.sh's (and the container image's, and scripts/install-plugin.sh's).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[demo] $*" >&2; }
started=$(date +%s)
bash "$ROOT/scripts/setup.sh" smollm2

# Its own target folder: other RUSTFLAGS in the main one would rebuild everything there.
native=$CARGO_TARGET_DIR/native
log "the plugin, with llama.cpp compiled for this CPU (the first build takes a few minutes)"
# llama-cpp-sys-2 passes CMAKE_* variables on to llama.cpp's CMake: its -O2 without -g, and
# native-quick.cmake, from the target folder (CMake's cache keeps the path, and a clone may go).
mkdir -p "$native"
cmp -s "$ROOT/scripts/native-quick.cmake" "$native/native-quick.cmake" \
  || cp "$ROOT/scripts/native-quick.cmake" "$native/native-quick.cmake"
( cd "$ROOT" && CARGO_TARGET_DIR=$native RUSTFLAGS="-C target-cpu=native" \
    CMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" CMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" \
    CMAKE_PROJECT_INCLUDE="$native/native-quick.cmake" \
    cargo build --release --locked -p wasmedge-nn-plugin --lib --no-default-features --features ggml )
plugin_dir=$native/wasmedge-plugin
mkdir -p "$plugin_dir"
# Replaced, never overwritten in place: a running wasmedge may have the old one mapped.
cp "$native/release/libwasmedge_nn_plugin.so" "$plugin_dir/.libwasmedge_nn_plugin.so.new"
mv -f "$plugin_dir/.libwasmedge_nn_plugin.so.new" "$plugin_dir/libwasmedge_nn_plugin.so"
log "the chat guest"
( cd "$ROOT/guest-examples" && cargo build --release --locked -p chat )
log "ready in $(( $(date +%s) - started )) s"

cd "$ROOT"
question=${1:-What is the capital of France?}
set -x
WASMEDGE_PLUGIN_PATH="$plugin_dir" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. \
  --nn-preload default:GGML:AUTO:test-models/SmolLM2-135M-Instruct.Q4_1.gguf \
  "$GUEST_DIR/chat.wasm" default "$question"
