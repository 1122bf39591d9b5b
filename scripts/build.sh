#!/usr/bin/env bash
# Build the plugin and the guests (release), and put the plugin alone (with its companion
# folder: scripts/plugin-files.sh) in $PLUGIN_DIR.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[build] $*" >&2; }

log "plugin and its Whisper runtime (the first build compiles llama.cpp and whisper.cpp: several minutes)"
bash "$ROOT/scripts/plugin-files.sh" "$PLUGIN_DIR"
log "guests"
( cd "$ROOT/guest-examples" && cargo build --release --locked )
( cd "$ROOT/tests/guests" && cargo build --release --locked )
log "plugin: $PLUGIN_DIR/libwasmedge_nn_plugin.so (+ $COMPANIONS/: $(ls "$PLUGIN_DIR/$COMPANIONS" | wc -l) libraries); guests: $GUEST_DIR"
