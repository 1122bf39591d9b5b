#!/usr/bin/env bash
# Regenerate the tiny random-weight LLaVA pair and the test pictures committed under
# test-models/tiny/ (only needed to change them). gguf and numpy are pinned and installed
# into a private venv under the cache, from PyPI.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
VENV=$NN_CACHE/venv-gguf
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet gguf==0.17.1 numpy==2.4.6
fi
"$VENV/bin/python" "$ROOT/scripts/make_tiny_llava.py" "$MODELS_DIR/tiny"
