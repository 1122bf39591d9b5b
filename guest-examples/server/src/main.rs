//! An OpenAI-compatible HTTP server over preloaded models, with a web page that hears, sees
//! and answers. One thread: non-blocking sockets and an event loop in which every stream
//! advances a token at a time, the plugin's engine decoding them together.
//!
//!     wasmedge --dir .:. --nn-preload chat:GGML:AUTO:model.gguf \
//!         --nn-preload asr:Whisper:AUTO:ggml-tiny.en.bin \
//!         server.wasm --port 8080 --chat chat --asr asr
//!
//! Then open http://localhost:8080/, or point an OpenAI client at http://localhost:8080/v1.

mod app;
mod audio;
mod chat;
mod embeddings;
mod error;
mod models;
mod net;
mod pool;
mod template;
mod web;

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: server.wasm [--port 8080] [--host 0.0.0.0] [--chat NAME [--mmproj FILE] [--chat-template FILE]] [--embed NAME] [--asr NAME]
                  [--ctx-size 4096] [--contexts 16] [--threads N] [--max-connections 256] [--max-body-mib 32] [--request-timeout 30]
  NAME is a model preloaded by the host (wasmedge --nn-preload NAME:GGML:AUTO:model.gguf, NAME:Whisper:AUTO:ggml-*.bin)
  --chat      the GGUF chat model for /v1/chat/completions (and the page's chat)
  --mmproj    its projector (a file in a --dir the guest was given): pictures in chats
  --chat-template  a Jinja chat template file to use instead of the model's own (for a GGUF without one; default then: ChatML)
  --embed     a GGUF model for /v1/embeddings (may be the chat model's name)
  --asr       a Whisper model for /v1/audio/transcriptions (and the page's microphone)
  --contexts  chat requests answered at once (contexts kept, each remembering its last conversation)
  --max-connections  open connections at once; more are answered 503 and closed
  --max-body-mib     largest request body (pictures, audio); larger: 413
  --request-timeout  seconds a request may take to arrive whole; slower: 408";

struct Args {
    host: String,
    port: u16,
    models: models::Settings,
    max_connections: usize,
    max_body_mib: usize,
    request_timeout: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "0.0.0.0".into(),
        port: 8080,
        models: models::Settings { chat: None, chat_template: None, mmproj: None, embed: None, asr: None, ctx_size: 4096, contexts: 16, threads: None },
        max_connections: 256,
        max_body_mib: 32,
        request_timeout: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag} takes a number, not {v:?}"));
        match flag.as_str() {
            "--host" => args.host = value,
            "--port" => args.port = u16::try_from(number(&value)?).map_err(|_| "--port is 0 to 65535".to_owned())?,
            "--chat" => args.models.chat = Some(value),
            "--mmproj" => args.models.mmproj = Some(value),
            "--chat-template" => args.models.chat_template = Some(value),
            "--embed" => args.models.embed = Some(value),
            "--asr" => args.models.asr = Some(value),
            "--ctx-size" => args.models.ctx_size = number(&value)? as u32,
            "--contexts" => args.models.contexts = number(&value)?.max(1) as usize,
            "--threads" => args.models.threads = Some(number(&value)? as u32),
            "--max-connections" => args.max_connections = number(&value)?.max(1) as usize,
            "--max-body-mib" => args.max_body_mib = number(&value)?.max(1) as usize,
            "--request-timeout" => args.request_timeout = number(&value)?.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("server: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let models = match models::Models::load(&args.models) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match wasmedge_wasi_socket::TcpListener::bind((args.host.as_str(), args.port), true) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("server: cannot listen on {}:{}: {e}", args.host, args.port);
            return ExitCode::FAILURE;
        }
    };
    let served: Vec<String> = [("chat", &args.models.chat), ("embeddings", &args.models.embed), ("transcriptions", &args.models.asr)]
        .iter()
        .filter_map(|(what, name)| name.as_ref().map(|n| format!("{what}: {n}")))
        .collect();
    eprintln!("server: listening on http://{}:{}/ ({})", args.host, args.port, served.join(", "));
    let limits = net::Limits {
        max_connections: args.max_connections,
        max_body: args.max_body_mib << 20,
        request_timeout: Duration::from_secs(args.request_timeout),
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
    };
    let mut server = app::Server::new(models);
    match net::serve(listener, limits, &mut server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
