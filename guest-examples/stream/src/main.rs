//! Answer a question with a preloaded GGUF chat model, printing each token as it arrives.
//!
//!     wasmedge --dir .:. --nn-preload default:GGML:AUTO:SmolLM2-135M-Instruct.Q4_1.gguf \
//!         stream.wasm default 'What is the capital of France?'

use std::io::Write;
use std::process::ExitCode;
use wasmedge_wasi_nn::{BackendError, Error};

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

fn main() -> ExitCode {
    let args = match chatml::args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stream: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), Error> {
        let mut ctx = chatml::context(&args)?;
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
