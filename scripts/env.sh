# Shared settings for the scripts in this folder; source it, don't run it.
# Everything cached lives outside the clone, so a fresh clone reuses earlier work.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NN_CACHE=${NN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmedge-nn}
WASMEDGE_VERSION=0.14.1
# Where scripts/install-wasmedge.sh puts (or finds) WasmEdge: bin/wasmedge, lib/, include/.
WASMEDGE_PREFIX=${WASMEDGE_PREFIX:-$NN_CACHE/wasmedge-$WASMEDGE_VERSION}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# The plugin is copied alone into this folder: WasmEdge loads every .so it finds under
# WASMEDGE_PLUGIN_PATH, so never point that at target/release.
PLUGIN_DIR=${PLUGIN_DIR:-$CARGO_TARGET_DIR/wasmedge-plugin}
GUEST_DIR=${GUEST_DIR:-$CARGO_TARGET_DIR/wasm32-wasip1/release}
MODELS_DIR=${MODELS_DIR:-$ROOT/test-models}
export NN_CACHE WASMEDGE_PREFIX CARGO_TARGET_DIR PLUGIN_DIR GUEST_DIR MODELS_DIR
