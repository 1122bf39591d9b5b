//! The guest half of the speed harness (`tests/src/speed.rs`). Times, from inside the guest,
//! what an application sees, and prints one `label: value` line per figure:
//!
//!     bench-speed.wasm noop
//!     bench-speed.wasm gen NAME PROMPT TOKENS THREADS
//!     bench-speed.wasm serve-gen NAME PROMPT TOKENS THREADS [LOAD_CONFIG]
//!     bench-speed.wasm serve-asr NAME WAV_FILE THREADS
//!
//! `gen` loads the graph by name, makes and warms a context, streams the first token of
//! PROMPT, prints `first_token` (the harness timestamps it from exec) and `load_ms`
//! (load_by_name), and exits.
//!
//! The serving forms make and warm one context (its llama.cpp context made, as natively), then
//! answer one line of stdin at a time (LOAD_CONFIG: JSON the graph is loaded with, e.g.
//! `{"n-gpu-layers": 99}` for `scripts/gpu.sh`), ending each answer with `done`, as `llama-native
//! --serve` and `whisper-native --serve` do (the harness's paired measurements):
//! `prompt` → `prompt_tokens`, `ttft_ms` (prompt evaluation and the first token, through
//! `compute_single`); `stream` → `stream_token_ms` (the median later `compute_single` +
//! `get_output_single`); `decode` → `decode_ms`, `decode_tokens` (a whole `compute` of
//! TOKENS tokens, less its prompt part as output 1 reports it); `asr` → `transcribe_ms` (one
//! `compute`); `quit`.

use std::io::Write;
use std::time::Instant;
use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn out(ctx: &GraphExecutionContext, index: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 20];
    let n = ctx.get_output(index, &mut buf).expect("get_output");
    buf.truncate(n);
    buf
}

/// A context with `config`, warmed by one streamed token of another prompt.
fn warm(graph: &Graph, config: &str) -> GraphExecutionContext {
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
    ctx.set_input(0, TensorType::U8, &[1], b"Hi").expect("prompt");
    ctx.compute_single().expect("warm-up token");
    ctx.fini_single().expect("fini_single");
    ctx
}

fn gen(name: &str, prompt: &str, tokens: usize, threads: u32) {
    let started = Instant::now();
    let graph =
        GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load_by_name");
    let load_ms = ms(started);
    let mut ctx = warm(&graph, &gen_config(tokens, threads));
    let mut buf = vec![0u8; 256];
    first_token(&mut ctx, prompt, &mut buf);
    println!("first_token");
    println!("load_ms: {load_ms:.3}");
}

/// A number from output 1's JSON (no serde in this guest).
fn field(json: &str, key: &str) -> String {
    let at = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {json}")) + key.len() + 3;
    json[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-').collect()
}

/// The generation config of the harness's contexts.
fn gen_config(tokens: usize, threads: u32) -> String {
    format!(r#"{{"temp": 0, "n-predict": {tokens}, "ignore-eos": true, "threads": {threads}, "ctx-size": 4096}}"#)
}

/// One streamed first token of `prompt`, after the warm-up prompt (so that only the BOS
/// token is reused from the cache, as natively): its time in ms.
///
/// The warm-up stream does not run ahead (`run-ahead` 0): a stream stopped while the engine
/// computes a token ahead for it holds the next prompt up for the rest of that step (one
/// token's time), a cost of stopping a stream, not of evaluating a prompt, and one native
/// code has no counterpart of here.
fn first_token(ctx: &mut GraphExecutionContext, prompt: &str, buf: &mut [u8]) -> f64 {
    ctx.set_input(1, TensorType::U8, &[1], br#"{"run-ahead": 0}"#).expect("warm-up metadata");
    ctx.set_input(0, TensorType::U8, &[1], b"Hi").expect("warm-up prompt");
    ctx.compute_single().expect("warm-up token");
    ctx.fini_single().expect("fini_single");
    ctx.set_input(1, TensorType::U8, &[1], br#"{"run-ahead": 4}"#).expect("metadata");
    // From handing over the prompt (the plugin tokenizes it there) to the first token, as
    // natively from tokenizing to the first token.
    let t = Instant::now();
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    ctx.compute_single().expect("first token");
    ctx.get_output_single(0, buf).expect("get_output_single");
    ms(t)
}

/// Each later streamed token's time, until the end of the stream (which it finishes).
fn stream_steps(ctx: &mut GraphExecutionContext, buf: &mut [u8]) -> Vec<f64> {
    let mut steps = Vec::with_capacity(1024);
    loop {
        let t = Instant::now();
        match ctx.compute_single() {
            Ok(()) => {
                ctx.get_output_single(0, buf).expect("get_output_single");
                steps.push(ms(t));
            }
            Err(Error::BackendError(BackendError::EndOfSequence)) => break,
            Err(e) => panic!("compute_single: {e}"),
        }
    }
    ctx.fini_single().expect("fini_single");
    steps
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn serve(mut answer: impl FnMut(&str) -> bool) {
    for line in std::io::stdin().lines().map_while(Result::ok) {
        if line.trim() == "quit" || !answer(line.trim()) {
            return;
        }
        println!("done");
        let _ = std::io::stdout().flush();
    }
}

fn serve_gen(name: &str, prompt: &str, tokens: usize, threads: u32, load_config: Option<&String>) {
    let mut builder = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO);
    if let Some(config) = load_config {
        builder = builder.config(config.clone());
    }
    let graph = builder.build_from_cache(name).expect("load_by_name");
    let mut ctx = warm(&graph, &gen_config(tokens, threads));
    let mut buf = vec![0u8; 256];
    serve(|command| {
        match command {
            "prompt" => {
                let ttft = first_token(&mut ctx, prompt, &mut buf);
                ctx.fini_single().expect("fini_single");
                let n = field(&String::from_utf8(out(&ctx, 1)).unwrap(), "input_tokens");
                println!("prompt_tokens: {n}\nttft_ms: {ttft:.3}");
            }
            "stream" => {
                first_token(&mut ctx, prompt, &mut buf);
                println!("stream_token_ms: {:.4}", median(stream_steps(&mut ctx, &mut buf)));
            }
            "decode" => {
                // From before the prompt is given: the engine starts evaluating it then.
                let t = Instant::now();
                ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
                ctx.compute().expect("compute");
                let compute_ms = ms(t);
                let meta = String::from_utf8(out(&ctx, 1)).unwrap();
                let prompt_ms: f64 = field(&meta, "prompt_ms").parse().unwrap();
                let tokens: f64 = field(&meta, "output_tokens").parse().unwrap();
                println!("decode_ms: {:.3}\ndecode_tokens: {}", compute_ms - prompt_ms, tokens - 1.0);
            }
            other => panic!("unknown command {other:?}"),
        }
        true
    });
}

fn serve_asr(name: &str, wav: &str, threads: u32) {
    let audio = std::fs::read(wav).expect("the WAV file");
    let graph = GraphBuilder::new(GraphEncoding::Whisper, ExecutionTarget::AUTO)
        .config(format!(r#"{{"threads": {threads}}}"#))
        .build_from_cache(name)
        .expect("load_by_name");
    let mut ctx = graph.init_execution_context().unwrap();
    ctx.set_input(0, TensorType::F32, &[1, audio.len()], &audio).unwrap();
    serve(|command| {
        assert_eq!(command, "asr", "unknown command");
        let t = Instant::now();
        ctx.compute().expect("compute");
        println!("transcribe_ms: {:.3}", ms(t));
        true
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("noop") => {}
        Some("gen") => gen(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap()),
        Some("serve-gen") => {
            serve_gen(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap(), args.get(6))
        }
        Some("serve-asr") => serve_asr(&args[2], &args[3], args[4].parse().unwrap()),
        _ => panic!(
            "usage: noop | gen NAME PROMPT TOKENS THREADS | serve-gen NAME PROMPT TOKENS THREADS [LOAD_CONFIG] | serve-asr NAME WAV THREADS"
        ),
    }
}
