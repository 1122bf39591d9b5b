//! Answer a question with a preloaded GGUF chat model, printing each token as it arrives.
//!
//!     wasmedge --dir .:. --nn-preload default:GGML:AUTO:SmolLM2-135M-Instruct.Q4_1.gguf \
//!         stream.wasm default 'What is the capital of France?'

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match chatml::args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stream: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), wasmedge_wasi_nn::Error> {
        let mut ctx = chatml::context(&args)?;
        let end = chatml::print_stream(&mut ctx);
        chatml::print_counts(&ctx)?;
        ctx.fini_single()?;
        end
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream: {e}");
            ExitCode::FAILURE
        }
    }
}
