#!/usr/bin/env bash
# Batching benchmark: N concurrent streams of one model through the plugin (one guest
# driving them round-robin, as a server guest does) against llama-cpp-2 decoding the same
# prompts in one batch per step; a stream started while the others generate; the host's
# peak memory with 1, 64 and 1,000 open contexts. Writes bench-results/batch.{json,md}.
# Not a test.
#   BENCH_RUNS=3 BENCH_TOKENS=64 BENCH_THREADS=2 BENCH_STREAMS="1 2 4 8 16" scripts/bench-batch.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT"
drop_dangling_lib_links
# Built as the tests build it (the same features, so the same build of llama.cpp as the
# plugin's), and run with that build's libraries.
cargo test --no-run --release --locked --workspace --exclude wasmedge-nn-whisper --exclude whisper-native
native=$CARGO_TARGET_DIR/release/llama-batched
export LD_LIBRARY_PATH=$(cat "$CARGO_TARGET_DIR/plugin-llama-build")/lib
runs=${BENCH_RUNS:-3} tokens=${BENCH_TOKENS:-64} threads=${BENCH_THREADS:-2}
streams=${BENCH_STREAMS:-1 2 4 8 16}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
wasmedge() {
  WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" "$@"
}
for model in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
  for n in $streams; do
    for r in $(seq "$runs"); do
      # The two sides in turns, so drift in the machine's speed falls on both.
      echo "[bench-batch] $model, $n streams, run $r" >&2
      # As many slots as streams, as the native side has sequences.
      wasmedge --dir .:. --nn-slots "$n" --nn-preload "m:GGML:AUTO:test-models/$model" \
        "$GUEST_DIR/bench-batch.wasm" m "$n" "$tokens" "$threads" > "$out/plugin-$model-$n-$r"
      "$native" "test-models/$model" "$n" "$tokens" "$threads" > "$out/native-$model-$n-$r"
    done
  done
  for r in $(seq "$runs"); do
    wasmedge --dir .:. --nn-slots 8 --nn-preload "m:GGML:AUTO:test-models/$model" \
      "$GUEST_DIR/bench-batch.wasm" m 8 "$tokens" "$threads" late > "$out/late-$model-$r"
  done
done
# Peak memory: one guest, a context per request, never finalized.
WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" sh -c 'exec "$0" --dir .:. --dir "/hostproc:/proc/$$" "$@"' "$WASMEDGE_PREFIX/bin/wasmedge" \
  --nn-preload m:GGML:AUTO:test-models/SmolLM2-135M-Instruct.Q4_1.gguf "$GUEST_DIR/contexts.wasm" m 1000 1 64 1000 \
  > "$out/contexts"
mkdir -p bench-results
python3 - "$out" "$runs" "$tokens" "$threads" "$streams" <<'PY'
import json, os, statistics, sys
out, runs, tokens, threads, streams = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split()
def read(path):
    d = {}
    for line in open(path):
        if ': ' in line:
            k, v = line.strip().split(': ', 1)
            try: d[k] = float(v)
            except ValueError: d[k] = v
    return d
med = lambda xs: statistics.median(xs)
result = {"tokens": int(tokens), "threads": int(threads), "runs": runs, "models": {}}
md = [f"Batching: {tokens} greedy tokens per stream (ignore-eos), {threads} threads, median of {runs} runs.", "",
      "| model | streams | plugin tok/s | native tok/s | ratio | plugin TTFT ms | native TTFT ms | largest batch |",
      "|---|---:|---:|---:|---:|---:|---:|---:|"]
for model in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]:
    rows = []
    for n in streams:
        p = [read(f"{out}/plugin-{model}-{n}-{r}") for r in range(1, runs + 1)]
        q = [read(f"{out}/native-{model}-{n}-{r}") for r in range(1, runs + 1)]
        row = {"streams": int(n),
               "plugin_tps": med([x["aggregate_tps"] for x in p]), "native_tps": med([x["aggregate_tps"] for x in q]),
               "plugin_ttft_ms": med([x["ttft_ms"] for x in p]), "native_ttft_ms": med([x["ttft_ms"] for x in q]),
               "max_batch": max(x["max_batch"] for x in p)}
        row["ratio"] = row["plugin_tps"] / row["native_tps"]
        rows.append(row)
        md.append(f"| {model} | {n} | {row['plugin_tps']:.1f} | {row['native_tps']:.1f} | {row['ratio']:.3f} | "
                  f"{row['plugin_ttft_ms']:.1f} | {row['native_ttft_ms']:.1f} | {row['max_batch']:.0f} |")
    late = [read(f"{out}/late-{model}-{r}") for r in range(1, runs + 1)]
    l = {k: med([x[k] for x in late]) for k in ["late_ttft_ms", "solo_prompt_ms", "step_ms"]}
    l["bound_ms"] = l["solo_prompt_ms"] + 3 * l["step_ms"]
    result["models"][model] = {"streams": rows, "late": l}
md += ["", "A stream started while 7 others generate (median of runs):", "",
       "| model | its first token, ms | its prompt alone, ms | step with 7 others, ms | bound: prompt + 3 steps, ms |",
       "|---|---:|---:|---:|---:|"]
for model, m in result["models"].items():
    l = m["late"]
    md.append(f"| {model} | {l['late_ttft_ms']:.1f} | {l['solo_prompt_ms']:.1f} | {l['step_ms']:.2f} | {l['bound_ms']:.1f} |")
c = read(f"{out}/contexts")
mem = {k: c.get(f"peak {k}", 0) / 1024 for k in ["1", "64", "1000"]}
result["peak_rss_mib"] = mem
md += ["", "Peak RSS of the host, one guest making a context per request and never finalizing (SmolLM2):", "",
       "| open contexts | 1 | 64 | 1,000 |", "|---|---:|---:|---:|",
       f"| peak RSS, MiB | {mem['1']:.1f} | {mem['64']:.1f} | {mem['1000']:.1f} |"]
json.dump(result, open("bench-results/batch.json", "w"), indent=1)
open("bench-results/batch.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
