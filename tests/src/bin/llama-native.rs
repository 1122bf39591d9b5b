//! The native side of the speed harness, in a process of its own (so its start-up and peak
//! memory compare with `wasmedge`'s): llama-cpp-2 called directly.
//!
//!     llama-native MODEL PROMPT TOKENS THREADS
//!     llama-native --serve MODEL PROMPT TOKENS THREADS
//!
//! The first form loads the model, makes and warms a context, evaluates PROMPT, prints
//! `first_token` (the harness timestamps it from exec) and `load_ms`, and exits, as the
//! guest's `gen` does.
//!
//! `--serve` loads the model, makes and warms the context, then answers one line of stdin at
//! a time, ending each answer with `done`, as the guest's `serve-gen` does (the harness's
//! paired measurements):
//! `prompt` → `prompt_tokens`, `ttft_ms`; `stream` → `stream_token_ms` (median of TOKENS-1
//! steps after the first token); `decode` → `decode_ms`, `decode_tokens` (TOKENS-1 steps
//! after the prompt is evaluated again from the cache); `quit`.

use e2e::native::{load, Bench};
use std::io::{BufRead, Write};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let serve = args.first().is_some_and(|a| a == "--serve");
    if serve {
        args.remove(0);
    }
    let (model, prompt) = (std::path::Path::new(&args[0]), &args[1]);
    let (tokens, threads): (usize, i32) = (args[2].parse().unwrap(), args[3].parse().unwrap());
    let (model, load_ms) = load(model);
    let mut bench = Bench::new(&model, 4096, threads);
    let mut out = std::io::stdout().lock();
    if !serve {
        bench.prompt(prompt);
        writeln!(out, "first_token\nload_ms: {load_ms:.3}").unwrap();
        return;
    }
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match line.trim() {
            "prompt" => {
                let (prompt_tokens, ttft_ms) = bench.prompt(prompt);
                writeln!(out, "prompt_tokens: {prompt_tokens}\nttft_ms: {ttft_ms:.3}").unwrap();
            }
            "stream" => {
                bench.prompt(prompt);
                writeln!(out, "stream_token_ms: {:.4}", median(bench.steps(tokens - 1))).unwrap();
            }
            "decode" => {
                bench.prompt_cached(prompt);
                let ms: f64 = bench.steps(tokens - 1).iter().sum();
                writeln!(out, "decode_ms: {ms:.3}\ndecode_tokens: {}", tokens - 1).unwrap();
            }
            "quit" => return,
            other => panic!("unknown command {other:?}"),
        }
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
    }
}
