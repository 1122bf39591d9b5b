"""The server guest judged by OpenAI's own Python client (tests/tests/server.rs runs this).

    python openai_client.py BASE_URL CHAT_MODEL ASR_MODEL SPEECH_DIR

Each check asserts what the client got; the answers the Rust side compares with native
llama.cpp are printed as `answer: {json}` lines.
"""
import base64
import json
import sys
import threading
import time

import openai

base, chat_model, asr_model, speech = sys.argv[1:5]
client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=120)
QUESTION = "What is the capital of France?"
SYSTEM = "You are a helpful assistant."


def messages(question=QUESTION):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def check(name, fn):
    started = time.time()
    fn()
    print(f"ok: {name} ({time.time() - started:.1f} s)", flush=True)


def models():
    listed = {m.id: m for m in client.models.list().data}
    assert chat_model in listed and asr_model in listed, listed
    assert listed[chat_model].owned_by and listed[chat_model].created > 0
    assert "chat" in listed[chat_model].capabilities and "transcription" in listed[asr_model].capabilities
    assert client.models.retrieve(chat_model).id == chat_model


def chat_whole_and_streamed():
    whole = client.chat.completions.create(model=chat_model, messages=messages(), temperature=0, max_tokens=48)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    u = whole.usage
    assert u.prompt_tokens > 10 and u.completion_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    print("answer: " + json.dumps({"what": "greedy", "content": choice.message.content,
                                   "completion_tokens": u.completion_tokens}), flush=True)

    chunks = list(client.chat.completions.create(model=chat_model, messages=messages(), temperature=0, max_tokens=48,
                                                 stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content, (text, choice.message.content)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason], finishes
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == u.completion_tokens


def limits_and_stops():
    short = client.chat.completions.create(model=chat_model, messages=messages(), temperature=0, max_tokens=5)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5, short
    full = client.chat.completions.create(model=chat_model, messages=messages(), temperature=0, max_tokens=48)
    words = full.choices[0].message.content.split()
    assert len(words) > 3, words
    stop = words[2]
    cut = client.chat.completions.create(model=chat_model, messages=messages(), temperature=0, max_tokens=48, stop=[stop])
    content = cut.choices[0].message.content
    assert cut.choices[0].finish_reason == "stop" and stop not in content, (stop, content)
    assert full.choices[0].message.content.startswith(content), (content, full.choices[0].message.content)
    # The same, streamed: nothing of the stop string leaks out before it is recognised.
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=chat_model, messages=messages(), temperature=0, max_tokens=48, stop=stop, stream=True) if c.choices)
    assert streamed == content, (streamed, content)
    # A seed makes sampling repeatable.
    a, b = (client.chat.completions.create(model=chat_model, messages=messages("Tell me a story."), temperature=1.0,
                                           top_p=0.9, seed=42, max_tokens=24).choices[0].message.content for _ in range(2))
    assert a == b, (a, b)


def json_answers():
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    r = client.chat.completions.create(
        model=chat_model, messages=messages("Name a big city and its population, as JSON."), temperature=0, max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"city", "population"} and isinstance(value["city"], str) and isinstance(value["population"], int), value
    r = client.chat.completions.create(model=chat_model, messages=messages("Describe Paris as JSON."), temperature=0,
                                       max_tokens=64, response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict), r.choices[0].message.content


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}


def tool_calls():
    ask = messages("What is the weather like in Paris?")
    r = client.chat.completions.create(model=chat_model, messages=ask, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=64)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.type == "function" and call.function.name == "get_weather", r
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit"), args
    # Streamed, through the client's own accumulating helper.
    with client.chat.completions.stream(model=chat_model, messages=ask, tools=[WEATHER], tool_choice="required",
                                        temperature=0, max_tokens=64) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert streamed.id.startswith("call_") and streamed.type == "function"
    assert (streamed.function.name, streamed.function.arguments) == (call.function.name, call.function.arguments)
    # As it is written: the call's id and name first, then its arguments in pieces.
    deltas = [c.choices[0].delta.tool_calls[0] for c in client.chat.completions.create(
        model=chat_model, messages=ask, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=64, stream=True)
        if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id.startswith("call_") and deltas[0].type == "function" and deltas[0].function.name == "get_weather", \
        deltas[0]
    assert len(deltas) > 3 and all(d.index == 0 for d in deltas), deltas
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    # The result goes back, and the conversation carries on (auto: an answer or another call).
    ask += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "clear"})}]
    r = client.chat.completions.create(model=chat_model, messages=ask, tools=[WEATHER], temperature=0, max_tokens=64)
    m = r.choices[0].message
    assert m.content or m.tool_calls, r


def embeddings():
    floats = client.embeddings.create(model=chat_model, input=["The cat sat.", "Paris is in France."], encoding_format="float")
    by_default = client.embeddings.create(model=chat_model, input=["The cat sat.", "Paris is in France."])  # base64
    assert len(floats.data) == 2 and floats.usage.prompt_tokens > 0
    for f, b in zip(floats.data, by_default.data):
        assert len(f.embedding) == len(b.embedding) > 100
        assert max(abs(x - y) for x, y in zip(f.embedding, b.embedding)) < 1e-6
    print("answer: " + json.dumps({"what": "embedding", "input": "The cat sat.", "embedding": floats.data[0].embedding[:8]}), flush=True)


def transcriptions():
    with open(f"{speech}/paris.wav", "rb") as f:
        t = client.audio.transcriptions.create(model=asr_model, file=f)
    assert "Paris" in t.text, t.text
    print("answer: " + json.dumps({"what": "transcript", "file": "paris.wav", "text": t.text}), flush=True)
    with open(f"{speech}/door-44k.wav", "rb") as f:
        v = client.audio.transcriptions.create(model=asr_model, file=f, response_format="verbose_json")
    assert v.duration > 1 and v.segments and v.segments[0].end > v.segments[0].start and v.text, v
    with open(f"{speech}/paris.wav", "rb") as f:
        text = client.audio.transcriptions.create(model=asr_model, file=f, response_format="text")
    assert "Paris" in text, text
    with open(f"{speech}/paris.wav", "rb") as f:
        srt = client.audio.transcriptions.create(model=asr_model, file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> "), srt


def errors():
    def fails(kind, status, fn, code=None):
        try:
            fn()
        except kind as e:
            assert e.status_code == status, (e.status_code, e)
            assert code is None or e.code == code, (e.code, e)
            return
        raise AssertionError(f"no {kind.__name__}")
    fails(openai.NotFoundError, 404, lambda: client.chat.completions.create(model="no-such-model", messages=messages()), "model_not_found")
    fails(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=chat_model, messages=[]))
    fails(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=chat_model, messages=messages(), temperature="hot"))
    fails(openai.BadRequestError, 400, lambda: client.chat.completions.create(
        model=chat_model, messages=messages("word " * 6000)), "context_length_exceeded")
    with open(f"{speech}/README.md", "rb") as f:
        fails(openai.BadRequestError, 400, lambda: client.audio.transcriptions.create(model=asr_model, file=f))


def many_at_once():
    """Streams at once from one single-threaded guest: each gets its tokens while the others
    run (short streams started while a long one generates end before it does)."""
    events = []
    lock = threading.Lock()
    long_started = threading.Event()

    def run(name, max_tokens):
        if name != "long":
            long_started.wait(60)
        for c in client.chat.completions.create(model=chat_model, messages=messages("Write a long story about a lighthouse."),
                                                temperature=0, max_tokens=max_tokens, stream=True,
                                                extra_body={"ignore_eos": True}):
            if c.choices and c.choices[0].delta.content:
                with lock:
                    events.append(name)
                long_started.set()

    threads = [threading.Thread(target=run, args=("long", 400))] + \
              [threading.Thread(target=run, args=(f"short{i}", 8)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last_long = max(i for i, e in enumerate(events) if e == "long")
    for i in range(3):
        mine = [j for j, e in enumerate(events) if e == f"short{i}"]
        assert mine and mine[-1] < last_long, (i, events)


for name, fn in [("models", models), ("chat, whole and streamed", chat_whole_and_streamed), ("limits and stops", limits_and_stops),
                 ("JSON answers", json_answers), ("tool calls", tool_calls), ("embeddings", embeddings),
                 ("transcriptions", transcriptions), ("errors", errors), ("many streams at once", many_at_once)]:
    check(name, fn)
print("all ok", flush=True)
