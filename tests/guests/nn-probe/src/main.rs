//! Exercises the host's error paths through the raw `wasi_ephemeral_nn` imports and prints
//! one `case: code` line per case, so a test can check every code; the host must still answer
//! a normal request at the end.
//!
//!     wasmedge --nn-preload default:GGML:AUTO:model.gguf \
//!              --nn-preload missing:GGML:AUTO:/no/such/model.gguf nn-probe.wasm default

use raw_nn::*;

/// An address far beyond the guest's memory.
const FAR: usize = 0xFFFF_FF00;

fn report(case: &str, code: u32) {
    println!("{case}: {code}");
}

fn graph(name: &str) -> (u32, u32) {
    let mut g = 0;
    let code = unsafe { load_by_name(name.as_ptr(), name.len() as u32, &mut g) };
    (code, g)
}

/// A context on `graph` with `meta` as its metadata and `prompt` as its prompt.
fn context(graph: u32, meta: &str, prompt: &str) -> u32 {
    let mut c = 0;
    unsafe {
        assert_eq!(init_execution_context(graph, &mut c), 0);
        assert_eq!(set_input(c, 1, &tensor(meta.as_bytes())), 0);
        assert_eq!(set_input(c, 0, &tensor(prompt.as_bytes())), 0);
    }
    c
}

fn output(ctx: u32) -> (u32, Vec<u8>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    let code = unsafe { get_output(ctx, 0, buf.as_mut_ptr(), buf.len() as u32, &mut n) };
    buf.truncate(if code == 0 { n as usize } else { 0 });
    (code, buf)
}

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    // Optional: a model file (readable through --dir) to load from bytes with `load`.
    let model_file = std::env::args().nth(2);
    let prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

    report("unknown_name", graph("no-such-model").0);
    report("missing_file", graph("missing").0);
    let (code, g) = graph(&name);
    assert_eq!(code, 0, "the model named on the command line must load");

    unsafe {
        let mut g2 = 0;
        let empty = Buf { ptr: b"x".as_ptr(), len: 1 };
        report("unsupported_encoding", load(&empty, 1, ONNX, CPU, &mut g2));
        report("out_of_bounds_builders", load(FAR as *const Buf, 2, GGML, CPU, &mut g2));
        report("not_a_model", load(&empty, 1, GGML, CPU, &mut g2));
        if let Some(file) = &model_file {
            // The model's bytes plus a config, as `GraphBuilder::build_from_bytes` passes them.
            let bytes = std::fs::read(file).expect("read the model file");
            let config = br#"{"temp": 0, "n-predict": 16}"#;
            let builders = [
                Buf { ptr: bytes.as_ptr(), len: bytes.len() as u32 },
                Buf { ptr: config.as_ptr(), len: config.len() as u32 },
            ];
            report("load_from_bytes", load(builders.as_ptr(), 2, GGML, CPU, &mut g2));
            drop(bytes);
            let mut c = 0;
            assert_eq!(init_execution_context(g2, &mut c), 0);
            assert_eq!(set_input(c, 0, &tensor(prompt.as_bytes())), 0);
            report("load_from_bytes_compute", compute(c));
            println!("load_from_bytes_answer: {}", String::from_utf8_lossy(&output(c).1));
            report("load_from_bytes_unload", unload(g2));
        }

        let mut c = 0;
        report("bad_graph_handle", init_execution_context(g.wrapping_add(1000), &mut c));
        report("bad_context_handle", compute(987_654));
        report("out_of_bounds_out_ptr", init_execution_context(g, FAR as *mut u32));

        let c = context(g, "{}", prompt);
        report("out_of_bounds_tensor", set_input(c, 0, FAR as *const Tensor));
        let mut t = tensor(b"hello");
        t.data = FAR as *const u8;
        report("out_of_bounds_tensor_data", set_input(c, 0, &t));
        let mut t = tensor(b"hello");
        t.dims_len = u32::MAX;
        report("out_of_bounds_tensor_dims", set_input(c, 0, &t));
        report("bad_tensor_type", set_input(c, 0, &Tensor { ty: 5, ..tensor(b"x") }));
        report("unparsable_metadata", set_input(c, 1, &tensor(b"{\"temp\": ")));
        report("wrong_type_metadata", set_input(c, 1, &tensor(b"{\"ctx-size\": \"big\"}")));

        let mut n = 0;
        report("out_of_bounds_output_buffer", get_output(c, 0, FAR as *mut u8, 1024, &mut n));
        report("out_of_bounds_output_written", get_output(c, 0, std::ptr::null_mut(), 0, FAR as *mut u32));

        // Prompt longer than the context.
        let long = "word ".repeat(200);
        let c2 = context(g, r#"{"ctx-size": 64}"#, &long);
        report("prompt_too_long", compute(c2));
        report("prompt_too_long_single", compute_single(c2));
        // Output 1 tells the guest why.
        let mut meta = vec![0u8; 4096];
        let mut n = 0;
        report("metadata_after_error", get_output(c2, 1, meta.as_mut_ptr(), meta.len() as u32, &mut n));
        println!("last_error: {}", String::from_utf8_lossy(&meta[..n as usize]));

        // A long generation in a small context: ContextFull, with the partial answer readable.
        let c3 = context(g, r#"{"ctx-size": 48, "temp": 0, "n-predict": 500, "ignore-eos": true}"#, prompt);
        report("context_full", compute(c3));
        let (code, partial) = output(c3);
        println!("context_full_output: {code} {}", partial.len());

        // A buffer too small: TooLarge, and the size needed is written.
        let c4 = context(g, r#"{"temp": 0, "n-predict": 8}"#, prompt);
        report("compute", compute(c4));
        let mut small = [0u8; 2];
        let mut needed = 0;
        report("output_too_small", get_output(c4, 0, small.as_mut_ptr(), 2, &mut needed));
        let (code, answer) = output(c4);
        println!("needed_size: {needed} {} {code}", answer.len());

        // Streaming honours n-predict: 4 tokens, then EndOfSequence.
        let c5 = context(g, r#"{"temp": 0, "n-predict": 4}"#, prompt);
        let mut steps = 0;
        let end = loop {
            let code = compute_single(c5);
            if code != 0 {
                break code;
            }
            steps += 1;
        };
        println!("stream_steps: {steps} {end}");
        report("fini_single", fini_single(c5));

        report("unload", unload(g));
        report("unload_again", unload(g));
        report("context_of_unloaded_graph", compute(c4));

        // Still alive: a fresh load and a normal answer.
        let (code, g) = graph(&name);
        let c6 = context(g, r#"{"temp": 0, "n-predict": 16}"#, prompt);
        report("alive_compute", code | compute(c6));
        println!("alive_answer: {}", String::from_utf8_lossy(&output(c6).1));
    }
}
