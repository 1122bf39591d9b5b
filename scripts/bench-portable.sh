#!/usr/bin/env bash
# What the portable build costs: the plugin's ggml CPU code comes as per-CPU variants chosen
# at run time; against it, ggml's CPU backend built once more from the same sources with
# this machine's own flags (-march=native: what GGML_NATIVE=ON does, which ggml refuses
# beside dynamic backends, so the flag goes in directly). The same plugin, llama.cpp and
# model run with each (WASMEDGE_NN_GGML_BACKENDS), in rounds of one process per side, the
# order rotating: prompt tokens/s, decode tokens/s and streamed tokens/s, through the bench
# guest. Medians of the per-round ratios, with their 10-90% range.
#
#   scripts/bench-portable.sh [ROUNDS]    (20) → bench-results/portable.{json,md}
#
# Both are built at the optimisation llama-cpp-sys-2 builds llama.cpp with (its CMake build
# type: -O2); only the target flags differ. (At -O3, GCC 12 builds ggml's AMX code into a
# library that dies in ldtilecfg on the first prompt, whatever the -m flags.)
#
# BENCH_THREADS (2), BENCH_TOKENS (128), BENCH_OUT (bench-results/) as for scripts/bench.sh.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
rounds=${1:-20}
threads=${BENCH_THREADS:-2}
tokens=${BENCH_TOKENS:-128}
out=${BENCH_OUT:-$ROOT/bench-results}
log() { echo "[bench-portable] $*" >&2; }

bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"

flags=-march=native
# ggml's sources exactly as llama-cpp-sys-2 vendors them for this build, and its options.
cache=$(cat "$CARGO_TARGET_DIR/plugin-llama-build")/build/CMakeCache.txt
opt() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }
native=$CARGO_TARGET_DIR/ggml-cpu-native
if [ "$(cat "$native/flags" 2>/dev/null)" != "$flags $(opt CMAKE_BUILD_TYPE)" ] || [ ! -f "$native/lib/libggml-cpu-native.so.0" ]; then
  log "ggml's CPU backend with $flags, $(opt CMAKE_BUILD_TYPE) (a minute)"
  rm -rf "$native"; mkdir -p "$native"
  cp -a "$(llama_sys_dir)/llama.cpp/ggml" "$native/ggml"
  touch "$native/ggml/ggml.pc.in"   # the crate leaves out this template, which ggml's CMake wants
  cmake -S "$native/ggml" -B "$native/build" -DCMAKE_BUILD_TYPE="$(opt CMAKE_BUILD_TYPE)" -DBUILD_SHARED_LIBS=ON \
    -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_NATIVE=OFF -DGGML_BUILD_TESTS=OFF \
    -DGGML_BUILD_EXAMPLES=OFF -DGGML_OPENMP="$(opt GGML_OPENMP)" -DGGML_LLAMAFILE="$(opt GGML_LLAMAFILE)" \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" > "$native/cmake.log"
  cmake --build "$native/build" --target ggml-cpu -j "$(nproc)" > "$native/build.log" 2>&1
  mkdir -p "$native/lib"
  cp "$(find "$native/build" -name 'libggml-cpu.so' | head -n1)" "$native/lib/libggml-cpu-native.so.0"
  echo "$flags $(opt CMAKE_BUILD_TYPE)" > "$native/flags"
fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
declare -A dirs=([portable]=$PLUGIN_DIR/$COMPANIONS [native]=$native/lib)
sides=(portable native)

prompt=$(python3 -c 'import re,sys; print(re.search(r"pub const PROMPT: &str = \"(.*)\";", open(sys.argv[1]).read()).group(1).encode().decode("unicode_escape"))' "$ROOT/tests/src/speed.rs")
# One process: load, warm, then a prompt, a whole decode and a stream; figures on stdout.
serve() { # SIDE ROUND
  printf 'prompt\ndecode\nstream\nquit\n' | WASMEDGE_PLUGIN_PATH=$PLUGIN_DIR WASMEDGE_NN_GGML_BACKENDS=${dirs[$1]} \
    WASMEDGE_NN_LOG=info "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. \
    --nn-preload "default:GGML:AUTO:$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$GUEST_DIR/bench-speed.wasm" serve-gen default "$prompt" "$tokens" "$threads" \
    > "$work/$1-$2" 2> "$work/log-$1" || { log "$1 failed:"; tail -5 "$work/log-$1" >&2; exit 1; }
}
log "$rounds rounds of ${sides[*]}; $threads threads, $tokens tokens, SmolLM2-135M Q4_1"
for i in $(seq 1 "$rounds"); do
  n=${#sides[@]}
  for k in $(seq 0 $((n - 1))); do serve "${sides[$(( (i + k) % n ))]}" "$i"; done
done
for side in "${sides[@]}"; do
  sed -n 's/.*ggml cpu backend: \([^ ]*\).*/\1/p' "$work/log-$side" | head -n1 > "$work/variant-$side"
done
[ "$(cat "$work/variant-native")" = native ] || { log "the native backend was not the one loaded"; exit 1; }
mkdir -p "$out"
python3 - "$work" "$rounds" "$out" "$threads" "$tokens" "$flags" "${sides[@]}" <<'EOF'
import json, re, statistics, sys
work, rounds, out, threads, tokens, flags, *sides = sys.argv[1:]
rounds = int(rounds)
def figures(path):
    v = {k: float(x) for k, x in re.findall(r"^(\w+): (\S+)$", open(path).read(), re.M)}
    return {"prompt": v["prompt_tokens"] * 1000 / v["ttft_ms"], "decode": v["decode_tokens"] * 1000 / v["decode_ms"],
            "streaming": 1000 / v["stream_token_ms"]}
runs = {s: [figures(f"{work}/{s}-{i}") for i in range(1, rounds + 1)] for s in sides}
variant = {s: open(f"{work}/variant-{s}").read().strip() for s in sides}
result = {"rounds": rounds, "threads": int(threads), "tokens": int(tokens), "model": "SmolLM2-135M-Instruct Q4_1",
          "native_flags": flags, "variants": variant, "per_second": {}, "over_native": {}}
for s in sides:
    result["per_second"][s] = {f: round(statistics.median(r[f] for r in runs[s]), 1) for f in runs[s][0]}
for s in sides:
    if s == "native":
        continue
    result["over_native"][s] = {}
    for f in runs[s][0]:
        ratios = sorted(a[f] / b[f] for a, b in zip(runs[s], runs["native"]))
        q = lambda p: ratios[min(len(ratios) - 1, int(p * len(ratios)))]
        result["over_native"][s][f] = [round(statistics.median(ratios), 3), round(q(0.1), 3), round(q(0.9), 3)]
json.dump(result, open(f"{out}/portable.json", "w"), indent=1)
md = [f"Portable ggml CPU variants against ggml-cpu built with `{flags}`: {rounds} rounds, {threads} threads, "
      f"{tokens} tokens, SmolLM2-135M Q4_1. Ratio of speeds (median, 10-90%); above 1 the portable side is faster.", "",
      "| side (variant loaded) | prompt | decode | streaming |", "|---|---:|---:|---:|"]
for s, by in result["over_native"].items():
    md.append(f"| {s} ({variant[s]}) | " + " | ".join(f"{m} ({lo}-{hi})" for m, lo, hi in by.values()) + " |")
md += ["", "| side | prompt tok/s | decode tok/s | streamed tok/s |", "|---|---:|---:|---:|"]
for s, v in result["per_second"].items():
    md.append(f"| {s} | {v['prompt']} | {v['decode']} | {v['streaming']} |")
open(f"{out}/portable.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
