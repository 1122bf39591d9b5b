//! The server guest (guest-examples/server) under the real `wasmedge` CLI, judged by the
//! clients its users have: OpenAI's Python client (tests/server/openai_client.py), raw HTTP
//! for what no client sends on purpose, and headless Chromium driven by Selenium for the page
//! (tests/server/browser.py). Answers are checked against native llama.cpp.

use e2e::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `server.wasm` with these preloads and flags, on a free port; returns once /health
    /// answers.
    fn start(preloads: &[String], flags: &[&str]) -> Self {
        Self::start_on(&[], &[], preloads, flags)
    }

    /// As `start`, with environment variables and options for WasmEdge and the plugin
    /// (`host`) too.
    fn start_on(env: &[(&str, &str)], host: &[&str], preloads: &[String], flags: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = wasmedge_command();
        cmd.envs(env.iter().copied())
            .current_dir(root())
            .env("WASMEDGE_PLUGIN_PATH", plugin_dir())
            .args(["--dir", ".:."])
            .args(host);
        for p in preloads {
            cmd.args(["--nn-preload", p]);
        }
        cmd.arg(guest("server")).args(["--host", "127.0.0.1", "--port", &port.to_string()]).args(flags);
        let child = cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit()).spawn().expect("start wasmedge");
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("the server exited at start: {status}");
            }
            if server.get("/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return server;
            }
            assert!(Instant::now() < deadline, "the server did not answer /health within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request on its own connection (closed after it); the whole response.
    fn exchange(&self, request: &[u8]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(request).ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn get(&self, path: &str) -> Option<String> {
        self.exchange(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
    }

    fn post(&self, path: &str, body: &str) -> String {
        self.exchange(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .expect("an answer")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let p = var_path("NN_CACHE").join("venv-clients/bin/python");
    assert!(p.is_file(), "{} is missing: scripts/setup-tests.sh makes it", p.display());
    p
}

/// Run a client script; its stdout (asserting it succeeded).
fn client(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("tests/server").join(script))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed: {}", out.status);
    stdout
}

fn answers(stdout: &str, what: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("answer: "))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a["what"] == what)
        .unwrap_or_else(|| panic!("no {what} answer in:\n{stdout}"))
}

#[test]
fn the_openai_client_gets_what_it_expects_and_greedy_answers_are_llama_cpps() {
    let preloads = [ggml_preload("chat", SMOLLM2), format!("asr:Whisper:AUTO:{}", model(WHISPER_TINY_EN))];
    let server = Server::start(&preloads, &["--chat", "chat", "--embed", "chat", "--asr", "asr", "--threads", "2"]);
    let stdout = client("openai_client.py", &[&server.base(), "chat", "asr", SPEECH]);
    assert!(stdout.contains("all ok"));

    // The greedy answer is native llama.cpp's for the prompt SmolLM2's own template makes of
    // a system and a user message (ChatML, as the chat example writes it by hand).
    let greedy = answers(&stdout, "greedy");
    let n = greedy["completion_tokens"].as_u64().unwrap() as usize;
    let (native, native_n) =
        e2e::native::generate(&root().join(model(SMOLLM2)), &chatml("What is the capital of France?"), n, 4096, 2);
    assert_eq!(greedy["content"].as_str().unwrap(), String::from_utf8_lossy(&native), "server vs native llama.cpp");
    assert_eq!(n, native_n);

    // The embedding is llama.cpp's embedding of the text.
    let embedding = answers(&stdout, "embedding");
    let (native, _) = e2e::native::embedding(&root().join(model(SMOLLM2)), "The cat sat.", 2);
    for (i, v) in embedding["embedding"].as_array().unwrap().iter().enumerate() {
        assert!((v.as_f64().unwrap() - f64::from(native[i])).abs() < 1e-4, "embedding[{i}]: {v} vs {}", native[i]);
    }
}

/// Gemma 3's Jinja template (tests/server/gemma3.jinja, as Gemma 3's GGUFs carry it; the test
/// model's GGUF has none, so it is given with --chat-template), rendered by the guest, makes
/// the prompt llama.cpp's own Gemma chat format makes, and the greedy answer is llama.cpp's.
#[test]
fn a_template_that_differs_from_chatml_renders_as_llama_cpp_renders_it() {
    let server = Server::start(
        &[ggml_preload("gemma", GEMMA3)],
        &["--chat", "gemma", "--chat-template", "tests/server/gemma3.jinja", "--threads", "2"],
    );
    let body = r#"{"model": "gemma", "temperature": 0, "max_tokens": 24, "messages": [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "What is the capital of France?"}]}"#;
    let response = server.post("/v1/chat/completions", body);
    let json: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let content = json["choices"][0]["message"]["content"].as_str().expect("content").to_owned();
    let n = json["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let prompt = e2e::native::chat_prompt(
        &root().join(model(GEMMA3)),
        "gemma",
        &[("system", "You answer briefly."), ("user", "What is the capital of France?")],
    );
    let (native, _) = e2e::native::generate(&root().join(model(GEMMA3)), &prompt, n, 4096, 2);
    assert_eq!(content, String::from_utf8_lossy(&native), "prompt natively: {prompt:?}");

    // The template's own checks speak: two user turns in a row are refused with its message.
    let body = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}"#;
    let response = server.post("/v1/chat/completions", body);
    assert!(
        response.starts_with("HTTP/1.1 400") && response.contains("Conversation roles must alternate"),
        "{response}"
    );
}

#[test]
fn bad_input_gets_an_http_error_and_the_server_keeps_serving() {
    let server = Server::start(
        &[ggml_preload("chat", SMOLLM2)],
        &[
            "--chat",
            "chat",
            "--contexts",
            "1",
            "--max-body-mib",
            "1",
            "--max-connections",
            "6",
            "--request-timeout",
            "1",
        ],
    );
    let status = |r: &str| r.split(' ').nth(1).unwrap_or("").to_owned();
    let error_of = |r: &str| -> serde_json::Value {
        let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|e| panic!("{e}: {r}"))["error"].clone()
    };

    // Malformed JSON, wrong types, an unknown model, an unknown route.
    let r = server.post("/v1/chat/completions", "{not json");
    assert_eq!((status(&r), error_of(&r)["type"].as_str()), ("400".into(), Some("invalid_request_error")), "{r}");
    let r = server.post("/v1/chat/completions", r#"{"messages": "hello"}"#);
    assert_eq!((status(&r), error_of(&r)["param"].as_str()), ("400".into(), Some("messages")), "{r}");
    let r =
        server.post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}"#);
    assert_eq!((status(&r), error_of(&r)["param"].as_str()), ("400".into(), Some("max_tokens")), "{r}");
    let r =
        server.post("/v1/chat/completions", r#"{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}"#);
    assert_eq!((status(&r), error_of(&r)["code"].as_str()), ("404".into(), Some("model_not_found")), "{r}");
    assert_eq!(status(&server.get("/v2/nothing").unwrap()), "404");
    // Not served here: embeddings and transcriptions, with the flag to give.
    let r = server.post("/v1/embeddings", r#"{"input": "x"}"#);
    assert!(status(&r) == "404" && error_of(&r)["message"].as_str().unwrap().contains("--embed"), "{r}");

    // A body over the cap is refused from its head, before it is read.
    let r = server
        .exchange(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{")
        .unwrap();
    assert_eq!(status(&r), "413", "{r}");

    // A half-sent request is answered 408 and closed after the request timeout.
    let mut slow = server.connect();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{").unwrap();
    let mut out = String::new();
    slow.read_to_string(&mut out).unwrap();
    assert_eq!(status(&out), "408", "{out}");

    // A flood: past the connection cap, 503 and closed; the server answers after.
    let held: Vec<TcpStream> = (0..6).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = server.get("/health").unwrap_or_default();
    assert_eq!(status(&r), "503", "{r}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&server.get("/health").unwrap()), "200");

    // A client that goes away mid-stream frees its context at once: with one context, the
    // next request is answered (not 503).
    let mut s = server.connect();
    let body =
        r#"{"messages": [{"role": "user", "content": "Write a long story."}], "stream": true, "max_tokens": 2000}"#;
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut first = [0u8; 512];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    // (The server sees the hang-up on its next pass over the sockets.)
    std::thread::sleep(Duration::from_millis(200));
    let r =
        server.post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}"#);
    assert_eq!(status(&r), "200", "{r}");

    // A prompt longer than the context: 400 with the reason.
    let long = format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "word ".repeat(6000));
    let r = server.post("/v1/chat/completions", &long);
    assert_eq!((status(&r), error_of(&r)["code"].as_str()), ("400".into(), Some("context_length_exceeded")), "{r}");
    assert_eq!(status(&server.get("/health").unwrap()), "200");
}

/// Eight clients stream at once, each getting its answer alone (greedy) while the plugin
/// decodes them in one batch; a client killed mid-stream leaves no job or busy context; the
/// next 100 requests run in the memory the server had: the heap's count when the engine ran
/// out of work (logged by the plugin at debug level) grows by less than 1/16 of the model
/// (tests/server/many_clients.py).
#[test]
fn eight_clients_at_once_get_their_solo_answers_and_a_killed_one_leaves_nothing() {
    let dir = tempfile::Builder::new().prefix("nn-many-clients").tempdir().unwrap();
    let log_file = dir.path().join("host.log");
    let server = Server::start_on(
        &[("WASMEDGE_NN_LOG", "debug"), ("WASMEDGE_NN_LOG_FILE", log_file.to_str().unwrap())],
        &["--nn-slots", "8"],
        &[ggml_preload("chat", SMOLLM2)],
        &["--chat", "chat", "--contexts", "8", "--ctx-size", "1024", "--threads", "2"],
    );
    let model_bytes = std::fs::metadata(root().join(model(SMOLLM2))).unwrap().len().to_string();
    let stdout = client(
        "many_clients.py",
        &[&server.base(), "chat", &server.child.id().to_string(), log_file.to_str().unwrap(), &model_bytes],
    );
    assert!(stdout.contains("all ok"));
}

#[test]
fn the_page_chats_sees_and_hears_in_chromium() {
    let preloads =
        [ggml_preload("tiny", "tiny/tiny-llama.gguf"), format!("asr:Whisper:AUTO:{}", model(WHISPER_TINY_EN))];
    let server =
        Server::start(&preloads, &["--chat", "tiny", "--mmproj", "test-models/tiny/tiny-mmproj.gguf", "--asr", "asr"]);
    let page = format!("http://127.0.0.1:{}/", server.port);
    let stdout = client(
        "browser.py",
        &[
            &page,
            &format!("{SPEECH}/paris.wav"),
            "test-models/tiny/picture-a.png",
            var_path("NN_CACHE").to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("all ok"));
}
