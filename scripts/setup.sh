#!/usr/bin/env bash
# What building and running the plugin needs, on a fresh Debian/Ubuntu machine (the tests'
# own tools come from scripts/setup-tests.sh). Idempotent: each step is skipped when already
# done.
#   - build tools for llama.cpp (cmake, clang/libclang for bindgen, a C++ compiler)
#   - the wasm32-wasip1 Rust target for the guests
#   - WasmEdge 0.14.1 (scripts/install-wasmedge.sh)
#   - the test models (scripts/fetch-models.sh; arguments pick some)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[setup] $*" >&2; }

PKGS=(build-essential cmake clang libclang-dev pkg-config patchelf unzip ca-certificates python3-pip python3-venv libfontconfig1-dev libfreetype-dev fonts-dejavu-core)
apt_install setup -- "${PKGS[@]}"

command -v cargo >/dev/null || { log "Rust is needed: install it with rustup (https://rustup.rs)"; exit 1; }
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  log "adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

bash "$ROOT/scripts/install-wasmedge.sh"
bash "$ROOT/scripts/fetch-models.sh" "$@"
