#!/usr/bin/env bash
# What only the tests need, beside scripts/setup.sh's build set-up. Idempotent.
#   - cargo-fuzz, for the fuzz targets (scripts/fuzz.sh)
#   - WasmEdge 0.17.1, for the tests that run the same plugin on both versions
#   - the real clients the server guest is judged by: OpenAI's Python client, and Selenium
#     driving Debian's Chromium and ChromeDriver (one package version, so they always match),
#     in a private venv ($NN_CACHE/venv-clients)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[setup-tests] $*" >&2; }

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  # Its own target folder, so the project's build cache is not disturbed.
  CARGO_TARGET_DIR="$NN_CACHE/cargo-install" cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

bash "$ROOT/scripts/install-wasmedge.sh" 0.17.1

PKGS=(chromium chromium-driver python3-venv)
apt_install setup-tests --no-install-recommends -- "${PKGS[@]}"

OPENAI_VERSION=3.63.0
SELENIUM_VERSION=4.50.0
venv=$NN_CACHE/venv-clients
if ! "$venv/bin/python" -c "import openai, selenium, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION' or selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null; then
  log "creating a python venv with openai $OPENAI_VERSION and selenium $SELENIUM_VERSION in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" "selenium==$SELENIUM_VERSION" >&2
fi
