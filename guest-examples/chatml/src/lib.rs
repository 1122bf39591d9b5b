//! What the example guests share: the ChatML prompt and arguments of `chat` and `stream`,
//! reading outputs, and printing a stream.
//!
//! Usage of `chat` and `stream`: `<program>.wasm MODEL_NAME QUESTION [CONFIG_JSON]`, with the
//! model given to wasmedge as `--nn-preload MODEL_NAME:GGML:AUTO:model.gguf`.

use serde_json::{json, Value};
use std::io::Write;
use wasmedge_wasi_nn::{BackendError, Error, ExecutionTarget, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType};

/// The system prompt. (SmolLM2-135M at Q4_1 rambles in French with its own default one.)
pub const SYSTEM: &str = "You are a helpful assistant.";

/// A one-turn conversation in ChatML, the chat template of SmolLM2, Qwen and others.
pub fn chatml_prompt(system: &str, user: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

pub struct Args {
    pub model: String,
    pub question: String,
    pub config: Value,
}

/// Command-line arguments; the optional JSON is merged over the defaults: greedy decoding
/// (reproducible answers) and at most 512 new tokens.
pub fn args() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let (Some(model), Some(question)) = (a.next(), a.next()) else {
        return Err("usage: MODEL_NAME QUESTION [CONFIG_JSON]".into());
    };
    let config = config(a.next().as_deref())?;
    Ok(Args { model, question, config })
}

/// The default config (greedy, at most 512 new tokens) with a `CONFIG_JSON` argument merged
/// over it.
pub fn config(extra: Option<&str>) -> Result<Value, String> {
    let mut config = json!({"temp": 0.0, "n-predict": 512});
    if let Some(extra) = extra {
        let extra: Value = serde_json::from_str(extra).map_err(|e| format!("CONFIG_JSON: {e}"))?;
        let Value::Object(extra) = extra else { return Err("CONFIG_JSON must be an object".into()) };
        config.as_object_mut().unwrap().extend(extra);
    }
    Ok(config)
}

/// Load the preloaded model and make an execution context holding the prompt and config.
pub fn context(args: &Args) -> Result<GraphExecutionContext, Error> {
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO)
        .config(args.config.to_string())
        .build_from_cache(&args.model)?;
    let mut ctx = graph.init_execution_context()?;
    let prompt = chatml_prompt(SYSTEM, &args.question);
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes())?;
    Ok(ctx)
}

/// Read a whole output, growing the buffer while the host says it is too small.
pub fn output(ctx: &GraphExecutionContext, index: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match ctx.get_output(index, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Error::BackendError(BackendError::TooLarge)) if buf.len() < 64 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// The closing line both examples print: `[input tokens: N, output tokens: M]`.
pub fn print_counts(ctx: &GraphExecutionContext) -> Result<(), Error> {
    let meta: Value = serde_json::from_slice(&output(ctx, 1)?).unwrap_or_default();
    println!("[input tokens: {}, output tokens: {}]", meta["input_tokens"], meta["output_tokens"]);
    Ok(())
}

/// Print complete UTF-8 characters; keep a character split across tokens until it is whole.
fn print_utf8(pending: &mut Vec<u8>) {
    let valid = match std::str::from_utf8(pending) {
        Ok(s) => s.len(),
        // An incomplete sequence at the end waits for the next token; an invalid one is printed.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => pending.len(),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(String::from_utf8_lossy(&pending[..valid]).as_bytes());
    let _ = out.flush();
    pending.drain(..valid);
}

/// Stream the answer with `compute_single`, printing tokens as they arrive, then a newline.
/// A stream that ends otherwise than with EndOfSequence (e.g. ContextFull) returns that error
/// after printing what came.
pub fn print_stream(ctx: &mut GraphExecutionContext) -> Result<(), Error> {
    let mut pending = Vec::new();
    let mut token = vec![0u8; 256];
    let end = loop {
        match ctx.compute_single() {
            Ok(()) => {}
            Err(Error::BackendError(BackendError::EndOfSequence)) => break Ok(()),
            Err(e) => break Err(e),
        }
        let n = ctx.get_output_single(0, &mut token)?;
        pending.extend_from_slice(&token[..n]);
        print_utf8(&mut pending);
    };
    if !pending.is_empty() {
        print!("{}", String::from_utf8_lossy(&pending));
    }
    println!();
    end
}
