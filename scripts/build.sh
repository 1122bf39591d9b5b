#!/usr/bin/env bash
# Build the plugin and the guests (release), and put the plugin alone in $PLUGIN_DIR.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[build] $*" >&2; }

log "plugin and its Whisper runtime (the first build compiles llama.cpp and whisper.cpp: several minutes)"
( cd "$ROOT" && cargo build --release --locked -p wasmedge-nn-plugin -p wasmedge-nn-whisper )
mkdir -p "$PLUGIN_DIR"
# install FILE NAME: replace, never overwrite in place: a running wasmedge has the old file
# mapped, and truncating it under that process kills it (SIGBUS).
install_lib() {
  cp "$CARGO_TARGET_DIR/release/$1" "$PLUGIN_DIR/.$2.new"
  mv -f "$PLUGIN_DIR/.$2.new" "$PLUGIN_DIR/$2"
}
install_lib libwasmedge_nn_plugin.so libwasmedge_nn_plugin.so
# The Whisper runtime goes beside the plugin under a name WasmEdge does not take for a
# plugin (it loads every *.so in its plugin folders); the suffix is the runtime's ABI version.
install_lib libwasmedge_nn_whisper.so "$WHISPER_LIB"
log "guests"
( cd "$ROOT/guest-examples" && cargo build --release --locked )
( cd "$ROOT/tests/guests" && cargo build --release --locked )
log "plugin: $PLUGIN_DIR/libwasmedge_nn_plugin.so (+ $WHISPER_LIB); guests: $GUEST_DIR"
