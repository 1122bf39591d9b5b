#!/usr/bin/env bash
# Build the plugin and the guests (release), and put the plugin alone in $PLUGIN_DIR.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[build] $*" >&2; }

log "plugin (first build compiles llama.cpp: several minutes)"
( cd "$ROOT" && cargo build --release --locked -p wasmedge-nn-plugin )
mkdir -p "$PLUGIN_DIR"
# Replace, never overwrite in place: a running wasmedge has the old file mapped, and
# truncating it under that process kills it (SIGBUS).
cp "$CARGO_TARGET_DIR/release/libwasmedge_nn_plugin.so" "$PLUGIN_DIR/.libwasmedge_nn_plugin.so.new"
mv -f "$PLUGIN_DIR/.libwasmedge_nn_plugin.so.new" "$PLUGIN_DIR/libwasmedge_nn_plugin.so"
log "guests"
( cd "$ROOT/guest-examples" && cargo build --release --locked )
( cd "$ROOT/tests/guests" && cargo build --release --locked )
log "plugin: $PLUGIN_DIR/libwasmedge_nn_plugin.so; guests: $GUEST_DIR"
