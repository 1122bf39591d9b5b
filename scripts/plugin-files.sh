#!/usr/bin/env bash
# Build the plugin and its Whisper runtime (release; the runtime once per CPU level), and put
# them with their companion libraries into DEST (scripts/build.sh: $PLUGIN_DIR; the
# Dockerfile: the image's plugin folder):
#
#   DEST/libwasmedge_nn_plugin.so
#   DEST/wasmedge-nn/   llama.cpp's and ggml's shared libraries under their sonames
#                       (libllama.so.0, libllama-common.so.0, libmtmd.so.0, libggml.so.0,
#                       libggml-base.so.0), ggml's
#                       CPU variants (libggml-cpu-<cpu>.so.0: the plugin loads the best one
#                       for the machine), the Whisper runtime for each CPU level
#                       (libwasmedge_nn_whisper-<level>.so.N: the plugin opens the best one),
#                       rpc-server (ggml's RPC worker: --nn-rpc-servers)
#
# No companion's name ends in .so: WasmEdge opens every *.so under its plugin path as a
# plugin. Files are replaced, never overwritten in place: a running wasmedge has the old
# ones mapped, and truncating one under that process kills it (SIGBUS).
#   scripts/plugin-files.sh DEST [--strip]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
dest=${1:?usage: $0 DEST [--strip]}
release=$CARGO_TARGET_DIR/release
drop_dangling_lib_links
# The build, and where llama-cpp-sys-2 installed llama.cpp for it (llama_out_dir).
messages=$(mktemp); trap 'rm -f "$messages"' EXIT
( cd "$ROOT" && cargo build --release --locked -p wasmedge-nn-plugin \
    --message-format=json-render-diagnostics > "$messages" )
levels=$(whisper_levels | cut -d' ' -f1)
for level in $levels; do
  echo "[plugin-files] Whisper runtime for $level" >&2
  build_whisper "$level" -p wasmedge-nn-whisper
done
llama_out=$(llama_out_dir < "$messages")
[ -d "$llama_out/backends" ] || { echo "llama.cpp's build (with dynamic backends) not found in cargo's output" >&2; exit 1; }
# Which build of llama.cpp the plugin has (scripts/test.sh warns if the tests use another).
echo "$llama_out" > "$CARGO_TARGET_DIR/plugin-llama-build"

mkdir -p "$dest"
new="$dest/.$COMPANIONS.new"
rm -rf "$new"; mkdir -p "$new"
for lib in llama llama-common mtmd ggml ggml-base; do cp -L "$llama_out/lib/lib$lib.so.0" "$new/"; done
for f in "$llama_out"/backends/libggml-*.so; do cp "$f" "$new/$(basename "$f").0"; done
# The suffix of the Whisper runtime's names is the version of its interface with the plugin.
for level in $levels; do
  cp "$CARGO_TARGET_DIR/whisper-$level/release/libwasmedge_nn_whisper.so" "$new/libwasmedge_nn_whisper-$level.so.$WHISPER_ABI"
done
# ggml's RPC worker, from the same build (it loads the CPU backends beside it).
cp "$release/rpc-server" "$new/rpc-server"
cp "$release/libwasmedge_nn_plugin.so" "$dest/.libwasmedge_nn_plugin.so.new"
if [ "${2:-}" = --strip ]; then strip --strip-unneeded "$new"/* "$dest/.libwasmedge_nn_plugin.so.new"; fi
replace_dir "$new" "$dest/$COMPANIONS"
mv -f "$dest/.libwasmedge_nn_plugin.so.new" "$dest/libwasmedge_nn_plugin.so"
# (Before the companion folder, the Whisper runtime lay beside the plugin.)
rm -f "$dest"/libwasmedge_nn_whisper.so.*
