//! What a long-running guest built with the public guest crate does: a new execution
//! context for every request, never finalized (wasmedge-wasi-nn 0.8 cannot), on one
//! preloaded model. Prints `label: value` lines:
//!
//!     contexts.wasm NAME N [MARK...]
//!
//! `wrong: I TEXT` for any request whose answer is not the expected one (or whose call
//! failed), `answered: N` at the end, and `rss K: KIB` and `peak K: KIB` (the host's resident
//! memory now and at its highest, read from /hostproc/status when the host maps its
//! /proc/self there) after request K for every MARK.

use wasmedge_wasi_nn::{ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

/// The questions asked in turn, with a word each answer must contain.
const QUESTIONS: [(&str, &str); 3] = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Japan?", "Tokyo"),
];

/// A line of the host's /proc/self/status, in KiB: `VmRSS` (now) or `VmHWM` (the peak).
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/hostproc/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = &args[1];
    let n: usize = args[2].parse().expect("N");
    let marks: Vec<usize> = args[3..].iter().map(|m| m.parse().expect("MARK")).collect();
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO)
        .config(r#"{"temp": 0, "n-predict": 8, "ctx-size": 256}"#.to_string())
        .build_from_cache(name)
        .expect("load_by_name");
    // The contexts are kept, as a guest that never finalizes keeps them.
    let mut kept = Vec::with_capacity(n);
    let mut answered = 0;
    let mut buf = vec![0u8; 4096];
    for i in 1..=n {
        let (question, word) = QUESTIONS[i % QUESTIONS.len()];
        let prompt = format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n");
        let answer = graph.init_execution_context().and_then(|mut ctx| {
            ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes())?;
            ctx.compute()?;
            let n = ctx.get_output(0, &mut buf)?;
            kept.push(ctx);
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        });
        match answer {
            Ok(text) if text.contains(word) => answered += 1,
            Ok(text) => println!("wrong: {i} {text:?}"),
            Err(e) => println!("wrong: {i} {e}"),
        }
        if marks.contains(&i) {
            println!("rss {i}: {}", status_kib("VmRSS:"));
            println!("peak {i}: {}", status_kib("VmHWM:"));
        }
    }
    println!("answered: {answered}");
}
