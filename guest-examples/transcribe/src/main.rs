//! Transcribe a WAV file with a preloaded Whisper model.
//!
//!     wasmedge --dir .:. --nn-preload asr:Whisper:AUTO:ggml-tiny.en.bin \
//!         transcribe.wasm asr speech.wav [--stream] [CONFIG_JSON]
//!
//! Prints one `[hh:mm:ss.mmm --> hh:mm:ss.mmm]  text` line per segment. With `--stream` the
//! segments are printed as Whisper produces them (`compute_single`), otherwise all at once
//! after `compute`. CONFIG_JSON holds Whisper settings (`{"language": "de", "translate": true}`).

use std::io::Write;
use std::process::ExitCode;
use wasmedge_wasi_nn::{BackendError, Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

const USAGE: &str = "usage: MODEL_NAME FILE.wav [--stream] [CONFIG_JSON]";

fn run(model: &str, wav: &[u8], stream: bool, config: Option<&str>) -> Result<(), Error> {
    let mut builder = GraphBuilder::new(GraphEncoding::Whisper, ExecutionTarget::AUTO);
    if let Some(config) = config {
        builder = builder.config(config.to_string());
    }
    let graph = builder.build_from_cache(model)?;
    let mut ctx = graph.init_execution_context()?;
    // As guests written for WasmEdge's plugin do: the WAV bytes in an F32 tensor [1, len].
    ctx.set_input(0, TensorType::F32, &[1, wav.len()], wav)?;
    if !stream {
        ctx.compute()?;
        print!("{}", String::from_utf8_lossy(&chatml::output(&ctx, 0)?));
        return Ok(());
    }
    let mut segment = vec![0u8; 4096];
    loop {
        match ctx.compute_single() {
            Ok(()) => {}
            Err(Error::BackendError(BackendError::EndOfSequence)) => break,
            Err(e) => return Err(e),
        }
        let n = ctx.get_output_single(0, &mut segment)?;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&segment[..n]).and_then(|_| out.flush());
    }
    ctx.fini_single()
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let stream = args.iter().position(|a| a == "--stream").map(|i| args.remove(i)).is_some();
    let (Some(model), Some(file)) = (args.first(), args.get(1)) else {
        eprintln!("transcribe: {USAGE}");
        return ExitCode::from(2);
    };
    let wav = match std::fs::read(file) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("transcribe: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(model, &wav, stream, args.get(2).map(String::as_str)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transcribe: {e}");
            ExitCode::FAILURE
        }
    }
}
