#!/usr/bin/env bash
# GPU offload check: llama.cpp's CUDA backend beside the plugin, `n-gpu-layers`, and tokens/s
# with every layer on the GPU against the CPU, for a model of a billion parameters.
#
# The GPU machine (an NVIDIA H100/H200 lent through this workplace's device tool) has CUDA,
# CMake and ninja, but no Rust, no network, and takes at most 64 MiB along. So:
#
#   bash scripts/gpu.sh pack      here: builds the plugin (stripped) and packs it with WasmEdge,
#                                 the bench guest, ggml's sources (those llama.cpp was built
#                                 from here) and the gguf package into .gpu/ (git-ignored)
#   bash scripts/gpu.sh device    there (carry .gpu): builds libggml-cuda from those sources,
#                                 puts it in the plugin's companion folder as
#                                 libggml-cuda.so.0, makes a random-weight 1.1B llama (F16),
#                                 checks the offload and measures decode tokens/s with
#                                 n-gpu-layers 99 and 0; writes gpu.json / gpu.md to $OUT
#
# Anyone with an NVIDIA GPU and CUDA can do the same by hand: build libggml-cuda.so from the
# ggml sources of the llama-cpp-sys-2 crate the plugin was built with (the cmake line below),
# copy it to <plugin folder>/wasmedge-nn/libggml-cuda.so.0, and load models with
# {"n-gpu-layers": 99}. Without it the plugin logs a warning and runs on the CPU.
set -euo pipefail
mode=${1:?usage: $0 pack|device}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACK=$ROOT/.gpu
log() { echo "[gpu] $*" >&2; }

pack() {
  . "$ROOT/scripts/env.sh"
  bash "$ROOT/scripts/setup.sh"
  bash "$ROOT/scripts/build.sh"
  . "$ROOT/scripts/env.sh"
  local stage; stage=$(mktemp -d); trap 'rm -rf "$stage"' RETURN
  log "plugin (stripped)"
  bash "$ROOT/scripts/plugin-files.sh" "$stage/plugin" --strip
  # WasmEdge runs under its own Debian 13 loader and libraries (scripts/install-wasmedge.sh).
  mkdir -p "$stage/wasmedge"
  cp -a "$WASMEDGE_PREFIX/bin" "$WASMEDGE_PREFIX/lib" "$WASMEDGE_PREFIX/trixie" "$stage/wasmedge/"
  cp "$GUEST_DIR/bench-speed.wasm" "$stage/"
  # ggml's sources exactly as llama-cpp-sys-2 vendors them for this build.
  cp -a "$(llama_sys_dir)/llama.cpp/ggml" "$stage/ggml"
  cp "$ROOT/scripts/make_random_llama.py" "$ROOT/scripts/make_tiny_llava.py" "$stage/"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$stage/whl" gguf==0.17.1
  mkdir -p "$PACK"
  log "compressing (xz)"
  tar -C "$stage" -cf - . | xz -T0 -6 > "$PACK/bundle.tar.xz.new"
  mv -f "$PACK/bundle.tar.xz.new" "$PACK/bundle.tar.xz"
  local size; size=$(stat -c %s "$PACK/bundle.tar.xz")
  log "$PACK/bundle.tar.xz: $((size >> 20)) MiB (the device takes 64 MiB in all)"
  [ "$size" -lt $((60 << 20)) ] || { log "too big to travel"; exit 1; }
  log "now, with the device tool: carry [\".gpu\"], command: bash scripts/gpu.sh device"
}

device() {
  : "${OUT:=$PWD/gpu-out}"; mkdir -p "$OUT"
  local W=/tmp/wasmedge-nn-gpu
  rm -rf "$W"; mkdir -p "$W"
  tar -C "$W" -xJf "$PACK/bundle.tar.xz"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu-name.txt"

  log "libggml-cuda from the plugin's own ggml sources"
  local started=$SECONDS
  touch "$W/ggml/ggml.pc.in"
  cmake -S "$W/ggml" -B "$W/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_BACKEND_DL=ON -DGGML_CPU=OFF -DGGML_CUDA=ON -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DGGML_CUDA_FA_ALL_QUANTS=OFF > "$OUT/cmake.log" 2>&1
  cmake --build "$W/build" --target ggml-cuda -j "$(nproc)" > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; exit 1; }
  cp "$(find "$W/build" -name 'libggml-cuda.so' | head -n1)" "$W/plugin/wasmedge-nn/libggml-cuda.so.0"
  log "built in $((SECONDS - started)) s"

  log "a random-weight llama of 1.1B parameters"
  python3 -m pip install -q --no-index --no-deps --target "$W/site" "$W"/whl/*.whl
  PYTHONPATH=$W/site python3 "$W/make_random_llama.py" "$W/random-1b.gguf"

  # CUDA's libraries (the runtime, cuBLAS, the driver's libcuda) for the plugin's process.
  local cuda_libs
  cuda_libs=$( { ldconfig -p | awk '/libcuda\.so\.1|libcudart\.so|libcublas\.so/ {print $NF}'
                 find /usr /opt -maxdepth 7 \( -name 'libcudart.so.*' -o -name 'libcublas.so.*' -o -name 'libcuda.so.1' \) 2>/dev/null
               } | xargs -r -n1 dirname | sort -u | paste -sd: )
  local P=$W/wasmedge
  serve() { # CONFIG THREADS [env...]: decode 3 times, the plugin's log in $OUT/log-*.txt
    local config=$1 threads=$2 name=$3; shift 3
    printf 'decode\ndecode\ndecode\nquit\n' | env "$@" WASMEDGE_PLUGIN_PATH="$W/plugin" WASMEDGE_NN_LOG=info \
      "$P/trixie/lib/ld-linux-x86-64.so.2" --library-path "$P/trixie/lib:$P/lib:$cuda_libs" "$P/bin/wasmedge" \
      --dir .:. --nn-preload "default:GGML:AUTO:$W/random-1b.gguf" "$W/bench-speed.wasm" \
      serve-gen default "Once upon a time" 128 "$threads" "$config" 2> "$OUT/log-$name.txt"
  }
  rate() { # decode tokens/s, the median of the three decodes
    python3 -c 'import re, statistics, sys
t = sys.stdin.read()
ms = [float(x) for x in re.findall(r"^decode_ms: (\S+)", t, re.M)]
tk = [float(x) for x in re.findall(r"^decode_tokens: (\S+)", t, re.M)]
assert ms and len(ms) == len(tk), t
print("%.1f" % statistics.median(k * 1000 / m for k, m in zip(tk, ms)))'
  }
  log "all layers on the GPU"
  local gpu cpu cpu_note=""
  gpu=$(serve '{"n-gpu-layers": 99}' 2 gpu | rate)
  grep -q 'ggml cuda backend' "$OUT/log-gpu.txt" || { log "the CUDA backend was not loaded:"; tail -20 "$OUT/log-gpu.txt"; exit 1; }
  ! grep -q 'asked for, but no GPU backend' "$OUT/log-gpu.txt" || { log "the plugin fell back to the CPU"; exit 1; }
  grep -Eq 'offloaded ([0-9]+)/\1 layers to GPU' "$OUT/log-gpu.txt" \
    || { log "llama.cpp did not offload every layer:"; grep -i offload "$OUT/log-gpu.txt"; exit 1; }
  log "every layer on the CPU ($(nproc) threads)"
  if ! cpu=$(serve '{"n-gpu-layers": 0}' "$(nproc)" cpu | rate) || [ -z "$cpu" ]; then
    # ggml's AMX variant dies where the kernel does not grant AMX (seen under gVisor): the
    # same without it.
    local fewer=$W/no-amx; mkdir -p "$fewer"
    for f in "$W"/plugin/wasmedge-nn/libggml-cpu-*.so.0; do
      case $f in *sapphirerapids*) ;; *) ln -s "$f" "$fewer/" ;; esac
    done
    cpu=$(serve '{"n-gpu-layers": 0}' "$(nproc)" cpu WASMEDGE_NN_GGML_BACKENDS="$fewer" | rate)
    cpu_note=" (without the AMX variant, which crashed here)"
  fi
  local variant; variant=$(sed -n 's/.*ggml cpu backend: \([^ ]*\).*/\1/p' "$OUT/log-cpu.txt" | head -n1)
  printf '{"gpu": "%s", "model": "random llama, 1.1B parameters, F16", "tokens": 128,\n "gpu_tok_s": %s, "cpu_tok_s": %s, "cpu_threads": %s, "cpu_variant": "%s"}\n' \
    "$(cut -d, -f1 "$OUT/gpu-name.txt")" "$gpu" "$cpu" "$(nproc)" "$variant" | tee "$OUT/gpu.json"
  printf '| decode, 1.1B F16, 128 tokens | tokens/s |\n|---|---:|\n| all layers on the GPU (%s) | %s |\n| CPU, %s threads (%s)%s | %s |\n' \
    "$(cut -d, -f1 "$OUT/gpu-name.txt")" "$gpu" "$(nproc)" "$variant" "$cpu_note" "$cpu" | tee "$OUT/gpu.md"
}

case $mode in
  pack) pack ;;
  device) device ;;
  *) echo "usage: $0 pack|device" >&2; exit 2 ;;
esac
