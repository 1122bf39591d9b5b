//! Two execution contexts of one graph, advanced alternately token by token, then each run
//! alone. Prints `interleaved_a`, `interleaved_b`, `alone_a`, `alone_b` lines (the token
//! streams, Rust-escaped) so a test can check that interleaving changes nothing.
//!
//!     wasmedge --nn-preload default:GGML:AUTO:model.gguf interleave.wasm default

use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

const QUESTIONS: [&str; 2] = ["Write a poem about the moon.", "Explain how a bicycle works."];

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

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(&name).expect("load");

    let mut ctxs = [context(&graph, QUESTIONS[0]), context(&graph, QUESTIONS[1])];
    let mut streams: [Vec<Vec<u8>>; 2] = Default::default();
    let mut done = [false; 2];
    while !done.iter().all(|d| *d) {
        for i in 0..2 {
            if !done[i] {
                match next(&mut ctxs[i]) {
                    Some(t) => streams[i].push(t),
                    None => done[i] = true,
                }
            }
        }
    }
    print("interleaved_a", &streams[0]);
    print("interleaved_b", &streams[1]);

    for (label, q) in [("alone_a", QUESTIONS[0]), ("alone_b", QUESTIONS[1])] {
        let mut ctx = context(&graph, q);
        let mut stream = Vec::new();
        while let Some(t) = next(&mut ctx) {
            stream.push(t);
        }
        print(label, &stream);
    }
}
