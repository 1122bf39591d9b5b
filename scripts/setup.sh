#!/usr/bin/env bash
# Everything the build and the tests need, on a fresh Debian/Ubuntu machine. Idempotent:
# each step is skipped when already done.
#   - build tools for llama.cpp (cmake, clang/libclang for bindgen, a C++ compiler)
#   - the wasm32-wasip1 Rust target for the guests
#   - cargo-fuzz, for the fuzz targets (scripts/fuzz.sh)
#   - WasmEdge 0.14.1, and 0.17.1 for the tests that run the same plugin on both
#     (scripts/install-wasmedge.sh)
#   - the test models (scripts/fetch-models.sh)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[setup] $*" >&2; }

PKGS=(build-essential cmake clang libclang-dev pkg-config patchelf unzip ca-certificates python3-pip python3-venv libfontconfig1-dev libfreetype-dev fonts-dejavu-core)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { log "Rust is needed: install it with rustup (https://rustup.rs)"; exit 1; }
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  log "adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  # Its own target folder, so the project's build cache is not disturbed.
  CARGO_TARGET_DIR="$NN_CACHE/cargo-install" cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

bash "$ROOT/scripts/install-wasmedge.sh"
bash "$ROOT/scripts/install-wasmedge.sh" 0.17.1
bash "$ROOT/scripts/fetch-models.sh" "$@"
