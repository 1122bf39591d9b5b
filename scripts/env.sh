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
# For wasmedge-sys (the embedding test): WasmEdge's headers and library.
export WASMEDGE_INCLUDE_DIR=${WASMEDGE_INCLUDE_DIR:-$WASMEDGE_PREFIX/include}
export WASMEDGE_LIB_DIR=${WASMEDGE_LIB_DIR:-$WASMEDGE_PREFIX/lib}
# A program linking the private prefix's libwasmedge (built for Debian 13) runs under that
# prefix's loader; cargo runs test binaries through it.
if [ -x "$WASMEDGE_PREFIX/bin/trixie-run" ]; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=${CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER:-$WASMEDGE_PREFIX/bin/trixie-run}
fi
# The plugin's companion libraries go in this folder beside it (plugin/src/plugin_dir.rs).
COMPANIONS=wasmedge-nn
# The Whisper runtime's version of its interface with the plugin (whisper/abi): the suffix
# of its file names, so a mismatched pair is never picked up.
WHISPER_ABI=$(sed -n 's/^pub const VERSION: u32 = \([0-9]*\);/\1/p' "$ROOT/whisper/abi/src/lib.rs")
# whisper.cpp links its ggml statically, so its CPU code cannot be chosen at run time as
# llama.cpp's is: the Whisper runtime is built once per CPU level, with these ggml options,
# into $CARGO_TARGET_DIR/whisper-<level>, and the plugin opens the best this CPU runs
# (plugin/src/backend/whisper/runtime.rs, cpu_levels: keep the two lists in step).
# One line per level, best last: NAME GGML options.
whisper_levels() {
  case $(uname -m) in
    x86_64)
      echo "x86-64 GGML_NATIVE=OFF GGML_SSE42=OFF GGML_AVX=OFF GGML_AVX2=OFF GGML_BMI2=OFF GGML_FMA=OFF GGML_F16C=OFF"
      echo "x86-64-v3 GGML_NATIVE=OFF"
      echo "x86-64-v4 GGML_NATIVE=OFF GGML_AVX512=ON" ;;
    *) echo "$(uname -m) GGML_NATIVE=OFF" ;;
  esac
}
# The best level this CPU runs (as the plugin chooses it).
whisper_level_here() {
  local flags n=0 f
  [ "$(uname -m)" = x86_64 ] || { uname -m; return; }
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  for f in sse4_2 avx avx2 bmi2 fma f16c; do [[ $flags == *" $f "* ]] && n=$((n + 1)); done
  [ $n = 6 ] || { echo x86-64; return; }
  for f in avx512f avx512cd avx512vl avx512dq avx512bw; do [[ $flags == *" $f "* ]] && n=$((n + 1)); done
  if [ $n = 11 ]; then echo x86-64-v4; else echo x86-64-v3; fi
}
# build_whisper LEVEL CARGO-ARGS...: cargo build --release with that level's ggml options,
# in its own target folder (whisper-rs-sys does not rebuild when they change).
build_whisper() {
  local level=$1 opts; shift
  opts=$(whisper_levels | awk -v l="$level" '$1 == l { $1 = ""; print }')
  [ -n "$opts" ] || { echo "unknown Whisper CPU level $level" >&2; return 1; }
  ( cd "$ROOT" && env $opts CARGO_TARGET_DIR="$CARGO_TARGET_DIR/whisper-$level" \
      cargo build --release --locked "$@" )
}
# The native Whisper reference for the tests and benchmarks: whisper-rs built as the runtime
# the plugin opens here, so the two compute alike.
WHISPER_NATIVE=${WHISPER_NATIVE:-$CARGO_TARGET_DIR/whisper-$(whisper_level_here)/release/whisper-native}
export WHISPER_NATIVE
# Install the Debian packages named that are not installed: apt_install LOG-TAG [APT-OPTION...]
# -- PACKAGE... . "Installed" is dpkg's "install ok installed": `dpkg -s` also succeeds for a
# package removed but not purged (its configuration files left), which has no programs.
apt_install() {
  local tag=$1; shift
  local opts=() p missing=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done; [ $# -gt 0 ] && shift
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "[$tag] installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}
# The Debian mirror apt already uses (DEBIAN_MIRROR overrides), for other releases' packages
# and debootstrap; empty when none is found.
debian_mirror() {
  local m=${DEBIAN_MIRROR:-}
  [ -n "$m" ] || m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "$m"
}
# The llama-cpp-sys-2 crate's own folder (its vendored llama.cpp/ and ggml sources), as
# Cargo.lock pins it.
llama_sys_dir() {
  cargo metadata --format-version 1 --manifest-path "$ROOT/Cargo.toml" --locked \
    | python3 -c 'import json,os,sys; print(os.path.dirname(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="llama-cpp-sys-2")))'
}
# Where llama-cpp-sys-2's build installed llama.cpp: its build script's out_dir, from cargo's
# JSON messages on stdin (the target folder can hold several configurations of it).
llama_out_dir() {
  grep '"reason":"build-script-executed"' | grep -E '[#/]llama-cpp-sys-2[@#]' \
    | sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n1
}
# llama-cpp-sys-2 hard-links the `lib*.so` symlinks of llama.cpp's libraries into the target
# folders, where they dangle (their targets stay in its build folder); when a second
# configuration of it builds (the tests' dependencies unify differently), its build script
# trips over them (it checks with exists(), which follows the link). Remove them first.
drop_dangling_lib_links() {
  local d
  for d in "$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/release/deps" "$CARGO_TARGET_DIR/release/examples"; do
    [ -d "$d" ] && find "$d" -maxdepth 1 -name 'lib*.so' -xtype l -delete
  done
  return 0
}
# replace_dir NEW DIR: put the folder NEW in place of DIR. A running wasmedge may have DIR's
# files mapped: they are moved aside and unlinked, never overwritten (truncating a mapped
# library kills that process with SIGBUS).
replace_dir() {
  rm -rf "$2.old"
  [ ! -e "$2" ] || mv "$2" "$2.old"
  mv "$1" "$2"
  rm -rf "$2.old"
}
# aot WASM: the guest WASM compiled ahead of time by this WasmEdge (native code in a wasm
# file WasmEdge runs as usual), cached under $NN_CACHE/aot by content; prints its path. The
# guest's own code then runs natively instead of in WasmEdge's interpreter: for the server,
# whose JSON, templates and HTTP run per token, that is most of its cost.
aot() {
  local sum out
  sum=$(cat "$1" "$WASMEDGE_PREFIX/bin/wasmedge" | sha256sum | cut -c1-16)
  out=$NN_CACHE/aot/$(basename "$1" .wasm)-$sum.wasm
  if [ ! -f "$out" ]; then
    mkdir -p "$NN_CACHE/aot"
    echo "[aot] compiling $(basename "$1") ahead of time (once; about 30 s for the server on 2 cores)" >&2
    "$WASMEDGE_PREFIX/bin/wasmedge" compile "$1" "$out.tmp" >/dev/null
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}
