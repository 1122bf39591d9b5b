//! Loads model files from their bytes, as `GraphBuilder::build_from_bytes` does, and prints
//! one `LABEL: CODE` line per file (`Ok`, or the error's name); a graph that loads is also asked for a
//! few tokens, `LABEL_compute: CODE`. The host must answer every one and still be alive at the
//! end, so the test can hand it broken models.
//!
//!     load-files.wasm ENCODING:LABEL:FILE ...      (ENCODING: ggml or whisper)

use wasmedge_wasi_nn::{Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

/// The error's name (`InvalidArgument`, ...).
fn code(e: &Error) -> String {
    match e {
        Error::BackendError(b) => format!("{b:?}"),
        other => format!("other ({other})"),
    }
}

fn main() {
    for arg in std::env::args().skip(1) {
        let mut parts = arg.splitn(3, ':');
        let (encoding, label, file) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let encoding = match encoding {
            "ggml" => GraphEncoding::Ggml,
            "whisper" => GraphEncoding::Whisper,
            other => panic!("unknown encoding {other}"),
        };
        let bytes = std::fs::read(file).expect("the model file");
        let loaded = GraphBuilder::new(encoding, ExecutionTarget::AUTO).build_from_bytes([&bytes]);
        match loaded {
            Err(e) => println!("{label}: {}", code(&e)),
            Ok(graph) => {
                println!("{label}: Ok");
                let mut ctx = graph.init_execution_context().expect("init_execution_context");
                let input: &[u8] = if encoding == GraphEncoding::Ggml { b"Hello" } else { &[0u8; 64000] };
                let ty = if encoding == GraphEncoding::Ggml { TensorType::U8 } else { TensorType::F32 };
                // (The guest crate sends no config with `build_from_bytes`: metadata it is.)
                let config = br#"{"n-predict": 4, "temp": 0}"#;
                let configured = if encoding == GraphEncoding::Ggml {
                    ctx.set_input(1, TensorType::U8, &[1], config)
                } else {
                    Ok(())
                };
                let computed =
                    configured.and_then(|_| ctx.set_input(0, ty, &[1, input.len()], input)).and_then(|_| ctx.compute());
                println!("{label}_compute: {}", computed.map_or_else(|e| code(&e), |_| "Ok".to_string()));
            }
        }
    }
    println!("alive");
}
