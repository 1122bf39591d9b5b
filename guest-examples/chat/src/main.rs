//! Answer a question with a preloaded GGUF chat model, in one `compute`.
//!
//!     wasmedge --dir .:. --nn-preload default:GGML:AUTO:SmolLM2-135M-Instruct.Q4_1.gguf \
//!         chat.wasm default 'What is the capital of France?'

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match chatml::args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), wasmedge_wasi_nn::Error> {
        let mut ctx = chatml::context(&args)?;
        let computed = ctx.compute();
        // A full context still leaves the answer so far readable.
        let answer = chatml::output(&ctx, 0)?;
        println!("{}", String::from_utf8_lossy(&answer));
        chatml::print_counts(&ctx)?;
        computed
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}
