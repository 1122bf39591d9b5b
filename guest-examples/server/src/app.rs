//! The server's routes and its running jobs: a request becomes a whole answer at once (models,
//! health, embeddings, the page) or a job (a chat answer, a transcription) that the event
//! loop advances one step at a time beside the others.

use crate::audio::{self, TranscriptionJob};
use crate::chat::{ChatJob, Step};
use crate::models::Models;
use crate::net::{App, ConnId, Out, Reply};
use crate::web;
use serde_json::{json, Value};
use server_api::http::{self, Request};
use server_api::body::{check_model, json_object};
use server_api::ApiError;

enum Job {
    Chat(ChatJob),
    Transcription(TranscriptionJob),
}

pub struct Server {
    models: Models,
    jobs: Vec<Job>,
    serial: u64,
    started: u64,
}

impl Server {
    pub fn new(models: Models) -> Self {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { models, jobs: Vec::new(), serial: 0, started }
    }

    fn route(&mut self, conn: ConnId, request: Request) -> Result<Reply, ApiError> {
        let keep = request.keep_alive;
        let whole = |status: u16, body: Value| Ok(Reply::Whole(http::json(status, &body, keep), keep));
        match (request.method.as_str(), request.path.as_str()) {
            ("OPTIONS", _) => Ok(Reply::Whole(http::preflight(keep), keep)),
            ("GET", "/health") => whole(200, self.health()),
            ("GET", "/v1/models") => whole(200, json!({"object": "list", "data": self.model_list()})),
            ("GET", path) if path.starts_with("/v1/models/") => {
                let id = &path["/v1/models/".len()..];
                match self.model_list().into_iter().find(|m| m["id"] == id) {
                    Some(m) => whole(200, m),
                    None => Err(ApiError::new(404, format!("no model {id:?} here; GET /v1/models lists them"), "invalid_request_error")
                        .with_code("model_not_found")),
                }
            }
            ("POST", "/v1/chat/completions") => self.chat(conn, &request),
            ("POST", "/v1/embeddings") => {
                let body = json_object(&request.body)?;
                let embed = self.models.embed.as_mut().ok_or_else(|| not_served("embeddings", "--embed NAME"))?;
                check_model(&body, &embed.name)?;
                let name = embed.name.clone();
                whole(200, crate::embeddings::answer(&mut embed.ctx, &body, &name)?)
            }
            ("POST", "/v1/audio/transcriptions") => {
                let asr = self.models.asr.as_mut().ok_or_else(|| not_served("transcriptions", "--asr NAME"))?;
                let ctx = asr.idle.pop().ok_or_else(|| ApiError::busy("the speech model is transcribing; try again"))?;
                match audio::start(conn, ctx, &request) {
                    Ok(job) => {
                        self.jobs.push(Job::Transcription(job));
                        Ok(Reply::Started)
                    }
                    Err((ctx, e)) => {
                        asr.idle.push(ctx);
                        Err(e)
                    }
                }
            }
            ("GET", path) => match web::file(path) {
                Some((content_type, body)) => Ok(Reply::Whole(http::response(200, content_type, body, keep, ""), keep)),
                None => Err(ApiError::new(404, format!("nothing at {path}"), "invalid_request_error")),
            },
            (_, path) if matches!(path, "/v1/chat/completions" | "/v1/embeddings" | "/v1/audio/transcriptions") => {
                Err(ApiError::new(405, format!("{path} takes POST"), "invalid_request_error"))
            }
            (method, path) => Err(ApiError::new(404, format!("no route for {method} {path}"), "invalid_request_error")),
        }
    }

    /// `ok`, and what is in use: the requests being answered (`jobs`) and the chat model's
    /// contexts (made, and busy answering). A client gone leaves nothing counted here.
    fn health(&self) -> Value {
        let mut health = json!({"status": "ok", "jobs": self.jobs.len()});
        if let Some(chat) = &self.models.chat {
            let (made, busy) = chat.pool.counts();
            health["chat_contexts"] = json!({"made": made, "busy": busy, "max": chat.pool.max()});
        }
        health
    }

    /// Each model served, with what it does here (`capabilities`) and, for the chat model,
    /// what the plugin says about it (`meta`, as llama.cpp's server; the template left out).
    fn model_list(&self) -> Vec<Value> {
        let mut list: Vec<Value> = Vec::new();
        let mut add = |name: &str, capability: &str, meta: Option<&Value>| {
            let entry = match list.iter_mut().position(|m| m["id"] == name) {
                Some(i) => &mut list[i],
                None => {
                    list.push(json!({"id": name, "object": "model", "created": self.started, "owned_by": "wasmedge-nn", "capabilities": []}));
                    list.last_mut().expect("just pushed")
                }
            };
            if let Some(Value::Array(c)) = entry.get_mut("capabilities") {
                c.push(json!(capability));
            }
            if let Some(meta) = meta {
                let mut meta = meta.clone();
                if let Some(o) = meta.as_object_mut() {
                    o.remove("chat_template");
                }
                entry["meta"] = meta;
            }
        };
        if let Some(c) = &self.models.chat {
            add(&c.name, "chat", Some(&c.info));
            if c.vision {
                add(&c.name, "vision", None);
            }
        }
        if let Some(e) = &self.models.embed {
            add(&e.name, "embeddings", None);
        }
        if let Some(a) = &self.models.asr {
            add(&a.name, "transcription", None);
        }
        list
    }

    fn chat(&mut self, conn: ConnId, request: &Request) -> Result<Reply, ApiError> {
        let body = json_object(&request.body)?;
        let chat = self.models.chat.as_mut().ok_or_else(|| not_served("chat completions", "--chat NAME"))?;
        check_model(&body, &chat.name)?;
        let mut parsed = server_api::chat::parse(&body, chat.vision)?;
        if let Some(tools) = &parsed.tools {
            parsed.messages.insert(0, json!({"role": "system", "content": tools.instructions()}));
            merge_system_messages(&mut parsed.messages);
        }
        let prompt = chat.template.render(&parsed.messages).map_err(|m| {
            ApiError::invalid("messages", format!("the model's chat template refused these messages: {m}"))
        })?;
        let ctx = chat.pool.take(prompt.as_bytes())?;
        self.serial += 1;
        let mut job = ChatJob::new(conn, ctx, prompt, parsed, chat.name.clone(), request.keep_alive, self.serial);
        if let Err(e) = job.begin() {
            if let Some(ctx) = job.ctx.take() {
                chat.pool.give(ctx, Vec::new());
            }
            return Err(e);
        }
        self.jobs.push(Job::Chat(job));
        Ok(Reply::Started)
    }
}

/// Two system messages in a row (the tools' instructions and the client's own) become one:
/// some templates take only one, first.
fn merge_system_messages(messages: &mut Vec<Value>) {
    if messages.len() > 1 && messages[1]["role"] == "system" {
        let second = messages.remove(1);
        let joined = format!("{}\n\n{}", second["content"].as_str().unwrap_or(""), messages[0]["content"].as_str().unwrap_or(""));
        messages[0]["content"] = Value::String(joined);
    }
}

fn not_served(what: &str, flag: &str) -> ApiError {
    ApiError::new(404, format!("this server does not serve {what}: start it with {flag}"), "invalid_request_error")
}

impl App for Server {
    fn request(&mut self, conn: ConnId, request: Request) -> Reply {
        let keep = request.keep_alive;
        match self.route(conn, request) {
            Ok(reply) => reply,
            Err(e) => Reply::Whole(e.response(keep), keep),
        }
    }

    fn step(&mut self, out: &mut Vec<Out>) -> bool {
        let mut advanced = false;
        let mut i = 0;
        while i < self.jobs.len() {
            let done = match &mut self.jobs[i] {
                Job::Chat(job) => match job.step(out) {
                    Step::Waiting => false,
                    Step::Running => {
                        advanced = true;
                        false
                    }
                    Step::Done(ctx, history) => {
                        self.models.give_chat(ctx, history);
                        true
                    }
                    Step::Failed(ctx) => {
                        self.models.give_chat(ctx, Vec::new());
                        true
                    }
                },
                Job::Transcription(job) => match job.step(out) {
                    None => {
                        advanced = true;
                        false
                    }
                    Some(ctx) => {
                        self.models.give_asr(ctx);
                        true
                    }
                },
            };
            if done {
                advanced = true;
                self.jobs.swap_remove(i);
            } else {
                i += 1;
            }
        }
        advanced
    }

    fn busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    fn cancel(&mut self, conn: ConnId) {
        let mut i = 0;
        while i < self.jobs.len() {
            let mine = match &self.jobs[i] {
                Job::Chat(j) => j.conn == conn,
                Job::Transcription(j) => j.conn == conn,
            };
            if !mine {
                i += 1;
                continue;
            }
            match self.jobs.swap_remove(i) {
                Job::Chat(mut job) => {
                    if let Some(mut ctx) = job.ctx.take() {
                        // Stops the generation at once; the context is free for the next request.
                        let _ = ctx.fini_single();
                        self.models.give_chat(ctx, Vec::new());
                    }
                }
                Job::Transcription(mut job) => {
                    if let Some(mut ctx) = job.ctx.take() {
                        let _ = ctx.fini_single();
                        self.models.give_asr(ctx);
                    }
                }
            }
        }
    }
}
