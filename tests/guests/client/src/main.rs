//! What real clients of WASI-NN do beyond chat, one command each; every answer goes to
//! stdout as `label: value` lines (values Rust-escaped where they are text):
//!
//!     client.wasm embed NAME TEXT [LOAD_CONFIG]         output 0 (the embedding JSON), output 1
//!     client.wasm generate NAME PROMPT CONFIG           set_input(1, CONFIG), compute: text, output 1
//!     client.wasm stream NAME PROMPT CONFIG             the same through compute_single
//!     client.wasm two-contexts NAME PROMPT CONFIG_A CONFIG_B
//!                                                       two contexts of one graph, streamed in turns
//!     client.wasm configs NAME PROMPT CONFIG_A CONFIG_B load_by_name_with_config with A, B, A and none:
//!                                                       the handles, and each graph's answer
//!     client.wasm unload-while-streaming NAME PROMPT    unload the graph with a stream running, then
//!                                                       use the context, then load and answer again
//!     client.wasm from-bytes FILE PROMPT CONFIG         load the model's bytes (builder 1: CONFIG)
//!     client.wasm input-twice NAME PROMPT               the same prompt set twice: input_tokens each time
//!     client.wasm chat-loop NAME CONFIG QUESTION...     a LlamaEdge-style chat (see `chat_loop`)
//!     client.wasm plugin-info NAME                      output 1 of a fresh context, as LlamaEdge's
//!                                                       `get_plugin_info` reads it before any input
//!
//! A failing call prints `error: <call>: <error>` and exits with 1.

use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

fn fail(what: &str, e: Error) -> ! {
    println!("error: {what}: {e:?}");
    std::process::exit(1)
}

fn ok<T>(what: &str, r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| fail(what, e))
}

fn by_name(name: &str, config: Option<&str>) -> Graph {
    let mut builder = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO);
    if let Some(c) = config {
        builder = builder.config(c.to_string());
    }
    ok("load_by_name", builder.build_from_cache(name))
}

fn output(ctx: &GraphExecutionContext, index: usize) -> String {
    let mut buf = vec![0u8; 1 << 20];
    let n = ok("get_output", ctx.get_output(index, &mut buf));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn context(graph: &Graph, prompt: &str, config: Option<&str>) -> GraphExecutionContext {
    let mut ctx = ok("init_execution_context", graph.init_execution_context());
    if let Some(c) = config {
        ok("set_input(1)", ctx.set_input(1, TensorType::U8, &[1], c.as_bytes()));
    }
    ok("set_input(0)", ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()));
    ctx
}

/// One compute_single step: the token's text, or None at the end.
fn step(ctx: &mut GraphExecutionContext) -> Option<String> {
    match ctx.compute_single() {
        Ok(()) => {
            let mut buf = vec![0u8; 256];
            let n = ok("get_output_single", ctx.get_output_single(0, &mut buf));
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
        Err(Error::BackendError(BackendError::EndOfSequence)) => None,
        Err(e) => fail("compute_single", e),
    }
}

fn stream(ctx: &mut GraphExecutionContext) -> String {
    let mut text = String::new();
    while let Some(piece) = step(ctx) {
        text.push_str(&piece);
    }
    ok("fini_single", ctx.fini_single());
    text
}

fn answer(graph: &Graph, prompt: &str) -> String {
    let mut ctx = context(graph, prompt, None);
    ok("compute", ctx.compute());
    output(&ctx, 0)
}

/// The number in output 1's `"key": N`.
fn field(meta: &str, key: &str) -> u64 {
    let at = meta.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {meta}"));
    let rest = &meta[at + key.len() + 3..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// A chat as LlamaEdge's llama-core runs one: the guest applies the ChatML template to the
/// whole history each turn, reads the prompt's size from output 1 right after set_input, drops
/// the oldest exchanges while it exceeds 4/5 of ctx-size, and on ContextFull keeps the partial
/// answer (finish reason "length") instead of failing. One context for the whole chat.
/// Prints per turn: `turn N: input_tokens=T dropped=D finish=F` and `answer N: "..."`.
fn chat_loop(name: &str, config: &str, questions: &[&str]) {
    let ctx_size = field(config, "ctx-size");
    let graph = by_name(name, None);
    let mut ctx = ok("init_execution_context", graph.init_execution_context());
    ok("set_input(1)", ctx.set_input(1, TensorType::U8, &[1], config.as_bytes()));
    let system = "You are a helpful assistant.";
    let mut history: Vec<(String, String)> = Vec::new();
    for (turn, question) in questions.iter().enumerate() {
        let mut dropped = 0;
        let tokens = loop {
            let mut prompt = format!("<|im_start|>system\n{system}<|im_end|>\n");
            for (q, a) in &history {
                prompt.push_str(&format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"));
            }
            prompt.push_str(&format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"));
            ok("set_input(0)", ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()));
            let tokens = field(&output(&ctx, 1), "input_tokens");
            if tokens <= ctx_size * 4 / 5 || history.is_empty() {
                break tokens;
            }
            history.remove(0);
            dropped += 1;
        };
        let finish = match ctx.compute() {
            Ok(()) => "stop",
            Err(Error::BackendError(BackendError::ContextFull)) => "length",
            Err(e) => fail("compute", e),
        };
        let answer = output(&ctx, 0);
        println!("turn {turn}: input_tokens={tokens} dropped={dropped} finish={finish}");
        println!("answer {turn}: {answer:?}");
        history.push((question.to_string(), answer));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["embed", name, text, rest @ ..] => {
            let graph = by_name(name, rest.first().copied());
            let mut ctx = context(&graph, text, None);
            ok("compute", ctx.compute());
            println!("embedding: {}", output(&ctx, 0));
            println!("metadata: {}", output(&ctx, 1));
        }
        ["plugin-info", name] => {
            let graph = by_name(name, None);
            let ctx = ok("init_execution_context", graph.init_execution_context());
            println!("metadata: {}", output(&ctx, 1));
        }
        ["generate", name, prompt, config] => {
            let graph = by_name(name, None);
            let mut ctx = context(&graph, prompt, Some(config));
            ok("compute", ctx.compute());
            println!("text: {:?}", output(&ctx, 0));
            println!("metadata: {}", output(&ctx, 1));
        }
        ["stream", name, prompt, config] => {
            let graph = by_name(name, None);
            let mut ctx = context(&graph, prompt, Some(config));
            println!("text: {:?}", stream(&mut ctx));
        }
        ["two-contexts", name, prompt, config_a, config_b] => {
            let graph = by_name(name, None);
            // (context, text so far, still streaming), stepped in turns.
            let mut streams = [config_a, config_b].map(|c| (context(&graph, prompt, Some(c)), String::new(), true));
            while streams.iter().any(|(_, _, on)| *on) {
                for (ctx, text, on) in streams.iter_mut().filter(|(_, _, on)| *on) {
                    match step(ctx) {
                        Some(piece) => text.push_str(&piece),
                        None => *on = false,
                    }
                }
            }
            let [(_, text_a, _), (_, text_b, _)] = &streams;
            println!("a: {text_a:?}");
            println!("b: {text_b:?}");
        }
        ["configs", name, prompt, config_a, config_b] => {
            let ga = by_name(name, Some(config_a));
            let gb = by_name(name, Some(config_b));
            let ga2 = by_name(name, Some(config_a));
            let plain = by_name(name, None);
            println!("handles: {ga} {gb} {ga2} {plain}");
            println!("a: {:?}", answer(&ga, prompt));
            println!("b: {:?}", answer(&gb, prompt));
            println!("a again: {:?}", answer(&ga2, prompt));
            println!("plain: {:?}", answer(&plain, prompt));
        }
        ["unload-while-streaming", name, prompt] => {
            let graph = by_name(name, None);
            let mut ctx = context(&graph, prompt, Some(r#"{"temp": 0, "n-predict": 64, "run-ahead": 8}"#));
            println!("first token: {:?}", step(&mut ctx).unwrap_or_default());
            ok("unload", graph.unload());
            println!("unloaded");
            match ctx.compute_single() {
                Ok(()) => println!("after unload: a token"),
                Err(e) => println!("after unload: {e:?}"),
            }
            let again = by_name(name, None);
            println!("loaded again: {again}");
            let mut ctx = context(&again, prompt, Some(r#"{"temp": 0, "n-predict": 16}"#));
            ok("compute", ctx.compute());
            println!("answer: {:?}", output(&ctx, 0));
        }
        ["from-bytes", file, prompt, config] => {
            let bytes = std::fs::read(file).unwrap_or_else(|e| {
                println!("error: read {file}: {e}");
                std::process::exit(1)
            });
            let graph = ok(
                "load",
                GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO)
                    .build_from_bytes([bytes.as_slice(), config.as_bytes()]),
            );
            drop(bytes);
            let mut ctx = context(&graph, prompt, Some(config));
            ok("compute", ctx.compute());
            println!("text: {:?}", output(&ctx, 0));
        }
        ["input-twice", name, prompt] => {
            let graph = by_name(name, None);
            let mut ctx = context(&graph, prompt, None);
            println!("first: {}", output(&ctx, 1));
            ok("set_input(0)", ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()));
            println!("second: {}", output(&ctx, 1));
        }
        ["chat-loop", name, config, questions @ ..] if !questions.is_empty() => chat_loop(name, config, questions),
        _ => {
            eprintln!("usage: see the top of tests/guests/client/src/main.rs");
            std::process::exit(2);
        }
    }
}
