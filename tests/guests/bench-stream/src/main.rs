//! The guest half of `cargo bench -p e2e --bench streaming`. Times, from inside the guest,
//! what a streaming agent sees, and prints one `label: {json}` line per measurement:
//!
//!     bench-stream.wasm NAME TOKENS THREADS
//!
//! - `stream_run_ahead_W`: each `compute_single` + `get_output_single` pair (W = 0: the
//!   generation runs in the guest's thread; W = 4: on a worker running ahead);
//! - `io_run_ahead_W`: the same while the guest spends 5 ms per token elsewhere (sleeping,
//!   as when it sends the token on), so a worker can compute meanwhile;
//! - `turn_K`: time to first token of turn K of a chat on one context (prefix reuse) and on
//!   a fresh one given the whole conversation;
//! - `fini_single`: how long stopping a long stream takes.

use std::time::{Duration, Instant};
use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

/// The same prompt as the native side of the benchmark.
pub const PROMPT: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a long story about a lighthouse keeper and a storm.<|im_end|>\n<|im_start|>assistant\n";

const QUESTIONS: [&str; 6] = [
    "Name a large animal.",
    "Where does it live?",
    "What does it eat?",
    "How long does it live?",
    "Is it endangered?",
    "Tell me one surprising fact about it.",
];
/// Canned answers keep every turn's prompt the same from run to run.
const ANSWER: &str = "The African elephant is the largest land animal. It lives in savannas and forests, eats grasses, leaves and bark, and can live for about seventy years.";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn context(graph: &Graph, config: &str) -> GraphExecutionContext {
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
    ctx
}

/// A context whose llama.cpp context is already made (by streaming a token of an unrelated
/// prompt), so time to first token is the prompt's and the token's only, as natively.
fn warm_context(graph: &Graph, config: &str) -> GraphExecutionContext {
    let mut ctx = context(graph, config);
    ctx.set_input(0, TensorType::U8, &[1], b"Hi").expect("prompt");
    stream(&mut ctx, 1, Duration::ZERO);
    ctx
}

/// One token: whether there was one.
fn step(ctx: &mut GraphExecutionContext, buf: &mut [u8]) -> bool {
    match ctx.compute_single() {
        Ok(()) => {
            ctx.get_output_single(0, buf).expect("get_output_single");
            true
        }
        Err(Error::BackendError(BackendError::EndOfSequence)) => false,
        Err(e) => panic!("compute_single: {e}"),
    }
}

/// Stream up to `max` tokens, doing `work` between tokens: (time to first token, the wait of
/// every later token, total time).
fn stream(ctx: &mut GraphExecutionContext, max: usize, work: Duration) -> (f64, Vec<f64>, f64) {
    let mut buf = vec![0u8; 256];
    let start = Instant::now();
    assert!(step(ctx, &mut buf), "no first token");
    let ttft = ms(start.elapsed());
    let mut waits = Vec::with_capacity(max);
    while waits.len() + 1 < max {
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        let t = Instant::now();
        if !step(ctx, &mut buf) {
            break;
        }
        waits.push(ms(t.elapsed()));
    }
    let total = ms(start.elapsed());
    // End the stream: an unfinished one keeps its worker thread.
    ctx.fini_single().expect("fini_single");
    (ttft, waits, total)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("default", String::as_str);
    let tokens: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(128);
    let threads: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2);
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load");
    let config = |run_ahead: u32, n_predict: usize| {
        format!(
            r#"{{"temp": 0, "n-predict": {n_predict}, "threads": {threads}, "ctx-size": 4096, "run-ahead": {run_ahead}, "ignore-eos": true}}"#
        )
    };

    // Warm up: the first context pays for graph setup.
    let mut warm = context(&graph, &config(0, 4));
    warm.set_input(0, TensorType::U8, &[1], PROMPT.as_bytes()).expect("prompt");
    stream(&mut warm, 4, Duration::ZERO);

    for (label, work) in [("stream", Duration::ZERO), ("io", Duration::from_millis(5))] {
        for run_ahead in [0, 4] {
            let mut ctx = warm_context(&graph, &config(run_ahead, tokens));
            ctx.set_input(0, TensorType::U8, &[1], PROMPT.as_bytes()).expect("prompt");
            let (ttft, mut waits, total) = stream(&mut ctx, tokens, work);
            println!(
                r#"{label}_run_ahead_{run_ahead}: {{"ttft_ms": {ttft:.3}, "mean_ms": {:.4}, "median_ms": {:.4}, "tokens": {}, "total_ms": {total:.1}}}"#,
                mean(&waits),
                median(&mut waits),
                waits.len() + 1
            );
        }
    }

    // Chat turns: one context keeps the conversation; a fresh one sees it whole each turn.
    let mut chat = warm_context(&graph, &config(4, 1));
    let mut conversation = String::from("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    let meta = |ctx: &GraphExecutionContext| {
        let mut buf = vec![0u8; 4096];
        let n = ctx.get_output_single(1, &mut buf).expect("metadata");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    for (k, question) in QUESTIONS.iter().enumerate() {
        conversation.push_str(&format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"));
        chat.set_input(0, TensorType::U8, &[1], conversation.as_bytes()).expect("prompt");
        let (reuse_ttft, _, _) = stream(&mut chat, 1, Duration::ZERO);
        let reuse_meta = meta(&chat);

        let mut fresh = warm_context(&graph, &config(4, 1));
        fresh.set_input(0, TensorType::U8, &[1], conversation.as_bytes()).expect("prompt");
        let (fresh_ttft, _, _) = stream(&mut fresh, 1, Duration::ZERO);
        let fresh_meta = meta(&fresh);
        println!(
            r#"turn_{}: {{"reuse_ttft_ms": {reuse_ttft:.3}, "fresh_ttft_ms": {fresh_ttft:.3}, "reuse": {reuse_meta}, "fresh": {fresh_meta}}}"#,
            k + 1
        );
        conversation.push_str(ANSWER);
        conversation.push_str("<|im_end|>\n");
    }

    // Stopping a long stream after some tokens.
    let mut stops = Vec::new();
    let mut token_times = Vec::new();
    for _ in 0..5 {
        let mut ctx = context(&graph, &config(4, 2000));
        ctx.set_input(0, TensorType::U8, &[1], PROMPT.as_bytes()).expect("prompt");
        let mut buf = vec![0u8; 256];
        for _ in 0..32 {
            let t = Instant::now();
            assert!(step(&mut ctx, &mut buf));
            token_times.push(ms(t.elapsed()));
        }
        let t = Instant::now();
        ctx.fini_single().expect("fini_single");
        stops.push(ms(t.elapsed()));
    }
    println!(
        r#"fini_single: {{"median_ms": {:.3}, "max_ms": {:.3}, "token_median_ms": {:.3}}}"#,
        median(&mut stops.clone()),
        stops.iter().cloned().fold(0.0, f64::max),
        median(&mut token_times)
    );
}
