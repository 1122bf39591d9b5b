#!/usr/bin/env bash
# Provide WasmEdge (CLI, libwasmedge, C headers) in a prefix. Idempotent.
#
#   scripts/install-wasmedge.sh            the project's WasmEdge ($WASMEDGE_VERSION, 0.14.1)
#                                          at $WASMEDGE_PREFIX
#   scripts/install-wasmedge.sh 0.17.1     another supported version, at
#                                          $NN_CACHE/wasmedge-0.17.1 (the plugin serves both)
#
#  1. a matching install is already at the prefix              -> nothing to do
#  2. a matching install elsewhere ($WASMEDGE_DIR, ~/.wasmedge,
#     /usr/local, /usr)                                        -> the prefix links to it
#  3. the distribution packages it (Debian 13, Ubuntu 24.04+)  -> apt-get install, then 2
#  4. Debian 12: no package, and the upstream release downloads are out of reach. Debian's
#     *binary* packages of a newer release (0.14.1: Debian 13 "trixie", with glibc 2.38+,
#     libstdc++ 14, LLVM 19; 0.17.1: Debian unstable "sid", with LLVM 21) and their library
#     closure are unpacked into a private prefix; bin/wasmedge runs under that prefix's own
#     loader. The system's apt sources are not touched: the index goes to a private apt
#     state dir.
#
# Layout of a private prefix (4):
#   bin/wasmedge        the CLI; PT_INTERP -> trixie/lib/ld-linux, RPATH -> trixie/lib
#   bin/trixie-run      runs a program (e.g. a Rust test linking libwasmedge) under that loader
#   lib/libwasmedge.so* ONLY these. Build scripts put this folder on LD_LIBRARY_PATH for the
#                       compiler; trixie's libc there would crash it.
#   trixie/lib/         the newer release's ld.so, libc, libstdc++, libLLVM... (libLLVM finds
#                       its dependencies via $ORIGIN/../lib: keep this name, also for sid's)
#   include/wasmedge/   C API headers
#   plugin/             WasmEdge's default plugin folder for this prefix
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WANT=${1:-$WASMEDGE_VERSION}
if [ "$WANT" = "$WASMEDGE_VERSION" ]; then PREFIX=$WASMEDGE_PREFIX; else PREFIX=$NN_CACHE/wasmedge-$WANT; fi
log() { echo "[install-wasmedge] $*" >&2; }

version_of() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1; }

# The folder holding libwasmedge.so* under $1 (lib, lib64, lib/<multiarch>), or nothing.
libdir_of() { find "$1"/lib*/ -maxdepth 2 -name 'libwasmedge.so*' -printf '%h\n' 2>/dev/null | head -n1; }

# A complete install under $1: CLI of the wanted version, library and headers.
complete_install() {
  local d=$1
  [ -x "$d/bin/wasmedge" ] && [ -f "$d/include/wasmedge/wasmedge.h" ] || return 1
  [ -n "$(libdir_of "$d")" ] || return 1
  [ "$(version_of "$d/bin/wasmedge")" = "$WANT" ]
}

# Make the prefix a set of links to an existing install under $1.
link_prefix() {
  local d=$1 lib
  lib=$(libdir_of "$d")
  rm -rf "$PREFIX"; mkdir -p "$PREFIX"/{bin,lib,plugin}
  ln -s "$d/bin/wasmedge" "$PREFIX/bin/wasmedge"
  ln -s "$d/include" "$PREFIX/include"
  for f in "$lib"/libwasmedge.so*; do ln -s "$f" "$PREFIX/lib/"; done
  # No private loader needed: trixie-run just runs the program.
  printf '#!/bin/sh\nexec "$@"\n' > "$PREFIX/bin/trixie-run"; chmod +x "$PREFIX/bin/trixie-run"
  log "using the WasmEdge $WANT installed under $d"
}

case $WANT in
  0.14.1)
    SUITE=trixie
    # The runtime closure, listed exactly (~41 MB).
    PKGS="wasmedge libwasmedge0 libwasmedge-dev libc6 libgcc-s1 gcc-14-base
          libstdc++6 libllvm19 libedit2 libffi8 libxml2 libz3-4 libzstd1 zlib1g
          libbsd0 libmd0 libtinfo6 liblzma5 libspdlog1.15 libfmt10" ;;
  0.17.1)
    SUITE=sid
    PKGS="wasmedge libwasmedge0 libwasmedge-dev libc6 libgcc-s1 gcc-16-base
          libstdc++6 libllvm21 libedit2 libffi8 libxml2-16 libz3-4 libzstd1 zlib1g
          libbsd0 libmd0 libtinfo6 liblzma5 libspdlog1.15 libfmt11" ;;
  *) log "WasmEdge $WANT: this script knows 0.14.1 and 0.17.1"; exit 1 ;;
esac

# bin/trixie-run of a private prefix: runs a program under the prefix's loader, with the
# caller's LD_LIBRARY_PATH after the prefix's libraries (cargo puts llama.cpp's shared
# libraries there for the test binaries).
write_trixie_run() {
  cat > "$1/bin/trixie-run" <<'EOS'
#!/bin/sh
# Run a program (e.g. a Rust test binary linking libwasmedge) under this prefix's loader.
d=$(dirname "$(readlink -f "$0")")/..
exec "$d/trixie/lib/ld-linux-x86-64.so.2" --library-path "$d/trixie/lib:$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
EOS
  chmod +x "$1/bin/trixie-run"
}

# 1.
if complete_install "$PREFIX"; then
  # An earlier version of this script wrote a trixie-run that dropped LD_LIBRARY_PATH.
  if [ -x "$PREFIX/trixie/lib/ld-linux-x86-64.so.2" ]; then write_trixie_run "$PREFIX"; fi
  log "WasmEdge $WANT ready at $PREFIX"; exit 0
fi
# 2.
for d in ${WASMEDGE_DIR:-} "$HOME/.wasmedge" /usr/local /usr; do
  if complete_install "$d"; then link_prefix "$d"; exit 0; fi
done

SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
# 3.
if command -v apt-cache >/dev/null; then
  cand=$(apt-cache policy wasmedge 2>/dev/null | awk '/Candidate:/{print $2}')
  if [ -n "$cand" ] && [ "$cand" != "(none)" ] && [[ "$cand" == "$WANT"* ]]; then
    log "installing the distribution's wasmedge $cand"
    $SUDO apt-get install -y -qq wasmedge libwasmedge-dev >/dev/null
    complete_install /usr && { link_prefix /usr; exit 0; }
  fi
fi

# 4.
. /etc/os-release 2>/dev/null || true
if [ "${ID:-}" != debian ]; then
  log "no WasmEdge $WANT found. Install WasmEdge $WANT (CLI, libwasmedge, headers) and set WASMEDGE_DIR to its prefix."
  exit 1
fi
MIRROR=$(debian_mirror)
[ -n "$MIRROR" ] || { log "set DEBIAN_MIRROR to your Debian mirror"; exit 1; }
apt_install install-wasmedge -- patchelf

log "unpacking Debian $SUITE's WasmEdge $WANT into $PREFIX (from $MIRROR)"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" \
         "$work/apt/etc/preferences.d" "$work/debs" "$work/root"
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$MIRROR" "$SUITE" > "$work/apt/etc/newer.sources"
APT_OPTS=(-o Dir::Etc::SourceList="$work/apt/etc/newer.sources" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::Etc::PreferencesParts="$work/apt/etc/preferences.d"
          -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache"
          -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
apt-get "${APT_OPTS[@]}" -qq update
( cd "$work/debs" && apt-get "${APT_OPTS[@]}" -qq download $PKGS )
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$work/root"; done
test -x "$work/root/usr/bin/wasmedge"
got=$(dpkg-deb -f "$work"/debs/wasmedge_*.deb Version)
case $got in
  "$WANT"*) ;;
  *) log "Debian $SUITE now carries WasmEdge $got, not $WANT: install $WANT yourself and set WASMEDGE_DIR"; exit 1 ;;
esac

tmp="$PREFIX.tmp"; rm -rf "$tmp"; mkdir -p "$tmp"/{bin,lib,trixie/lib,include,plugin}
cp -a "$work/root/usr/lib/x86_64-linux-gnu/." "$tmp/trixie/lib/"
mv "$tmp"/trixie/lib/libwasmedge.so* "$tmp/lib/"
cp -a "$work/root/usr/include/wasmedge" "$tmp/include/"
cp -a "$work/root/usr/bin/wasmedge" "$tmp/bin/wasmedge"
patchelf --set-rpath '$ORIGIN/../trixie/lib' "$(ls "$tmp"/lib/libwasmedge.so.*.* | head -n1)"
# The interpreter path must be absolute; the prefix is therefore not relocatable
# (run this script again after moving it).
patchelf --set-interpreter "$PREFIX/trixie/lib/ld-linux-x86-64.so.2" \
         --force-rpath --set-rpath '$ORIGIN/../trixie/lib:$ORIGIN/../lib' "$tmp/bin/wasmedge"
write_trixie_run "$tmp"
rm -rf "$PREFIX"; mv "$tmp" "$PREFIX"
"$PREFIX/bin/wasmedge" --version
complete_install "$PREFIX"
