//! The guest half of `scripts/bench-batch.sh`: N concurrent streams of one preloaded model,
//! driven round-robin from the guest's one thread, as a server guest serves N clients.
//!
//!     bench-batch.wasm NAME N TOKENS THREADS          N streams started at once
//!     bench-batch.wasm NAME N TOKENS THREADS late     N-1 streams generating, then one more
//!
//! Each stream: greedy, `ignore-eos`, TOKENS tokens, one of the benchmark's prompts. Prints
//! `aggregate_tps` (all tokens over the whole run, prompts included), `ttft_ms` (median time
//! from a stream's start to its first token) and `max_batch` (the largest batch a token was
//! decoded in). With `late`: `late_ttft_ms` (the last stream's first token, started once
//! the others have each made TOKENS/4 tokens), `solo_prompt_ms` (its prompt's evaluation
//! with nothing else running, as output 1 reports it) and `step_ms` (the first stream's time
//! per token, one engine step, over its whole run).

use std::time::Instant;
use wasmedge_wasi_nn::{ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType};

/// The benchmark's prompts, the same on the native side (tests/src/bin/llama-batched.rs).
pub const QUESTIONS: [&str; 8] = [
    "Write a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe a rainy day in London.",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Write a poem about the moon.",
    "Tell me about the history of Rome.",
    "How do airplanes fly?",
];

fn prompt(i: usize) -> String {
    format!("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", QUESTIONS[i % QUESTIONS.len()])
}

fn context(graph: &Graph, i: usize, tokens: usize, threads: u32) -> GraphExecutionContext {
    context_for(graph, &prompt(i), tokens, threads)
}

fn context_for(graph: &Graph, prompt: &str, tokens: usize, threads: u32) -> GraphExecutionContext {
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    // A window of 64: streams go on while the guest waits on another (for the late stream).
    let config = format!(
        r#"{{"temp": 0, "ignore-eos": true, "n-predict": {tokens}, "ctx-size": 512, "threads": {threads}, "run-ahead": 64}}"#
    );
    ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    ctx
}

/// One token, and output 1 after it.
fn step(ctx: &mut GraphExecutionContext, meta: &mut [u8]) -> Option<String> {
    ctx.compute_single().ok()?;
    let mut buf = [0u8; 256];
    ctx.get_output_single(0, &mut buf).expect("get_output_single");
    let n = ctx.get_output_single(1, meta).expect("output 1");
    Some(String::from_utf8_lossy(&meta[..n]).into_owned())
}

fn number(meta: &str, key: &str) -> f64 {
    let at = meta.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    meta[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect::<String>().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (name, n, tokens, threads) = (
        &args[1],
        args[2].parse::<usize>().unwrap(),
        args[3].parse::<usize>().unwrap(),
        args[4].parse::<u32>().unwrap(),
    );
    let late = args.get(5).is_some_and(|a| a == "late");
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load");
    let mut meta = vec![0u8; 4096];
    // Warm up (the engine's context is made, ggml's threads started); then the late stream's
    // prompt time with nothing else running, on a fresh context of the warm engine. Each of
    // these prompts and the late stream's starts with its own tag, so that none finds another's
    // start in a slot's KV cache: each is evaluated whole.
    let mut solo_prompt_ms = 0.0;
    for tag in ["A:", "B:"] {
        let mut warm = context_for(&graph, &format!("{tag}\n{}", prompt(n - 1)), 4, threads);
        let first = step(&mut warm, &mut meta).expect("a warm-up token");
        solo_prompt_ms = number(&first, "prompt_ms");
        assert!(
            number(&first, "prompt_tokens_reused") <= 1.0,
            "the solo prompt found its start in a slot (beyond BOS)"
        );
        while step(&mut warm, &mut meta).is_some() {}
    }

    let started = Instant::now();
    let early = if late { n - 1 } else { n };
    let mut ctxs: Vec<_> = (0..early).map(|i| context(&graph, i, tokens, threads)).collect();
    let mut starts = vec![started; early];
    let mut counts = vec![0usize; early];
    let mut ttft = vec![0.0; early];
    let mut max_batch = 0.0f64;
    let mut late_one: Option<usize> = None;
    loop {
        let mut any = false;
        for i in 0..ctxs.len() {
            if counts[i] == tokens {
                continue;
            }
            let Some(m) = step(&mut ctxs[i], &mut meta) else {
                counts[i] = tokens;
                continue;
            };
            any = true;
            counts[i] += 1;
            max_batch = max_batch.max(number(&m, "batch_tokens"));
            if counts[i] == 1 {
                ttft[i] = starts[i].elapsed().as_secs_f64() * 1e3;
                if late_one == Some(i) {
                    println!("late_ttft_ms: {:.3}", ttft[i]);
                    println!("late_prompt_reused: {}", number(&m, "prompt_tokens_reused"));
                    println!("solo_prompt_ms: {solo_prompt_ms:.3}");
                }
            }
            if late && i == 0 && counts[i] == tokens {
                // The others' time per token, from output 1: one engine step each.
                println!("step_ms: {:.3}", number(&m, "generation_ms") / tokens as f64);
            }
        }
        if late && late_one.is_none() && counts.iter().all(|&c| c >= tokens / 4) {
            // The last stream starts while the others generate (their windows let them run on
            // while the guest waits for its first token).
            ctxs.push(context_for(&graph, &format!("C:\n{}", prompt(n - 1)), tokens, threads));
            starts.push(Instant::now());
            counts.push(0);
            ttft.push(0.0);
            late_one = Some(ctxs.len() - 1);
            any = true;
        }
        if !any {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total: usize = counts.iter().sum();
    println!("tokens: {total}");
    println!("aggregate_tps: {:.3}", total as f64 / secs);
    println!("ttft_ms: {:.3}", median(ttft));
    println!("max_batch: {max_batch}");
}
