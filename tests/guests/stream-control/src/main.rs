//! Drives the host's streaming workers from a guest and prints `label: value` lines:
//!
//!     stream-control.wasm NAME windows   the same stream with run-ahead 0, 1, 4 and 64, and
//!                                        `compute`; then cancelling by fini_single, by a new
//!                                        set_input and by finalizing, mid-stream
//!     stream-control.wasm NAME ready     output 3 (ready) of a long prompt's context: 0 while
//!                                        the prompt is evaluated ahead, then 1; while it
//!                                        streams with run-ahead 4 and 0; after its end
//!     stream-control.wasm NAME limits    meets a host started with --nn-max-contexts 2 and
//!                                        WASMEDGE_NN_SLOTS=1 (one sequence slot):
//!                                        two streams take turns in it
//!
//! Token streams are printed as Rust-escaped lists, so a test can compare them exactly.

use std::time::Instant;
use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

const PROMPT: &str = "<|im_start|>user\nWrite a story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n";
const OTHER: &str = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n";

fn context(graph: &Graph, config: &str, prompt: &str) -> GraphExecutionContext {
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    ctx
}

/// One step: Ok(Some(bytes)), Ok(None) at the end, or the error.
fn next(ctx: &mut GraphExecutionContext) -> Result<Option<Vec<u8>>, Error> {
    match ctx.compute_single() {
        Ok(()) => {
            let mut buf = vec![0u8; 256];
            let n = ctx.get_output_single(0, &mut buf).expect("get_output_single");
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Error::BackendError(BackendError::EndOfSequence)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The whole stream (or its first `max` tokens), ended with fini_single.
fn stream(ctx: &mut GraphExecutionContext, max: usize) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    while tokens.len() < max {
        match next(ctx).expect("compute_single") {
            Some(t) => tokens.push(t),
            None => break,
        }
    }
    tokens
}

fn show(tokens: &[Vec<u8>]) -> String {
    let text: Vec<String> = tokens.iter().map(|t| String::from_utf8_lossy(t).into_owned()).collect();
    format!("{} {:?}", tokens.len(), text)
}

fn compute(ctx: &mut GraphExecutionContext) -> String {
    ctx.compute().expect("compute");
    let mut buf = vec![0u8; 64 * 1024];
    let n = ctx.get_output(0, &mut buf).expect("get_output");
    format!("{:?}", String::from_utf8_lossy(&buf[..n]))
}

fn code<T>(r: Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::BackendError(e)) => format!("{e:?}"),
        Err(e) => format!("{e}"),
    }
}

#[link(wasm_import_module = "wasi_ephemeral_nn")]
extern "C" {
    fn finalize_execution_context(ctx: u32) -> u32;
}

/// The guest crate has no finalize: call the import with the handle its Debug shows.
fn finalize(ctx: GraphExecutionContext) -> String {
    let handle: u32 = format!("{ctx:?}").parse().expect("a context's Debug is its handle");
    match unsafe { finalize_execution_context(handle) } {
        0 => "ok".into(),
        code => code.to_string(),
    }
}

fn ms(since: Instant) -> String {
    format!("{:.3}", since.elapsed().as_secs_f64() * 1e3)
}

fn windows(graph: &Graph) {
    for window in [0, 1, 4, 64] {
        let config = format!(r#"{{"temp": 0, "n-predict": 40, "run-ahead": {window}}}"#);
        let mut ctx = context(graph, &config, PROMPT);
        println!("run_ahead_{window}: {}", show(&stream(&mut ctx, usize::MAX)));
    }
    let mut ctx = context(graph, r#"{"temp": 0, "n-predict": 40}"#, PROMPT);
    println!("compute: {}", compute(&mut ctx));

    // A long stream stopped after 3 tokens; the context then streams the prompt afresh.
    let long = r#"{"temp": 0, "n-predict": 2000, "ctx-size": 4096, "run-ahead": 8}"#;
    let mut ctx = context(graph, long, PROMPT);
    let first = stream(&mut ctx, 3);
    let t = Instant::now();
    println!("fini_single: {}", code(ctx.fini_single()));
    println!("fini_single_ms: {}", ms(t));
    ctx.set_input(1, TensorType::U8, &[1], br#"{"n-predict": 40}"#).expect("metadata");
    println!("first_3: {}", show(&first));
    println!("after_fini: {}", show(&stream(&mut ctx, usize::MAX)));

    // A new prompt in the middle of a stream ends it; compute then answers the new prompt.
    let mut ctx = context(graph, long, PROMPT);
    stream(&mut ctx, 3);
    ctx.set_input(1, TensorType::U8, &[1], br#"{"n-predict": 40}"#).expect("metadata");
    ctx.set_input(0, TensorType::U8, &[1], OTHER.as_bytes()).expect("prompt");
    println!("after_set_input: {}", compute(&mut ctx));
    let mut fresh = context(graph, r#"{"temp": 0, "n-predict": 40}"#, OTHER);
    println!("fresh_other: {}", compute(&mut fresh));

    // Finalizing a context in the middle of a stream stops its worker.
    let mut ctx = context(graph, long, PROMPT);
    stream(&mut ctx, 3);
    let t = Instant::now();
    println!("finalize: {}", finalize(ctx));
    println!("finalize_ms: {}", ms(t));
}

fn limits(graph: &Graph) {
    let config = r#"{"temp": 0, "n-predict": 12}"#;
    let mut a = context(graph, config, PROMPT);
    let mut b = context(graph, config, OTHER);
    println!("third_context: {}", code(graph.init_execution_context()));
    // One sequence slot (WASMEDGE_NN_SLOTS=1): the two streams take turns in it, each
    // one's KV copied out while the other runs and copied back for its next token.
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        if !a_done {
            match next(&mut a).expect("a's stream") {
                Some(t) => from_a.push(t),
                None => a_done = true,
            }
        }
        if !b_done {
            match next(&mut b).expect("b's stream") {
                Some(t) => from_b.push(t),
                None => b_done = true,
            }
        }
    }
    println!("a_interleaved: {}", show(&from_a));
    println!("b_interleaved: {}", show(&from_b));
    // A context with its KV out of the slot resumes its conversation where it was.
    println!("a_fini: {}", code(a.fini_single()));
    println!("a_finalize: {}", finalize(a));
    let mut alone = context(graph, config, PROMPT);
    println!("a_alone: {}", show(&stream(&mut alone, usize::MAX)));
    println!("b_alone_compute: {}", compute(again(&mut b, config, OTHER)));
}

/// `ctx` given `config` and `prompt` again (after a finished stream), for a compute.
fn again<'c>(ctx: &'c mut GraphExecutionContext, config: &str, prompt: &str) -> &'c mut GraphExecutionContext {
    ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    ctx
}

/// Output 3: whether compute_single would not wait on work under way.
fn ready(ctx: &GraphExecutionContext) -> u32 {
    let mut buf = [0u8; 4];
    let n = ctx.get_output(3, &mut buf).expect("output 3");
    assert_eq!(n, 4, "output 3 is a u32");
    u32::from_le_bytes(buf)
}

fn readiness(graph: &Graph) {
    // About 1,500 tokens: evaluated ahead in three micro-batches, many milliseconds.
    let words = ["the", "ship", "sea", "storm", "light", "keeper", "night", "wave", "rock", "island"];
    let text: Vec<&str> = (0..1400).map(|i| words[(i * 7 + i / 3) % words.len()]).collect();
    let prompt = format!("<|im_start|>system\n{}<|im_end|>\n{}", text.join(" "), PROMPT);
    let config = r#"{"temp": 0, "n-predict": 12, "ctx-size": 2048}"#;
    let mut ctx = context(graph, config, &prompt);
    println!("after_set_input: {}", ready(&ctx));
    let started = Instant::now();
    let mut polls = 0u32;
    while ready(&ctx) == 0 {
        polls += 1;
        assert!(started.elapsed().as_secs() < 120, "output 3 never said ready");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    println!("became_ready_after_polls: {polls}");
    println!("became_ready_ms: {:.1}", started.elapsed().as_secs_f64() * 1e3);
    // Streamed with run-ahead 4: each token read only once output 3 says it is there.
    let mut tokens = Vec::new();
    let mut waits = 0u32;
    loop {
        while ready(&ctx) == 0 {
            waits += 1;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        match next(&mut ctx).expect("stream") {
            Some(t) => tokens.push(t),
            None => break,
        }
    }
    println!("after_end: {}", ready(&ctx));
    println!("polled_stream: {}", show(&tokens));
    println!("stream_waits: {waits}");
    ctx.fini_single().expect("fini_single");
    // Run-ahead 0: nothing is computed until asked, so it is always ready.
    let config0 = r#"{"temp": 0, "n-predict": 12, "ctx-size": 2048, "run-ahead": 0}"#;
    let mut zero = context(graph, config0, &prompt);
    while ready(&zero) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut always = true;
    let mut plain = Vec::new();
    while let Some(t) = next(&mut zero).expect("stream") {
        plain.push(t);
        always &= ready(&zero) == 1;
    }
    println!("run_ahead_0_always_ready: {always}");
    println!("plain_stream: {}", show(&plain));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("default", String::as_str);
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load");
    match args.get(2).map(String::as_str) {
        Some("limits") => limits(&graph),
        Some("ready") => readiness(&graph),
        _ => windows(&graph),
    }
}
