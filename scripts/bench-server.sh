#!/usr/bin/env bash
# Server benchmark: requests/s and time to first token for 1 to 16 concurrent clients, each
# sending R streamed chat requests in turn (greedy, ignore_eos, TOKENS tokens), through
#   http     the server guest over HTTP, driven by OpenAI's Python client (tests/server/load.py);
#   direct   the same work through the plugin from one guest thread, without HTTP
#            (tests/guests/bench-serve): the difference is the HTTP layer's cost;
#   native   llama.cpp's own llama-server (scripts/build-llama-server.sh), same model, same
#            client, same settings: 2 threads, one slot per client, ctx-size 1024 per slot.
# Both guests run AOT-compiled (`aot` in scripts/env.sh), as a server should be deployed;
# BENCH_AOT=0 runs them in WasmEdge's interpreter.
# The three take turns within each run, so drift in the machine's speed falls on all of them.
# Writes bench-results/server.{json,md} (server-interpreted.* with BENCH_AOT=0). Not a test.
#   BENCH_RUNS=5 BENCH_TOKENS=32 BENCH_CLIENTS="1 2 4 8 16" BENCH_REQUESTS=32 scripts/bench-server.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/setup.sh" smollm2
bash "$ROOT/scripts/setup-tests.sh"
bash "$ROOT/scripts/build.sh"
. "$ROOT/scripts/env.sh"
native=$(bash "$ROOT/scripts/build-llama-server.sh")
cd "$ROOT"
runs=${BENCH_RUNS:-5} tokens=${BENCH_TOKENS:-32} threads=2 slots=16 ctx=1024
clients=${BENCH_CLIENTS:-1 2 4 8 16}
# Requests per level (at least 2 per client): every level times the same number of answers.
total=${BENCH_REQUESTS:-32}
model=test-models/SmolLM2-135M-Instruct.Q4_1.gguf
python=$NN_CACHE/venv-clients/bin/python
out=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ours=$(free_port) theirs=$(free_port)
server_wasm=$GUEST_DIR/server.wasm direct_wasm=$GUEST_DIR/bench-serve.wasm
if [ "${BENCH_AOT:-1}" = 1 ]; then
  server_wasm=$(aot "$server_wasm") direct_wasm=$(aot "$direct_wasm")
fi
WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. --nn-slots $slots \
  --nn-preload "chat:GGML:AUTO:$model" "$server_wasm" --host 127.0.0.1 --port "$ours" \
  --chat chat --contexts $slots --ctx-size $ctx --threads $threads > "$out/ours.log" 2>&1 &
ours_pid=$!
"$native" -m "$model" --host 127.0.0.1 --port "$theirs" -t $threads -tb $threads -np $slots \
  -c $((slots * ctx)) --no-webui > "$out/theirs.log" 2>&1 &
theirs_pid=$!
trap 'kill $ours_pid $theirs_pid 2>/dev/null || true; rm -rf "$out"' EXIT
for port in "$ours" "$theirs"; do
  for _ in $(seq 240); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$out"/*.log; echo "a server did not start" >&2; exit 1; }
done
"$native" --version 2>&1 | head -n 2 > "$out/native-version"
for r in $(seq "$runs"); do
  for n in $clients; do
    per=$(( (total + n - 1) / n )); [ "$per" -ge 2 ] || per=2
    echo "[bench-server] run $r: $n clients x $per requests" >&2
    # A pause before each side: ggml's OpenMP threads spin a while after their last work,
    # and would take the cores from the next side.
    sleep 1
    "$python" tests/server/load.py "http://127.0.0.1:$ours/v1" chat "$n" "$per" "$tokens" > "$out/http-$n-$r"
    sleep 1
    WASMEDGE_PLUGIN_PATH="$PLUGIN_DIR" "$WASMEDGE_PREFIX/bin/wasmedge" --dir .:. --nn-slots $slots \
      --nn-preload "m:GGML:AUTO:$model" "$direct_wasm" m "$n" "$per" "$tokens" $threads > "$out/direct-$n-$r"
    sleep 1
    "$python" tests/server/load.py "http://127.0.0.1:$theirs/v1" chat "$n" "$per" "$tokens" > "$out/native-$n-$r"
  done
done
mkdir -p bench-results
python3 - "$out" "$runs" "$tokens" "$clients" "$total" "${BENCH_AOT:-1}" <<'PY'
import json, statistics, sys
out, runs, tokens, clients, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), int(sys.argv[5])
aot = sys.argv[6] == "1"
def read(path):
    text = open(path).read().strip()
    if text.startswith("{"):
        return json.loads(text.splitlines()[-1])
    return {k: float(v) for k, v in (l.split(": ", 1) for l in text.splitlines() if ": " in l)}
med = statistics.median
version = open(f"{out}/native-version").read().strip().replace("\n", "; ")
result = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "tokens": tokens, "threads": 2, "slots": 16, "ctx_size": 1024,
          "runs": runs, "llama_server": version, "guests_aot": aot, "clients": {}}
for n in clients:
    row = {}
    for side in ("http", "direct", "native"):
        rs = [read(f"{out}/{side}-{n}-{r}") for r in range(1, runs + 1)]
        row[side] = {k: round(med([x[k] for x in rs]), 3) for k in ("requests_per_second", "ttft_ms", "ttft_p90_ms", "tokens_per_second")}
        row[side]["requests"] = int(rs[0]["requests"])
        # Every run's figure, for the spread.
        row[side]["runs_requests_per_second"] = [x["requests_per_second"] for x in rs]
    result["clients"][n] = row
name = "server" if aot else "server-interpreted"
json.dump(result, open(f"bench-results/{name}.json", "w"), indent=1)
lines = [f"Server benchmark: SmolLM2-135M Q4_1, {tokens} tokens per answer (greedy, ignore_eos), 2 threads, "
         f"16 slots of ctx-size 1024; guests {'AOT-compiled' if aot else 'interpreted'}; medians of {runs} runs. "
         f"llama-server: {version}.", "",
         "| clients | requests | req/s http | req/s direct | req/s llama-server | http/direct | http/llama-server "
         "| TTFT ms http | TTFT ms direct | TTFT ms llama-server | TTFT p90 http | TTFT p90 llama-server |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for n, row in result["clients"].items():
    h, d, v = row["http"], row["direct"], row["native"]
    lines.append(f"| {n} | {h['requests']} | {h['requests_per_second']:.2f} | {d['requests_per_second']:.2f} | "
                 f"{v['requests_per_second']:.2f} | {h['requests_per_second'] / d['requests_per_second']:.3f} | "
                 f"{h['requests_per_second'] / v['requests_per_second']:.3f} | {h['ttft_ms']:.1f} | {d['ttft_ms']:.1f} | "
                 f"{v['ttft_ms']:.1f} | {h['ttft_p90_ms']:.1f} | {v['ttft_p90_ms']:.1f} |")
spread = lambda xs: f"{min(xs):.2f}–{max(xs):.2f}"
lines += ["", "Requests/s, lowest–highest of the runs:", "",
          "| clients | http | direct | llama-server |", "|---:|---:|---:|---:|"]
for n, row in result["clients"].items():
    lines.append(f"| {n} | " + " | ".join(spread(row[s]["runs_requests_per_second"]) for s in ("http", "direct", "native")) + " |")
open(f"bench-results/{name}.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
