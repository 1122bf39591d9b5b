//! The guest half of the speed harness (`tests/src/speed.rs`). Times, from inside the guest,
//! what an application sees, and prints one `label: value` line per figure:
//!
//!     bench-speed.wasm noop
//!     bench-speed.wasm gen NAME PROMPT TOKENS THREADS
//!     bench-speed.wasm asr NAME WAV_FILE THREADS
//!
//! `gen` prints `first_token` the moment the first streamed token arrives (the harness
//! timestamps it from exec), then: `load_ms` (load_by_name), `prompt_tokens`, `ttft_ms`
//! (prompt evaluation and the first token, through `compute_single`), `stream_token_ms` (the
//! median later `compute_single` + `get_output_single`), `compute_ms` and `compute_prompt_ms`
//! (a whole `compute` of TOKENS tokens, and its prompt part as output 1 reports it). One
//! context does it all, warmed first (its llama.cpp context made), as natively.
//! `asr` prints `transcribe_ms` (one `compute`) and `audio_ms`.

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
    let config =
        format!(r#"{{"temp": 0, "n-predict": {tokens}, "ignore-eos": true, "threads": {threads}, "ctx-size": 4096}}"#);
    let started = Instant::now();
    let graph =
        GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load_by_name");
    let load_ms = ms(started);

    // Streaming: time to first token, then each later token.
    let mut ctx = warm(&graph, &config);
    let mut buf = vec![0u8; 256];
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    let t = Instant::now();
    ctx.compute_single().expect("first token");
    ctx.get_output_single(0, &mut buf).expect("get_output_single");
    let ttft_ms = ms(t);
    println!("first_token");
    let _ = std::io::stdout().flush();
    let mut steps = Vec::with_capacity(tokens);
    loop {
        let t = Instant::now();
        match ctx.compute_single() {
            Ok(()) => {
                ctx.get_output_single(0, &mut buf).expect("get_output_single");
                steps.push(ms(t));
            }
            Err(Error::BackendError(BackendError::EndOfSequence)) => break,
            Err(e) => panic!("compute_single: {e}"),
        }
    }
    ctx.fini_single().expect("fini_single");
    let meta = String::from_utf8(out(&ctx, 1)).unwrap();
    let prompt_tokens = field(&meta, "input_tokens");
    let stream_prompt_ms = field(&meta, "prompt_ms");
    steps.sort_by(f64::total_cmp);

    // A whole compute on the same context (one KV cache, as natively; the prompt is reused
    // from the cache, and output 1's prompt time is taken off the total).
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    let t = Instant::now();
    ctx.compute().expect("compute");
    let compute_ms = ms(t);
    let meta = String::from_utf8(out(&ctx, 1)).unwrap();

    println!("load_ms: {load_ms:.3}");
    println!("prompt_tokens: {prompt_tokens}");
    println!("ttft_ms: {ttft_ms:.3}");
    println!("stream_prompt_ms: {stream_prompt_ms}");
    println!("stream_tokens: {}", steps.len() + 1);
    println!("stream_token_ms: {:.4}", steps.get(steps.len() / 2).copied().unwrap_or(f64::NAN));
    println!("compute_ms: {compute_ms:.3}");
    println!("compute_prompt_ms: {}", field(&meta, "prompt_ms"));
    println!("compute_tokens: {}", field(&meta, "output_tokens"));
}

/// A number from output 1's JSON (no serde in this guest).
fn field(json: &str, key: &str) -> String {
    let at = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {json}")) + key.len() + 3;
    json[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-').collect()
}

fn asr(name: &str, wav: &str, threads: u32) {
    let audio = std::fs::read(wav).expect("the WAV file");
    let graph = GraphBuilder::new(GraphEncoding::Whisper, ExecutionTarget::AUTO)
        .config(format!(r#"{{"threads": {threads}}}"#))
        .build_from_cache(name)
        .expect("load_by_name");
    let mut ctx = graph.init_execution_context().unwrap();
    ctx.set_input(0, TensorType::F32, &[1, audio.len()], &audio).unwrap();
    let t = Instant::now();
    ctx.compute().expect("compute");
    println!("transcribe_ms: {:.3}", ms(t));
    // 16-bit mono 16 kHz with a 44-byte header (the harness's sample).
    println!("audio_ms: {:.3}", (audio.len() - 44) as f64 / 2.0 / 16.0);
    assert!(!out(&ctx, 0).is_empty(), "empty transcript");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("noop") => {}
        Some("gen") => gen(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap()),
        Some("asr") => asr(&args[2], &args[3], args[4].parse().unwrap()),
        _ => panic!("usage: noop | gen NAME PROMPT TOKENS THREADS | asr NAME WAV THREADS"),
    }
}
