//! The native side of the batching benchmark (scripts/bench-batch.sh): llama-cpp-2 decoding
//! N streams in one batch per step, as llama.cpp's `batched` example does.
//!
//!     llama-batched MODEL N TOKENS THREADS [--text]
//!
//! Prints `aggregate_tps` (N × TOKENS tokens over the whole run, prompts included) and
//! `ttft_ms` (every stream's first token comes from the one prompt batch); with `--text`,
//! each stream's greedy text decoded together (`batched_I`) and alone (`alone_I`) instead.

use e2e::native::{generate, generate_batched, load, time_batched};

/// The benchmark's prompts: the same as the guest's (tests/guests/bench-batch).
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (n, tokens, threads): (usize, usize, i32) =
        (args[1].parse().unwrap(), args[2].parse().unwrap(), args[3].parse().unwrap());
    let (model, _) = load(std::path::Path::new(&args[0]));
    let prompts: Vec<String> = (0..n)
        .map(|i| format!("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", QUESTIONS[i % QUESTIONS.len()]))
        .collect();
    if args.get(4).is_some_and(|a| a == "--text") {
        for (i, text) in generate_batched(&model, &prompts, tokens, 512, threads).iter().enumerate() {
            println!("batched_{i}: {:?}", String::from_utf8_lossy(text));
            let (alone, _) = generate(std::path::Path::new(&args[0]), &prompts[i], tokens, 512, threads);
            println!("alone_{i}: {:?}", String::from_utf8_lossy(&alone));
        }
        return;
    }
    let (ttft, total) = time_batched(&model, &prompts, tokens, 512, threads);
    println!("ttft_ms: {ttft:.3}");
    println!("aggregate_tps: {:.3}", (n * tokens) as f64 / (total / 1e3));
}
