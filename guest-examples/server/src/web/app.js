// The page: a chat with streamed answers, a picture to attach, and a microphone whose
// recording is transcribed and sent as the question. It talks to this server's OpenAI API.
"use strict";

const $ = (id) => document.getElementById(id);
const SYSTEM = "You are a helpful assistant.";
const MAX_TOKENS = 1024;
const state = { model: null, vision: false, asr: null, history: [], image: null, busy: false, recorder: null };

function say(text) { $("status").textContent = text; }

function bubble(role, text, image) {
  const div = document.createElement("div");
  div.className = "message " + role;
  if (image) {
    const img = document.createElement("img");
    img.src = image;
    div.appendChild(img);
  }
  div.appendChild(document.createTextNode(text || ""));
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function connect() {
  try {
    const models = (await (await api("/v1/models")).json()).data;
    const can = (m, what) => (m.capabilities || []).includes(what);
    const chat = models.find((m) => can(m, "chat"));
    state.model = chat ? chat.id : null;
    state.vision = Boolean(chat && can(chat, "vision"));
    state.asr = (models.find((m) => can(m, "transcription")) || {}).id || null;
    $("model").textContent = chat ? ((chat.meta && chat.meta.name) || chat.id) : "no chat model";
    $("attach-label").hidden = !state.vision;
    $("mic").hidden = !state.asr || !navigator.mediaDevices;
    document.body.dataset.ready = "true";
  } catch (e) {
    $("model").textContent = "cannot reach the server: " + e.message;
  }
}

// Server-Sent Events from a fetch body: each `data:` line's JSON, until [DONE].
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  text = text.trim();
  if (state.busy || (!text && !state.image) || !state.model) return;
  state.busy = true;
  $("send").disabled = true;
  const content = state.image
    ? [{ type: "image_url", image_url: { url: state.image } }, { type: "text", text }]
    : text;
  bubble("user", text, state.image);
  state.history.push({ role: "user", content });
  dropImage();
  $("prompt").value = "";
  const answer = bubble("assistant", "");
  answer.dataset.state = "streaming";
  let reply = "";
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      // A system message, as chat UIs give by default (small models ramble without one),
      // and a cap on an answer's length.
      body: JSON.stringify({
        model: state.model, stream: true, max_tokens: MAX_TOKENS,
        messages: [{ role: "system", content: SYSTEM }, ...state.history],
      }),
    });
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices.length ? chunk.choices[0].delta : {};
      if (delta.content) {
        reply += delta.content;
        answer.textContent = reply;
        answer.scrollIntoView({ block: "end" });
      }
    }
    state.history.push({ role: "assistant", content: reply });
    answer.dataset.state = "done";
    say("");
  } catch (e) {
    answer.className = "message error";
    answer.textContent = e.message;
    answer.dataset.state = "error";
    state.history.pop();
  } finally {
    state.busy = false;
    $("send").disabled = false;
  }
}

function dropImage() {
  state.image = null;
  $("attachment").hidden = true;
  $("attach").value = "";
}

$("attach").addEventListener("change", () => {
  const file = $("attach").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    state.image = reader.result;
    $("preview").src = reader.result;
    $("attachment").hidden = false;
  };
  reader.readAsDataURL(file);
});
$("drop-image").addEventListener("click", dropImage);

// Audio samples as a 16-bit PCM WAV file (mono, at the recording's rate: the server takes
// any rate).
function wav(buffer) {
  const rate = buffer.sampleRate, n = buffer.length, channels = buffer.numberOfChannels;
  const mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / channels;
  }
  const view = new DataView(new ArrayBuffer(44 + n * 2));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + n * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, n * 2, true);
  for (let i = 0; i < n; i++) view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, mono[i])) * 0x7fff, true);
  return new Blob([view], { type: "audio/wav" });
}

async function transcribe(blob) {
  say("transcribing…");
  const context = new AudioContext();
  const samples = await context.decodeAudioData(await blob.arrayBuffer());
  context.close();
  const form = new FormData();
  form.append("file", wav(samples), "speech.wav");
  form.append("model", state.asr);
  form.append("response_format", "json");
  const { text } = await (await api("/v1/audio/transcriptions", { method: "POST", body: form })).json();
  say("");
  return text;
}

$("mic").addEventListener("click", async () => {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(stream);
    const parts = [];
    recorder.ondataavailable = (e) => parts.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      state.recorder = null;
      $("mic").classList.remove("recording");
      try {
        const question = await transcribe(new Blob(parts, { type: recorder.mimeType }));
        $("prompt").value = question;
        await send(question);
      } catch (e) {
        say("could not transcribe: " + e.message);
      }
    };
    recorder.start();
    state.recorder = recorder;
    $("mic").classList.add("recording");
    say("recording… press the microphone again to stop");
  } catch (e) {
    say("no microphone: " + e.message);
  }
});

$("composer").addEventListener("submit", (e) => { e.preventDefault(); send($("prompt").value); });
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send($("prompt").value); }
});
$("clear").addEventListener("click", () => { state.history = []; $("messages").textContent = ""; dropImage(); });

connect();
