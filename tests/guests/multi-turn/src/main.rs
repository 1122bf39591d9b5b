//! A three-turn ChatML conversation on one execution context, each turn's prompt being the
//! whole conversation so far; then the last turn's prompt on a fresh context. Prints, per run,
//! `turn N: <metadata JSON>` and `answer N: <answer, escaped>`, and `fresh: ...` lines.
//!
//!     wasmedge --nn-preload default:GGML:AUTO:model.gguf multi-turn.wasm default

use wasmedge_wasi_nn::{ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType};

const TURNS: [&str; 3] = ["Name a large animal.", "Where does it live?", "What does it eat?"];

fn output(ctx: &GraphExecutionContext, index: usize) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let n = ctx.get_output(index, &mut buf).expect("get_output");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Run one prompt on a context: (answer, metadata JSON).
fn ask(ctx: &mut GraphExecutionContext, prompt: &str) -> (String, String) {
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).expect("prompt");
    ctx.compute().expect("compute");
    (output(ctx, 0), output(ctx, 1))
}

fn context(graph: &Graph) -> GraphExecutionContext {
    let mut ctx = graph.init_execution_context().expect("init_execution_context");
    ctx.set_input(1, TensorType::U8, &[1], br#"{"temp": 0, "n-predict": 24}"#).expect("metadata");
    ctx
}

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO).build_from_cache(&name).expect("load");
    let mut ctx = context(&graph);
    let mut conversation = String::from("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    for (i, question) in TURNS.iter().enumerate() {
        conversation.push_str(&format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"));
        let (answer, meta) = ask(&mut ctx, &conversation);
        println!("turn {}: {meta}", i + 1);
        println!("answer {}: {answer:?}", i + 1);
        if i + 1 < TURNS.len() {
            conversation.push_str(&answer);
            conversation.push_str("<|im_end|>\n");
        }
    }
    let (answer, meta) = ask(&mut context(&graph), &conversation);
    println!("fresh: {meta}");
    println!("fresh answer: {answer:?}");
}
