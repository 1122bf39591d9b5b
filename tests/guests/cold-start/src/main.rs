//! What one serverless request does in a fresh process: load a preloaded model by name, give
//! a context its metadata and a prompt read from a file (an agent's long fixed instructions
//! and a question), and stream the answer. Prints `label: value` lines:
//!
//!     cold-start.wasm NAME PROMPT_FILE CONFIG_JSON
//!
//! `load_ms` (load_by_name), `first_token_ms` (from giving the prompt to the first token, as
//! the guest sees it), `answer_ms` (to the end of the answer), `answer` (Rust-escaped) and
//! `metadata` (output 1, which says how many prompt tokens came from the prompt cache). A
//! failing call prints `error: <call>: <error>` and exits with 1.

use std::time::Instant;
use wasmedge_wasi_nn::{BackendError, Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

fn ok<T>(what: &str, r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| {
        println!("error: {what}: {e:?}");
        std::process::exit(1)
    })
}

fn ms(since: Instant) -> String {
    format!("{:.3}", since.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, prompt_file, config] = args.as_slice() else {
        eprintln!("usage: cold-start.wasm NAME PROMPT_FILE CONFIG_JSON");
        std::process::exit(2);
    };
    let prompt = std::fs::read(prompt_file).unwrap_or_else(|e| {
        println!("error: read {prompt_file}: {e}");
        std::process::exit(1)
    });
    let started = Instant::now();
    let graph =
        ok("load_by_name", GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name));
    println!("load_ms: {}", ms(started));
    let mut ctx = ok("init_execution_context", graph.init_execution_context());
    ok("set_input(1)", ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()));
    let asked = Instant::now();
    ok("set_input(0)", ctx.set_input(0, TensorType::U8, &[1], &prompt));
    let mut answer = String::new();
    let mut first = true;
    let mut buf = vec![0u8; 4096];
    loop {
        match ctx.compute_single() {
            Ok(()) => {
                if std::mem::take(&mut first) {
                    println!("first_token_ms: {}", ms(asked));
                }
                let n = ok("get_output_single", ctx.get_output_single(0, &mut buf));
                answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            Err(Error::BackendError(BackendError::EndOfSequence)) => break,
            Err(e) => ok("compute_single", Err(e)),
        }
    }
    println!("answer_ms: {}", ms(asked));
    println!("answer: {answer:?}");
    let n = ok("get_output_single(1)", ctx.get_output_single(1, &mut buf));
    println!("metadata: {}", String::from_utf8_lossy(&buf[..n]));
}
