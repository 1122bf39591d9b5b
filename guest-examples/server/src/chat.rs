//! `POST /v1/chat/completions`: a job that draws one token per step of a checked request
//! (server_api::chat) and sends it on, as Server-Sent Events or as one JSON answer at the end.

use crate::error;
use crate::net::{ConnId, Out};
use serde_json::{json, Value};
use server_api::chat::ChatRequest;
use server_api::answer::{AnswerReader, Piece};
use server_api::{http, tools, ApiError};
use wasmedge_wasi_nn::{BackendError, Error as NnError, GraphExecutionContext, TensorType};

/// Whether the context's prompt is evaluated: the plugin's output 3 says whether
/// `compute_single` would wait on work under way (a little-endian u32, 0 while it would).
/// A plugin without it is taken as ready: then the first token waits for the prompt.
fn prompt_ready(ctx: &GraphExecutionContext) -> bool {
    let mut ready = [0u8; 4];
    !matches!(ctx.get_output(3, &mut ready), Ok(4) if ready == [0; 4])
}

/// How an answer ended, in OpenAI's words.
fn finish_reason(length: bool) -> &'static str {
    if length { "length" } else { "stop" }
}

/// A chat answer being generated.
pub struct ChatJob {
    pub conn: ConnId,
    pub ctx: Option<GraphExecutionContext>,
    /// The prompt as text, for the pool's reuse of the context afterwards.
    pub prompt: String,
    pub request: ChatRequest,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub keep_alive: bool,
    /// Every byte generated; `sent` of them went out (streaming).
    text: Vec<u8>,
    sent: usize,
    completion_tokens: u64,
    started: bool,
    /// A token came: the prompt is evaluated.
    generating: bool,
    /// With tools, streamed: the answer read as it comes (a call's name and arguments, or
    /// the direct answer's text, go out as they are written).
    reader: AnswerReader,
    piece: Vec<u8>,
}

pub enum Step {
    Running,
    /// Nothing done: the prompt is still being evaluated (the plugin does it ahead, in its
    /// engine); asking for the first token now would hold every other client up until then.
    Waiting,
    /// Done: the context goes back to the pool with what its KV holds.
    Done(GraphExecutionContext, Vec<u8>),
    /// Failed before any answer left; the context goes back.
    Failed(GraphExecutionContext),
}

impl ChatJob {
    pub fn new(conn: ConnId, ctx: GraphExecutionContext, prompt: String, request: ChatRequest, model: String, keep_alive: bool, serial: u64) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            conn,
            ctx: Some(ctx),
            prompt,
            request,
            id: format!("chatcmpl-{created:x}{serial:06x}"),
            created,
            model,
            keep_alive,
            text: Vec::new(),
            sent: 0,
            completion_tokens: 0,
            started: false,
            generating: false,
            reader: AnswerReader::new(),
            piece: vec![0u8; 4096],
        }
    }

    /// Hand the prompt and pictures to the context (the engine starts evaluating at once).
    pub fn begin(&mut self) -> Result<(), ApiError> {
        let ctx = self.ctx.as_mut().expect("a context");
        let meta = self.request.metadata();
        ctx.set_input(1, TensorType::U8, &[1], meta.as_bytes()).map_err(|e| explain(ctx, "the request's settings", e))?;
        for image in &self.request.images {
            ctx.set_input(2, TensorType::U8, &[1], image).map_err(|e| explain(ctx, "a picture", e))?;
        }
        ctx.set_input(0, TensorType::U8, &[1], self.prompt.as_bytes()).map_err(|e| explain(ctx, "the prompt", e))?;
        Ok(())
    }

    fn chunk_json(&self, delta: Value, finish: Option<&str>) -> String {
        let mut chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        });
        if self.request.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    }

    fn usage(&self) -> Value {
        let prompt_tokens = self.prompt_tokens();
        json!({"prompt_tokens": prompt_tokens, "completion_tokens": self.completion_tokens,
               "total_tokens": prompt_tokens + self.completion_tokens})
    }

    fn prompt_tokens(&self) -> u64 {
        let Some(ctx) = &self.ctx else { return 0 };
        let mut buf = vec![0u8; 4096];
        let n = ctx.get_output(1, &mut buf).unwrap_or(0);
        serde_json::from_slice::<Value>(&buf[..n]).ok().and_then(|m| m["input_tokens"].as_u64()).unwrap_or(0)
    }

    /// One token. Output for the client goes to `out`.
    pub fn step(&mut self, out: &mut Vec<Out>) -> Step {
        let ctx = self.ctx.as_mut().expect("a context");
        if !self.generating {
            if !prompt_ready(ctx) {
                return Step::Waiting;
            }
            self.generating = true;
        }
        let before = self.text.len();
        let result = ctx.compute_single();
        let ended = match result {
            Ok(()) => {
                match ctx.get_output_single(0, &mut self.piece) {
                    Ok(n) => self.text.extend_from_slice(&self.piece[..n]),
                    Err(e) => return self.fail(out, error::nn("reading a token", e)),
                }
                self.completion_tokens += 1;
                None
            }
            Err(NnError::BackendError(BackendError::EndOfSequence)) => Some(false),
            Err(NnError::BackendError(BackendError::ContextFull)) => Some(true),
            Err(e) => {
                let e = explain(ctx, "generating", e);
                return self.fail(out, e);
            }
        };
        let ended = ended.map(|full| full || self.request.max_tokens.is_some_and(|m| self.completion_tokens >= m));
        // A stop string ends the answer before it.
        let stopped = self.find_stop(before);
        if let Some(at) = stopped {
            self.text.truncate(at);
        }
        let finish = match (stopped, ended) {
            (Some(_), _) => Some("stop"),
            (None, Some(length)) => Some(finish_reason(length)),
            (None, None) => None,
        };
        let mut bytes = Vec::new();
        if self.request.stream && self.request.tools.is_some() {
            self.start_stream(&mut bytes);
            self.send_tool_pieces(&mut bytes);
        } else if self.request.stream {
            self.start_stream(&mut bytes);
            let ready = if finish.is_some() { self.text.len() } else { self.safe_end() };
            if ready > self.sent {
                let piece = String::from_utf8_lossy(&self.text[self.sent..ready]).into_owned();
                http::event(&mut bytes, &self.chunk_json(json!({"content": piece}), None));
                self.sent = ready;
            }
        }
        let Some(finish) = finish else {
            if !bytes.is_empty() {
                out.push(Out { conn: self.conn, bytes, end: None });
            }
            return Step::Running;
        };
        self.finish(finish, &mut bytes);
        out.push(Out { conn: self.conn, bytes, end: Some(self.keep_alive) });
        let mut ctx = self.ctx.take().expect("a context");
        let _ = ctx.fini_single();
        let mut history = std::mem::take(&mut self.prompt).into_bytes();
        history.extend_from_slice(&self.text);
        Step::Done(ctx, history)
    }

    fn start_stream(&mut self, bytes: &mut Vec<u8>) {
        if !self.started {
            bytes.extend(http::stream_head("text/event-stream", self.keep_alive));
            http::event(bytes, &self.chunk_json(json!({"role": "assistant", "content": ""}), None));
            self.started = true;
        }
    }

    /// What of a tools answer can go out now, as OpenAI streams it: the call's id and name
    /// first, then its arguments in pieces; or the direct answer's text.
    fn send_tool_pieces(&mut self, bytes: &mut Vec<u8>) {
        for piece in self.reader.feed(&self.text) {
            let delta = match piece {
                Piece::Call(name) => json!({"tool_calls": [{"index": 0, "id": tools::call_id(&self.id), "type": "function",
                                                            "function": {"name": name, "arguments": ""}}]}),
                Piece::Arguments(a) => json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                Piece::Text(t) => json!({"content": t}),
            };
            http::event(bytes, &self.chunk_json(delta, None));
        }
    }

    /// Where the earliest stop string starts in the text, if one is there.
    /// Only the text the last token could have completed a stop string in is searched.
    fn find_stop(&self, before: usize) -> Option<usize> {
        let longest = self.request.stop.iter().map(String::len).max().unwrap_or(0);
        let from = before.saturating_sub(longest.saturating_sub(1));
        self.request
            .stop
            .iter()
            .filter_map(|s| memchr::memmem::find(&self.text[from..], s.as_bytes()).map(|i| from + i))
            .min()
    }

    /// How much of the text can go out now: whole UTF-8 characters, short of anything that
    /// could be the start of a stop string.
    fn safe_end(&self) -> usize {
        let hold = self.request.stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
        let mut end = self.text.len().saturating_sub(hold).max(self.sent);
        if let Err(e) = std::str::from_utf8(&self.text[self.sent..end]) {
            end = self.sent + e.valid_up_to();
        }
        end
    }

    /// The answer's last bytes: the final chunks of a stream, or the whole answer.
    fn finish(&mut self, finish: &str, bytes: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(&self.text).into_owned();
        let (content, tool_calls, finish) = match &self.request.tools {
            Some(tools) => match tools.read_answer(&text, &self.id) {
                tools::Answer::Calls(calls) => (Value::Null, Some(calls), "tool_calls"),
                tools::Answer::Text(t) => (Value::String(t), None, finish),
            },
            None => (Value::String(text), None, finish),
        };
        if self.request.stream {
            self.start_stream(bytes);
            if self.request.tools.is_some() && !self.reader.sent_any() {
                // Nothing of it was readable as it came (cut short early): the text as it is.
                http::event(bytes, &self.chunk_json(json!({"content": content}), None));
            }
            http::event(bytes, &self.chunk_json(json!({}), Some(finish)));
            if self.request.include_usage {
                let usage = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [], "usage": self.usage(),
                });
                http::event(bytes, &usage.to_string());
            }
            http::event(bytes, "[DONE]");
            http::last_chunk(bytes);
        } else {
            let mut message = json!({"role": "assistant", "content": content});
            if let Some(calls) = tool_calls {
                message["tool_calls"] = Value::Array(calls);
            }
            let body = json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
                "usage": self.usage(),
            });
            bytes.extend(http::json(200, &body, self.keep_alive));
        }
    }

    /// The generation failed: an error response (or, mid-stream, an error event: the status
    /// has gone out).
    fn fail(&mut self, out: &mut Vec<Out>, e: ApiError) -> Step {
        let mut bytes = Vec::new();
        if self.started {
            http::event(&mut bytes, &e.body().to_string());
            http::event(&mut bytes, "[DONE]");
            http::last_chunk(&mut bytes);
        } else {
            bytes = e.response(self.keep_alive);
        }
        out.push(Out { conn: self.conn, bytes, end: Some(self.keep_alive) });
        let mut ctx = self.ctx.take().expect("a context");
        let _ = ctx.fini_single();
        Step::Failed(ctx)
    }
}

/// A failed call on `ctx`, with the plugin's reason (output 1's `last_error`) when it gave one.
pub fn explain(ctx: &GraphExecutionContext, what: &str, e: NnError) -> ApiError {
    let mut err = error::nn(what, e);
    let mut buf = vec![0u8; 16 * 1024];
    if let Ok(n) = ctx.get_output(1, &mut buf) {
        if let Some(reason) = serde_json::from_slice::<Value>(&buf[..n]).ok().and_then(|m| m["last_error"].as_str().map(str::to_owned)) {
            if err.code != Some("context_length_exceeded") {
                err.message = format!("{what}: {reason}");
            }
        }
    }
    err
}
