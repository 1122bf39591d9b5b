//! Answers one question by streaming from a preloaded model and writes what it got to a file,
//! because a host that embeds WasmEdge shares one stdout among all its guests:
//!
//!     answer.wasm MODEL QUESTION OUT_FILE [CONFIG_JSON]
//!
//! OUT_FILE gets three lines: the token count, the tokens (a Rust-escaped list), and output
//! 1's metadata.

use wasmedge_wasi_nn::{BackendError, Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, question, out_file, rest @ ..] = args.as_slice() else {
        eprintln!("usage: answer.wasm MODEL QUESTION OUT_FILE [CONFIG_JSON]");
        std::process::exit(2);
    };
    let config = rest.first().map_or(r#"{"temp": 0, "n-predict": 32}"#, String::as_str);
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(name).expect("load");
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()).expect("metadata");
    let prompt = format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n");
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");

    let mut tokens = Vec::new();
    let mut buf = vec![0u8; 256];
    loop {
        match ctx.compute_single() {
            Ok(()) => {
                let n = ctx.get_output_single(0, &mut buf).expect("get_output_single");
                tokens.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            Err(Error::BackendError(BackendError::EndOfSequence)) => break,
            Err(e) => panic!("compute_single: {e}"),
        }
    }
    let mut meta = vec![0u8; 4096];
    let n = ctx.get_output_single(1, &mut meta).expect("metadata output");
    let text = format!("{}\n{:?}\n{}\n", tokens.len(), tokens, String::from_utf8_lossy(&meta[..n]));
    std::fs::write(out_file, text).expect("write the answer file");
}
