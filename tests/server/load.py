"""The HTTP half of scripts/bench-server.sh: N clients, each sending R streamed chat requests
one after another, against any OpenAI-compatible server (the server guest, or llama.cpp's
llama-server). The client is Python's own http.client reading the event stream line by line:
on a small machine the load generator's CPU is taken from the model, and OpenAI's client
(a pydantic object per chunk) takes several times more (the tests use it; this measures the
servers).

    python load.py BASE_URL MODEL N R TOKENS

Each request: the benchmark's system message and client c's question k (the same as the
direct guest's, tests/guests/bench-serve), greedy, `ignore_eos`, TOKENS tokens. Prints one
JSON line: requests, seconds, requests_per_second, ttft_ms (median time from sending a request
to its first content), ttft_p90_ms, tokens_per_second (completion tokens as the server counts
them).
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

QUESTIONS = [
    "Write a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe a rainy day in London.",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Write a poem about the moon.",
    "Tell me about the history of Rome.",
    "How do airplanes fly?",
]
SYSTEM = "You are a helpful assistant."

base, model = sys.argv[1], sys.argv[2]
n, r, tokens = (int(a) for a in sys.argv[3:6])
url = urllib.parse.urlparse(base)
path = url.path.rstrip("/") + "/chat/completions"


def messages(c, k):
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"({c}.{k}) {QUESTIONS[(c + k) % len(QUESTIONS)]}"}]


def request(conn, c, k):
    """Time to first content, and completion tokens (the usage chunk's)."""
    body = json.dumps({"model": model, "messages": messages(c, k), "temperature": 0, "max_tokens": tokens,
                       "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True})
    for attempt in range(2):
        sent = time.monotonic()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # The server closed the kept-alive connection (llama-server does after a stream):
            # a new one, as pooling clients open (the time counts from the new attempt).
            conn.close()
            if attempt:
                raise
    assert response.status == 200, (response.status, response.read()[:500])
    first = None
    used = None
    for line in response:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        chunk = json.loads(line[6:])
        choices = chunk.get("choices") or []
        if first is None and choices and choices[0].get("delta", {}).get("content"):
            first = time.monotonic() - sent
        if chunk.get("usage"):
            used = chunk["usage"]["completion_tokens"]
    assert first is not None and used == tokens, (c, k, first, used)
    return first, used


def main():
    # One kept-alive connection per client, as OpenAI's client keeps one.
    clients = [http.client.HTTPConnection(url.hostname, url.port, timeout=600) for _ in range(n)]
    # Warm-up: a request of client 99 (its own prompt), so the timed ones find the engine made.
    request(clients[0], 99, 0)
    results, errors = [], []
    barrier = threading.Barrier(n + 1)

    def run(c):
        barrier.wait()
        try:
            for k in range(r):
                results.append(request(clients[c], c, k))
        except BaseException as e:  # reported on the main thread
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(c,)) for c in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    assert not errors, errors
    ttft = sorted(f * 1e3 for f, _ in results)
    pick = lambda p: ttft[round((len(ttft) - 1) * p)]
    print(json.dumps({"requests": len(results), "seconds": round(seconds, 3),
                      "requests_per_second": round(len(results) / seconds, 3),
                      "ttft_ms": round(pick(0.5), 3), "ttft_p90_ms": round(pick(0.9), 3),
                      "tokens_per_second": round(sum(u for _, u in results) / seconds, 3)}))


main()
