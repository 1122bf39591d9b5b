//! Describe a picture with a LLaVA-style model: the model is preloaded, its projector (mmproj)
//! and the picture are named on the command line, and the answer streams as it is generated.
//!
//!     wasmedge --dir .:. --nn-preload default:GGML:AUTO:llava-v1.5-7b-Q4_K_M.gguf \
//!         llava.wasm default mmproj-model-f16.gguf picture.jpg ['What is in this picture?'] \
//!         [CONFIG_JSON] [--template vicuna|chatml]
//!
//! The guest reads the picture itself (so any file it was given with `--dir` will do) and
//! hands its bytes to the host as a U8 tensor at input index 2; `<image>` in the prompt marks
//! where it goes. The projector is named in the load config, so one that does not fit the
//! model is refused at load. `--template` picks the prompt format: `vicuna` (LLaVA 1.5, the
//! default) or `chatml` (models such as the tiny test pair, Qwen-based ones).

use std::process::ExitCode;
use wasmedge_wasi_nn::{Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

const USAGE: &str = "usage: MODEL_NAME MMPROJ PICTURE [QUESTION] [CONFIG_JSON] [--template vicuna|chatml]";
const QUESTION: &str = "What is in this picture?";
/// Where this plugin takes image bytes.
const IMAGE_INPUT: usize = 2;

fn prompt(template: &str, question: &str) -> Result<String, String> {
    match template {
        "vicuna" => Ok(format!(
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives \
             helpful, detailed, and polite answers to the human's questions.\nUSER: <image>\n{question}\nASSISTANT:"
        )),
        "chatml" => Ok(chatml::chatml_prompt(chatml::SYSTEM, &format!("<image>\n{question}"))),
        other => Err(format!("unknown template '{other}' (vicuna or chatml)")),
    }
}

struct Args {
    model: String,
    picture: Vec<u8>,
    prompt: String,
    config: serde_json::Value,
}

fn args() -> Result<Args, String> {
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    let mut template = "vicuna".to_string();
    if let Some(i) = all.iter().position(|a| a == "--template") {
        template = all.get(i + 1).cloned().ok_or(USAGE)?;
        all.drain(i..i + 2);
    }
    let mut a = all.into_iter();
    let (Some(model), Some(mmproj), Some(picture)) = (a.next(), a.next(), a.next()) else {
        return Err(USAGE.into());
    };
    let question = a.next().unwrap_or_else(|| QUESTION.to_string());
    let mut config = chatml::config(a.next().as_deref())?;
    config["mmproj"] = mmproj.into();
    let picture = std::fs::read(&picture).map_err(|e| format!("cannot read {picture}: {e}"))?;
    Ok(Args { model, picture, prompt: prompt(&template, &question)?, config })
}

fn run(args: &Args) -> Result<(), Error> {
    let graph = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO)
        .config(args.config.to_string())
        .build_from_cache(&args.model)?;
    let mut ctx = graph.init_execution_context()?;
    ctx.set_input(IMAGE_INPUT, TensorType::U8, &[args.picture.len()], &args.picture)?;
    ctx.set_input(0, TensorType::U8, &[1], args.prompt.as_bytes())?;
    let end = chatml::print_stream(&mut ctx);
    chatml::print_counts(&ctx)?;
    ctx.fini_single()?;
    end
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("llava: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llava: {e}");
            ExitCode::FAILURE
        }
    }
}
