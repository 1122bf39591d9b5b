#!/usr/bin/env bash
# Install the plugin into an existing WasmEdge (0.14.x-0.17.x), or take it out again.
#
#   scripts/install-plugin.sh                  install (building the plugin first if needed)
#   scripts/install-plugin.sh --uninstall      remove it (and bring back WasmEdge's own
#                                              WASI-NN plugin if this script set it aside)
#   scripts/install-plugin.sh --check          only verify the installation
#
# Which WasmEdge: $WASMEDGE_DIR (a prefix holding bin/wasmedge), else the `wasmedge` on PATH,
# else ~/.wasmedge, /usr/local, /usr, else the project's own ($WASMEDGE_PREFIX). The plugin
# files come from $PLUGIN_FILES (a folder holding libwasmedge_nn_plugin.so and its companion
# folder wasmedge-nn/: llama.cpp's and ggml's libraries, ggml's CPU variants, the Whisper
# runtime), else from this checkout's build ($PLUGIN_DIR).
#
# They go where that WasmEdge looks for plugins without WASMEDGE_PLUGIN_PATH: next to its
# library, in LIBDIR/wasmedge when the library lives under /usr or /lib (Debian's package,
# /usr/local), else in LIBDIR/../plugin (~/.wasmedge/plugin, private prefixes). WasmEdge's own
# WASI-NN plugin there registers the same module, so it is renamed aside (*.so.off) while
# this one is installed. Verified afterwards: `wasmedge --help` lists --nn-preload, and a
# 175-byte guest calling load_by_name gets the plugin's answer (NotFound for a name nobody
# preloaded: scripts/nn-check.md).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[install-plugin] $*" >&2; }
die() { log "$*"; exit 1; }

mode=install
case "${1:-}" in
  "") ;;
  --uninstall) mode=uninstall ;;
  --check) mode=check ;;
  *) die "usage: $0 [--uninstall | --check]" ;;
esac

# The WasmEdge to install into: its bin/wasmedge.
find_wasmedge() {
  local d w
  if [ -n "${WASMEDGE_DIR:-}" ]; then
    [ -x "$WASMEDGE_DIR/bin/wasmedge" ] || die "WASMEDGE_DIR=$WASMEDGE_DIR has no bin/wasmedge"
    echo "$WASMEDGE_DIR/bin/wasmedge"; return
  fi
  if w=$(command -v wasmedge 2>/dev/null); then echo "$w"; return; fi
  for d in "$HOME/.wasmedge" /usr/local /usr "$WASMEDGE_PREFIX"; do
    if [ -x "$d/bin/wasmedge" ]; then echo "$d/bin/wasmedge"; return; fi
  done
  die "no WasmEdge found: install one (or run scripts/install-wasmedge.sh), or set WASMEDGE_DIR to its prefix"
}

WASMEDGE=$(find_wasmedge)
prefix=$(cd "$(dirname "$(readlink -f "$WASMEDGE")")/.." && pwd)
version=$("$WASMEDGE" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1) \
  || die "$WASMEDGE does not run"
case $version in
  0.14.*|0.15.*|0.16.*|0.17.*) ;;
  *) die "WasmEdge $version at $prefix: the plugin supports 0.14.0 to 0.17.x" ;;
esac

# The library that WasmEdge derives its plugin folder from. The `wasmedge` on PATH may be a
# link (or the project prefix's links) into the real installation: follow it.
lib=$(find "$prefix"/lib*/ -maxdepth 2 -name 'libwasmedge.so*' 2>/dev/null | sort | head -n1)
[ -n "$lib" ] || die "no libwasmedge.so under $prefix/lib*: is $WASMEDGE a complete installation?"
lib=$(readlink -f "$lib")
case $lib in
  /usr/*|/lib/*) plugins=$(dirname "$lib")/wasmedge ;;
  *) plugins=$(dirname "$(dirname "$lib")")/plugin ;;
esac

PLUGIN=libwasmedge_nn_plugin.so
OFFICIAL=libwasmedgePluginWasiNN.so

# The verifying guest (scripts/nn-check.md): load_by_name of a name nobody preloaded, exiting
# with the code it got; without a WASI-NN plugin it cannot even start.
CHECK_WASM=$(cat "$ROOT/scripts/nn-check.wasm.hex")
NOT_FOUND=8

# 0 when the WasmEdge answers with this plugin without WASMEDGE_PLUGIN_PATH.
check() {
  local tmp help rc=0
  # (Read whole: `| grep -q` would quit at the first match, and under pipefail the SIGPIPE
  # of a wasmedge still writing its help fails the check by chance.)
  help=$(env -u WASMEDGE_PLUGIN_PATH "$WASMEDGE" --help 2>&1) || true
  [[ $help == *--nn-preload* ]] || return 1
  tmp=$(mktemp -d)
  # shellcheck disable=SC2059 # the format is the module's bytes, as \xHH escapes
  printf "$(sed 's/../\\x&/g' <<< "$CHECK_WASM")" > "$tmp/check.wasm"
  env -u WASMEDGE_PLUGIN_PATH "$WASMEDGE" "$tmp/check.wasm" >/dev/null 2>&1 || rc=$?
  rm -rf "$tmp"
  [ "$rc" = "$NOT_FOUND" ]
}

writable() { mkdir -p "$plugins" 2>/dev/null && [ -w "$plugins" ]; }

case $mode in
  check)
    if check; then log "WasmEdge $version at $prefix runs the plugin from $plugins"; exit 0; fi
    die "WasmEdge $version at $prefix does not run the plugin from $plugins" ;;
  uninstall)
    writable || die "cannot write $plugins: run as its owner (e.g. with sudo)"
    # (The Whisper runtime lay beside the plugin before the companion folder existed.)
    rm -rf "${plugins:?}/$PLUGIN" "${plugins:?}/$COMPANIONS" "${plugins:?}"/libwasmedge_nn_whisper.so.*
    if [ -f "$plugins/$OFFICIAL.off" ]; then
      mv -f "$plugins/$OFFICIAL.off" "$plugins/$OFFICIAL"
      log "WasmEdge's own WASI-NN plugin is back in place"
    fi
    log "removed from $plugins"
    exit 0 ;;
esac

src=${PLUGIN_FILES:-$PLUGIN_DIR}
if [ -z "${PLUGIN_FILES:-}" ] && [ ! -f "$src/$PLUGIN" ]; then
  log "building the plugin first"
  bash "$ROOT/scripts/build.sh"
fi
[ -f "$src/$PLUGIN" ] || die "$src/$PLUGIN is missing"
ls "$src/$COMPANIONS"/libggml-cpu-*.so.0 >/dev/null 2>&1 \
  || die "$src/$COMPANIONS/ is missing or incomplete (no libggml-cpu-*.so.0): rebuild with scripts/build.sh"
if ! writable; then
  die "cannot write $plugins: run as its owner (e.g. with sudo), or skip installing and run
  WASMEDGE_PLUGIN_PATH=$src $WASMEDGE ..."
fi
if [ -f "$plugins/$OFFICIAL" ]; then
  mv -f "$plugins/$OFFICIAL" "$plugins/$OFFICIAL.off"
  log "WasmEdge's own WASI-NN plugin registers the same module: set aside as $OFFICIAL.off (--uninstall restores it)"
fi
# Replace, never overwrite in place: a running wasmedge may have the old files mapped.
rm -rf "$plugins/.$COMPANIONS.new"
cp -R "$src/$COMPANIONS" "$plugins/.$COMPANIONS.new"
cp "$src/$PLUGIN" "$plugins/.$PLUGIN.new"
replace_dir "$plugins/.$COMPANIONS.new" "$plugins/$COMPANIONS"
mv -f "$plugins/.$PLUGIN.new" "$plugins/$PLUGIN"
rm -f "$plugins"/libwasmedge_nn_whisper.so.*
if check; then
  log "installed into WasmEdge $version at $prefix ($plugins); no WASMEDGE_PLUGIN_PATH needed"
else
  die "installed into $plugins, but WasmEdge $version does not run it; run with WASMEDGE_NN_LOG=debug for the plugin's log"
fi
