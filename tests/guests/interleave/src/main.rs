//! N execution contexts of one graph (2 unless given), advanced in turn token by token, then
//! each run alone. Prints `interleaved_I` and `alone_I` lines (the token streams,
//! Rust-escaped) so a test can check that interleaving changes nothing, and `batched: B`, the
//! most tokens any of the interleaved tokens after the first was decoded with in one batch
//! (output 1's `batch_tokens`).
//!
//!     wasmedge --nn-preload default:GGML:AUTO:model.gguf interleave.wasm default [N] [reverse]
//!
//! With `reverse`, each round advances the streams last to first: the contexts given their
//! prompts last are computed first, so prompts the engine evaluated ahead for the others
//! are taken back when their slots are needed.
//!
//! With `cut` after N: N streams are started and given 3 tokens each, then the graph is
//! unloaded under them (`after_unload: CODE` for a context of it), loaded again and asked the
//! first question alone (`alone_0`); then N streams are started again and the guest ends with
//! them running (`ending`), which releases them with the instance.

use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

const QUESTIONS: [&str; 8] = [
    "Write a poem about the moon.",
    "Explain how a bicycle works.",
    "Name three colours.",
    "Why is the sky blue?",
    "Tell me a joke about cats.",
    "What is the capital of France?",
    "Describe a rainy day in London.",
    "Give me a recipe for pancakes.",
];

fn context(graph: &Graph, question: &str) -> GraphExecutionContext {
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    let prompt = format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n");
    ctx.set_input(1, TensorType::U8, &[1], br#"{"temp": 0, "n-predict": 24}"#).expect("metadata");
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    ctx
}

/// One step: the next token's bytes, or None once the stream is over.
fn next(ctx: &mut GraphExecutionContext) -> Option<Vec<u8>> {
    match ctx.compute_single() {
        Ok(()) => {
            let mut buf = vec![0u8; 256];
            let n = ctx.get_output_single(0, &mut buf).expect("get_output_single");
            buf.truncate(n);
            Some(buf)
        }
        Err(Error::BackendError(BackendError::EndOfSequence)) => None,
        Err(e) => panic!("compute_single: {e}"),
    }
}

fn print(label: &str, tokens: &[Vec<u8>]) {
    let text: Vec<String> = tokens.iter().map(|t| String::from_utf8_lossy(t).into_owned()).collect();
    println!("{label}: {} {:?}", tokens.len(), text);
}

/// Output 1's `batch_tokens` after the last token.
fn batch_tokens(ctx: &GraphExecutionContext) -> u64 {
    let mut buf = vec![0u8; 4096];
    let n = ctx.get_output_single(1, &mut buf).expect("output 1");
    let meta = String::from_utf8_lossy(&buf[..n]);
    let at = meta.find("\"batch_tokens\":").expect("batch_tokens in output 1") + "\"batch_tokens\":".len();
    meta[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

/// N streams started, 3 tokens each.
fn started(graph: &Graph, n: usize) -> Vec<GraphExecutionContext> {
    let mut ctxs: Vec<_> = QUESTIONS.iter().cycle().take(n).map(|q| context(graph, q)).collect();
    for _ in 0..3 {
        for ctx in &mut ctxs {
            next(ctx).expect("a token");
        }
    }
    ctxs
}

fn cut(name: &str, n: usize) {
    let load = || GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load");
    let graph = load();
    let mut ctxs = started(&graph, n);
    graph.unload().expect("unload");
    let code = match ctxs[0].compute_single() {
        Ok(()) => "a token".to_string(),
        Err(Error::BackendError(e)) => format!("{e:?}"),
        Err(e) => format!("{e}"),
    };
    println!("after_unload: {code}");
    let graph = load();
    let mut ctx = context(&graph, QUESTIONS[0]);
    let mut stream = Vec::new();
    while let Some(t) = next(&mut ctx) {
        stream.push(t);
    }
    print("alone_0", &stream);
    let running = started(&graph, n);
    println!("ending: {} streams running", running.len());
    // The instance ends here, its streams with it.
    std::mem::forget(running);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "default".into());
    let n: usize = args.next().map_or(2, |n| n.parse().expect("N"));
    let mode = args.next();
    if mode.as_deref() == Some("cut") {
        return cut(&name, n);
    }
    let order: Vec<usize> = if mode.as_deref() == Some("reverse") { (0..n).rev().collect() } else { (0..n).collect() };
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(&name).expect("load");
    let questions = || QUESTIONS.iter().cycle().take(n);

    let mut ctxs: Vec<_> = questions().map(|q| context(&graph, q)).collect();
    let mut streams = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut batched = 0;
    while !done.iter().all(|d| *d) {
        for &i in &order {
            if !done[i] {
                match next(&mut ctxs[i]) {
                    Some(t) => {
                        streams[i].push(t);
                        // (A first token's batch held its prompt.)
                        if streams[i].len() > 1 {
                            batched = batched.max(batch_tokens(&ctxs[i]));
                        }
                    }
                    None => done[i] = true,
                }
            }
        }
    }
    for (i, stream) in streams.iter().enumerate() {
        print(&format!("interleaved_{i}"), stream);
    }
    println!("batched: {batched}");

    for (i, q) in questions().enumerate() {
        let mut ctx = context(&graph, q);
        let mut stream = Vec::new();
        while let Some(t) = next(&mut ctx) {
            stream.push(t);
        }
        print(&format!("alone_{i}"), &stream);
    }
}
