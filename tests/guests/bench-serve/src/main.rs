//! The direct half of `scripts/bench-server.sh`: the work the server guest does for N clients
//! that each send R chat requests one after another, driven through the plugin from one
//! thread without HTTP, JSON or templates, so the difference is what the HTTP layer costs.
//!
//!     bench-serve.wasm NAME N R TOKENS THREADS
//!
//! Each client has its own context (the server's pool gives a client's next request the
//! context that served its last); a request is the prompt the server's template makes of the
//! benchmark's messages (tests/server/load.py), greedy, `ignore-eos`, TOKENS tokens. As the
//! server does, a request whose prompt the plugin is still evaluating is skipped until output
//! 3 says it is ready. Prints `requests`, `seconds`, `requests_per_second`, `ttft_ms` (median
//! from a request's start to its first token), `ttft_p90_ms` and `tokens_per_second`.

use std::time::Instant;
use wasmedge_wasi_nn::{ExecutionTarget, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType};

/// The same questions and system message as tests/server/load.py.
const QUESTIONS: [&str; 8] = [
    "Write a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe a rainy day in London.",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Write a poem about the moon.",
    "Tell me about the history of Rome.",
    "How do airplanes fly?",
];
const SYSTEM: &str = "You are a helpful assistant.";

/// What SmolLM2's template (ChatML) makes of the system message and client `c`'s request `k`.
fn prompt(c: usize, k: usize) -> String {
    let question = QUESTIONS[(c + k) % QUESTIONS.len()];
    format!(
        "<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n({c}.{k}) {question}<|im_end|>\n<|im_start|>assistant\n"
    )
}

fn ready(ctx: &GraphExecutionContext) -> bool {
    let mut r = [0u8; 4];
    !matches!(ctx.get_output(3, &mut r), Ok(4) if r == [0; 4])
}

struct Client {
    ctx: GraphExecutionContext,
    done: usize,
    started: Instant,
    tokens: usize,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| args[i].parse::<usize>().expect("a number");
    let (name, n, r, tokens, threads) = (&args[1], num(2), num(3), num(4), num(5));
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load");
    let config =
        format!(r#"{{"temp": 0, "ignore-eos": true, "n-predict": {tokens}, "ctx-size": 1024, "threads": {threads}}}"#);
    let begin = |ctx: &mut GraphExecutionContext, c: usize, k: usize| {
        ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
        ctx.set_input(0, TensorType::U8, &[1], prompt(c, k).as_bytes()).expect("prompt");
    };
    // Warm-up: the engine's context made, ggml's threads started.
    {
        let mut warm = graph.init_execution_context().expect("context");
        begin(&mut warm, 99, 0);
        while warm.compute_single().is_ok() {}
    }
    let started = Instant::now();
    let mut clients: Vec<Client> = (0..n)
        .map(|c| {
            let mut ctx = graph.init_execution_context().expect("context");
            begin(&mut ctx, c, 0);
            Client { ctx, done: 0, started: Instant::now(), tokens: 0 }
        })
        .collect();
    let mut ttft = Vec::new();
    let mut total_tokens = 0usize;
    let mut piece = vec![0u8; 256];
    while clients.iter().any(|c| c.done < r) {
        let mut advanced = false;
        for (c, client) in clients.iter_mut().enumerate() {
            if client.done == r || (client.tokens == 0 && !ready(&client.ctx)) {
                continue;
            }
            advanced = true;
            if client.ctx.compute_single().is_ok() {
                client.ctx.get_output_single(0, &mut piece).expect("get_output_single");
                client.tokens += 1;
                if client.tokens == 1 {
                    ttft.push(client.started.elapsed().as_secs_f64() * 1e3);
                }
                continue;
            }
            assert_eq!(client.tokens, tokens, "client {c}'s request {} ended early", client.done);
            total_tokens += client.tokens;
            client.done += 1;
            client.tokens = 0;
            if client.done < r {
                begin(&mut client.ctx, c, client.done);
                client.started = Instant::now();
            }
        }
        if !advanced {
            // Every request waits for its prompt: sleep as the server's loop does in poll.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = n * r;
    println!("requests: {requests}");
    println!("seconds: {seconds:.3}");
    println!("requests_per_second: {:.3}", requests as f64 / seconds);
    println!("ttft_ms: {:.3}", percentile(&mut ttft, 0.5));
    println!("ttft_p90_ms: {:.3}", percentile(&mut ttft, 0.9));
    println!("tokens_per_second: {:.3}", total_tokens as f64 / seconds);
}
