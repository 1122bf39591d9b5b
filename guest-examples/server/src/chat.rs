//! `POST /v1/chat/completions`: a request read into a prompt (the model's chat template),
//! pictures and sampling settings; then a job that draws one token per step and sends it on,
//! as Server-Sent Events or as one JSON answer at the end.

use crate::error::{self, ApiError};
use crate::http;
use crate::net::{ConnId, Out};
use crate::tools::{self, Tools};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use wasmedge_wasi_nn::{BackendError, Error as NnError, GraphExecutionContext, TensorType};

/// What a request asks for, checked.
pub struct ChatRequest {
    pub messages: Vec<Value>,
    pub images: Vec<Vec<u8>>,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// llama.cpp's server's extension: generate past end-of-generation (to `max_tokens`).
    pub ignore_eos: bool,
    /// A JSON schema the answer must follow (`response_format`).
    pub schema: Option<Value>,
    pub tools: Option<Tools>,
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn number(body: &Map<String, Value>, name: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if (min..=max).contains(&v) {
                Ok(Some(v))
            } else {
                Err(ApiError::invalid(name, format!("'{name}' is {v}; it must be between {min} and {max}")))
            }
        }
        Some(other) => Err(ApiError::invalid(name, format!("'{name}' must be a number, not {other}"))),
    }
}

fn integer(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a non-negative integer, not {v}"))),
    }
}

fn boolean(body: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match field(body, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::invalid(name, format!("'{name}' must be true or false, not {v}"))),
    }
}

/// Read and check a request body. `vision`: the model sees pictures.
pub fn parse(body: &Map<String, Value>, vision: bool) -> Result<ChatRequest, ApiError> {
    let Some(Value::Array(given)) = field(body, "messages") else {
        return Err(ApiError::invalid("messages", "'messages' must be an array of messages"));
    };
    if given.is_empty() {
        return Err(ApiError::invalid("messages", "'messages' is empty"));
    }
    let mut images = Vec::new();
    let mut messages = Vec::with_capacity(given.len());
    for (i, m) in given.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::invalid(&format!("messages[{i}]"), "each message must be an object"));
        };
        messages.push(message(m, i, vision, &mut images)?);
    }
    let max_tokens = match integer(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => integer(body, "max_tokens")?,
    };
    let stop = match field(body, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| ApiError::invalid("stop", "'stop' must be a string or an array of strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("stop", "'stop' must be a string or an array of strings")),
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "'stop' takes up to 4 non-empty strings"));
    }
    let include_usage = match field(body, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?,
        Some(_) => return Err(ApiError::invalid("stream_options", "'stream_options' must be an object")),
    };
    let schema = response_schema(field(body, "response_format"))?;
    let tools = tools::parse(field(body, "tools"), field(body, "tool_choice"))?;
    if tools.is_some() && schema.is_some() {
        return Err(ApiError::invalid("response_format", "give 'tools' or a JSON 'response_format', not both"));
    }
    Ok(ChatRequest {
        messages,
        images,
        stream: boolean(body, "stream")?,
        include_usage,
        max_tokens,
        temperature: number(body, "temperature", 0.0, 2.0)?.unwrap_or(0.8),
        top_p: number(body, "top_p", 0.0, 1.0)?.unwrap_or(0.95),
        seed: integer(body, "seed")?,
        stop,
        ignore_eos: boolean(body, "ignore_eos")?,
        schema,
        tools,
    })
}

/// One message for the template: its role, and its content as text (pictures become
/// `<image>` markers, their bytes go to `images`).
fn message(m: &Map<String, Value>, i: usize, vision: bool, images: &mut Vec<Vec<u8>>) -> Result<Value, ApiError> {
    let param = format!("messages[{i}]");
    let role = match m.get("role") {
        Some(Value::String(r)) if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => r.as_str(),
        _ => return Err(ApiError::invalid(&format!("{param}.role"), "'role' must be system, developer, user, assistant or tool")),
    };
    let mut text = String::new();
    match m.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let param = format!("{param}.content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text") {
                        Some(Value::String(s)) => text.push_str(s),
                        _ => return Err(ApiError::invalid(&param, "a text part needs 'text', a string")),
                    },
                    Some("image_url") => {
                        if !vision {
                            return Err(ApiError::invalid(
                                &param,
                                "this server's model does not see pictures: start the server with --mmproj, the model's projector",
                            ));
                        }
                        let url = part
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| ApiError::invalid(&param, "an image_url part needs 'image_url': {\"url\": ...}"))?;
                        images.push(data_uri(url).map_err(|m| ApiError::invalid(&param, m))?);
                        text.push_str("<image>");
                    }
                    _ => return Err(ApiError::invalid(&param, "content parts are {\"type\": \"text\"} or {\"type\": \"image_url\"}")),
                }
            }
        }
        Some(_) => return Err(ApiError::invalid(&format!("{param}.content"), "'content' must be a string or an array of parts")),
    }
    // A NUL cannot reach the model (prompts with pictures go to llama.cpp as C strings); a
    // small model's earlier answer can hold one.
    if text.contains('\0') {
        text = text.replace('\0', "\u{FFFD}");
    }
    let role = if role == "developer" { "system" } else { role };
    match role {
        // A call the assistant made, in the form it was asked to answer in (tools.rs).
        "assistant" => match m.get("tool_calls") {
            Some(Value::Array(calls)) if !calls.is_empty() => Ok(json!({"role": "assistant", "content": tools::history_of_calls(calls)})),
            _ => Ok(json!({"role": "assistant", "content": text})),
        },
        // A tool's result goes back as the user's turn (templates that know no tool role
        // accept it; those that alternate roles stay alternating).
        "tool" => {
            let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
            Ok(json!({"role": "user", "content": json!({"tool_response": {"tool_call_id": id, "content": text}}).to_string()}))
        }
        _ => Ok(json!({"role": role, "content": text})),
    }
}

/// The bytes of a `data:` URI (pictures come inline; this server fetches nothing).
fn data_uri(url: &str) -> Result<Vec<u8>, String> {
    let rest = url.strip_prefix("data:").ok_or("pictures must be data: URIs (data:image/png;base64,...); this server fetches no URLs")?;
    let (meta, data) = rest.split_once(',').ok_or("a data: URI without a comma")?;
    if !meta.ends_with(";base64") {
        return Err("a data: URI must be base64 (data:image/...;base64,...)".into());
    }
    base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| format!("the picture's base64 does not decode: {e}"))
}

/// `response_format` as a JSON schema (None: free text).
fn response_schema(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = format else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(format.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"})))),
        Some("json_schema") => match format.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema @ Value::Object(_)) => Ok(Some(schema.clone())),
            _ => Err(ApiError::invalid("response_format", "'json_schema' needs 'schema', an object")),
        },
        _ => Err(ApiError::invalid("response_format", "'response_format.type' is text, json_object or json_schema")),
    }
}

impl ChatRequest {
    /// The context's metadata for this request: every sampling key, so that nothing of an
    /// earlier request on the same context stays.
    pub fn metadata(&self) -> String {
        let schema = match (&self.schema, &self.tools) {
            (Some(s), _) => s.to_string(),
            (None, Some(t)) => t.schema().to_string(),
            (None, None) => String::new(),
        };
        json!({
            "n-predict": self.max_tokens.map_or(-1, |n| n.min(i64::MAX as u64) as i64),
            "temp": self.temperature,
            "top-p": self.top_p,
            // Above 2^32 - 2: a random seed.
            "seed": self.seed.map_or(u32::MAX as u64, |s| s & 0xFFFF_FFFF),
            "ignore-eos": self.ignore_eos,
            "grammar": "",
            "json-schema": schema,
            "run-ahead": 4,
        })
        .to_string()
    }
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
    piece: Vec<u8>,
}

pub enum Step {
    Running,
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
        if self.request.stream && self.request.tools.is_none() {
            if !self.started {
                bytes.extend(http::stream_head("text/event-stream", self.keep_alive));
                http::event(&mut bytes, &self.chunk_json(json!({"role": "assistant", "content": ""}), None));
                self.started = true;
            }
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
            if !self.started {
                bytes.extend(http::stream_head("text/event-stream", self.keep_alive));
                http::event(bytes, &self.chunk_json(json!({"role": "assistant", "content": ""}), None));
                self.started = true;
            }
            if self.request.tools.is_some() {
                // Buffered (the answer is JSON until it is whole): sent as one delta.
                let delta = match &tool_calls {
                    Some(calls) => json!({"tool_calls": calls.iter().enumerate().map(|(i, c)| {
                        let mut c = c.clone();
                        c["index"] = json!(i);
                        c
                    }).collect::<Vec<_>>()}),
                    None => json!({"content": content}),
                };
                http::event(bytes, &self.chunk_json(delta, None));
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
