"""Many clients of one server at once, with OpenAI's Python client (tests/tests/server.rs runs
this against a server started with as many contexts and plugin slots as clients).

    python many_clients.py BASE_URL CHAT_MODEL SERVER_PID HOST_LOG MODEL_BYTES
    python many_clients.py --stream-forever BASE_URL CHAT_MODEL     (the client that is killed)

1. Eight clients stream at once, and each gets the answer it gets alone.
2. A client killed mid-stream (SIGKILL, a real process) leaves nothing behind: no job, no busy
   context, as /health counts them.
3. The next 100 requests (streamed and whole, some dropped mid-stream, eight at a time) run in
   the memory the server had before them: the heap's count of bytes in use when the engine
   last ran out of work (glibc's, which the plugin logs at debug level into HOST_LOG) grows by
   less than 1/16 of the model's size (a leak of 60 KB a request). The resident size is
   printed, not judged: it depends on how freed memory lies in the allocator's arenas.
4. Then eight at once get their solo answers again.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import openai

if sys.argv[1] == "--stream-forever":
    base, model = sys.argv[2:4]
    client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me a very long story."}], temperature=0,
        max_tokens=4000, stream=True, extra_body={"ignore_eos": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print("streaming", flush=True)
    sys.exit("the stream ended before the client was killed")

base, model, pid, host_log, model_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=300)
CLIENTS = 8
TOKENS = 48
QUESTIONS = [
    "What is the capital of France?", "Name three colours of the rainbow.", "Why is the sky blue?",
    "Count from one to ten in words.", "Write a haiku about the sea.", "What do bees make?",
    "Give me a tip for learning to cook.", "What is two plus two?",
]


def ask(question, stream, max_tokens=TOKENS):
    """The greedy answer's text; for a stream, also when its first and last pieces came."""
    kw = dict(model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=max_tokens,
              extra_body={"ignore_eos": True})
    if not stream:
        return client.chat.completions.create(**kw).choices[0].message.content, None, None
    text, first = [], None
    for chunk in client.chat.completions.create(stream=True, **kw):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.monotonic()
            text.append(chunk.choices[0].delta.content)
    return "".join(text), first, time.monotonic()


def health():
    with urllib.request.urlopen(base.removesuffix("/v1") + "/health", timeout=30) as r:
        return json.load(r)


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def heap_kib():
    """The heap's bytes in use (KiB) the last time the plugin's engine ran out of work."""
    mark = "heap after the engine's work: "
    with open(host_log) as f:
        readings = [int(line.split(mark)[1].split()[0]) for line in f if mark in line]
    assert readings, f"no heap readings in {host_log}"
    return readings[-1] / 1024


def idle_within(seconds):
    deadline = time.monotonic() + seconds
    while True:
        h = health()
        if h["jobs"] == 0 and h["chat_contexts"]["busy"] == 0:
            return h
        assert time.monotonic() < deadline, f"still in use after {seconds} s: {h}"
        time.sleep(0.05)


def run_together(work):
    """Run each callable on its own thread, all started at once; their results in order."""
    results = [None] * len(work)
    errors = []
    start = threading.Barrier(len(work))

    def run(i):
        try:
            start.wait()
            results[i] = work[i]()
        except BaseException as e:  # reported below, on the main thread
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


# 1. Alone, one after another; then all eight at once.
solo = [ask(q, stream=False)[0] for q in QUESTIONS]
together = run_together([lambda q=q: ask(q, stream=True) for q in QUESTIONS])
for q, alone, (text, first, last) in zip(QUESTIONS, solo, together):
    assert text == alone, f"{q!r}: together {text!r}, alone {alone!r}"
firsts = [t[1] for t in together]
lasts = [t[2] for t in together]
# They were answered at once, not in turn: every stream had begun before any had ended.
assert max(firsts) < min(lasts), f"first pieces {firsts}, last pieces {lasts}"
print(f"ok: {CLIENTS} clients at once, each its solo answer; every stream began "
      f"{min(lasts) - max(firsts):.2f} s before the first ended", flush=True)

# 2. A client killed mid-stream.
killed = subprocess.Popen([sys.executable, __file__, "--stream-forever", base, model], stdout=subprocess.PIPE, text=True)
assert killed.stdout.readline().strip() == "streaming"
assert health()["jobs"] == 1
killed.send_signal(signal.SIGKILL)
killed.wait()
h = idle_within(30)
print(f"ok: a client killed mid-stream left nothing behind: {h}", flush=True)


# 3. A hundred more requests, eight at a time, in the same memory.
def request(i):
    q = f"{QUESTIONS[i % len(QUESTIONS)]} (request {i})"
    if i % 10 == 9:
        # Dropped after its first piece, as a browser tab closed mid-answer.
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": q}],
                                                max_tokens=200, stream=True, extra_body={"ignore_eos": True})
        next(iter(stream))
        stream.close()
        return "dropped"
    text = ask(q, stream=i % 2 == 0, max_tokens=16)[0]
    assert text, q
    return text


before, rss_before = heap_kib(), rss_kib()
done = 0
for batch in range(0, 100, CLIENTS):
    done += len(run_together([lambda i=i: request(i) for i in range(batch, min(batch + CLIENTS, 100))]))
    # A dropped stream's context is free once the server has seen the hang-up.
    h = idle_within(30)
after, rss_after = heap_kib(), rss_kib()
margin = model_bytes / 1024 / 16
print(f"ok: {done} more requests; heap in use {before:.0f} KiB before, {after:.0f} KiB after "
      f"({after - before:+.0f} KiB, margin {margin:.0f} KiB); resident {rss_before} -> {rss_after} KiB; {h}",
      flush=True)
assert done == 100
assert h["chat_contexts"]["made"] <= CLIENTS, h
assert after - before < margin, f"the heap grew from {before:.0f} to {after:.0f} KiB over 100 requests"

# 4. After all that (contexts reused for other prompts, moved between the engine's slots with
# their KV copied), eight at once still get exactly their answers alone.
again = run_together([lambda q=q: ask(q, stream=True) for q in QUESTIONS])
for q, alone, (text, _, _) in zip(QUESTIONS, solo, again):
    assert text == alone, f"{q!r} after 100 requests: {text!r}, alone {alone!r}"
print("ok: after them, eight at once still get their solo answers", flush=True)
print("all ok")
