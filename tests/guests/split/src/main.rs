//! Loads a preloaded model with a load config and streams a greedy answer, printing each
//! token on its own line as it comes; then, for each line on stdin, does it all again (load
//! included; a line `again N` sets N_PREDICT), until stdin ends. What the RPC tests drive: they stop and restart rpc-servers
//! between attempts, and read what each attempt got.
//!
//!     split.wasm MODEL LOAD_CONFIG PROMPT N_PREDICT
//!
//! Prints `token: <its bytes in hex>` per token, then `end`, or `load-error: <error>` /
//! `compute-error: <error>` (Debug: `BackendError(RuntimeError)`), then `ready` when it waits for the next line.

use std::io::{BufRead, Write};
use wasmedge_wasi_nn::{BackendError, Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

fn attempt(name: &str, config: &str, prompt: &str, n_predict: &str) {
    let mut out = std::io::stdout().lock();
    let graph = match GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO)
        .config(config.to_string())
        .build_from_cache(name)
    {
        Ok(graph) => graph,
        Err(e) => {
            let _ = writeln!(out, "load-error: {e:?}");
            return;
        }
    };
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    let metadata = format!(r#"{{"temp": 0, "n-predict": {n_predict}}}"#);
    ctx.set_input(1, TensorType::U8, &[1], metadata.as_bytes()).expect("metadata");
    let prompt = format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n");
    if let Err(e) = ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()) {
        let _ = writeln!(out, "compute-error: {e:?}");
        return;
    }
    let mut buf = vec![0u8; 256];
    loop {
        match ctx.compute_single() {
            Ok(()) => {
                let n = ctx.get_output_single(0, &mut buf).expect("get_output_single");
                let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(out, "token: {hex}");
                let _ = out.flush();
            }
            Err(Error::BackendError(BackendError::EndOfSequence)) => {
                let _ = writeln!(out, "end");
                return;
            }
            Err(e) => {
                let _ = writeln!(out, "compute-error: {e:?}");
                return;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, config, prompt, n_predict] = args.as_slice() else {
        eprintln!("usage: split.wasm MODEL LOAD_CONFIG PROMPT N_PREDICT");
        std::process::exit(2);
    };
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut n_predict = n_predict.clone();
    loop {
        attempt(name, config, prompt, &n_predict);
        println!("ready");
        let _ = std::io::stdout().flush();
        match lines.next() {
            // `again [N_PREDICT]`
            Some(Ok(line)) => {
                if let Some(n) = line.split_whitespace().nth(1) {
                    n_predict = n.to_string();
                }
            }
            _ => break,
        }
    }
}
