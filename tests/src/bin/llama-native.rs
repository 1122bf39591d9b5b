//! The native side of the speed harness, in a process of its own (so its start-up and peak
//! memory compare with `wasmedge`'s): llama-cpp-2 called directly.
//!
//!     llama-native MODEL PROMPT TOKENS THREADS
//!
//! Prints `label: value` lines: `load_ms`, `prompt_tokens`, `ttft_ms`, `stream_token_ms`
//! (median of the later tokens), `decode_ms` (all later tokens).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prompt = &args[2];
    let (tokens, threads): (usize, i32) = (args[3].parse().unwrap(), args[4].parse().unwrap());
    let first_token = || {
        use std::io::Write;
        println!("first_token");
        let _ = std::io::stdout().flush();
    };
    let s = e2e::native::speed(std::path::Path::new(&args[1]), prompt, tokens, 4096, threads, first_token);
    let mut steps = s.token_ms.clone();
    steps.sort_by(f64::total_cmp);
    println!("load_ms: {:.3}", s.load_ms);
    println!("prompt_tokens: {}", s.prompt_tokens);
    println!("ttft_ms: {:.3}", s.ttft_ms);
    println!("stream_token_ms: {:.4}", steps.get(steps.len() / 2).copied().unwrap_or(f64::NAN));
    println!("decode_ms: {:.3}", s.token_ms.iter().sum::<f64>());
}
